#!/usr/bin/env bash
# The deploy test: the container image, deploy/compose/setup.sh and the
# compose cluster, end to end, with a container killed and another cut off
# the network while a client keeps transferring; then every acknowledged
# transfer must be in the chain exactly once and the books must balance.
#
# Usage: deploy/test-deploy.sh
# Env: BIN        directory of bank-server and bank-client (default
#                 ${CARGO_TARGET_DIR:-target}/release; debug builds work too)
#      BANK_IMAGE use this existing image instead of building one from BIN
#                 (it is then left in place)
#      DEADLINE_S fail if the whole test takes longer (default 170)
# Needs docker, docker-compose (or `docker compose`), tar and python3 (JSON,
# HTTP).
# Without a working container engine it prints "deploy test skipped: no
# container engine" and exits 0.
#
# Plan (a majority of the three nodes is up whenever commits are expected):
#   1. build the image (test tag), setup.sh (twice: the second run keeps
#      everything), `up` under project bankdeploy<pid>; each container mounts
#      its data volume, cluster/ and its own node-N/, nothing else: no CA key,
#      no other node's key
#   2. a background client transfers 1 from account 1 to account 2 without
#      pause, each with a fresh id; an attempt that fails has an unknown
#      outcome and is resubmitted with the same id until it is acknowledged
#   3. all up: some transfers acknowledged
#   4. `docker kill` the leader: transfers go on with two nodes
#   5. `docker start` it again; wait until it follows the leader and caught up
#   6. `docker network disconnect` the (new) leader: transfers go on with the
#      other two
#   7. `docker network connect` it back: transfers go on, it catches up
#   8. stop the client, settle its last transfer, wait until all three report
#      the same height and tip (also from inside the network, by host name)
#   9. check: every node's balances agree; the total is genesis's; account 2
#      gained and account 1 lost exactly the number of acknowledged ids; the
#      chain holds every acknowledged id exactly once and nothing else;
#      resubmitting an acknowledged id returns its first outcome.
#  10. HTTP through the published ports: /metrics and /api/status answer 401
#      without the token (or with a wrong one) and 200 with it; /healthz,
#      /readyz and the dashboard page answer without it.
set -euo pipefail

t0=$(date +%s)
if ! docker info >/dev/null 2>&1; then
  echo "deploy test skipped: no container engine"
  exit 0
fi
if command -v docker-compose >/dev/null 2>&1; then
  compose_cmd=(docker-compose)
elif docker compose version >/dev/null 2>&1; then
  compose_cmd=(docker compose)
else
  echo "deploy test FAILED: docker works but neither docker-compose nor 'docker compose' is installed" >&2
  exit 1
