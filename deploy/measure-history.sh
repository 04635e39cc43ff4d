#!/usr/bin/env bash
# What a long history costs. Fills a 3-node loopback cluster with at least
# TARGET transfers (batched, through bank-bench), then reports:
#   - throughput of the first and the last fill segment, and each node's CPU time per
#     transfer in every segment (cost must not grow with history)
#   - each node's Raft log length (bounded by the snapshot policy) and data dir size
#   - resident memory of each node
#   - how fast each node verifies its whole chain (bank-client verify)
#   - how long a SIGKILLed node takes to answer again (it verifies its chain first) and to catch up
#   - how long a brand-new node takes to join and catch up (by snapshot)
# Usage: cargo build --release && deploy/measure-history.sh
# Env: TARGET (default 1000000), BIN (default ${CARGO_TARGET_DIR:-target}/release),
#      RESTART_SEGMENTS (default 0: if set, after the fill the whole cluster is SIGKILLed and
#      restarted, and that many more segments run while the nodes check their chains),
#      DIR (default a temp dir), BASE_PORT (default 20151: below the ephemeral port range, so no outgoing connection holds it), SEGMENT_S (default 10),
#      SERVER_ARGS (default "--snapshot-every 500 --keep-log-entries 100": small enough
#      that the fill crosses several snapshots and the new node must catch up by one).
set -euo pipefail

TARGET=${TARGET:-1000000}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
DIR=${DIR:-$(mktemp -d)}
BASE_PORT=${BASE_PORT:-20151}
SEGMENT_S=${SEGMENT_S:-10}
RESTART_SEGMENTS=${RESTART_SEGMENTS:-0}
SERVER_ARGS=${SERVER_ARGS:---snapshot-every 500 --keep-log-entries 100}
P0=127.0.0.1:$BASE_PORT; P1=127.0.0.1:$((BASE_PORT + 1)); P2=127.0.0.1:$((BASE_PORT + 2)); P3=127.0.0.1:$((BASE_PORT + 3))
PEERS="0=$P0,1=$P1,2=$P2"
SERVERS="$P0,$P1,$P2"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

now_ms() { date +%s%3N; }
json_field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
start_node() { # id, extra args...
  local id=$1; shift
  # shellcheck disable=SC2086
  "$BIN/bank-server" --id "$id" --data-dir "$DIR" --genesis "$DIR/genesis.json" $SERVER_ARGS "$@" 2>>"$DIR/node$id.stderr" &
  pids[$id]=$!
}
rss_mb() { echo $(( $(ps -o rss= -p "$1") / 1024 )); }
peak_mb() { echo $(( $(awk '/^VmHWM/ {print $2}' "/proc/$1/status") / 1024 )); } # highest RSS so far

echo "data dir: $DIR"
"$BIN/bank-server" genesis --accounts 100000 --balance 1000000000 --out "$DIR/genesis.json"
for i in 0 1 2; do start_node $i --peers "$PEERS"; done
until "$BIN/bank-client" --servers "$SERVERS" --timeout-ms 1000 balance 0 >/dev/null 2>&1; do sleep 0.2; done

echo "filling to $TARGET transfers (batches of 1024, 4 clients, ${SEGMENT_S}s segments)"
# Throughput depends on how fast the shared machine runs at the moment; CPU
# time per transfer, per node, is the cost itself, so each segment reports both.
# utime + stime in clock ticks; "gone" for a node that is no longer running
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo gone; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))
per_transfer() { # ticks before, ticks after, transfers
  if [ "$1" = gone ] || [ "$2" = gone ]; then echo "gone"
  elif [ "$3" -eq 0 ]; then echo "n/a"
  else awk -v b="$1" -v a="$2" -v n="$3" -v t="$TICK_US" 'BEGIN { printf "%.1f", (a - b) * t / n }'; fi
}
total=0; seg=0; first=""; last=""
fill_segment() { # label
  local before=() i r tps n stages cpu
  for i in 0 1 2; do before[$i]=$(cpu_ticks "${pids[$i]}"); done
  r=$("$BIN/bank-bench" --servers "$SERVERS" --batch 1024 --concurrency 4 --duration-s "$SEGMENT_S" --warmup-s 0 --json)
  tps=$(echo "$r" | json_field 'round(d["tx_per_s"])')
  n=$(echo "$r" | json_field 'd["committed"]')
  stages=$(echo "$r" | json_field '", ".join("%s %.2f" % (k, d["stages"][k]["avg_ms"]) for k in ("log_append", "apply", "commit") if k in d["stages"]) or "none reported"')
  cpu=""; for i in 0 1 2; do
    cpu="$cpu node$i $(per_transfer "${before[$i]}" "$(cpu_ticks "${pids[$i]}")" "$n")"
  done
  total=$((total + n))
  [ -z "$first" ] && first=$tps
  last=$tps
  echo "  $1: $tps tx/s, total $total; CPU us per transfer:$cpu; leader ms: $stages"
}
while [ "$total" -lt "$TARGET" ]; do
  seg=$((seg + 1))
  fill_segment "segment $seg"
