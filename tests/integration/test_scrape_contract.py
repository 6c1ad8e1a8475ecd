"""The scrape contract (issue 14): pods carry the labels rules use, the operator's PodMonitor is valid
against the Prometheus Operator's real CRD, and a rule written as the README shows passes on the series
so labelled, then rolls back a bad version.

No Prometheus Operator runs here: its PodMonitor CRD is fetched from the Go module proxy (the module
github.com/prometheus-operator/prometheus-operator, verified against the Go checksum database by
`go mod download`), cached under ~/.cache/modelledger, and installed on the local control plane. The
PodMonitor is applied by `handlers.podmonitors.ensure_pod_monitor` itself (what the deployment loop
calls). Prometheus then runs the relabelings of the PodMonitor the apiserver stored, as a scrape config,
on a stand-in model server whose target carries the discovery labels of the real pod the operator's
Deployment created (tests/integration/model_server.py says why and how).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from structlog.testing import capture_logs

from modelledger.adapters import kube
from modelledger.adapters.podmonitors import PodMonitors
from modelledger.core import podmonitor
from modelledger.core.workload import Owner
from modelledger.handlers.context import OperatorConfig
from modelledger.handlers.podmonitors import ensure_pod_monitor
from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import cache_dir
from modelledger.testing.prometheus import PrometheusServer
from tests.helpers import eventually
from tests.integration.model_server import ModelServer, serve_as_pod
from tests.operator_process import OperatorProcess
from tests.scenario import V132, V140, apply, get, rolled_back, status, versions, wait_served

PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
PROMETHEUS_OPERATOR_VERSION = "v0.85.0"
CRD_IN_MODULE = "example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"
README = Path(__file__).resolve().parents[2] / "README.md"
JOB = "podmonitor"
NAME = "fraud-detector"


def podmonitor_crd_file() -> Path:
    """The PodMonitor CRD of the pinned Prometheus Operator release, from the cache or the Go proxy."""
    cached = cache_dir() / "prometheus-operator" / PROMETHEUS_OPERATOR_VERSION / Path(CRD_IN_MODULE).name
    if cached.exists():
        return cached
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    env.setdefault("GOPROXY", "https://proxy.golang.org")
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [go, "mod", "init", "modelledger.local/crds"], cwd=work, env=env, check=True, capture_output=True
        )
        downloaded = subprocess.run(
            [go, "mod", "download", "-json", f"{PROMETHEUS_OPERATOR}@{PROMETHEUS_OPERATOR_VERSION}"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    source = Path(json.loads(downloaded.stdout)["Dir"]) / CRD_IN_MODULE
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp")
    partial.write_bytes(source.read_bytes())
    partial.rename(cached)  # atomic: a concurrent run never reads half a file
    return cached


def _podmonitors_served(plane: ClusterAccess, namespace: str) -> bool:
    return (
        plane.kubectl("get", "podmonitors.monitoring.coreos.com", "-n", namespace, check=False).returncode
        == 0
    )


@pytest.fixture
def podmonitor_crd(plane: ClusterAccess, namespace: str) -> Path:
    """The real PodMonitor CRD installed (server-side apply) and served."""
    crd = podmonitor_crd_file()
    assert yaml.safe_load(crd.read_text())["metadata"]["name"] == podmonitor.CRD_NAME
    plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=modelledger-tests", "-f", str(crd)
    )
    plane.wait_established(podmonitor.CRD_NAME)
    eventually(lambda: _podmonitors_served(plane, namespace), 30, "PodMonitors served")
    return crd


@pytest.fixture
def kube_env(plane: ClusterAccess, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The operator's Kubernetes client (adapters.kube) bound to the test plane, in this process."""
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
    # The client library read $KUBECONFIG when it was imported.
    monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(plane.kubeconfig))
    kube.client.cache_clear()
    yield
    kube.client.cache_clear()


def _deployment(version: str, *, annotated: bool = True, **spec: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": NAME},
        "spec": {"modelName": "fraud-detector", "version": version, "replicas": 1, **spec},
    }
    if annotated:
        document["metadata"]["annotations"] = {podmonitor.ANNOTATION_OPT_IN: "true"}
    return document


def _ensure(namespace: str, config: OperatorConfig, plane: ClusterAccess) -> bool | None:
    meta = get(plane, namespace, "mdep", NAME)["metadata"]
    return asyncio.run(ensure_pod_monitor(namespace, NAME, meta, config))


def _pod_monitor(plane: ClusterAccess, namespace: str) -> dict[str, Any] | None:
    found = plane.kubectl(
        "get", "podmonitors.monitoring.coreos.com", "-n", namespace, NAME,
        "-o", "json", "--show-managed-fields", check=False,
    )  # fmt: skip
    return json.loads(found.stdout) if found.returncode == 0 else None


