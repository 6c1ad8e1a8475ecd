"""The operator core on the real plane, the operator running as a real process (issue 4)."""

from __future__ import annotations

import json
import time

from modelledger.core import history
from modelledger.handlers.versions import BLOCKED_RETRY
from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import (
    V132,
    V140,
    apply,
    cli,
    example,
    get,
    healthy_stable_then_upgraded,
    model_deployment,
    reasons,
    revoke,
    served_revision,
    status,
    versions,
    wait_phase,
    wait_served,
)


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
    # Admission stamped who changed spec.version (the identity guards are installed for every test).
    assert (st.history[0].actor, st.history[0].actor_verified) == ("modelledger-admin", True)

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
    assert top.actor_verified is True
    assert top.signature is not None
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
    revoke(plane, namespace, V140, "failed the fairness audit")
    wait_served(plane, namespace, V132, 3)
    top = status(plane, namespace).history[0]
    assert (top.cause.value, top.version) == ("Revocation", V132)
    assert "fairness audit" in top.reason
    assert get(plane, namespace, "mv", V140)["status"]["phase"] == "Revoked"
    assert "VersionRevoked" in reasons(plane, namespace)

    revoke(plane, namespace, V132, "data leak")
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
    assert get(plane, namespace, "mv", V132)["status"]["usedByCount"] == 1
    plane.kubectl("delete", "-n", namespace, "mv", V132, "--wait=false")
    eventually(lambda: "DeletionBlocked" in reasons(plane, namespace), 20, "DeletionBlocked event")
    blocked = get(plane, namespace, "mv", V132)
    assert blocked["metadata"]["deletionTimestamp"]
    condition = next(c for c in blocked["status"]["conditions"] if c["type"] == "DeletionBlocked")
    assert condition["status"] == "True"
    assert "fraud-detector" in condition["message"]
    assert blocked["metadata"]["finalizers"] == ["modelledger.io/finalizer"], "ours only, not Kopf's"
    time.sleep(2 * BLOCKED_RETRY + 1)  # the guard looks again twice meanwhile
    assert reasons(plane, namespace).count("DeletionBlocked") == 1, "one Event per blocking, not per look"

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
