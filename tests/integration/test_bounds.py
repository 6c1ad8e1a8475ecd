"""Bounds on the real plane: a hundred history-worthy changes with maximal reasons keep the status within
its byte budget, every entry signed, and the operator deciding each request exactly once."""

from __future__ import annotations

import json

import yaml

from modelledger.core import history
from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import V132, V140, apply, cli, get, model_deployment, served_revision, versions

CHANGES = 100
REASON = "r" * 1024  # the longest reason a request may carry
STATUS_BUDGET = history.HISTORY_BYTES + 128 * 1024  # the history's share and room for the rest


def rollback(index: int, revision: int) -> dict[str, object]:
    return {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeploymentRequest",
        "metadata": {"name": f"rollback-{index:03d}"},
        "spec": {
            "deployment": "fraud-detector",
            "action": "Rollback",
            "revision": revision,
            "reason": REASON,
        },
    }


def test_a_hundred_maximal_changes_stay_within_the_status_budget(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    versions(plane, namespace)
    apply(plane, namespace, model_deployment(V132, bake="1h", limit=100))
    eventually(lambda: served_revision(plane, namespace) == (V132, "1"), 60, "revision 1 served")
    apply(plane, namespace, model_deployment(V140, bake="1h", limit=100))
    eventually(lambda: served_revision(plane, namespace) == (V140, "2"), 60, "revision 2 served")

    # A hundred rollbacks asked at once, each to the revision before the one serving when its turn
    # comes (request i makes revision i + 3), so every one of them is valid and history-worthy.
    requests = [rollback(i, i + 1) for i in range(CHANGES)]
    plane.kubectl("create", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(requests))

    def decided() -> bool:
        listed = json.loads(plane.kubectl("get", "mdreq", "-n", namespace, "-o", "json").stdout)["items"]
        return all((r.get("status") or {}).get("phase") == "Applied" for r in listed)

    eventually(decided, 180, f"{CHANGES} rollbacks applied")
    raw = get(plane, namespace, "mdep", "fraud-detector")
    status = raw["status"]
    size = len(json.dumps(status, separators=(",", ":")).encode())
    assert size <= STATUS_BUDGET, f"status is {size} bytes"
    revisions = [entry["revision"] for entry in status["history"]]
    assert max(revisions) == 2 + CHANGES, "one revision per request, none twice"
    assert len(revisions) <= 100
    assert all(entry.get("signature") for entry in status["history"])
    assert all(len(entry.get("reason", "")) <= 1024 for entry in status["history"])
    verified = cli(plane, "audit", "verify", "fraud-detector", "-n", namespace)
    assert verified.returncode == 0, verified.stdout + verified.stderr
