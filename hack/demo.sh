#!/usr/bin/env bash
# The modelledger demo on the local control plane: brings the plane and Prometheus up, shows fake
# nodes and a Deployment becoming Ready, and tears everything down on exit (also on Ctrl-C).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin
state=$(mktemp -d -t modelledger-demo-XXXXXX)
plane() { "$bin/modelledger-plane" --state-dir "$state" "$@"; }
cleanup() { plane down >/dev/null; rm -rf "$state"; echo "== torn down"; }
trap cleanup EXIT

echo "== starting the local control plane and Prometheus"
up=$(plane up)
echo "$up"
export KUBECONFIG=$(tail -n 1 <<<"$up")
prometheus=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["prometheus_url"])' "$state/state.json")

echo; echo "== kubectl version / get nodes"
"$bin/kubectl" version 2>/dev/null | grep Server
"$bin/kubectl" get nodes -o wide

echo; echo "== a Deployment with 2 replicas on the kwok nodes"
"$bin/kubectl" create namespace demo >/dev/null
"$bin/kubectl" -n demo create deployment web --image=registry.k8s.io/pause:3.10 --replicas=2 >/dev/null
"$bin/kubectl" -n demo rollout status deployment/web --timeout=60s
"$bin/kubectl" -n demo get deployment,pods -o wide

echo; echo "== Prometheus at $prometheus"
curl -fsS "$prometheus/api/v1/status/buildinfo" | python3 -c 'import json,sys; print("version", json.load(sys.stdin)["data"]["version"])'
