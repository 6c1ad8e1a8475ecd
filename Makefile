# modelledger: every target sets up what it needs (venv, Prometheus, the Go-built control plane).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/local/go/bin
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup venv system-deps binaries lint unit integration chaos test crds demo cluster-up cluster-down bench bench-scale bench-peers clean kind-demo

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

venv: $(BIN)/.installed  ## the virtualenv with modelledger and its dev tools

system-deps:  ## Prometheus and Chromium from Debian's packages (needs root or sudo)
	@command -v prometheus >/dev/null && command -v chromium >/dev/null || bash hack/install-system-deps.sh

binaries:  ## build (or reuse from the cache) etcd, kube-*, kwok and helm from Go modules
	@bash hack/build-plane.sh

setup: venv system-deps binaries  ## everything the tests and the demo need

lint: venv  ## ruff + mypy + the core's import contract
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: venv  ## fast tests of the pure core, no cluster
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

integration: setup  ## tests against the real local plane and a real Prometheus
	$(BIN)/pytest tests/integration $(PYTEST_ARGS)

chaos: setup  ## the fault suite, full form (>= 50 kill -9, ...); CHAOS_SEED=<seed> replays one; table in .chaos/
	CHAOS_FULL=1 $(BIN)/pytest tests/chaos -s $(PYTEST_ARGS)

test: setup lint  ## lint + unit + integration (+ the fault suite's short form): what .ci/run calls
	$(BIN)/pytest tests $(PYTEST_ARGS)

crds: venv  ## regenerate crds/ and docs/api.md from the pydantic models (and the chart's copy)
	$(BIN)/modelledger crds --output-dir crds
	cp crds/modeldeployments.yaml crds/modelversions.yaml crds/modeldeploymentrequests.yaml charts/modelledger/files/crds/

cluster-up: setup  ## start the plane + Prometheus in the background; the last line is the kubeconfig path
	@$(BIN)/modelledger-plane up

cluster-down: venv  ## stop what cluster-up started
	@$(BIN)/modelledger-plane down

demo: setup  ## the demo on the local plane, set up and torn down
	@$(BIN)/python hack/demo.py

kind-demo: venv  ## with Docker + kind: kind cluster, image, helm install, a rollback (cluster kept)
	@bash deploy/kind/demo.sh

bench: setup  ## benchmarks for N <= 1000 (about 40 minutes); print tables (docs/benchmarks.md)
	$(BIN)/python bench/plane_startup.py
	$(BIN)/python bench/rollback_latency.py --sizes 1,100,1000 --interval 1s
	$(BIN)/python bench/cold_start.py --deployments 1000 --versions 10000

bench-scale: setup  ## 10,000 deployments x 3 rules, interval 5 s, 1 % breaching at once (about an hour)
	$(BIN)/python bench/rollback_latency.py --sizes 10000 --interval 5s --breach-fraction 0.01 --replicas 0

bench-peers: setup  ## side by side with Argo Rollouts (builds its controller on demand; N = 1, 100, 1000)
	@bash hack/build-rollouts.sh
	$(BIN)/pytest tests/integration/test_peers_smoke.py -q $(PYTEST_ARGS)
	$(BIN)/python bench/peers.py --sizes 1,100,1000

clean:  ## remove the venv and the plane's state (the binary cache stays)
	rm -rf $(VENV) .plane .mypy_cache .ruff_cache .pytest_cache
