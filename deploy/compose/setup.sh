#!/usr/bin/env bash
# Prepares what the compose cluster mounts read-only at /config: TLS files
# (a fresh CA and one certificate per node, valid for bank-0, bank-1, bank-2,
# localhost and 127.0.0.1) and the genesis file, whose accounts get fresh
# keys (not the public dev keys), kept in a keystore for operators. Everything is made by the image
# itself (`docker run`): the host needs nothing but docker.
#
# Usage: deploy/compose/setup.sh [DIR]
#   DIR  where to write (default: $BANK_CONFIG_DIR, else deploy/compose/config,
#        which .gitignore keeps out of git: it holds private keys)
# Env: BANK_IMAGE (default bank-ledger:latest), ACCOUNTS (default 10),
#      BALANCE (default 1000), DIFFICULTY (default 8),
#      HOSTS (extra certificate names, comma-separated, e.g. a host's DNS name),
#      CERTS_USER (uid:gid that writes the TLS files; default 10001:10001).
#
# Writes DIR/genesis.json, DIR/tls/{ca.pem,ca.key,node-N.pem,node-N.key} and
# DIR/keys/<account>.key (the signing keys: whoever holds one spends). An existing DIR/genesis.json or DIR/tls/ca.pem is
# kept: a running cluster's chain and CA must never change under it.
#
# Ownership: the nodes run as uid 10001 and must read their private key
# (mode 600), so the TLS files are written as 10001; genesis (mode 644) and
# the keystore, for the operator's bank-client, are written as the caller.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${1:-${BANK_CONFIG_DIR:-$here/config}}
BANK_IMAGE=${BANK_IMAGE:-bank-ledger:latest}
ACCOUNTS=${ACCOUNTS:-10}
BALANCE=${BALANCE:-1000}
DIFFICULTY=${DIFFICULTY:-8}
CERTS_USER=${CERTS_USER:-10001:10001}
hosts=bank-0,bank-1,bank-2,localhost,127.0.0.1${HOSTS:+,$HOSTS}

docker image inspect "$BANK_IMAGE" >/dev/null 2>&1 ||
  { echo "setup: no image $BANK_IMAGE: run deploy/container/build-image.sh first" >&2; exit 1; }
mkdir -p "$DIR/tls"
DIR=$(cd "$DIR" && pwd)

# The image's user writes into a directory the caller owns: open it for the
# run, then close it again (the caller, as its owner, can always remove what
# is in it).
chmod 0777 "$DIR/tls"
trap 'chmod 0755 "$DIR/tls"' EXIT
as_node=(docker run --rm --user "$CERTS_USER" -v "$DIR:/config" "$BANK_IMAGE")
as_caller=(docker run --rm --user "$(id -u):$(id -g)" -v "$DIR:/config" "$BANK_IMAGE")

if [ -e "$DIR/tls/ca.pem" ]; then
  echo "setup: $DIR/tls/ca.pem exists: keeping the TLS files"
else
  "${as_node[@]}" certs --out /config/tls --nodes 3 --hosts "$hosts" >/dev/null
  echo "setup: TLS files in $DIR/tls (node certificates for $hosts)"
fi
if [ -e "$DIR/genesis.json" ]; then
  echo "setup: $DIR/genesis.json exists: keeping it"
else
  "${as_caller[@]}" genesis --accounts "$ACCOUNTS" --balance "$BALANCE" --difficulty "$DIFFICULTY" \
    --keystore /config/keys --out /config/genesis.json
  echo "setup: genesis in $DIR/genesis.json ($ACCOUNTS accounts of $BALANCE, difficulty $DIFFICULTY);"
  echo "       each account's fresh signing key in $DIR/keys (bank-client --keystore)"
fi
