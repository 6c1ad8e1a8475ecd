"""The local control plane: etcd, kube-apiserver, controller-manager, scheduler and kwok fake nodes.

All of it is real Kubernetes built from Go modules (see hack/build-plane.sh); only the kubelets are
simulated by kwok, so pods on its nodes become Running and Ready without a container runtime.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import Binaries
from modelledger.testing.pki import CertFiles, CertificateAuthority, write_service_account_keys
from modelledger.testing.processes import Child, ProcessGroup, free_port, wait_until

SERVICE_CIDR = "10.0.0.0/16"  # one ClusterIP per ModelDeployment: room for benchmark fleets
POD_CIDR = "10.244.0.0/16"  # kwok assigns fake pod IPs from here
KWOK_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)


@dataclass(frozen=True)
class PlaneOptions:
    nodes: int = 2
    event_ttl: str = "1h"  # the apiserver's --event-ttl; tests shorten it to prove reports outlive Events
    startup_timeout: float = 90.0
    # kube-controller-manager's client rate limit. Its default (20 requests/s, burst 30) paces roll-outs
    # of hundreds of Deployments to a few a second; large production planes raise it, and the
    # benchmarks do, so that a fleet's roll-out is not what they measure.
    controller_manager_qps: int | None = None


class LocalPlane:
    """Starts and stops the whole plane; use as a context manager or call start()/stop()."""

    def __init__(self, workdir: Path, options: PlaneOptions | None = None, binaries: Binaries | None = None):
        self.workdir = workdir
        self.options = options or PlaneOptions()
        self.binaries = binaries or Binaries.locate()
        self.kubeconfig = workdir / "admin.kubeconfig"
        self.processes = ProcessGroup(workdir / "logs")
        self.apiserver_port = 0
        self.timings: dict[str, float] = {}
        self._etcd_url = ""
        self._admin: tuple[Path, CertFiles] | None = None  # (CA, admin client cert), for readiness probes

    @property
    def access(self) -> ClusterAccess:
        return ClusterAccess(self.kubeconfig)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    def __enter__(self) -> LocalPlane:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def pids(self) -> list[int]:
        return [child.pid for child in self.processes.children]

    def start(self) -> None:
        began = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - began

    def stop(self) -> None:
        self.processes.stop()

    # --- faults: one component stopped and started again (tests/chaos) -----------------------------------

    def restart_apiserver(self, *, down: float = 0.0, sig: int = signal.SIGTERM) -> float:
        """Stop kube-apiserver, wait `down` s, start it again on the same port and certificates; returns
        the seconds from the stop to its /readyz answering ok again."""
        assert self._admin is not None, "the plane is not started"
        ca, admin = self._admin
        began = time.monotonic()
        child = self.processes.restart("kube-apiserver", down=down, sig=sig)
        wait_until(
            "kube-apiserver /readyz after a restart",
            lambda: self._get(f"{self.server}/readyz", ca, admin) == "ok",
            self.options.startup_timeout,
            watch=child,
        )
        return time.monotonic() - began

    def restart_etcd(self, *, down: float = 0.0, sig: int = signal.SIGTERM) -> float:
        """Stop etcd, wait `down` s, start it again on its data; returns the seconds from the stop to its
        /health, then the apiserver's /readyz (which checks etcd), answering ok again."""
        assert self._admin is not None, "the plane is not started"
        ca, admin = self._admin
        began = time.monotonic()
        child = self.processes.restart("etcd", down=down, sig=sig)
        wait_until(
            "etcd /health after a restart",
            lambda: json.loads(self._get(f"{self._etcd_url}/health", None, None))["health"] == "true",
            self.options.startup_timeout,
            watch=child,
        )
        wait_until(
            "kube-apiserver /readyz after an etcd restart",
            lambda: self._get(f"{self.server}/readyz", ca, admin) == "ok",
            self.options.startup_timeout,
        )
        return time.monotonic() - began

    # --- start-up, in dependency order -------------------------------------------------------------

    def _start(self) -> None:
        # Every start is a new cluster: no etcd data, certificates or logs from a previous run.
        for stale in ("etcd", "pki", "logs"):
            shutil.rmtree(self.workdir / stale, ignore_errors=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        pki = self.workdir / "pki"
        ca = CertificateAuthority(pki)
        serving = ca.issue(
            "apiserver",
            "kube-apiserver",
            server_hosts=(
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "10.0.0.1",
            ),
        )
        admin = ca.issue("admin", "modelledger-admin", organizations=("system:masters",))
        sa_private, sa_public = write_service_account_keys(pki)

        t = time.monotonic()
        etcd = self._start_etcd()
        self.timings["etcd"] = time.monotonic() - t

        self.apiserver_port = free_port()
        apiserver = self.processes.start(
            "kube-apiserver",
            [
                self.binaries.kube_apiserver,
                f"--etcd-servers={etcd}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={serving.cert}",
                f"--tls-private-key-file={serving.key}",
                f"--client-ca-file={ca.cert_path}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--authorization-mode=Node,RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_public}",
                f"--service-account-signing-key-file={sa_private}",
                "--endpoint-reconciler-type=none",
                f"--event-ttl={self.options.event_ttl}",
                "--profiling=false",
                # MutatingAdmissionPolicy is beta and off by default in 1.34: the chart's identity
                # guards stamp requesters and version setters with it (kind-config.yaml does the same).
                "--feature-gates=MutatingAdmissionPolicy=true",
                "--runtime-config=admissionregistration.k8s.io/v1beta1=true",
            ],
        )
        self._write_kubeconfig(ca.cert_path, admin)
        self._admin = (ca.cert_path, admin)
        wait_until(
            "kube-apiserver /readyz",
            lambda: self._get(f"{self.server}/readyz", ca.cert_path, admin) == "ok",
            self.options.startup_timeout,
            watch=apiserver,
        )
        self.timings["apiserver"] = time.monotonic() - t

        controller_manager = self.processes.start(
            "kube-controller-manager",
            [
                self.binaries.kube_controller_manager,
                f"--kubeconfig={self.kubeconfig}",
                f"--root-ca-file={ca.cert_path}",
                f"--service-account-private-key-file={sa_private}",
                "--use-service-account-credentials=true",
                "--leader-elect=false",
                "--secure-port=0",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                # The CSR API issues client certificates (tests get real, non-impersonated users).
                f"--cluster-signing-cert-file={ca.cert_path}",
                f"--cluster-signing-key-file={ca.key_path}",
                *self._controller_manager_limits(),
            ],
        )
        scheduler_port = free_port()
        scheduler = self.processes.start(
            "kube-scheduler",
            [
                self.binaries.kube_scheduler,
                f"--kubeconfig={self.kubeconfig}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            ],
        )
        kwok = self._start_kwok()
        self._create_nodes()

        wait_until(
            "kube-scheduler /healthz",
            lambda: self._get(f"https://127.0.0.1:{scheduler_port}/healthz", None, None) == "ok",
            self.options.startup_timeout,
            watch=scheduler,
        )
        # The controller-manager serves nothing here; the default ServiceAccount it creates proves it runs.
        wait_until(
            "kube-controller-manager (default ServiceAccount)",
            lambda: (
                self.access.kubectl(
                    "get", "serviceaccount", "default", "-n", "default", check=False
                ).returncode
                == 0
            ),
            self.options.startup_timeout,
            watch=controller_manager,
            interval=0.25,
        )
        wait_until(
            f"{self.options.nodes} kwok nodes Ready",
            self._nodes_ready,
            self.options.startup_timeout,
            watch=kwok,
            interval=0.25,
        )
        self.timings["ready"] = time.monotonic() - t

    def _controller_manager_limits(self) -> list[str]:
        qps = self.options.controller_manager_qps
        if qps is None:
            return []
        return [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * qps}"]

    def _start_etcd(self) -> str:
        client, peer = free_port(), free_port()
        url = self._etcd_url = f"http://127.0.0.1:{client}"
        child = self.processes.start(
            "etcd",
            [
                self.binaries.etcd,
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        wait_until(
            "etcd /health",
            lambda: json.loads(self._get(f"{url}/health", None, None))["health"] == "true",
            self.options.startup_timeout,
            watch=child,
        )
        return url

    def _start_kwok(self) -> Child:
        argv: list[str | os.PathLike[str]] = [
            self.binaries.kwok,
            f"--kubeconfig={self.kubeconfig}",
            "--manage-all-nodes=true",
            f"--cidr={POD_CIDR}",
            f"--server-address=127.0.0.1:{free_port()}",
            "--node-lease-duration-seconds=40",
        ]
        argv += [f"--config={self.binaries.kwok_stages / stage}" for stage in KWOK_STAGES]
        # kwok also reads ~/.kwok/kwok.yaml by default; point HOME away so a user's file cannot interfere.
        return self.processes.start("kwok", argv, env={**os.environ, "HOME": str(self.workdir)})

    def _create_nodes(self) -> None:
        manifests = [fake_node(f"kwok-node-{i}") for i in range(self.options.nodes)]
        self.access.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(manifests))

    def _nodes_ready(self) -> bool:
        nodes = json.loads(self.access.kubectl("get", "nodes", "-o", "json").stdout)["items"]
        ready = [
            n
            for n in nodes
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in n.get("status", {}).get("conditions", [])
            )
        ]
        return len(ready) >= self.options.nodes

    def _write_kubeconfig(self, ca: Path, admin: CertFiles) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "modelledger-local",
            "clusters": [
                {
                    "name": "modelledger-local",
                    "cluster": {"server": self.server, "certificate-authority": str(ca)},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {"client-certificate": str(admin.cert), "client-key": str(admin.key)},
                }
            ],
            "contexts": [
                {"name": "modelledger-local", "context": {"cluster": "modelledger-local", "user": "admin"}}
            ],
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    @staticmethod
    def _get(url: str, ca: Path | None, client: CertFiles | None) -> str:
        context: ssl.SSLContext | None = None
        if url.startswith("https"):
            context = ssl.create_default_context(cafile=str(ca)) if ca else ssl._create_unverified_context()
            if client:
                context.load_cert_chain(str(client.cert), str(client.key))
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return str(response.read().decode())


def fake_node(name: str) -> dict[str, Any]:
    """A Node that kwok manages: it heartbeats it and makes the pods scheduled on it Running/Ready."""
    resources = {"cpu": "1000", "memory": "4Ti", "pods": "2000"}  # fake: room for benchmark fleets
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "kwok.x-k8s.io/node": "fake"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
        "status": {
            "allocatable": resources,
            "capacity": resources,
            "nodeInfo": {
                "architecture": "amd64",
                "operatingSystem": "linux",
                "kubeletVersion": "fake",
                "kubeProxyVersion": "fake",
            },
        },
    }


@contextmanager
def local_plane(options: PlaneOptions | None = None, workdir: Path | None = None) -> Iterator[LocalPlane]:
    """A plane in a temporary directory (or `workdir`), stopped and cleaned up on exit."""
    with (
        tempfile.TemporaryDirectory(prefix="modelledger-plane-") as tmp,
        LocalPlane(workdir or Path(tmp), options) as plane,
    ):
        yield plane
