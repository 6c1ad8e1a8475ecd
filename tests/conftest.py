"""Shared fixtures: a REAL cluster (local plane by default, kind on request), namespaces, Prometheus."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from modelledger.api.common import GROUP
from modelledger.api.crdgen import KINDS
from modelledger.testing.access import ClusterAccess
from modelledger.testing.plane import LocalPlane
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer
from tests.helpers import eventually
from tests.operator_process import OperatorProcess, operator_process

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_NAMES = [f"{kind.plural}.{GROUP}" for kind in KINDS]
# The session's LocalPlane, when the tests started one: the fault suite (tests/chaos) restarts its parts.
LOCAL_PLANE = pytest.StashKey[LocalPlane]()
# Pauses forever and is tiny: real on kind, and any image name works on kwok's fake nodes.
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=("local", "kind"),
        default="local",
        help="local: the control plane built from Go modules (default); kind: a kind cluster (needs Docker)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def plane(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterAccess]:
    """The session's cluster. `--kubeconfig PATH` reuses a running one (e.g. from `make cluster-up`)."""
    existing = request.config.getoption("kubeconfig")
    if existing:
        yield ClusterAccess(Path(existing))
    elif request.config.getoption("cluster") == "kind":
        yield from _kind_cluster(request)
    else:
        with LocalPlane(tmp_path_factory.mktemp("plane")) as local:
            request.config.stash[LOCAL_PLANE] = local
            yield local.access


def _kind_cluster(request: pytest.FixtureRequest) -> Iterator[ClusterAccess]:
    if shutil.which("docker") is None:
        pytest.skip("--cluster=kind needs Docker: no `docker` on PATH")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("--cluster=kind needs a running Docker engine: `docker info` failed")
    from pytest_kind import KindCluster

    cluster = KindCluster(request.config.getoption("cluster_name"))
    cluster.create(config_file=REPO_ROOT / "kind-config.yaml")
    try:
        yield ClusterAccess(Path(cluster.kubeconfig_path))
    finally:
        if not request.config.getoption("keep_cluster"):
            cluster.delete()


@pytest.fixture(scope="session")
def local_plane_only(request: pytest.FixtureRequest) -> None:
    """Skip tests about the local plane itself when running on kind or on a reused cluster."""
    if request.config.getoption("cluster") != "local" or request.config.getoption("kubeconfig"):
        pytest.skip("checks the local plane built from Go modules, not this cluster")


@pytest.fixture(scope="session")
def api_client(plane: ClusterAccess) -> kubernetes.client.ApiClient:
    client: kubernetes.client.ApiClient = kubernetes.config.new_client_from_config(
        config_file=str(plane.kubeconfig)
    )
    return client


@pytest.fixture
def namespace(api_client: kubernetes.client.ApiClient, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards (the controller-manager finishes the deletion)."""
    core = kubernetes.client.CoreV1Api(api_client)
    stem = request.node.name.lower().replace("_", "-")
    stem = "".join(ch for ch in stem if ch.isalnum() or ch == "-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"modelledger.io/test": "true"}}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A real Prometheus on loopback scraping every second."""
    with PrometheusServer(tmp_path_factory.mktemp("prometheus")) as server:
        yield server


@pytest.fixture(scope="session")
def installed_crds(plane: ClusterAccess) -> subprocess.CompletedProcess[str]:
    """crds/*.yaml applied server-side and Established (the result of the apply, for its warnings)."""
    applied = plane.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=modelledger-tests",
        "-f",
        str(REPO_ROOT / "crds"),
    )
    for name in CRD_NAMES:
        plane.wait_established(name)
    # The resources are served once Established; discovery (for short names) follows promptly.
    eventually(
        lambda: plane.kubectl("get", "mv,mdep,mdreq", "-A", check=False).returncode == 0,
        30,
        "mv, mdep, mdreq discoverable",
    )
    return applied


IDENTITY_GUARDS = ("modelledger-requester", "modelledger-version-setter")


def admission_policies(*values: str, release_namespace: str = "modelledger-system") -> list[dict[str, Any]]:
    """The chart's admission policies, rendered as the chart installs them (MAPs included)."""
    import yaml

    from modelledger.testing.binaries import Binaries

    rendered = subprocess.run(
        [
            str(Binaries.locate().helm), "template", "modelledger", str(REPO_ROOT / "charts" / "modelledger"),
            "-n", release_namespace, "--show-only", "templates/admission-policies.yaml",
            "--api-versions", "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy",
            *(arg for value in values for arg in ("--set", value)),
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [doc for doc in yaml.safe_load_all(rendered) if doc]


@pytest.fixture(scope="session")
def identity_guards(plane: ClusterAccess, installed_crds: object) -> None:
    """The chart's identity guards (requester and version-setter stamps), for every namespace.

    They make `spec.requester` and the version-setter annotations what the apiserver authenticated, so
    every test's history names verified actors. The status-writers policy, which only lets the operator's
    ServiceAccount write status, is installed by the trust tests for their own namespaces only.
    """
    import yaml

    guards = [d for d in admission_policies() if d["metadata"]["name"] in IDENTITY_GUARDS]
    plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=modelledger-tests", "-f", "-",
        input=yaml.safe_dump_all(guards),
    )  # fmt: skip
    # The policies type-check against the CRDs' schemas a moment after they appear: until then the
    # apiserver answers `ServiceUnavailable` to writes they match. A server-side dry run shows when.
    probe = {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "guard-probe", "namespace": "default"},
        "spec": {"modelName": "probe", "version": "probe"},
    }
    eventually(
        lambda: plane.kubectl(
            "create", "--dry-run=server", "-f", "-", input=yaml.safe_dump(probe), check=False
        ).returncode == 0,
        60,
        "the identity guards in force",
    )  # fmt: skip


@dataclass
class Exporter:
    """A prometheus-client HTTP exporter on loopback that Prometheus scrapes as target `name`."""

    name: str
    address: str
    registry: CollectorRegistry

    def gauge(self, name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, documentation, labels, registry=self.registry)


@pytest.fixture
def exporter(prometheus: PrometheusServer) -> Iterator[Exporter]:
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    name = f"exporter-{uuid.uuid4().hex[:8]}"
    prometheus.add_target(name, f"127.0.0.1:{port}")
    try:
        yield Exporter(name, f"127.0.0.1:{port}", registry)
    finally:
        prometheus.remove_target(name)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def operator(
    plane: ClusterAccess,
    namespace: str,
    installed_crds: object,
    identity_guards: None,
    tmp_path: Path,
    prometheus: PrometheusServer,
) -> Iterator[OperatorProcess]:
    """`modelledger run` as a process, watching the test's namespace (start it with `.start()`)."""
    yield from operator_process(plane, namespace, tmp_path, prometheus_url=prometheus.url)


@pytest.fixture
def error_rate(exporter: Exporter, namespace: str, prometheus: PrometheusServer) -> Gauge:
    """`test_error_rate{namespace, deployment="fraud-detector"}` at 0, already scraped by Prometheus."""
    gauge = exporter.gauge("test_error_rate", "errors per request", ("namespace", "deployment"))
    gauge.labels(namespace=namespace, deployment="fraud-detector").set(0.0)
    prometheus.wait_for_target(exporter.name)
    return gauge
