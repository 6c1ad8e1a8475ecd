#!/usr/bin/env bash
# Builds Argo Rollouts' controller (for bench/peers.py, `make bench-peers`) from its Go module at the
# version pinned in versions.env, into the same cache as the plane's binaries, with its CRDs beside it.
# Skips what is already cached. Optional: `make test` does not need it.
#
# argo-rollouts' go.mod carries replace directives, so `go install ...@version` refuses it: the script
# copies the module's own source (go.mod and go.sum included) out of the module cache and builds
# ./cmd/rollouts-controller in it, so the dependency versions are exactly upstream's.
# The build is niced and runs one package at a time: the machine has 2 cores shared with the plane.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${MODELLEDGER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelledger}
bin="$cache/bin"
work="$cache/build"
logs="$cache/logs"
mkdir -p "$bin" "$work" "$logs"
# v1.10.1 declares go 1.26.1, which this machine's Go (1.26.8) satisfies: no toolchain download.
export GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOTOOLCHAIN=local

module=github.com/argoproj/argo-rollouts
binary="$bin/rollouts-controller-$ARGO_ROLLOUTS_VERSION"
crds="$bin/rollouts-crds-$ARGO_ROLLOUTS_VERSION"

module_dir() {
  go mod download -json "$module@$ARGO_ROLLOUTS_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p'
}

build_controller() {
  local src dir="$work/argo-rollouts-$ARGO_ROLLOUTS_VERSION"
  src=$(module_dir)
  rm -rf "$dir"
  cp -r "$src" "$dir"
  chmod -R u+w "$dir"
  # As upstream's Makefile sets them, so `--version` and the start-up log name the release.
  local pkg=$module/utils/version
  local ldflags="-s -w -X $pkg.version=$ARGO_ROLLOUTS_VERSION -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags+=" -X $pkg.gitCommit=module-proxy -X $pkg.gitTreeState=clean -X $pkg.gitTag=$ARGO_ROLLOUTS_VERSION"
  (cd "$dir" && GOMAXPROCS=${GOMAXPROCS:-1} nice -n 19 go build -p "${GO_BUILD_JOBS:-1}" -trimpath \
    -ldflags "$ldflags" -o "$binary.tmp" ./cmd/rollouts-controller)
  mv "$binary.tmp" "$binary"
  rm -rf "$dir"
}

copy_crds() {
  local src
  src=$(module_dir)
  rm -rf "$crds"
  mkdir -p "$crds"
  cp "$src"/manifests/crds/*-crd.yaml "$crds/"
  chmod -R u+w "$crds"
}

step() {  # step NAME LOG CMD...: run CMD with output to LOG, report time, show the tail on failure
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  printf '[build-rollouts] %-40s ' "$name"
  if "$@" >"$log" 2>&1; then
    echo "ok ($((SECONDS - t0)) s)"
  else
    echo "FAILED after $((SECONDS - t0)) s; last lines of $log:"
    tail -n 40 "$log" | sed 's/^/    /'
    exit 1
  fi
}

[ -x "$binary" ] || step "rollouts-controller $ARGO_ROLLOUTS_VERSION" "$logs/rollouts.log" build_controller
[ -f "$crds/rollout-crd.yaml" ] || step "rollouts CRDs $ARGO_ROLLOUTS_VERSION" "$logs/rollouts-crds.log" copy_crds
echo "[build-rollouts] $binary"