fi
command -v python3 >/dev/null || { echo "deploy test FAILED: python3 is needed to read JSON" >&2; exit 1; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
if [ ! -x "$BIN/bank-server" ] || [ ! -x "$BIN/bank-client" ]; then
  echo "deploy test FAILED: no bank-server/bank-client in $BIN (set BIN to the directory of the built binaries)" >&2
  exit 1
fi
BIN=$(cd "$BIN" && pwd)
DEADLINE_S=${DEADLINE_S:-170}
project=bankdeploy$$
net=${project}_bank
work=$(mktemp -d "${TMPDIR:-/tmp}/bankdeploy.XXXXXX")
built_image=""
load_pid=""
gport=(0 0 0)
hport=(0 0 0)
servers=""
if [ -n "${BANK_IMAGE:-}" ]; then
  image=$BANK_IMAGE
else
  image=bank-ledger:deploytest-$$
fi

say() { printf '[%3ss] %s\n' "$(($(date +%s) - t0))" "$*"; }
fail() {
  say "deploy test FAILED: $*" >&2
  exit 1
}

compose() {
  BANK_IMAGE=$image BANK_CONFIG_DIR=$work/config \
    BANK_GRPC_PORT_0=${gport[0]} BANK_GRPC_PORT_1=${gport[1]} BANK_GRPC_PORT_2=${gport[2]} \
    BANK_HTTP_PORT_0=${hport[0]} BANK_HTTP_PORT_1=${hport[1]} BANK_HTTP_PORT_2=${hport[2]} \
    "${compose_cmd[@]}" -p "$project" -f "$here/compose/docker-compose.yml" "$@"
}

cleanup() {
  local rc=$?
  set +e
  if [ -n "$load_pid" ]; then
    touch "$work/stop"
    kill "$load_pid" 2>/dev/null
    wait "$load_pid" 2>/dev/null
  fi
  if [ "$rc" != 0 ] && [ -n "$servers" ]; then
    echo "---- diagnostics ----" >&2
    compose ps >&2
    client status >&2
    compose logs --no-color --tail 25 >&2
    [ -s "$work/retries" ] && { echo "---- last resubmissions ----"; tail -5 "$work/retries"; } >&2
  fi
  if [ -n "$servers" ]; then
    compose down -v --remove-orphans >/dev/null 2>&1 || echo "warning: 'down -v' of project $project failed" >&2
  fi
  [ -n "$built_image" ] && docker rmi -f "$built_image" >/dev/null 2>&1
  rm -rf "$work" 2>/dev/null
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Poll CMD... every 0.2 s until it succeeds; fail after SECONDS.
wait_for() {
  local what=$1 seconds=$2
  shift 2
  local until=$(($(date +%s) + seconds))
  until "$@"; do
    [ "$(date +%s)" -lt "$until" ] || fail "timed out after ${seconds}s waiting for $what"
    [ "$(($(date +%s) - t0))" -lt "$DEADLINE_S" ] || fail "over the ${DEADLINE_S}s budget waiting for $what"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- 1. set up
if [ -z "${BANK_IMAGE:-}" ]; then
  built_image=$image
  "$here/container/build-image.sh" "$BIN" "$image" | while read -r line; do say "$line"; done ||
    fail "building the image from $BIN failed"
else
  docker image inspect "$image" >/dev/null 2>&1 || fail "no image $image"
fi
# Six free loopback ports for the published gRPC and HTTP ports.
read -r -a ports <<<"$(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))')"
gport=("${ports[@]:0:3}")
hport=("${ports[@]:3:3}")
servers="0=127.0.0.1:${gport[0]},1=127.0.0.1:${gport[1]},2=127.0.0.1:${gport[2]}"

ACCOUNTS=4 BALANCE=1000000000 BANK_IMAGE=$image "$here/compose/setup.sh" "$work/config" >/dev/null ||
  fail "deploy/compose/setup.sh failed"
# A second run keeps every file: hashes of what the caller may read, inode and
# time of what only uid 10001 may (the node keys, the nodes' token).
config_state() {
  (
    cd "$work/config" &&
      sha256sum tls/ca.pem tls/ca.key genesis.json http.token cluster/ca.pem cluster/genesis.json node-*/node-*.pem &&
      stat -c '%n %i %Y %s' cluster/http.token node-*/node-*.key keys/*
  )
}
before=$(config_state) || fail "setup.sh did not write the expected files"
BANK_IMAGE=$image "$here/compose/setup.sh" "$work/config" >/dev/null || fail "deploy/compose/setup.sh failed on its second run"
[ "$(config_state)" = "$before" ] || fail "a second run of setup.sh changed files: $(diff <(echo "$before") <(config_state))"
tls_files=$(cd "$work/config/tls" && echo *)
[ "$tls_files" = "ca.key ca.pem" ] || fail "tls/ holds more than the CA: $tls_files"
compose up -d >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; fail "compose up failed"; }
say "cluster $project up (image $image, gRPC on 127.0.0.1:${gport[*]})"

# ---------------------------------------------------------------- helpers
# Container ids, taken while all run (`docker compose ps` v2 lists running ones only).
cid=()
for i in 0 1 2; do
  cid[$i]=$(compose ps -q "bank-$i")
  [ -n "${cid[$i]}" ] || fail "no container for bank-$i"
done
container() { echo "${cid[$1]}"; }
# bank-client from the host, through the published ports: all three nodes,
# or the ones given with --servers first.
client() {
  local s=$servers
  if [ "${1:-}" = --servers ]; then s=$2; shift 2; fi
  "$BIN/bank-client" --servers "$s" --tls-ca "$work/config/tls/ca.pem" --keystore "$work/config/keys" "$@"
}

# status_rows [SERVERS]: "id role term leader height tip" per server, via
# bank-client status --json ("-" for a server that did not answer).
status_rows() {
  client --servers "${1:-$servers}" --timeout-ms 1500 --json status 2>/dev/null | python3 -c '
import json, sys
for s in json.load(sys.stdin):
    if s.get("role") == "unreachable" or "height" not in s:
        print(s.get("id", "?"), "unreachable - - - -")
    else:
        print(s["id"], s["role"], s["term"], s["leader_id"] if s["leader_id"] is not None else "-", s["height"], s["tip_hash"])'
}

# The leader all reachable nodes agree on (at least two of them), else nothing.
agreed_leader() {
  status_rows | awk '$2 != "unreachable" { n++; seen[$3 " " $4]++; if ($2 == "leader") l[$3 " " $1] = 1 }
    END { for (k in seen) if (seen[k] >= 2 && (k in l) && k !~ / -$/) { split(k, a, " "); print a[2]; exit } }'
}
have_leader() { [ -n "$(agreed_leader)" ]; }

all_agree() { # all three answer with the same height and tip
  local rows
  rows=$(status_rows "${1:-$servers}") || return 1
  [ "$(echo "$rows" | grep -vc unreachable)" = 3 ] &&
    [ "$(echo "$rows" | awk '{ print $5, $6 }' | sort -u | wc -l)" = 1 ]
}

acked() { if [ -e "$work/acked" ]; then wc -l <"$work/acked"; else echo 0; fi; }
acked_past() { [ "$(acked)" -ge "$1" ]; }

# Node $1 follows the agreed leader in the leader's term and reached height $2.
caught_up() {
  local rows l
  rows=$(status_rows) || return 1
  l=$(agreed_leader)
  [ -n "$l" ] || return 1
  echo "$rows" | awk -v n="$1" -v l="$l" -v h="$2" '
    $1 == l { term = $3 } $1 == n { r = $2; t = $3; ld = $4; ht = $5 }
    END { exit !(r != "unreachable" && t == term && ld == l && ht >= h) }'
}

height_of_leader() { status_rows | awk -v l="$(agreed_leader)" '$1 == l { print $5 }'; }

# ---------------------------------------------------------------- 1. mounts
# Each node's container mounts its data volume at /data, cluster/ (genesis,
# CA certificate, HTTP token) and its own node-N/ read-only, and nothing else;
# no file under its /config is the CA key or another node's key, and the only
# private key in it is its own.
for i in 0 1 2; do
  docker inspect -f '{{range .Mounts}}{{.Type}} {{.Destination}} {{.RW}} {{.Source}}{{"\n"}}{{end}}' "$(container "$i")" \
    >"$work/mounts-$i" || fail "docker inspect bank-$i"
  docker cp "$(container "$i"):/config" - >"$work/config-$i.tar" || fail "docker cp bank-$i:/config"
done
python3 - "$work" <<'PY' || fail "a node's container sees more than its own files (see above)"
import os, sys, tarfile
work = sys.argv[1]
real = os.path.realpath
errors = []
files = {}
for i in range(3):
    mounts = sorted(l.split(" ", 3) for l in open(f"{work}/mounts-{i}").read().splitlines() if l)
    binds = {(d, rw, real(src)) for t, d, rw, src in mounts if t == "bind"}
    want = {("/config/cluster", "false", real(f"{work}/config/cluster")),
            ("/config/node", "false", real(f"{work}/config/node-{i}"))}
    others = [(t, d) for t, d, rw, src in mounts if t != "bind"]
    if binds != want or len(mounts) != 3 or others != [("volume", "/data")]:
        errors.append(f"bank-{i} mounts {mounts}, expected {sorted(want)} and a volume at /data")
    with tarfile.open(f"{work}/config-{i}.tar") as tar:
        files[i] = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    expected = {"config/cluster/ca.pem", "config/cluster/genesis.json", "config/cluster/http.token",
                f"config/node/node-{i}.pem", f"config/node/node-{i}.key"}
    if set(files[i]) != expected:
        errors.append(f"bank-{i} sees {sorted(files[i])} under /config, expected {sorted(expected)}")
    keys = sorted(n for n, b in files[i].items() if b"PRIVATE KEY" in b)
    if keys != [f"config/node/node-{i}.key"]:
        errors.append(f"private keys under bank-{i}'s /config: {keys}, expected only its own")
ca_key = open(f"{work}/config/tls/ca.key", "rb").read()
node_keys = {i: files[i].get(f"config/node/node-{i}.key") for i in range(3)}
for i in range(3):
    for name, body in files[i].items():
        if body == ca_key:
            errors.append(f"bank-{i}'s /{name} is the CA key")
        for j, k in node_keys.items():
            if j != i and body == k:
                errors.append(f"bank-{i}'s /{name} is node {j}'s key")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
for i in 0 1 2; do
  ! docker cp "$(container "$i"):/config/tls/ca.key" - >/dev/null 2>&1 || fail "bank-$i has a CA key at /config/tls/ca.key"
done
say "mounts: each node sees genesis, the CA certificate, the HTTP token and its own key only; no CA key"

# ---------------------------------------------------------------- 2. load
# Transfers of 1 from account 1 to 2, one at a time, each with a new id; a
# failed attempt has an unknown outcome: resubmit the same id until it is
# acknowledged. acked: "id height block_hash"; retries: "id error".
load() {
  local i=0 id out
  while [ ! -e "$work/stop" ]; do
    i=$((i + 1))
    id=dt$$-$i
    until out=$(client --timeout-ms 3000 --json transfer 1 2 1 --id "$id" 2>"$work/err"); do
      echo "$id $(head -c 300 "$work/err")" >>"$work/retries"
      if [ -e "$work/stop" ]; then
        echo "$id" >"$work/pending"
        return
      fi
      sleep 0.1
    done
    echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["tx_id"], d["height"], d["block_hash"])' >>"$work/acked"
  done
}

wait_for "a leader" 30 have_leader
leader=$(agreed_leader)
say "leader: node $leader"
load &
load_pid=$!

# ---------------------------------------------------------------- 3. all up
wait_for "transfers with all three nodes up" 30 acked_past 10
say "all up: $(acked) transfers acknowledged"

# ---------------------------------------------------------------- 4. kill
killed=$(agreed_leader)
[ -n "$killed" ] || fail "no leader before the kill"
docker kill "$(container "$killed")" >/dev/null
at=$(acked)
say "docker kill bank-$killed (the leader)"
wait_for "transfers with bank-$killed killed" 40 acked_past $((at + 10))
say "bank-$killed down: $(($(acked) - at)) more acknowledged by the other two"

# ---------------------------------------------------------------- 5. restart
h=$(height_of_leader)
docker start "$(container "$killed")" >/dev/null
say "docker start bank-$killed"
wait_for "bank-$killed to follow the leader and reach height $h" 40 caught_up "$killed" "$h"
say "bank-$killed back: follows node $(agreed_leader), caught up past height $h"

# ---------------------------------------------------------------- 6. disconnect
cut=$(agreed_leader)
[ -n "$cut" ] || fail "no leader before the disconnect"
docker network disconnect "$net" "$(container "$cut")"
at=$(acked)
say "docker network disconnect bank-$cut (the leader) from $net"
wait_for "transfers with bank-$cut cut off" 40 acked_past $((at + 10))
say "bank-$cut cut off: $(($(acked) - at)) more acknowledged by the other two"

# ---------------------------------------------------------------- 7. reconnect
docker network connect --alias "bank-$cut" "$net" "$(container "$cut")"
at=$(acked)
h=$(height_of_leader)
say "docker network connect bank-$cut"
wait_for "bank-$cut to rejoin and reach height $h" 40 caught_up "$cut" "$h"
wait_for "transfers with all three back" 30 acked_past $((at + 10))
say "all three back: $(acked) acknowledged in all"

# ---------------------------------------------------------------- 8. settle
touch "$work/stop"
wait "$load_pid" || true
load_pid=""
if [ -s "$work/pending" ]; then
  id=$(cat "$work/pending")
  settle() {
    local out
    out=$(client --timeout-ms 3000 --json transfer 1 2 1 --id "$id" 2>"$work/err") || return 1
    echo "$out" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["tx_id"], d["height"], d["block_hash"])' >>"$work/acked"
  }
  wait_for "the outcome of transfer $id" 30 settle
  say "settled $id by resubmitting it"
fi
n=$(acked)
unknown=$(if [ -e "$work/retries" ]; then awk '{ print $1 }' "$work/retries" | sort -u | wc -l; else echo 0; fi)
wait_for "all three nodes at the same height and tip" 40 all_agree
say "converged: $(status_rows | awk 'NR == 1 { print "height " $5 ", tip " $6 }')"

# From inside the network, by host name (name resolution in a scratch image).
in_net() {
  docker run --rm --network "$net" -v "$work/config/cluster/ca.pem:/ca.pem:ro" --entrypoint /usr/local/bin/bank-client "$image" \
    --servers bank-0:50051,bank-1:50051,bank-2:50051 --tls-ca /ca.pem --timeout-ms 3000 --json status |
    python3 -c '
import json, sys
rows = json.load(sys.stdin)
tips = {(s.get("height"), s.get("tip_hash")) for s in rows}
sys.exit(0 if len(rows) == 3 and all(s.get("role") not in (None, "unreachable") for s in rows) and len(tips) == 1 else 1)'
}
in_net || fail "a client container on $net does not see bank-0, bank-1, bank-2 by name at one tip"
say "a client container on $net reaches bank-0, bank-1, bank-2 by name: same tip"

# ---------------------------------------------------------------- 9. check
for i in 0 1 2; do
  client --servers "127.0.0.1:${gport[$i]}" --timeout-ms 5000 --json balances >"$work/balances-$i" ||
    fail "bank-$i does not answer balances"
done
for ((from = 0; ; from += 500)); do
  client --timeout-ms 10000 --json chain --from "$from" --limit 500 >"$work/chain-$from" ||
    fail "cannot read the chain from height $from"
  [ "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$work/chain-$from")" = 500 ] || break
done
python3 - "$work" "$n" <<'EOF' || fail "the ledger does not match the acknowledged transfers (see above)"
import glob, json, sys
work, n = sys.argv[1], int(sys.argv[2])
errors = []
genesis = json.load(open(f"{work}/config/genesis.json"))
g = {str(a["id"]): a["balance"] for a in genesis["accounts"]}
for t in genesis.get("transfers", []):
    g[str(t["from"])] -= t["amount"]; g[str(t["to"])] += t["amount"]
total = sum(g.values())
views = [json.load(open(f"{work}/balances-{i}")) for i in range(3)]
for i, v in enumerate(views[1:], 1):
    if (v["height"], v["tip_hash"], v["balances"]) != (views[0]["height"], views[0]["tip_hash"], views[0]["balances"]):
        errors.append(f"bank-{i}'s balances differ from bank-0's: {v} vs {views[0]}")
b = views[0]["balances"]
if sum(b.values()) != total or views[0]["total"] != total:
    errors.append(f"total {sum(b.values())} (reported {views[0]['total']}), genesis total {total}")
acked = {}
for line in open(f"{work}/acked"):
    tx, height, block = line.split()
    if tx in acked:
        errors.append(f"{tx} acknowledged twice")
    acked[tx] = (int(height), block)
if len(acked) != n:
    errors.append(f"{len(acked)} distinct ids in {n} acknowledgements")
if b["2"] - g["2"] != len(acked):
    errors.append(f"account 2 gained {b['2'] - g['2']}, but {len(acked)} transfers of 1 were acknowledged")
if g["1"] - b["1"] != len(acked):
    errors.append(f"account 1 lost {g['1'] - b['1']}, but {len(acked)} transfers of 1 were acknowledged")
for k in g:
    if k not in ("1", "2") and b[k] != g[k]:
        errors.append(f"account {k} changed: {g[k]} -> {b[k]}")
seen = {}
blocks = [blk for f in sorted(glob.glob(f"{work}/chain-*")) for blk in json.load(open(f))]
for blk in blocks:
    for tx, res in zip(blk.get("txs", []), blk.get("results", [])):
        if res.get("status") != "committed" or tx.get("type") != "transfer" or "id" not in tx:
            continue  # the genesis block's entries carry no id
        if (tx["from"], tx["to"], tx["amount"]) != (1, 2, 1):
            errors.append(f"unexpected transfer in block {blk['header']['height']}: {tx}")
        if tx["id"] in seen:
            errors.append(f"{tx['id']} committed twice (heights {seen[tx['id']][0]} and {blk['header']['height']})")
        seen[tx["id"]] = (blk["header"]["height"], blk["hash"])
for tx, where in acked.items():
    if tx not in seen:
        errors.append(f"acknowledged {tx} (height {where[0]}) is not in the chain")
    elif seen[tx] != where:
        errors.append(f"{tx} acknowledged at {where}, but the chain has it at {seen[tx]}")
extra = [tx for tx in seen if tx not in acked]
if extra:
    errors.append(f"committed but never acknowledged: {extra[:5]}")
top = max((blk["header"]["height"] for blk in blocks), default=0)
if top != views[0]["height"]:
    errors.append(f"read the chain up to height {top}, but the tip is at {views[0]['height']}")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
EOF
say "ledger checked: $n acknowledged transfers ($unknown needed resubmitting), each in the chain exactly once; total unchanged; all three nodes agree"

# Resubmitting an acknowledged id returns its first outcome and moves nothing.
read -r first_id first_height first_hash < <(head -1 "$work/acked")
again=$(client --timeout-ms 5000 --json transfer 1 2 1 --id "$first_id") || fail "resubmitting $first_id failed"
echo "$again" | grep -q "\"block_hash\":\"$first_hash\"" || fail "resubmitted $first_id: $again, first answer was height $first_height $first_hash"
b2=$(client --timeout-ms 5000 --json balance 2) || fail "balance 2"
python3 -c 'import json,sys; exit(0 if json.load(open(sys.argv[1]))["balances"]["2"] == json.loads(sys.argv[2])["balance"] else 1)' \
  "$work/balances-0" "$b2" || fail "resubmitting $first_id changed account 2: $b2"
say "resubmitted $first_id: same block $first_hash, no second debit"

# ---------------------------------------------------------------- 10. HTTP
# Through the published ports, never through a proxy. /readyz gets up to 20 s
# per node (a node is ready once it knows the leader and has applied what it
# knows is committed).
echo "not-the-token-not-the-token" >"$work/wrong.token"
python3 - "$work/config/http.token" "$work/wrong.token" "${hport[@]}" <<'PY' ||
import sys, time, urllib.error, urllib.request
token, wrong = (open(f).read().strip() for f in sys.argv[1:3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
def get(url, tok=None):
    req = urllib.request.Request(url)
    if tok is not None:
        req.add_header("Authorization", "Bearer " + tok)
    try:
        with opener.open(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""
    except OSError as e:
        return f"no answer ({e})", b""
errors = []
for i, port in enumerate(sys.argv[3:]):
    base = f"http://127.0.0.1:{port}"
    for path in ("/metrics", "/api/status"):
        for what, tok, want in (("without the token", None, 401), ("with a wrong token", wrong, 401),
                                ("with the token", token, 200)):
            code, body = get(base + path, tok)
            if code != want:
                errors.append(f"bank-{i}: GET {path} {what} answered {code}, not {want}")
            elif path == "/metrics" and want == 200 and b"bank_raft_term" not in body:
                errors.append(f"bank-{i}: GET /metrics with the token answered 200 without the node's metrics")
    for path in ("/healthz", "/"):
        code, _ = get(base + path)
        if code != 200:
            errors.append(f"bank-{i}: GET {path} without a token answered {code}, not 200")
    until = time.monotonic() + 20
    while (code := get(base + "/readyz")[0]) != 200 and time.monotonic() < until:
        time.sleep(0.2)
    if code != 200:
        errors.append(f"bank-{i}: GET /readyz without a token answered {code}, not 200, for 20 s")
for e in errors:
    print("  " + e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
  fail "the HTTP side does not ask for the token as it should (see above)"
say "HTTP: /metrics and /api/status 401 without the token, 200 with it; /healthz, /readyz and / need none"

say "deploy test passed in $(($(date +%s) - t0))s"
