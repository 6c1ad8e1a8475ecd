"""The operator core on the real plane, the operator running as a real process (issue 4)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.api import ModelDeploymentStatus
from modelledger.core import history
from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.operator_process import OperatorProcess, operator_process

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
V132, V140 = "fraud-detector-1-3-2", "fraud-detector-1-4-0"


@pytest.fixture
def operator(
    plane: ClusterAccess, namespace: str, installed_crds: object, tmp_path: Path
) -> Iterator[OperatorProcess]:
    yield from operator_process(plane, namespace, tmp_path)


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


def test_deploy_upgrade_bake_mark_stable_and_manual_rollback(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    versions(plane, namespace)
    apply(plane, namespace, model_deployment(V132, bake="3s"))
    st = wait_phase(plane, namespace, "Healthy")
    assert [(e.revision, e.version, e.cause.value) for e in st.history] == [(1, V132, "Deploy")]
    assert served_revision(plane, namespace) == (V132, "1")
    pods = json.loads(plane.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 2
    assert all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"]["conditions"]) for p in pods
    )
    container = get(plane, namespace, "deployment", "fraud-detector")["spec"]["template"]["spec"][
        "containers"
    ][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["MODEL_VERSION"] == "1.3.2"
    assert env["MODEL_DIGEST"] == example(V132)["spec"]["artifact"]["digest"]
    assert env["MODEL_COMPONENT_PREPROCESSOR_DIGEST"].startswith("sha256:")
    assert get(plane, namespace, "service", "fraud-detector")["spec"]["ports"][0]["port"] == 8080

    eventually(lambda: status(plane, namespace).stable_revision == 1, 20, "stable after the bake time")
    apply(plane, namespace, model_deployment(V140, bake="1h"))
    wait_served(plane, namespace, V140, 2)
    st = wait_phase(plane, namespace, "Healthy")
    assert st.history[0].cause.value == "Deploy"
    assert st.history[0].actor.startswith("kubectl")

    marked = cli(plane, "mark-stable", "fraud-detector", "-n", namespace, "--reason", "validated")
    assert marked.returncode == 0, marked.stderr
    assert "Applied" in marked.stdout
    assert status(plane, namespace).stable_revision == 2

    rolled = cli(
        plane,
        "rollback",
        "fraud-detector",
        "-n",
        namespace,
        "--to-revision",
        "1",
        "--reason",
        "latency complaints",
    )
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    wait_served(plane, namespace, V132, 3)
    st = wait_phase(plane, namespace, "RolledBack")
    top = st.history[0]
    assert (top.revision, top.version, top.cause.value, top.reason) == (
        3,
        V132,
        "ManualRollback",
        "latency complaints",
    )
    assert top.actor == "modelledger-admin", "the requester as the apiserver knows the CLI's credentials"
    assert st.quarantined == [V140]
    shown = cli(plane, "history", "fraud-detector", "-n", namespace)
    assert shown.returncode == 0, shown.stdout
    assert "chain: verified" in shown.stdout
    assert "ManualRollback" in shown.stdout
    for reason in ("Deployed", "RolloutComplete", "MarkedStable", "RolledBack"):
        assert reason in reasons(plane, namespace)
    assert {line["action"] for line in operator.audit_lines()} >= {"Deployed", "MarkedStable", "RolledBack"}
    audit_file = [json.loads(line) for line in (operator.workdir / "audit.jsonl").read_text().splitlines()]
    assert [line["action"] for line in audit_file if line["action"] == "RolledBack"] == ["RolledBack"]


def test_revocation_rolls_back_and_without_stable_degrades(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    healthy_stable_then_upgraded(plane, namespace)
    plane.kubectl(
        "patch",
        "-n",
        namespace,
        "mv",
        V140,
        "--type=merge",
        "-p",
        '{"spec":{"revoked":true,"revocationReason":"failed the fairness audit"}}',
    )
    wait_served(plane, namespace, V132, 3)
    top = status(plane, namespace).history[0]
    assert (top.cause.value, top.version) == ("Revocation", V132)
    assert "fairness audit" in top.reason
    assert get(plane, namespace, "mv", V140)["status"]["phase"] == "Revoked"
    assert "VersionRevoked" in reasons(plane, namespace)

    plane.kubectl(
        "patch",
        "-n",
        namespace,
        "mv",
        V132,
        "--type=merge",
        "-p",
        '{"spec":{"revoked":true,"revocationReason":"data leak"}}',
    )
    st = wait_phase(plane, namespace, "Degraded")
    assert st.current_revision == 3, "no stable, non-revoked revision: nothing changes"
    assert served_revision(plane, namespace) == (V132, "3"), "the workload is left untouched"
    eventually(lambda: "NoStableRevision" in reasons(plane, namespace), 10, "NoStableRevision event")


def test_deleting_a_referenced_version_is_blocked_until_unreferenced(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    healthy_stable_then_upgraded(plane, namespace)
    assert sorted(get(plane, namespace, "mv", V132)["status"]["usedBy"]) == ["fraud-detector"]
    plane.kubectl("delete", "-n", namespace, "mv", V132, "--wait=false")
    eventually(lambda: "DeletionBlocked" in reasons(plane, namespace), 20, "DeletionBlocked event")
    blocked = get(plane, namespace, "mv", V132)
    assert blocked["metadata"]["deletionTimestamp"]
    condition = next(c for c in blocked["status"]["conditions"] if c["type"] == "DeletionBlocked")
    assert condition["status"] == "True"
    assert "fraud-detector" in condition["message"]

    plane.kubectl("delete", "-n", namespace, "mdep", "fraud-detector", "--wait=true", "--timeout=60s")
    eventually(
        lambda: plane.kubectl("get", "-n", namespace, "mv", V132, check=False).returncode != 0,
        30,
        "the ModelVersion deleted once no history names it",
    )


def test_missing_version_fails_then_recovers(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    apply(plane, namespace, model_deployment(V132))
    st = wait_phase(plane, namespace, "Failed")
    ready = next(c for c in st.conditions if c.type == "Ready")
    assert (ready.status.value, ready.reason) == ("False", "VersionNotFound")
    assert V132 in ready.message
    eventually(lambda: "VersionNotFound" in reasons(plane, namespace), 10, "VersionNotFound event")
    apply(plane, namespace, example(V132))
    wait_phase(plane, namespace, "Healthy")
    assert served_revision(plane, namespace) == (V132, "1")


def test_history_chain_and_pruning_keep_serving_and_stable(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    versions(plane, namespace)
    apply(plane, namespace, model_deployment(V132, bake="2s", limit=2))
    eventually(lambda: status(plane, namespace).stable_revision == 1, 30, "revision 1 stable")
    for revision, version in enumerate([V140, V132, V140, V132], start=2):
        apply(plane, namespace, model_deployment(version, bake="1h", limit=2))
        wait_served(plane, namespace, version, revision)
    st = status(plane, namespace)
    assert [e.revision for e in st.history] == [5, 4, 1], "newest 2, plus the stable revision 1"
    assert history.verify(st.history, limit=2) is None


def test_operator_owns_no_spec_field(plane: ClusterAccess, namespace: str, operator: OperatorProcess) -> None:
    operator.start()
    healthy_stable_then_upgraded(plane, namespace)
    cli(plane, "rollback", "fraud-detector", "-n", namespace, "--reason", "check ownership")
    wait_phase(plane, namespace, "RolledBack")
    for kind, name in (("mdep", "fraud-detector"), ("mv", V132), ("mv", V140)):
        raw = plane.kubectl("get", "-n", namespace, kind, name, "-o", "json", "--show-managed-fields").stdout
        managed = json.loads(raw)["metadata"]["managedFields"]
        assert "modelledger" in {m["manager"] for m in managed}, f"{kind}/{name}: {managed}"
        ours = [
            m
            for m in managed
            if m["manager"] != "kubectl-client-side-apply" and not m["manager"].startswith("kubectl")
        ]
        for entry in ours:
            assert "f:spec" not in entry.get("fieldsV1", {}), f"{entry['manager']} owns spec of {kind}/{name}"
        annotations = get(plane, namespace, kind, name)["metadata"].get("annotations", {})
        assert not [a for a in annotations if "kopf" in a], "Kopf keeps its state out of annotations"


def test_nothing_changing_means_no_writes(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    healthy_stable_then_upgraded(plane, namespace)
    time.sleep(2)  # let the last rollout's status settle

    def versions_of_everything() -> dict[str, str]:
        out = json.loads(
            plane.kubectl("get", "-n", namespace, "mdep,mv,deploy,svc,rs,pods,events", "-o", "json").stdout
        )
        return {
            f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in out["items"]
        }

    before = versions_of_everything()
    time.sleep(30)
    after = versions_of_everything()
    assert after == before
