#!/usr/bin/env bash
# Builds the local test control plane from Go modules (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kwok, helm) into a cache outside the repo, keyed by version. Already-built binaries
# are kept; only missing ones are built. Prints one line per step; on failure shows the log's tail.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${MODELLEDGER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelledger}
bin="$cache/bin"
work="$cache/build"
logs="$cache/logs"
mkdir -p "$bin" "$work" "$logs"
export GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOTOOLCHAIN=local

step() {  # step NAME LOG CMD...: run CMD with output to LOG, report time, show the tail on failure
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  printf '[build-plane] %-44s ' "$name"
  if "$@" >"$log" 2>&1; then
    echo "ok ($((SECONDS - t0)) s)"
  else
    echo "FAILED after $((SECONDS - t0)) s; last lines of $log:"
    tail -n 40 "$log" | sed 's/^/    /'
    exit 1
  fi
}

have() { [ -x "$bin/$1" ]; }

build_etcd() {
  local dir="$work/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// etcd's server module carries replace directives, so `go install` refuses it; this wrapper builds it.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  (cd "$dir" && rm -f go.mod go.sum && go mod init modelledger.local/etcd &&
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy &&
    go build -trimpath -ldflags '-s -w' -o "$bin/etcd-$ETCD_VERSION" .)
}

k8s_gomod() {  # path of k8s.io/kubernetes's own go.mod at the pinned version
  go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p'
}

build_kubernetes() {
  local dir="$work/kubernetes-$KUBERNETES_VERSION" staging_tag="v0.${KUBERNETES_VERSION#v1.}"
  mkdir -p "$dir"
  local upstream_mod upstream_dir
  upstream_mod=$(k8s_gomod)
  upstream_dir=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  {
    echo "module modelledger.local/kubernetes"
    echo
    echo "go 1.24.0"
    echo
    grep '^godebug' "$upstream_mod" || true
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    # Every staging module k8s.io/kubernetes replaces with ./staging/... gets its published v0.Y.Z tag.
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging_tag"'#p' "$upstream_mod"
    echo ")"
  } >"$dir/go.mod"
  # The entry points are upstream's own cmd/*/ main packages, copied from the module cache.
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    mkdir -p "$dir/cmd/$c"
    find "$upstream_dir/cmd/$c" -maxdepth 1 -name '*.go' ! -name '*_test.go' -exec cp {} "$dir/cmd/$c/" \;
    chmod u+w "$dir/cmd/$c"/*.go
  done
  local ldflags="-s -w"
  local major=1 minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$dir" && go mod tidy && mkdir -p out &&
    go build -trimpath -ldflags "$ldflags" -o out/ ./cmd/kube-apiserver ./cmd/kube-controller-manager ./cmd/kube-scheduler &&
    for c in kube-apiserver kube-controller-manager kube-scheduler; do
      mv "out/$c" "$bin/$c-$KUBERNETES_VERSION"
    done)
}

build_kwok() {
  GOBIN="$work/kwok-$KWOK_VERSION" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv "$work/kwok-$KWOK_VERSION/kwok" "$bin/kwok-$KWOK_VERSION"
  # kwok's stage configs (node heartbeat, pod ready, ...) ship in its module; keep them beside the binary.
  local src
  src=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  mkdir -p "$bin/kwok-stages-$KWOK_VERSION"
  cp -r "$src/kustomize/stage/." "$bin/kwok-stages-$KWOK_VERSION/"
  chmod -R u+w "$bin/kwok-stages-$KWOK_VERSION"
}

build_helm() {
  local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  # As helm's Makefile does: without these, .Capabilities.KubeVersion defaults to v1.20.
  local pkg
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$work/helm-$HELM_VERSION" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$work/helm-$HELM_VERSION/helm" "$bin/helm-$HELM_VERSION"
}

t_all=$SECONDS
have "etcd-$ETCD_VERSION" || step "etcd $ETCD_VERSION" "$logs/etcd.log" build_etcd
if ! have "kube-apiserver-$KUBERNETES_VERSION" || ! have "kube-controller-manager-$KUBERNETES_VERSION" ||
  ! have "kube-scheduler-$KUBERNETES_VERSION"; then
  step "kubernetes $KUBERNETES_VERSION (3 components)" "$logs/kubernetes.log" build_kubernetes
fi
have "kwok-$KWOK_VERSION" || step "kwok $KWOK_VERSION" "$logs/kwok.log" build_kwok
have "helm-$HELM_VERSION" || step "helm $HELM_VERSION" "$logs/helm.log" build_helm
echo "[build-plane] all binaries present in $bin ($((SECONDS - t_all)) s)"
