"""No audit record lost, the writer (adapters/audit.py): torn tails set aside, failed writes queued and
written in order when the file returns, records recovered from the status once per opening."""

from __future__ import annotations

import base64
import errno
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from modelledger.adapters import audit
from modelledger.api import ModelDeploymentStatus, RevisionCause
from modelledger.core import audit_chain
from modelledger.core.signing import SigningKey
from tests.unit.signed_histories import append, mark

KEY = SigningKey.generate()
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


class FailingOs:
    """`os` as the audit module sees it, with writes (or fsyncs) failing on demand; everything else real."""

    def __init__(self) -> None:
        self.write_error: int | None = None
        self.fsync_error: int | None = None
        self.truncate_error: int | None = None
        self.partial = False  # write half the bytes, then fail

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        if self.write_error is not None:
            if self.partial:
                self.partial = False
                return os.write(fd, bytes(data[: len(data) // 2]))
            raise OSError(self.write_error, os.strerror(self.write_error))
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        if self.fsync_error is not None:
            raise OSError(self.fsync_error, os.strerror(self.fsync_error))
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        if self.truncate_error is not None:
            raise OSError(self.truncate_error, os.strerror(self.truncate_error))
        os.ftruncate(fd, size)


@pytest.fixture
def disk(monkeypatch: pytest.MonkeyPatch) -> FailingOs:
    fake = FailingOs()
    monkeypatch.setattr(audit, "os", fake)
    return fake


def opened(path: Path, **kwargs: Any) -> audit.AuditTrail:
    trail = audit.AuditTrail(**kwargs)
    trail.write_to(path)
    return trail


def lines_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def verifies(path: Path) -> bool:
    return audit_chain.verify_lines(path.read_text().splitlines(keepends=True)).ok


def decision(action: str, n: int) -> dict[str, Any]:
    return {"action": action, "namespace": "ml", "deployment": "fraud", "message": f"decision {n}"}


# --- torn tails ---------------------------------------------------------------------------------------


def test_a_tail_torn_while_running_is_set_aside_before_the_next_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    trail = opened(path)
    trail.emit(decision("Deployed", 1))
    fragment = b'{"action":"RolledBack","audit":true,"cau\xc3'  # cut mid-character, too
    with path.open("ab") as out:
        out.write(fragment)
    with capture_logs() as logs:
        trail.emit(decision("RolloutComplete", 2))
    assert [r["seq"] for r in lines_of(path)] == [1, 2]
    assert verifies(path), "the chain continues from the last whole line"
    [aside] = [json.loads(line) for line in audit.torn_path(path).read_text().splitlines()]
    assert base64.b64decode(aside["base64"]) == fragment, "the torn bytes are kept exactly"
    assert aside["offset"] == len(path.read_bytes().splitlines(keepends=True)[0])
    assert any("torn last line set aside" in str(e.get("event")) for e in logs)


def test_a_whole_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    opened(path).emit(decision("Deployed", 1))
    whole = path.read_bytes()
    path.write_bytes(whole[:-1])  # the newline did not make it
    opened(path).emit(decision("MarkedStable", 2))
    assert [r["seq"] for r in lines_of(path)] == [1, 2]
    assert verifies(path)
    assert not audit.torn_path(path).exists()


def test_a_torn_line_an_older_operator_terminated_is_set_aside_at_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    opened(path).emit(decision("Deployed", 1))
    with path.open("a") as out:
        out.write('{"audit": true, "act\n')  # what the previous version left: torn, then a newline
    assert not verifies(path)
    opened(path).emit(decision("MarkedStable", 2))
    assert verifies(path)
    assert "act" in audit.torn_path(path).read_text()


# --- a sink that cannot be written ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        {"write_error": errno.ENOSPC},
        {"write_error": errno.ENOSPC, "partial": True},
        {"write_error": errno.EACCES},
        {"write_error": errno.EFBIG},
        {"fsync_error": errno.EIO},
    ],
)
def test_a_failed_write_leaves_the_file_whole_and_queues_in_order(
    tmp_path: Path, disk: FailingOs, failure: dict[str, Any]
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = opened(path)
    trail.emit(decision("Deployed", 1))
    before = path.read_bytes()
    for name, value in failure.items():
        setattr(disk, name, value)
    with capture_logs() as logs:
        queued = [trail.emit(decision("RuleStateChanged", n)) for n in (2, 3)]
    assert path.read_bytes() == before, "a partial line is cut off again"
    assert not trail.healthy
    assert trail.problem is not None
    assert os.strerror(failure.get("write_error") or failure["fsync_error"]) in trail.problem
    assert len(trail.pending) == 2
    assert all(q.get("hash") is None and q["ts"] for q in queued), "not sealed yet, but stamped"
    pending = [e for e in logs if e.get("audit_pending")]
    assert [e["record"]["message"] for e in pending] == ["decision 2", "decision 3"], "on stderr too"
    assert not trail.flush(), "still failing"

    disk.write_error = disk.fsync_error = None
    with capture_logs() as logs:
        trail.emit(decision("RolledBack", 4))  # the queue goes first
    records = lines_of(path)
    assert [r["message"] for r in records] == [f"decision {n}" for n in (1, 2, 3, 4)]
    assert [r["ts"] for r in records[1:3]] == [q["ts"] for q in queued], "the time of the decision"
    assert verifies(path)
    assert trail.healthy
    assert not trail.pending
    assert [e["message"] for e in logs if e.get("audit")] == ["decision 2", "decision 3", "decision 4"]


def test_a_fragment_that_cannot_be_cut_off_is_set_aside_before_the_next_write(
    tmp_path: Path, disk: FailingOs
) -> None:
    path = tmp_path / "audit.jsonl"
    trail = opened(path)
    trail.emit(decision("Deployed", 1))
    disk.write_error, disk.partial, disk.truncate_error = errno.ENOSPC, True, errno.EIO
    trail.emit(decision("RolledBack", 2))
    assert not path.read_bytes().endswith(b"\n"), "half a line left behind"
    disk.write_error = disk.truncate_error = None
    assert trail.flush()
    assert [r["message"] for r in lines_of(path)] == ["decision 1", "decision 2"]
    assert verifies(path)
    aside = json.loads(audit.torn_path(path).read_text())
    assert aside["text"].startswith('{"action":"RolledBack"'), "our own fragment, kept aside"


def test_a_standby_never_writes_what_it_queued(tmp_path: Path, disk: FailingOs) -> None:
    path = tmp_path / "audit.jsonl"
    trail = opened(path)
    disk.write_error = errno.ENOSPC
    trail.emit(decision("Deployed", 1))
    disk.write_error = None
    leading = False
    trail.writable = lambda: leading
    assert not trail.flush()
    assert path.read_bytes() == b""
    leading = True
    assert trail.flush()
    assert [r["message"] for r in lines_of(path)] == ["decision 1"]


# --- recovery --------------------------------------------------------------------------------------------


def history_of_three() -> ModelDeploymentStatus:
    status = append(ModelDeploymentStatus(), KEY, at=NOW)
    status = mark(status, 1, KEY)
    status = append(status, KEY, at=NOW + timedelta(minutes=1))
    return append(
        status, KEY, version="m-1", cause=RevisionCause.MANUAL_ROLLBACK, at=NOW + timedelta(minutes=2)
    )


def test_recovery_writes_what_the_file_lacks_once_per_opening(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    os.utime(path, (NOW.timestamp() - 60, NOW.timestamp() - 60))  # the file predates the history
    status = history_of_three()
    trail = opened(path)
    assert trail.recover("ml", "fraud", status.history, NOW + timedelta(hours=1)) == 4
    records = lines_of(path)
    assert [(r["revision"], r["action"]) for r in records] == [
        (1, "Deployed"),
        (1, "MarkedStable"),
        (2, "Deployed"),
        (3, "RolledBack"),
    ]
    assert all(r["recovered"] is True for r in records)
    assert records[3]["ts"] == (NOW + timedelta(minutes=2)).isoformat()
    assert verifies(path)
    assert trail.recover("ml", "fraud", status.history, NOW) == 0, "once per deployment per opening"
    trail.reopen()  # a takeover: reconciled again, and nothing is missing now
    assert trail.recover("ml", "fraud", status.history, NOW) == 0
    assert len(lines_of(path)) == 4


def test_recovery_without_a_file_or_for_records_still_queued_writes_nothing(
    tmp_path: Path, disk: FailingOs
) -> None:
    status = history_of_three()
    assert audit.AuditTrail().recover("ml", "fraud", status.history, NOW) == 0
    path = tmp_path / "audit.jsonl"
    path.touch()
    os.utime(path, (NOW.timestamp() - 60, NOW.timestamp() - 60))
    trail = opened(path)
    disk.write_error = errno.ENOSPC
    assert trail.recover("ml", "fraud", status.history, NOW) == 4, "queued like any record"
    trail.reopen()
    assert trail.recover("ml", "fraud", status.history, NOW) == 0, "the queued ones count as known"
    disk.write_error = None
    assert trail.flush()
    assert len(lines_of(path)) == 4


def test_an_overflowing_queue_is_said_loudly_and_recovered_from_the_status(
    tmp_path: Path, disk: FailingOs
) -> None:
    path = tmp_path / "audit.jsonl"
    path.touch()
    os.utime(path, (NOW.timestamp() - 60, NOW.timestamp() - 60))
    status = history_of_three()
    trail = opened(path, pending_limit=2)
    disk.write_error = errno.ENOSPC
    with capture_logs() as logs:
        for entry in reversed(status.history):
            fields = {
                "action": "Deployed",
                "namespace": "ml",
                "deployment": "fraud",
                "revision": entry.revision,
            }
            trail.emit({**fields, "entry": entry.to_wire()})
    assert len(trail.pending) == 2
    [dropped] = [e for e in logs if e.get("audit_overflow")]
    assert dropped["log_level"] == "critical"
    assert dropped["record"]["revision"] == 3, "its only copy is this log line"
    disk.write_error = None
    assert trail.flush()
    assert trail.recover("ml", "fraud", status.history, NOW) == 2, "revision 3 and the mark, from the status"
    assert sorted((r["revision"], r["action"], bool(r["recovered"])) for r in lines_of(path)) == [
        (1, "Deployed", False),
        (1, "MarkedStable", True),
        (2, "Deployed", False),
        (3, "RolledBack", True),
    ]


def test_a_queued_record_another_writer_recovered_meanwhile_is_not_written_twice(
    tmp_path: Path, disk: FailingOs
) -> None:
    path = tmp_path / "audit.jsonl"
    status = history_of_three()
    entry = status.history[0]
    trail = opened(path)
    disk.write_error = errno.ENOSPC
    trail.emit({"action": "RolledBack", "namespace": "ml", "deployment": "fraud", "entry": entry.to_wire()})
    disk.write_error = None
    other = opened(path)  # the next leader recovered it from the status
    other.emit({"action": "RolledBack", "namespace": "ml", "deployment": "fraud", "entry": entry.to_wire()})
    trail.reopen()
    assert trail.flush()
    assert len(lines_of(path)) == 1