def test_without_the_crd_it_logs_once_and_carries_on(
    plane: ClusterAccess, namespace: str, installed_crds: object, kube_env: None
) -> None:
    plane.kubectl("delete", "crd", podmonitor.CRD_NAME, "--ignore-not-found", "--wait=true")
    eventually(lambda: not _podmonitors_served(plane, namespace), 30, "no PodMonitor API")
    apply(plane, namespace, _deployment(V132))
    config = OperatorConfig(pod_monitors=PodMonitors(enabled=True))
    with capture_logs() as logs:
        answers = [_ensure(namespace, config, plane) for _ in range(3)]
    assert answers == [False, False, False]
    missing = [entry for entry in logs if "no PodMonitor API" in entry["event"]]
    assert len(missing) == 1, logs
    assert missing[0]["log_level"] == "warning"
    assert config.pod_monitors.paused(), "not asked again at every loop"
    off = OperatorConfig()
    assert _ensure(namespace, off, plane) is None, "without --pod-monitors nothing is attempted"


def test_the_pod_monitor_is_valid_against_the_real_crd_owned_and_withdrawn(
    plane: ClusterAccess, namespace: str, installed_crds: object, podmonitor_crd: Path, kube_env: None
) -> None:
    apply(plane, namespace, _deployment(V132))
    uid = get(plane, namespace, "mdep", NAME)["metadata"]["uid"]
    config = OperatorConfig(pod_monitors=PodMonitors(enabled=True))
    assert _ensure(namespace, config, plane) is True
    stored = _pod_monitor(plane, namespace)
    assert stored is not None
    sent = podmonitor.manifest(Owner(NAME, namespace, uid))
    assert stored["spec"] == sent["spec"], "the apiserver kept every field (nothing pruned by the schema)"
    assert [
        (o["kind"], o["name"], o["uid"], o["controller"]) for o in stored["metadata"]["ownerReferences"]
    ] == [("ModelDeployment", NAME, uid, True)]
    managers = {(m["manager"], m["operation"]) for m in stored["metadata"]["managedFields"]}
    assert ("modelledger", "Apply") in managers, "server-side applied by the operator's field manager"

    # A server-side dry run with strict field validation accepts the manifest, and refuses a typo in it.
    def dry_run(document: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        document = {**document, "metadata": {**document["metadata"], "name": "dry-run"}}
        return plane.kubectl(
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-f",
            "-",
            input=yaml.safe_dump(document),
            check=False,
        )

    accepted = dry_run(sent)
    assert accepted.returncode == 0, accepted.stderr
    typo = json.loads(json.dumps(sent))
    typo["spec"]["podMetricsEndpoints"][0]["honourLabels"] = False
    refused = dry_run(typo)
    assert refused.returncode != 0
    assert "honourLabels" in refused.stderr

    # The opt-in withdrawn: the PodMonitor the operator made goes; someone else's of that name stays.
    plane.kubectl("annotate", "-n", namespace, "mdep", NAME, f"{podmonitor.ANNOTATION_OPT_IN}-")
    assert _ensure(namespace, config, plane) is False
    assert _pod_monitor(plane, namespace) is None
    theirs = {**sent, "metadata": {"name": NAME, "namespace": namespace}}
    plane.kubectl("create", "-f", "-", input=yaml.safe_dump(theirs))
    assert _ensure(namespace, OperatorConfig(pod_monitors=PodMonitors(enabled=True)), plane) is False
    assert _pod_monitor(plane, namespace) is not None, "a PodMonitor the operator did not make is left alone"

    # Owned by the ModelDeployment: deleted with it (the plane's garbage collector).
    plane.kubectl("delete", "-n", namespace, "podmonitors.monitoring.coreos.com", NAME)
    plane.kubectl("annotate", "-n", namespace, "mdep", NAME, f"{podmonitor.ANNOTATION_OPT_IN}=true")
    assert _ensure(namespace, OperatorConfig(pod_monitors=PodMonitors(enabled=True)), plane) is True
    plane.kubectl("delete", "-n", namespace, "mdep", NAME, "--wait=false")
    eventually(lambda: _pod_monitor(plane, namespace) is None, 30, "the PodMonitor garbage-collected")


def readme_rule() -> dict[str, Any]:
    """The rule example of the README, as written there."""
    block = re.search(r"```yaml\n(rules:\n.*?)```", README.read_text(), re.S)
    assert block is not None, "the README shows a rule"
    rules: list[dict[str, Any]] = yaml.safe_load(block.group(1))["rules"]
    return rules[0]


def _serving_pod(plane: ClusterAccess, namespace: str, revision: int) -> dict[str, Any]:
    """The running pod of the revision serving, as the apiserver has it (kwok runs it)."""

    def find() -> dict[str, Any] | None:
        pods = json.loads(
            plane.kubectl(
                "get", "pods", "-n", namespace, "-l", f"modelledger.io/revision={revision}", "-o", "json"
            ).stdout
        )["items"]
        running = [
            p
            for p in pods
            if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
        ]
        return running[0] if running else None

    pod: dict[str, Any] = eventually(find, 30, f"a running pod of revision {revision}")
    return pod


@pytest.fixture
def contract_prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """A Prometheus whose job `podmonitor` is the operator's PodMonitor as a scrape config."""
    job = podmonitor.scrape_config(JOB, podmonitor.manifest(Owner(NAME, "any", "any")))
    with PrometheusServer(tmp_path / "contract-prometheus", jobs=[job]) as server:
        yield server


def test_a_rule_written_as_the_readme_shows_passes_then_a_breach_rolls_back(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    podmonitor_crd: Path,
    kube_env: None,
    contract_prometheus: PrometheusServer,
) -> None:
    rule = {**readme_rule(), "for": "2s"}  # as written, but `for` shortened from 1m
    assert 'version="{{version}}"' in rule["query"]

    def document(version: str, bake: str) -> dict[str, Any]:
        rollback = {
            "interval": "1s",
            "cooldown": "5m",
            "rules": [rule],
            "prometheus": {"url": contract_prometheus.url},
        }
        return _deployment(version, stability={"bakeTime": bake}, rollback=rollback)

    server = ModelServer(hostile=True)
    try:
        operator.start()
        versions(plane, namespace)
        apply(plane, namespace, document(V132, "2s"))
        wait_served(plane, namespace, V132, 1)
        # The PodMonitor the apiserver stored is the one Prometheus runs (same relabelings, honorLabels).
        assert _ensure(namespace, OperatorConfig(pod_monitors=PodMonitors(enabled=True)), plane) is True
        stored = _pod_monitor(plane, namespace)
        assert stored is not None
        assert podmonitor.scrape_config(JOB, stored) == {
            k: v for k, v in contract_prometheus.jobs[0].items() if k != "file_sd_configs"
        }
        pod = _serving_pod(plane, namespace, 1)
        assert {k: pod["metadata"]["labels"][k] for k in ("model", "version", "deployment")} == {
            "model": "fraud-detector",
            "version": "1.3.2",
            "deployment": NAME,
        }
        target = serve_as_pod(
            contract_prometheus, JOB, server, namespace, pod["metadata"]["name"], pod["metadata"]["labels"]
        )
        contract_prometheus.wait_for_target(target)

        # The series carry the contract's labels; the pod's claim on another namespace is refused.
        selector = f'namespace="{namespace}",deployment="{NAME}",model="fraud-detector",version="1.3.2"'
        assert eventually(
            lambda: contract_prometheus.query(f"model_requests_total{{{selector}}}"), 15, "series"
        )
        claimed = contract_prometheus.query("hostile_series")
        assert [
            (s["metric"]["namespace"], s["metric"]["exported_namespace"], s["metric"]["deployment"])
            for s in claimed
        ] == [(namespace, "victim", NAME)]
        assert contract_prometheus.query('hostile_series{namespace="victim"}') == []

        def passing() -> bool:
            rules = status(plane, namespace).rules
            return bool(rules) and rules[0].state.value == "Pass" and rules[0].value == 0.0

        eventually(passing, 30, "the README rule Pass on the relabelled series")
        eventually(lambda: status(plane, namespace).stable_revision == 1, 30, "1.3.2 stable")

        apply(plane, namespace, document(V140, "1h"))
        wait_served(plane, namespace, V140, 2)
        pod = _serving_pod(plane, namespace, 2)
        assert pod["metadata"]["labels"]["version"] == "1.4.0"
        # Service discovery follows the pod: same target, now with the new pod's labels.
        serve_as_pod(
            contract_prometheus,
            JOB,
            server,
            namespace,
            pod["metadata"]["name"],
            pod["metadata"]["labels"],
            target,
        )
        server.load.error_fraction = 0.5
        eventually(
            lambda: rolled_back(plane, namespace), 40, "automatic rollback on the README rule", interval=0.5
        )
        top = status(plane, namespace).history[0]
        assert (top.cause.value, top.rule) == ("AutomaticRollback", "error-ratio")
        assert top.evidence is not None
        assert top.evidence.value == pytest.approx(0.5, abs=0.05)
        assert 'version="1.4.0"' in top.evidence.query, "{{version}} is the semantic version the pods export"
        assert f'namespace="{namespace}"' in top.evidence.query
    finally:
        server.close()
