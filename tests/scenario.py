"""Scenario steps the integration tests share: manifests, waits on what the cluster shows, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from modelledger.api import ModelDeploymentStatus
from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
V132, V140 = "fraud-detector-1-3-2", "fraud-detector-1-4-0"
QUERY = 'max(test_error_rate{namespace="{{namespace}}",deployment="{{deployment}}"})'


def apply(plane: ClusterAccess, namespace: str, *documents: dict[str, Any]) -> None:
    plane.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))


def example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return document


def versions(plane: ClusterAccess, namespace: str) -> None:
    apply(plane, namespace, example(V132), example(V140))


def model_deployment(version: str, *, bake: str = "2s", limit: int = 10, replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud-detector"},
        "spec": {
            "modelName": "fraud-detector",
            "version": version,
            "replicas": replicas,
            "revisionHistoryLimit": limit,
            "stability": {"bakeTime": bake},
            "rollback": {"interval": "1s"},
        },
    }


def get(plane: ClusterAccess, namespace: str, kind: str, name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        plane.kubectl("get", "-n", namespace, kind, name, "-o", "json").stdout
    )
    return document


def status(plane: ClusterAccess, namespace: str) -> ModelDeploymentStatus:
    raw = get(plane, namespace, "mdep", "fraud-detector").get("status") or {}
    return ModelDeploymentStatus.model_validate({k: v for k, v in raw.items() if k != "kopf"})


def served_revision(plane: ClusterAccess, namespace: str) -> tuple[str, str] | None:
    """(version, revision) on the Deployment's pod template, once that rollout is complete."""
    found = plane.kubectl("get", "-n", namespace, "deployment", "fraud-detector", "-o", "json", check=False)
    if found.returncode != 0:
        return None  # not created yet
    deployment = json.loads(found.stdout)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    s = deployment.get("status", {})
    done = (
        s.get("observedGeneration", 0) >= deployment["metadata"]["generation"]
        and s.get("updatedReplicas")
        == s.get("availableReplicas")
        == s.get("replicas")
        == deployment["spec"]["replicas"]
    )
    return (labels["modelledger.io/version"], labels["modelledger.io/revision"]) if done else None


def wait_served(
    plane: ClusterAccess, namespace: str, version: str, revision: int, timeout: float = 30
) -> None:
    expected = (version, str(revision))
    eventually(
        lambda: served_revision(plane, namespace) == expected,
        timeout,
        f"{version} as revision {revision} rolled out",
    )


def wait_phase(
    plane: ClusterAccess, namespace: str, phase: str, timeout: float = 30
) -> ModelDeploymentStatus:
    def in_phase() -> ModelDeploymentStatus | None:
        st = status(plane, namespace)
        return st if st.phase is not None and st.phase.value == phase else None

    return eventually(in_phase, timeout, f"phase {phase}")


def cli(plane: ClusterAccess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelledger.cli.main", *args],
        capture_output=True,
        text=True,
        env={**plane.env(), "COLUMNS": "200"},
        timeout=120,
    )


def events(plane: ClusterAccess, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    )["items"]
    return [e for e in items if e["involvedObject"]["kind"] in ("ModelDeployment", "ModelVersion")]


def reasons(plane: ClusterAccess, namespace: str) -> list[str]:
    return [e["reason"] for e in events(plane, namespace)]


def healthy_stable_then_upgraded(plane: ClusterAccess, namespace: str) -> None:
    """1.3.2 serving and stable (revision 1), then 1.4.0 serving (revision 2)."""
    versions(plane, namespace)
    apply(plane, namespace, model_deployment(V132))
    eventually(lambda: status(plane, namespace).stable_revision == 1, 30, "revision 1 stable")
    apply(plane, namespace, model_deployment(V140, bake="1h"))
    wait_served(plane, namespace, V140, 2)
    wait_phase(plane, namespace, "Healthy")


def revoke(plane: ClusterAccess, namespace: str, version: str, reason: str) -> None:
    patch = json.dumps({"spec": {"revoked": True, "revocationReason": reason}})
    plane.kubectl("patch", "-n", namespace, "mv", version, "--type=merge", "-p", patch)


def with_rules(
    version: str, *, bake: str = "2s", interval: str = "1s", cooldown: str = "5m", **rule: Any
) -> dict[str, Any]:
    document = model_deployment(version, bake=bake)
    document["spec"]["rollback"] = {
        "interval": interval,
        "cooldown": cooldown,
        "rules": [
            {"name": "error-rate", "query": QUERY, "comparator": ">", "threshold": 0.5, "for": "2s", **rule}
        ],
    }
    return document


def stable_then_upgraded(plane: ClusterAccess, namespace: str, **rule: Any) -> None:
    versions(plane, namespace)
    apply(plane, namespace, with_rules(V132, **rule))
    eventually(lambda: status(plane, namespace).stable_revision == 1, 30, "1.3.2 stable with rules passing")
    apply(plane, namespace, with_rules(V140, bake="1h", **rule))
    wait_served(plane, namespace, V140, 2)


def rolled_back(plane: ClusterAccess, namespace: str) -> bool:
    return served_revision(plane, namespace) == (V132, "3")
