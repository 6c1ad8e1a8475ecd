"""The foundation: the local plane is real Kubernetes, Prometheus is real, Kopf works against both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import kopf
import kubernetes
import pytest
from kopf.testing import KopfRunner
from prometheus_api_client import PrometheusConnect

from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import read_versions
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import PAUSE_IMAGE, Exporter
from tests.helpers import eventually


@pytest.fixture
def widget_crd(api_client: kubernetes.client.ApiClient) -> Iterator[dict[str, str]]:
    """A throw-away namespaced CRD with a status subresource, deleted after the test."""
    group = f"t{uuid.uuid4().hex[:8]}.test.modelledger.io"
    crd: dict[str, Any] = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                            },
                        }
                    },
                }
            ],
        },
    }
    extensions = kubernetes.client.ApiextensionsV1Api(api_client)
    extensions.create_custom_resource_definition(crd)

    def established() -> bool:
        conditions = (
            extensions.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
        )
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    eventually(established, 30, "CRD Established")
    yield {"group": group, "version": "v1", "plural": "widgets"}
    extensions.delete_custom_resource_definition(crd["metadata"]["name"])


@pytest.mark.usefixtures("local_plane_only")
def test_apiserver_reports_the_pinned_kubernetes_version(api_client: kubernetes.client.ApiClient) -> None:
    version = kubernetes.client.VersionApi(api_client).get_code()
    assert version.git_version == read_versions()["KUBERNETES_VERSION"]


def test_custom_object_is_created_and_watched(
    api_client: kubernetes.client.ApiClient, namespace: str, widget_crd: dict[str, str]
) -> None:
    objects = kubernetes.client.CustomObjectsApi(api_client)
    seen: list[dict[str, Any]] = []

    def watch() -> None:
        stream = kubernetes.watch.Watch()
        for event in stream.stream(
            objects.list_namespaced_custom_object, namespace=namespace, timeout_seconds=20, **widget_crd
        ):
            seen.append(event)
            if event["type"] == "ADDED":
                stream.stop()

    watcher = threading.Thread(target=watch)
    watcher.start()
    time.sleep(0.5)  # let the watch open before the object exists
    body = {
        "apiVersion": f"{widget_crd['group']}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 3},
    }
    objects.create_namespaced_custom_object(namespace=namespace, body=body, **widget_crd)
    watcher.join(timeout=25)
    assert [(e["type"], e["object"]["metadata"]["name"], e["object"]["spec"]["size"]) for e in seen] == [
        ("ADDED", "w1", 3)
    ]


def _deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": PAUSE_IMAGE}]},
            },
        },
    }


def test_deployment_becomes_available_and_is_garbage_collected(
    api_client: kubernetes.client.ApiClient, namespace: str
) -> None:
    apps = kubernetes.client.AppsV1Api(api_client)
    core = kubernetes.client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, _deployment("web", 2))

    started = time.monotonic()
    eventually(
        lambda: (apps.read_namespaced_deployment("web", namespace).status.available_replicas or 0) == 2,
        60,
        "2 available replicas",
    )
    ready_after = time.monotonic() - started
    pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert len(pods) == 2
    assert all(p.spec.node_name for p in pods), "every pod is scheduled onto a node"
    assert len(apps.list_namespaced_replica_set(namespace).items) == 1
    print(f"deployment available after {ready_after:.1f} s")

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    eventually(lambda: not apps.list_namespaced_replica_set(namespace).items, 60, "ReplicaSet collected")
    eventually(lambda: not core.list_namespaced_pod(namespace).items, 60, "pods collected")


def test_prometheus_returns_an_exported_gauge(prometheus: PrometheusServer, exporter: Exporter) -> None:
    gauge = exporter.gauge("modelledger_test_value", "a value set by the test", ("case",))
    gauge.labels(case="foundation").set(42.5)
    client = PrometheusConnect(url=prometheus.url, disable_ssl=True)
    query = f'modelledger_test_value{{target="{exporter.name}",case="foundation"}}'

    def value() -> float | None:
        result = client.custom_query(query)
        return float(result[0]["value"][1]) if result else None

    started = time.monotonic()
    assert eventually(value, 10, "the gauge visible to PromQL") == 42.5
    print(f"gauge visible after {time.monotonic() - started:.1f} s")
    gauge.labels(case="foundation").set(7)
    assert eventually(lambda: value() == 7, 10, "the new value visible")


KOPF_OPERATOR = """
import kopf

@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_):
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="test.modelledger.io")
    settings.posting.enabled = False

@kopf.on.login()
def login(**kwargs):
    return kopf.login_with_kubeconfig(**kwargs)

@kopf.on.create("{group}", "v1", "widgets")
def created(spec, patch, **_):
    patch.status["observedSize"] = spec["size"] * 2
"""


def test_kopf_handler_patches_status(
    plane: ClusterAccess,
    api_client: kubernetes.client.ApiClient,
    namespace: str,
    widget_crd: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    operator = tmp_path / "operator.py"
    operator.write_text(KOPF_OPERATOR.replace("{group}", widget_crd["group"]))
    monkeypatch.setenv("KUBECONFIG", str(plane.kubeconfig))
    objects = kubernetes.client.CustomObjectsApi(api_client)
    body = {
        "apiVersion": f"{widget_crd['group']}/v1",
        "kind": "Widget",
        "metadata": {"name": "w1"},
        "spec": {"size": 21},
    }

    def observed() -> int | None:
        obj = cast(
            dict[str, Any],
            objects.get_namespaced_custom_object(namespace=namespace, name="w1", **widget_crd),
        )
        observed_size: int | None = obj.get("status", {}).get("observedSize")
        return observed_size

    # A registry of its own: tests that import modelledger's handlers have registered them globally.
    previous = kopf.get_default_registry()
    kopf.set_default_registry(kopf.OperatorRegistry())
    try:
        with KopfRunner(
            ["run", "--standalone", "--namespace", namespace, str(operator)], timeout=60
        ) as runner:
            objects.create_namespaced_custom_object(namespace=namespace, body=body, **widget_crd)
            assert eventually(observed, 30, "Kopf patched the status") == 42
    finally:
        kopf.set_default_registry(previous)
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; it only waits for its parent to reap it.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.usefixtures("local_plane_only")
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_launcher_leaves_no_process_behind(tmp_path: Path, stop_signal: signal.Signals) -> None:
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelledger.testing.launcher",
            "--state-dir",
            str(tmp_path),
            "run",
            "--nodes",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        state_file = tmp_path / "state.json"
        eventually(lambda: state_file.exists() or launcher.poll() is not None, 180, "launcher ready")
        assert launcher.poll() is None, launcher.communicate()[0]
        pids: list[int] = json.loads(state_file.read_text())["pids"]
        assert len(pids) == 6  # etcd, apiserver, controller-manager, scheduler, kwok, prometheus
        assert all(_pid_alive(pid) for pid in pids)

        launcher.send_signal(stop_signal)
        launcher.wait(timeout=60)
        eventually(lambda: not any(_pid_alive(pid) for pid in pids), 30, "every child gone")
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()