done
echo "throughput: first segment $first tx/s, last segment $last tx/s"

if [ "$RESTART_SEGMENTS" -gt 0 ]; then
  echo "restart of the whole cluster: SIGKILL all three nodes, start them again, then $RESTART_SEGMENTS more segments while each checks its whole chain in the background"
  for i in 0 1 2; do kill -9 "${pids[$i]}"; wait "${pids[$i]}" 2>/dev/null || true; done
  for i in 0 1 2; do start_node $i --peers "$PEERS"; done
  until "$BIN/bank-client" --servers "$SERVERS" --timeout-ms 1000 balance 0 >/dev/null 2>&1; do sleep 0.2; done
  for s in $(seq 1 "$RESTART_SEGMENTS"); do fill_segment "after the restart, segment $s"; done
fi

status=$("$BIN/bank-client" --servers "$SERVERS" status --json)
echo "$status" | python3 -c "$(cat <<'PY'
import json, sys
for s in json.load(sys.stdin):
    lo = s.get("purged_index") or 0
    hi = s.get("last_log_index") or 0
    print("node %s: height %s, Raft log entries on disk %s (indexes %s..%s), snapshot at %s"
          % (s["id"], s["height"], hi - lo, lo, hi, s.get("snapshot_index")))
PY
)"
echo "verification of each node's whole chain (bank-client verify):"
"$BIN/bank-client" --servers "$SERVERS" --timeout-ms 600000 verify
sleep 5 # let allocators hand back what the fill used
for i in 0 1 2; do echo "node $i: sled $(du -sm "$DIR/server_${i}_db" | cut -f1) MB + raft log $(du -sm "$DIR/server_${i}_raftlog" 2>/dev/null | cut -f1) MB + blocks $(du -sm "$DIR/server_${i}_blocks" | cut -f1) MB, resident memory $(rss_mb "${pids[$i]}") MB, peak so far $(peak_mb "${pids[$i]}") MB"; done
echo "leader during the fill: node $("$BIN/bank-client" --servers "$SERVERS" status --json | json_field '[s["id"] for s in d if s.get("role") == "leader"][0]')"

echo "restart: SIGKILL node 2, start it again"
kill -9 "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true
t0=$(now_ms); start_node 2 --peers "$PEERS"
until "$BIN/bank-client" --servers "$P2" --timeout-ms 500 status >/dev/null 2>&1; do sleep 0.05; done
t1=$(now_ms)
until "$BIN/bank-client" --servers "$P2" --timeout-ms 2000 balance 0 >/dev/null 2>&1; do sleep 0.05; done
t2=$(now_ms)
echo "node 2 answered status after $((t1 - t0)) ms and served a linearizable read after $((t2 - t0)) ms; resident memory $(rss_mb "${pids[2]}") MB"

echo "new node 3 joins and catches up"
t0=$(now_ms); start_node 3 --listen "$P3" --join "$P0"
"$BIN/bank-client" --servers "$SERVERS" cluster add 3 "$P3"
t1=$(now_ms)
echo "node 3 added as voter after $((t1 - t0)) ms; $(grep -c 'installed snapshot' "$DIR/server_3.log") snapshot install(s); resident memory $(rss_mb "${pids[3]}") MB"
sleep 10
echo "10 s later: resident memory $(for i in 0 1 2 3; do echo -n "node $i $(rss_mb "${pids[$i]}") MB; "; done)"
echo "peak resident memory over the whole run (node 2 since its restart): $(for i in 0 1 2 3; do echo -n "node $i $(peak_mb "${pids[$i]}") MB; "; done)"
"$BIN/bank-client" --servers "$SERVERS,$P3" status
