"""No audit record lost (issue 12, item 4), on the real plane with a real `modelledger run`:

- kill -9 between the status write and the audit append: the restarted operator appends the record,
  marked recovered, with the decision's own time; `audit verify` passes, status and file cross-checked;
- a torn last line (at start, and in the middle of a run) is set aside in `<file>.torn` and the chain
  continues and verifies;
- a full audit disk (a 512 KiB tmpfs, filled): AuditSinkHealthy=False, the Event, the metrics; with
  `--audit-failure=block` a manual rollback waits while an automatic one goes ahead, and its record is
  written, in order, when the disk has room again.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import Gauge

from modelledger.api import ConditionStatus
from modelledger.core.decision import condition
from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import (
    V132,
    V140,
    cli,
    get,
    healthy_stable_then_upgraded,
    reasons,
    stable_then_upgraded,
    status,
    wait_served,
)


def records(path: Path) -> list[dict[str, Any]]:
    """The file's records (whole lines that are JSON objects)."""
    found = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            found.append(json.loads(line))
    return found


def record_of(path: Path, revision: int, action: str) -> list[dict[str, Any]]:
    return [r for r in records(path) if r.get("revision") == revision and r.get("action") == action]


def verify(plane: ClusterAccess, namespace: str, log: Path) -> subprocess.CompletedProcess[str]:
    return cli(plane, "audit", "verify", "fraud-detector", "-n", namespace, "--file", str(log))


def assert_verified(plane: ClusterAccess, namespace: str, log: Path) -> None:
    result = verify(plane, namespace, log)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every logged revision matches" in result.stdout
    assert "BROKEN" not in result.stdout
    seqs = [r["seq"] for r in records(log)]
    assert seqs == list(range(1, len(seqs) + 1)), "one chain, nothing glued, nothing skipped"


