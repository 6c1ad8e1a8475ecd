#!/usr/bin/env bash
# `make kind-demo`: the operator as it runs in production — image, Helm chart, RBAC — on a kind cluster.
# Needs Docker, kind, helm and kubectl on PATH. Leaves the cluster running; delete it with
#   kind delete cluster --name modelledger
set -euo pipefail
cd "$(dirname "$0")/../.."
for tool in docker kind helm kubectl; do
  command -v "$tool" >/dev/null || { echo "make kind-demo needs $tool on PATH" >&2; exit 1; }
done
cluster=modelledger
image=modelledger:dev
ns=ml-demo
kctx=(--context "kind-$cluster")

echo "== kind cluster $cluster (kind-config.yaml)"
kind get clusters | grep -qx "$cluster" || kind create cluster --config kind-config.yaml --wait 120s

echo "== image $image"
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

echo "== helm install (namespace modelledger-system, watching $ns)"
kubectl "${kctx[@]}" create namespace "$ns" --dry-run=client -o yaml | kubectl "${kctx[@]}" apply -f -
helm --kube-context "kind-$cluster" upgrade --install modelledger charts/modelledger \
  -n modelledger-system --create-namespace \
  --set image.repository=modelledger --set image.tag=dev --set image.pullPolicy=Never \
  --set "watchNamespaces={$ns}" --set replicaCount=2 \
  --wait --timeout 3m
kubectl "${kctx[@]}" -n modelledger-system get pods -o wide
kubectl "${kctx[@]}" -n modelledger-system get lease modelledger -o wide  # the leader: holderIdentity

# The examples' serving image is fictional; kind nodes already hold pause (their sandbox image).
serving() {
  sed 's#image: ghcr.io/acme/fraud-server@sha256:[0-9a-f]*#image: registry.k8s.io/pause:3.10#' "examples/$1.yaml"
}
deployment() {  # $1: version, $2: bake time
  cat <<YAML
apiVersion: modelledger.io/v1alpha1
kind: ModelDeployment
metadata: {name: fraud-detector}
spec:
  modelName: fraud-detector
  version: $1
  replicas: 2
  stability: {bakeTime: $2}
  rollback: {interval: 5s}
YAML
}
phase() { kubectl "${kctx[@]}" -n "$ns" get mdep fraud-detector -o jsonpath='{.status.phase}'; }
wait_for() {  # $1: jsonpath, $2: value
  for _ in $(seq 120); do
    [ "$(kubectl "${kctx[@]}" -n "$ns" get mdep fraud-detector -o jsonpath="$1")" = "$2" ] && return 0
    sleep 1
  done
  echo "timed out waiting for $1 = $2" >&2; exit 1
}

echo; echo "== register two versions, deploy 1.3.2 and let it bake (10 s)"
{ serving fraud-detector-1-3-2; echo ---; serving fraud-detector-1-4-0; } | kubectl "${kctx[@]}" -n "$ns" apply -f -
deployment fraud-detector-1-3-2 10s | kubectl "${kctx[@]}" -n "$ns" apply -f -
wait_for '{.status.stableRevision}' 1

echo; echo "== upgrade to 1.4.0"
deployment fraud-detector-1-4-0 1h | kubectl "${kctx[@]}" -n "$ns" apply -f -
wait_for '{.status.servingVersion}' fraud-detector-1-4-0
wait_for '{.status.phase}' Healthy

echo; echo "== a release manager rolls back (a ModelDeploymentRequest, stamped with who asked)"
.venv/bin/modelledger rollback fraud-detector --context "kind-$cluster" -n "$ns" --reason "kind demo"
wait_for '{.status.phase}' RolledBack
kubectl "${kctx[@]}" -n "$ns" get mdep,mv,deploy,pods
.venv/bin/modelledger history fraud-detector --context "kind-$cluster" -n "$ns"
echo; echo "== done: phase $(phase). kind delete cluster --name $cluster to clean up"
