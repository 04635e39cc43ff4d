#!/usr/bin/env bash
# Makes what deploy/k8s/bank.yaml mounts, as manifests in OUT/manifests/:
#   bank-node-N.yaml   Secret bank-node-N: node N's certificate and key, only
#                      (one file per node: apply or hand out each on its own)
#   bank-cluster.yaml  ConfigMap bank-cluster (genesis.json, ca.pem) and
#                      Secret bank-http (http.token, the token of the nodes'
#                      HTTP side, the same for all three)
# Certificates, genesis and token are made by the image (`docker run`,
# through deploy/compose/setup.sh, whose layout OUT then has).
#
# Usage: deploy/k8s/setup.sh [NAMESPACE]   (default: default)
# Env:   OUT (default deploy/k8s/generated), BANK_IMAGE, ACCOUNTS, BALANCE,
#        DIFFICULTY (as for deploy/compose/setup.sh), HOSTS (more names for
#        the node certificates, e.g. an ingress name)
#
# The node certificates are valid for bank-N and bank-N.NAMESPACE.svc[.cluster.local]
# (the per-node Services: what peers dial), bank-client and
# bank-client.NAMESPACE.svc[.cluster.local] (the client Service), localhost
# and 127.0.0.1 (kubectl exec / port-forward).
#
# Everything in OUT is secret (CA key, node keys, account keys, token): keep
# it out of git (.gitignore does) and somewhere safe. The CA key (OUT/tls/ca.key)
# and the account keys (OUT/keys/) never go into the cluster: keep the CA key
# to issue later node certificates. The operator's token is OUT/http.token.
# Run it again at will: existing CA, genesis and token are kept, and the
# manifests are written anew from them.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NS=${1:-default}
OUT=${OUT:-$here/generated}
# deploy/compose/setup.sh itself adds bank-0, bank-1, bank-2, localhost and 127.0.0.1.
names=()
for n in 0 1 2; do
  names+=("bank-$n.$NS.svc" "bank-$n.$NS.svc.cluster.local")
done
names+=(bank-client "bank-client.$NS.svc" "bank-client.$NS.svc.cluster.local")
hosts=$(IFS=,; echo "${names[*]}")${HOSTS:+,$HOSTS}

mkdir -p "$OUT"
# Written as the caller: this script reads the keys and the token back to
# build the Secrets (in the pods, fsGroup makes them readable by 10001).
CERTS_USER="$(id -u):$(id -g)" HOSTS=$hosts "$here/../compose/setup.sh" "$OUT"

b64() { base64 <"$1" | tr -d '\n'; }
# Manifests, not the files they come from: `kubectl apply -f OUT/manifests/`
# must never meet a key file.
man=$OUT/manifests
mkdir -p "$man"
chmod 0700 "$man"
header() { # KIND NAME
  echo "apiVersion: v1"
  echo "kind: $1"
  echo "metadata:"
  echo "  name: $2"
  echo "  labels: {app.kubernetes.io/name: bank-ledger}"
}
umask 077
for n in 0 1 2; do
  {
    echo "# Made by deploy/k8s/setup.sh for namespace $NS: SECRET (node $n's key), never commit."
    header Secret "bank-node-$n"
    echo "type: Opaque"
    echo "data:"
    echo "  node-$n.pem: $(b64 "$OUT/node-$n/node-$n.pem")"
    echo "  node-$n.key: $(b64 "$OUT/node-$n/node-$n.key")"
  } >"$man/bank-node-$n.yaml"
done
{
  echo "# Made by deploy/k8s/setup.sh for namespace $NS: SECRET (the HTTP token), never commit."
  header Secret bank-http
  echo "type: Opaque"
  echo "data:"
  echo "  http.token: $(b64 "$OUT/cluster/http.token")"
  echo "---"
  header ConfigMap bank-cluster
  echo "data:"
  echo "  ca.pem: |"
  sed 's/^/    /' "$OUT/cluster/ca.pem"
  echo "  genesis.json: |"
  sed 's/^/    /' "$OUT/cluster/genesis.json"
} >"$man/bank-cluster.yaml"
echo "wrote $man: bank-node-0..2.yaml (Secrets bank-node-N), bank-cluster.yaml (ConfigMap bank-cluster, Secret bank-http)"
if [ -e "$OUT/bank-config.yaml" ]; then
  echo "note: $OUT/bank-config.yaml is the former single Secret bank-tls, with every node's key: once the"
  echo "      objects above are applied, delete it and 'kubectl -n $NS delete secret bank-tls configmap bank-genesis'"
fi
echo "next: kubectl -n $NS apply -f $man/ -f $here/bank.yaml"
