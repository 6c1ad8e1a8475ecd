"""kill -9 at the two crash points of a rollback, then restart: the workload converges and the history
has no lost and no duplicate entry (issues 4 and 5). The operator's test-only switch
MODELLEDGER_TEST_CRASH=<point>:<cause> makes it SIGKILL itself right there."""

from __future__ import annotations

import json
import signal

import pytest
from prometheus_client import Gauge

from modelledger.core import history
from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import V132, V140, cli, get, served_revision, stable_then_upgraded, status, wait_served

POINTS = ["after-status-write", "after-workload-patch"]


def crash_then_recover(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, point: str, cause: str
) -> None:
    assert operator.wait_killed() == -signal.SIGKILL, "the operator stopped at the crash point"
    st = status(plane, namespace)
    assert [e.cause.value for e in st.history][:1] == [cause], "the decision was written before the crash"
    expected_then = (V132, "3") if point == "after-workload-patch" else (V140, "2")
    assert served_revision(plane, namespace) in (expected_then, None)

    operator.start()  # no crash switch this time
    wait_served(plane, namespace, V132, 3)
    st = status(plane, namespace)
    assert [(e.revision, e.cause.value) for e in st.history] == [(3, cause), (2, "Deploy"), (1, "Deploy")]
    assert history.verify(st.history, limit=10) is None
    eventually(
        lambda: (
            status(plane, namespace).phase is not None
            and status(plane, namespace).phase.value == "RolledBack"
        ),
        20,
        "phase RolledBack",
    )
    audit = [json.loads(line) for line in (operator.workdir / "audit.jsonl").read_text().splitlines()]
    assert [r["revision"] for r in audit if r["action"] == "RolledBack"] == [3], "one decision, one record"


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("point", POINTS)
def test_manual_rollback_survives_kill_9(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    error_rate: Gauge,
    point: str,
    attempt: int,
) -> None:
    operator.start()
    stable_then_upgraded(plane, namespace)
    operator.stop()
    operator.start(MODELLEDGER_TEST_CRASH=f"{point}:ManualRollback")
    sent = cli(
        plane,
        "rollback",
        "fraud-detector",
        "-n",
        namespace,
        "--reason",
        f"crash test {attempt}",
        "--timeout",
        "0",
    )
    assert sent.returncode == 0, sent.stderr
    crash_then_recover(plane, namespace, operator, point, "ManualRollback")
    handled = status(plane, namespace).handled_requests
    assert len(handled) == 1, "the request was consumed exactly once"
    assert handled[0].phase.value == "Applied"
    request = get(plane, namespace, "mdreq", handled[0].name)
    assert request["status"]["phase"] == "Applied", "the answer reaches the request after a crash too"


@pytest.mark.parametrize("attempt", [1, 2])
@pytest.mark.parametrize("point", POINTS)
def test_automatic_rollback_survives_kill_9(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    error_rate: Gauge,
    point: str,
    attempt: int,
) -> None:
    operator.start()
    stable_then_upgraded(plane, namespace)
    operator.stop()
    operator.start(MODELLEDGER_TEST_CRASH=f"{point}:AutomaticRollback")
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    crash_then_recover(plane, namespace, operator, point, "AutomaticRollback")
