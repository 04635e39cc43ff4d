#!/usr/bin/env bash
# Prepares what the compose cluster mounts: TLS files (a fresh CA and one
# certificate per node, valid for bank-0, bank-1, bank-2, localhost and
# 127.0.0.1), the genesis file, whose accounts get fresh keys (not the public
# dev keys), kept in a keystore for operators, and the token the nodes' HTTP
# side asks for. Everything is made by the image itself (`docker run`): the
# host needs nothing but docker (and tar, to unpack what `docker cp` hands
# over).
#
# Usage: deploy/compose/setup.sh [DIR]
#   DIR  where to write (default: $BANK_CONFIG_DIR, else deploy/compose/config,
#        which .gitignore keeps out of git: it holds private keys)
# Env: BANK_IMAGE (default bank-ledger:latest), ACCOUNTS (default 10),
#      BALANCE (default 1000), DIFFICULTY (default 8),
#      HOSTS (extra certificate names, comma-separated, e.g. a host's DNS name),
#      CERTS_USER (uid:gid that writes the node keys and the nodes' copy of
#      the HTTP token; default 10001:10001, the nodes' user).
#
# Layout of DIR (mode 700: nothing in it is for other users of the host):
#   node-N/       node-N.pem, node-N.key: what only node N mounts (/config/node)
#   cluster/      genesis.json, ca.pem, http.token: what every node mounts
#                 (/config/cluster)
#   tls/          ca.pem (for bank-client --tls-ca) and ca.key. No container
#                 mounts it: the CA key mints certificates any node would
#                 trust, so it stays here, on the host, to issue later
#                 certificates (a new or replacement node) and nowhere else.
#   genesis.json  the genesis (cluster/genesis.json is its copy)
#   keys/         <account>.key, the accounts' signing keys (whoever holds one
#                 spends), for the operator's bank-client --keystore
#   http.token    the operator's copy of the HTTP token (curl -H
#                 "Authorization: Bearer $(cat DIR/http.token)", or the
#                 dashboard at http://127.0.0.1:50161/#token=TOKEN)
# One HTTP token serves all three nodes: they serve the same ledger, so a
# token per node would guard nothing more and would cost every scraper and
# dashboard user three credentials.
#
# Existing files are kept (run it again at will): a running cluster's chain,
# CA and token must never change under it. A DIR with every node's files in
# tls/ (as this script once wrote it) is sorted into this layout: the node
# files move to node-N/.
#
# Ownership: the nodes run as uid 10001 and must read their private key and
# the token (mode 600), so those are written as 10001 (CERTS_USER); the CA
# key, genesis, the keystore and the operator's token copy are the caller's.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${1:-${BANK_CONFIG_DIR:-$here/config}}
BANK_IMAGE=${BANK_IMAGE:-bank-ledger:latest}
ACCOUNTS=${ACCOUNTS:-10}
BALANCE=${BALANCE:-1000}
DIFFICULTY=${DIFFICULTY:-8}
CERTS_USER=${CERTS_USER:-10001:10001}
NODES=(0 1 2)
hosts=bank-0,bank-1,bank-2,localhost,127.0.0.1${HOSTS:+,$HOSTS}

die() { echo "setup: $*" >&2; exit 1; }
docker image inspect "$BANK_IMAGE" >/dev/null 2>&1 ||
  die "no image $BANK_IMAGE: run deploy/container/build-image.sh first"
mkdir -p "$DIR/tls" "$DIR/cluster"
for n in "${NODES[@]}"; do mkdir -p "$DIR/node-$n"; done
DIR=$(cd "$DIR" && pwd)
# Node keys are owned by 10001, which may be some other user on this host:
# the directory keeps every host user but the caller (and root) out. The
# containers do not need to pass through it: each mounts a subdirectory.
chmod 0700 "$DIR"