def test_a_record_lost_to_kill_9_before_the_append_is_recovered_on_restart(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    log = operator.workdir / "audit.jsonl"
    operator.start()
    stable_then_upgraded(plane, namespace)
    operator.stop()
    operator.start(MODELLEDGER_TEST_CRASH="after-status-write-before-audit:ManualRollback")
    sent = cli(plane, "rollback", "fraud-detector", "-n", namespace, "--reason", "lost", "--timeout", "0")
    assert sent.returncode == 0, sent.stderr
    assert operator.wait_killed() == -signal.SIGKILL, "the operator stopped at the crash point"
    top = status(plane, namespace).history[0]
    assert (top.revision, top.cause.value) == (3, "ManualRollback"), "the status was written"
    assert record_of(log, 3, "RolledBack") == [], "and its record was not: the kill came first"

    operator.start()  # no crash switch this time
    [record] = eventually(lambda: record_of(log, 3, "RolledBack"), 30, "the recovered record")
    assert record["recovered"] is True
    assert record["recovered_at"]
    assert datetime.fromisoformat(record["ts"]) == top.at, "dated when the rollback was decided"
    assert record["entry"]["hash"] == top.hash
    assert record["entry"]["signature"] == top.signature, "the signed entry, verbatim"
    assert (record["cause"], record["actor"]) == ("ManualRollback", top.actor)
    assert "audit records recovered from status.history" in operator.log.read_text()
    wait_served(plane, namespace, V132, 3)
    operator.stop()
    assert len(record_of(log, 3, "RolledBack")) == 1, "recovered once"
    assert_verified(plane, namespace, log)


def test_a_torn_tail_is_set_aside_and_the_chain_continues(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    log = operator.workdir / "audit.jsonl"
    operator.start()
    healthy_stable_then_upgraded(plane, namespace)
    operator.stop()
    at_start = log.read_text().splitlines()[-1][:57]  # half a record: a crash mid-write
    with log.open("a") as out:
        out.write(at_start)
    before = len(records(log))

    operator.start()
    sent = cli(plane, "rollback", "fraud-detector", "-n", namespace, "--reason", "torn", "--timeout", "0")
    assert sent.returncode == 0, sent.stderr
    wait_served(plane, namespace, V132, 3)
    eventually(lambda: record_of(log, 3, "RolloutComplete"), 30, "revision 3 recorded and rolled out")
    assert records(log)[before]["seq"] == before + 1, "the chain continues from the last whole line"
    time.sleep(1)  # nothing else is decided now; the next decision is ours
    mid_run = '{"action":"QuarantineLifted","audit":true,"seq":'
    with log.open("a") as out:
        out.write(mid_run)  # torn while the operator runs
    sent = cli(plane, "retry", "fraud-detector", "-n", namespace, "--reason", "torn again", "--timeout", "0")
    assert sent.returncode == 0, sent.stderr
    wait_served(plane, namespace, V140, 4)
    eventually(lambda: record_of(log, 4, "Deployed"), 30, "revision 4 recorded")
    operator.stop()

    aside = [json.loads(line) for line in (operator.workdir / "audit.jsonl.torn").read_text().splitlines()]
    assert [a["text"] for a in aside] == [at_start, mid_run], "both torn tails kept, none glued on"
    assert all(mid_run not in line for line in log.read_text().splitlines())
    assert_verified(plane, namespace, log)


# --- a full disk ----------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs (needs root, or CAP_SYS_ADMIN): writes to it fail with ENOSPC once it is full."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Fill the disk to the last byte; the filler is returned, to be removed when room is due."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    with pytest.raises(OSError, match="No space left") as full:
        (disk / "probe").write_bytes(b"x")
    assert full.value.errno == errno.ENOSPC
    return filler


def metric(operator: OperatorProcess, name: str) -> float | None:
    for line in operator.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    return None


def sink_condition(plane: ClusterAccess, namespace: str) -> tuple[ConditionStatus, str] | None:
    found = condition(status(plane, namespace), "AuditSinkHealthy")
    return (found.status, found.reason) if found else None


def test_a_full_audit_disk_blocks_people_not_rollbacks_and_loses_nothing(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge, small_disk: Path
) -> None:
    log = small_disk / "audit.jsonl"
    operator.extra += ["--audit-log", str(log), "--audit-failure", "block"]  # the last --audit-log wins
    operator.start()
    stable_then_upgraded(plane, namespace)
    eventually(lambda: record_of(log, 2, "RolloutComplete"), 30, "revision 2 recorded and rolled out")
    assert metric(operator, "modelledger_audit_sink_healthy") == 1.0
    filled_at = len(records(log))
    filler = fill(small_disk)  # the file's last page may still take one more record

    # The automatic rollback goes ahead; its records wait in memory and on stderr.
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    eventually(
        lambda: status(plane, namespace).history[0].cause.value == "AutomaticRollback", 40, "rolled back"
    )
    assert eventually(
        lambda: sink_condition(plane, namespace) == (ConditionStatus.FALSE, "SinkUnwritable"), 20, "condition"
    )
    eventually(lambda: "AuditSinkUnhealthy" in reasons(plane, namespace), 20, "the Warning Event")
    [event] = [e for e in _events(plane, namespace) if e["reason"] == "AuditSinkUnhealthy"]
    assert event["type"] == "Warning"
    assert "No space left on device" in event["message"]
    assert metric(operator, "modelledger_audit_sink_healthy") == 0.0
    assert (metric(operator, "modelledger_audit_records_pending") or 0) >= 2
    assert record_of(log, 3, "RolledBack") == []
    written = len(records(log))
    pending = [
        json.loads(line)
        for line in operator.log.read_text().splitlines()
        if line.startswith("{") and '"audit_pending": true' in line
    ]
    assert any(p["record"].get("revision") == 3 and p["record"]["action"] == "RolledBack" for p in pending), (
        "the queued rollback record is on stderr"
    )

    # A person's rollback waits while the disk is full.
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.0)
    sent = cli(plane, "rollback", "fraud-detector", "-n", namespace, "--reason", "manual", "--timeout", "0")
    assert sent.returncode == 0, sent.stderr
    time.sleep(6)
    assert status(plane, namespace).history[0].revision == 3, "not applied"
    [request] = _requests(plane, namespace)
    assert not (request.get("status") or {}).get("phase"), "not answered either"
    assert len(records(log)) == written, "nothing reached the full disk"

    filler.unlink()  # room again
    eventually(lambda: metric(operator, "modelledger_audit_sink_healthy") == 1.0, 20, "sink healthy")
    eventually(
        lambda: (
            (get(plane, namespace, "mdreq", request["metadata"]["name"]).get("status") or {}).get("phase")
            == "Applied"
        ),
        30,
        "the manual rollback applied once the disk has room",
    )
    top = status(plane, namespace).history[0]
    assert (top.revision, top.cause.value) == (4, "ManualRollback")
    eventually(
        lambda: sink_condition(plane, namespace) == (ConditionStatus.TRUE, "SinkWritable"), 20, "condition"
    )
    assert metric(operator, "modelledger_audit_records_pending") == 0.0
    [automatic] = eventually(lambda: record_of(log, 3, "RolledBack"), 20, "the queued record written")
    [manual] = eventually(lambda: record_of(log, 4, "RolledBack"), 20, "the manual rollback's record")
    assert automatic["recovered"] is None, "written from the queue, not recovered"
    assert automatic["cause"] == "AutomaticRollback"
    assert automatic["seq"] < manual["seq"], "in decision order"
    assert datetime.fromisoformat(automatic["ts"]) < datetime.fromisoformat(manual["ts"])
    after = records(log)[filled_at:]
    times = [datetime.fromisoformat(r["ts"]) for r in after]
    assert times == sorted(times), "the queue is written in the order it was decided"
    assert {"RuleStateChanged", "RolledBack", "AuditSinkUnhealthy", "AuditSinkHealthy"} <= {
        r["action"] for r in after
    }
    operator.stop()
    assert_verified(plane, namespace, log)


def _events(plane: ClusterAccess, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        plane.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    )["items"]
    return items


def _requests(plane: ClusterAccess, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        plane.kubectl("get", "mdreq", "-n", namespace, "-o", "json").stdout
    )["items"]
    return items
