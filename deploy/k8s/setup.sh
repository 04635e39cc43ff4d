#!/usr/bin/env bash
# Makes the Secret `bank-tls` (CA certificate, node certificates and keys)
# and the ConfigMap `bank-genesis` that deploy/k8s/bank.yaml mounts, as one
# manifest: deploy/k8s/generated/bank-config.yaml. Certificates and genesis
# are made by the image (`docker run`, through deploy/compose/setup.sh).
#
# Usage: deploy/k8s/setup.sh [NAMESPACE]   (default: default)
# Env:   OUT (default deploy/k8s/generated), BANK_IMAGE, ACCOUNTS, BALANCE,
#        DIFFICULTY (as for deploy/compose/setup.sh), HOSTS (more names for
#        the node certificates, e.g. an ingress name)
#
# The node certificates are valid for bank-N.bank and
# bank-N.bank.NAMESPACE.svc[.cluster.local] (what peers dial), bank-client
# and bank-client.NAMESPACE.svc[.cluster.local] (the client Service),
# localhost and 127.0.0.1 (kubectl exec / port-forward).
#
# Everything in OUT is secret (CA key, node keys, account keys): keep it out
# of git (.gitignore does) and somewhere safe; the CA key and the account
# keys never go into the cluster.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NS=${1:-default}
OUT=${OUT:-$here/generated}
names=()
for n in 0 1 2; do
  names+=("bank-$n.bank" "bank-$n.bank.$NS.svc" "bank-$n.bank.$NS.svc.cluster.local")
done
names+=(bank-client "bank-client.$NS.svc" "bank-client.$NS.svc.cluster.local")
hosts=$(IFS=,; echo "${names[*]}")${HOSTS:+,$HOSTS}

mkdir -p "$OUT"
# Written as the caller: this script reads the keys back to build the Secret.
CERTS_USER="$(id -u):$(id -g)" HOSTS=$hosts "$here/../compose/setup.sh" "$OUT"

b64() { base64 <"$1" | tr -d '\n'; }
manifest=$OUT/bank-config.yaml
{
  echo "# Made by deploy/k8s/setup.sh for namespace $NS: SECRET, never commit."
  echo "apiVersion: v1"
  echo "kind: Secret"
  echo "metadata:"
  echo "  name: bank-tls"
  echo "  labels: {app.kubernetes.io/name: bank-ledger}"
  echo "type: Opaque"
  echo "data:"
  echo "  ca.pem: $(b64 "$OUT/tls/ca.pem")"
  for n in 0 1 2; do
    echo "  node-$n.pem: $(b64 "$OUT/tls/node-$n.pem")"
    echo "  node-$n.key: $(b64 "$OUT/tls/node-$n.key")"
  done
  echo "---"
  echo "apiVersion: v1"
  echo "kind: ConfigMap"
  echo "metadata:"
  echo "  name: bank-genesis"
  echo "  labels: {app.kubernetes.io/name: bank-ledger}"
  echo "data:"
  echo "  genesis.json: |"
  sed 's/^/    /' "$OUT/genesis.json"
} >"$manifest"
chmod 600 "$manifest"
echo "wrote $manifest (Secret bank-tls, ConfigMap bank-genesis)"
echo "next: kubectl -n $NS apply -f $manifest -f $here/bank.yaml"