# The image's user writes into directories the caller owns: open one for a
# run, then close it again (the caller, as its owner, can always move or
# remove what is in it).
opened=""
trap '[ -z "$opened" ] || chmod 0755 "$opened"' EXIT
# as_node SUBDIR ARGS...: bank-server ARGS as CERTS_USER, DIR/SUBDIR at /out.
as_node() {
  local sub=$1
  shift
  opened=$DIR/$sub
  chmod 0777 "$opened"
  docker run --rm --network none --user "$CERTS_USER" -v "$DIR/$sub:/out" "$BANK_IMAGE" "$@"
  chmod 0755 "$opened"
  opened=""
}
# copy_out FILE DEST: DEST becomes a copy of FILE (under DIR, which the caller
# may be unable to read: mode 600, owned by 10001), owned by the caller, mode
# 600. The daemon reads FILE through a container that never runs; the docker
# CLI writes as the caller.
copy_out() {
  local cid ok=1
  cid=$(docker create --network none -v "$(dirname "$1"):/from:ro" "$BANK_IMAGE")
  (umask 077 && docker cp "$cid:/from/$(basename "$1")" - | tar -xOf - >"$2.new") || ok=0
  docker rm -f -v "$cid" >/dev/null # -v: and its anonymous /data volume
  if [ "$ok" != 1 ] || [ ! -s "$2.new" ]; then
    rm -f "$2.new"
    die "cannot copy $1 to $2"
  fi
  mv -f "$2.new" "$2"
}
# public_copy FILE DEST: a node's copy of a public file; an existing copy
# must be the same (what a running cluster uses never changes).
public_copy() {
  if [ ! -e "$2" ]; then
    cp "$1" "$2.new" && chmod 0644 "$2.new" && mv -f "$2.new" "$2"
  elif ! cmp -s "$1" "$2"; then
    die "$2 (what the nodes use) differs from $1: a cluster's genesis and CA never change; remove the copy only if no node has started with it"
  fi
}

# ---- CA and node certificates
if [ -e "$DIR/tls/ca.pem" ]; then
  echo "setup: $DIR/tls/ca.pem exists: keeping the CA and the node certificates"
else
  as_node tls certs --out /out --nodes "${#NODES[@]}" --hosts "$hosts" >/dev/null
  echo "setup: CA in $DIR/tls, node certificates for $hosts"
fi
for n in "${NODES[@]}"; do
  if [ ! -e "$DIR/node-$n/node-$n.key" ]; then
    if [ ! -e "$DIR/tls/node-$n.key" ] || [ ! -e "$DIR/tls/node-$n.pem" ]; then
      die "no key and certificate for node $n in $DIR/node-$n or $DIR/tls: issue them with this CA ($DIR/tls/ca.key)"
    fi
    mv "$DIR/tls/node-$n.pem" "$DIR/tls/node-$n.key" "$DIR/node-$n/"
    echo "setup: node $n's certificate and key in $DIR/node-$n"
  fi
done
# The CA key was written by the nodes' user; the operator, who keeps it, gets it.
# (Kept elsewhere, e.g. offline, it is simply not here.)
if [ -e "$DIR/tls/ca.key" ] && [ ! -O "$DIR/tls/ca.key" ]; then
  copy_out "$DIR/tls/ca.key" "$DIR/tls/ca.key"
fi

# ---- genesis and account keys
if [ -e "$DIR/genesis.json" ]; then
  echo "setup: $DIR/genesis.json exists: keeping it"
else
  docker run --rm --network none --user "$(id -u):$(id -g)" -v "$DIR:/config" "$BANK_IMAGE" \
    genesis --accounts "$ACCOUNTS" --balance "$BALANCE" --difficulty "$DIFFICULTY" \
    --keystore /config/keys --out /config/genesis.json
  echo "setup: genesis in $DIR/genesis.json ($ACCOUNTS accounts of $BALANCE, difficulty $DIFFICULTY);"
  echo "       each account's fresh signing key in $DIR/keys (bank-client --keystore)"
fi

# ---- what every node mounts
public_copy "$DIR/genesis.json" "$DIR/cluster/genesis.json"
public_copy "$DIR/tls/ca.pem" "$DIR/cluster/ca.pem"
if [ -e "$DIR/cluster/http.token" ]; then
  echo "setup: $DIR/cluster/http.token exists: keeping the HTTP token"
else
  as_node cluster secret --out /out/http.token >/dev/null
  rm -f "$DIR/http.token" # the operator's copy of a token no node has any more
  echo "setup: HTTP token in $DIR/cluster/http.token"
fi
if [ ! -e "$DIR/http.token" ]; then
  copy_out "$DIR/cluster/http.token" "$DIR/http.token"
  echo "setup: the operator's copy of the HTTP token in $DIR/http.token"
fi
