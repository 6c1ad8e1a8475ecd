"""The work queue that replaced one Kopf daemon per ModelDeployment (issue 11), on the real plane: a 409
in the middle of a rollback, a deployment deleted and created again under its name, the finalizer left
by older operators, and a fleet of 1,100 deployments on one ModelVersion."""

from __future__ import annotations

import json
import time

import yaml
from prometheus_client import Gauge

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
    model_deployment,
    reasons,
    stable_then_upgraded,
    status,
    versions,
    wait_served,
)

FLEET = 1100
UNRELATED = 30
LEGACY_FINALIZER = "modelledger.io/finalizer"


def test_a_conflict_during_a_rollback_is_decided_again_once(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    operator.start(MODELLEDGER_TEST_CONFLICT="ManualRollback")
    stable_then_upgraded(plane, namespace)
    sent = cli(
        plane, "rollback", "fraud-detector", "-n", namespace, "--reason", "409 test", "--timeout", "60"
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    wait_served(plane, namespace, V132, 3)
    st = status(plane, namespace)
    assert [(e.revision, e.cause.value) for e in st.history] == [
        (3, "ManualRollback"),
        (2, "Deploy"),
        (1, "Deploy"),
    ], "one history entry for the rollback"
    log = operator.log.read_text()
    assert "test conflict point reached" in log, "the write really met a 409"
    assert "status changed meanwhile; deciding again" in log
    audit = [json.loads(line) for line in (operator.workdir / "audit.jsonl").read_text().splitlines()]
    assert [r["revision"] for r in audit if r["action"] == "RolledBack"] == [3], "one decision, one record"


def test_a_deployment_deleted_and_created_again_starts_afresh_and_carries_no_finalizer(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    versions(plane, namespace)
    apply(plane, namespace, model_deployment(V132, bake="1h"))
    wait_served(plane, namespace, V132, 1)
    apply(plane, namespace, model_deployment(V140, bake="1h"))
    wait_served(plane, namespace, V140, 2)
    first = get(plane, namespace, "mdep", "fraud-detector")
    assert LEGACY_FINALIZER not in (first["metadata"].get("finalizers") or [])

    plane.kubectl("delete", "-n", namespace, "mdep", "fraud-detector", "--wait=true", "--timeout=30s")
    apply(plane, namespace, model_deployment(V140, bake="1h"))

    def afresh() -> bool:
        again = get(plane, namespace, "mdep", "fraud-detector")
        history = (again.get("status") or {}).get("history") or []
        return again["metadata"]["uid"] != first["metadata"]["uid"] and [
            (e["revision"], e["version"]) for e in history
        ] == [(1, V140)]

    eventually(afresh, 30, "a new history for the new object")
    verified = cli(plane, "audit", "verify", "fraud-detector", "-n", namespace)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_finalizer_of_older_operators_is_removed_so_deletion_completes(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    versions(plane, namespace)
    legacy = model_deployment(V132)
    legacy["metadata"]["finalizers"] = [LEGACY_FINALIZER]
    apply(plane, namespace, legacy)  # as a daemon-based operator left it
    operator.start()
    eventually(
        lambda: (
            LEGACY_FINALIZER
            not in (get(plane, namespace, "mdep", "fraud-detector")["metadata"].get("finalizers") or [])
        ),
        30,
        "the legacy finalizer removed",
    )
    deleted = plane.kubectl("delete", "-n", namespace, "mdep", "fraud-detector", "--timeout=20s", check=False)
    assert deleted.returncode == 0, deleted.stderr


def test_eleven_hundred_deployments_on_one_model_version(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    versions(plane, namespace)
    fleet = []
    for i in range(FLEET):
        manifest = model_deployment(V132, replicas=0, bake="1h")
        manifest["metadata"]["name"] = f"fleet-{i:04d}"
        fleet.append(manifest)
    plane.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(fleet), timeout=600)

    def all_current() -> bool:
        listed = json.loads(plane.kubectl("get", "mdep", "-n", namespace, "-o", "json", timeout=120).stdout)
        phases = [(item.get("status") or {}).get("phase") for item in listed["items"]]
        return len(phases) == FLEET and all(phase == "Healthy" for phase in phases)

    eventually(all_current, 600, f"{FLEET} deployments Healthy", interval=5)
    used = get(plane, namespace, "mv", V132)["status"]
    eventually(
        lambda: get(plane, namespace, "mv", V132)["status"].get("usedByCount") == FLEET,
        120,
        f"usedByCount {FLEET}",
        interval=2,
    )
    used = get(plane, namespace, "mv", V132)["status"]
    assert len(used["usedBy"]) <= 100, "usedBy stays capped; usedByCount carries the number"
    deployments = json.loads(
        plane.kubectl("get", "deployments", "-n", namespace, "-o", "json", timeout=120).stdout
    )["items"]
    assert len(deployments) == FLEET
    assert all(d["spec"]["replicas"] == 0 for d in deployments)


def test_a_refused_service_keeps_the_decision_its_events_and_retries_the_apply(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    # A quota of no Services stands for any refusal of the second apply (a full service IP range did
    # it in a 1,000-deployment benchmark): the decision is already recorded and must be announced.
    apply(
        plane,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-services"},
            "spec": {"hard": {"services": "0"}},
        },
    )
    operator.start()
    versions(plane, namespace)
    apply(plane, namespace, model_deployment(V132, bake="1h"))
    wait_served(plane, namespace, V132, 1)
    eventually(lambda: "Deployed" in reasons(plane, namespace), 20, "the Deployed Event")
    assert plane.kubectl("get", "-n", namespace, "service", "fraud-detector", check=False).returncode != 0
    eventually(lambda: operator.log.read_text().count("pass failed; retrying") >= 2, 30, "the apply retried")

    plane.kubectl("delete", "-n", namespace, "resourcequota", "no-services")
    eventually(
        lambda: (
            plane.kubectl("get", "-n", namespace, "service", "fraud-detector", check=False).returncode == 0
        ),
        60,
        "the Service, once the quota is gone",
    )
    assert reasons(plane, namespace).count("Deployed") == 1, "announced once, not at every retry"
    assert [(e.revision, e.version) for e in status(plane, namespace).history] == [(1, V132)]


def test_versions_nobody_uses_wake_no_pass_and_get_our_finalizer(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    """Our own finalizer and status writes on versions are not changes a decision reads: before, each
    woke every deployment of the namespace, so 10,000 versions at a first start kept 1,000 passes
    running for many minutes."""
    operator.start()
    stable_then_upgraded(plane, namespace)
    eventually(lambda: passes(operator) == passes(operator, after=3.0), 60, "the passes settled")
    before = passes(operator)
    unused = []
    for i in range(UNRELATED):
        document = example(V132)
        document["metadata"]["name"] = f"unused-{i:02d}"
        unused.append(document)
    apply(plane, namespace, *unused)

    def ours() -> int:
        listed = json.loads(plane.kubectl("get", "-n", namespace, "mv", "-o", "json").stdout)["items"]
        return sum(
            1
            for mv in listed
            if mv["metadata"]["name"].startswith("unused-")
            and mv["metadata"].get("finalizers") == [LEGACY_FINALIZER]
            and (mv.get("status") or {}).get("phase") == "Available"
        )

    eventually(lambda: ours() == UNRELATED, 60, "every unused version finalized and its status written")
    woke = passes(operator, after=2.0) - before
    assert woke <= 2, f"{UNRELATED} versions nobody uses and their {2 * UNRELATED} writes woke {woke} passes"


def passes(operator: OperatorProcess, after: float = 0.0) -> float:
    time.sleep(after)
    for line in operator.metrics().splitlines():
        if line.startswith('modelledger_phase_seconds_count{phase="pass"}'):
            return float(line.split()[-1])
    raise AssertionError("no pass count on /metrics")
