"""No audit record lost, the pure parts: matching history entries and stable marks to the file's
records, the recovered records, the torn tail's verdict and the bounded queue (core/audit_recovery.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from modelledger.api import ModelDeploymentStatus, RevisionCause, StableMark
from modelledger.core import audit_chain, audit_recovery, history
from modelledger.core.audit_recovery import PendingQueue, RecordIndex, Tail, classify_tail, index_lines
from modelledger.core.signing import SigningKey
from tests.unit.signed_histories import T0, append, mark

KEY = SigningKey.generate()
RECOVERED_AT = T0 + timedelta(days=1)


def three_revisions() -> ModelDeploymentStatus:
    """Deploy m-1 (marked stable), deploy m-2, roll back to m-1 by a rule: signed, as the operator does."""
    status = append(ModelDeploymentStatus(), KEY)
    status = mark(status, 1, KEY)
    status = append(status, KEY)
    return append(
        status, KEY, version="m-1", cause=RevisionCause.AUTOMATIC_ROLLBACK, actor="modelledger/rule:e"
    )


def logged(
    status: ModelDeploymentStatus,
    *,
    skip: frozenset[tuple[int, str]] = frozenset(),
    deployment: str = "fraud",
) -> list[str]:
    """The file as the operator writes it for `status`, minus the records in `skip` ((revision, action))."""
    records: list[dict[str, Any]] = []
    for entry in sorted(status.history, key=lambda e: e.revision):
        made = audit_recovery.recovered_entry("ml", deployment, entry, entry.at)
        records.append({**made, "ts": (entry.at + timedelta(seconds=1)).isoformat(), "recovered": None})
        if entry.stable_mark is not None:
            marked = audit_recovery.recovered_mark("ml", deployment, entry, entry.at)
            records.append({**marked, "ts": (entry.stable_mark.at + timedelta(seconds=1)).isoformat()})
    records.sort(key=lambda r: str(r["ts"]))
    kept = [r for r in records if (r["revision"], r["action"]) not in skip]
    lines, tip = [], audit_chain.ChainTip()
    for fields in kept:
        fields = {k: v for k, v in fields.items() if k not in ("recovered", "recovered_at")}
        record = audit_chain.seal(fields, prev_hash=tip.hash, seq=tip.seq + 1)
        tip = audit_chain.ChainTip(record["hash"], record["seq"])
        lines.append(audit_chain.to_line(record))
    return lines


def test_a_complete_file_lacks_nothing() -> None:
    status = three_revisions()
    index = index_lines(logged(status))
    assert audit_recovery.missing("ml", "fraud", status.history, [index], recovered_at=RECOVERED_AT) == []


def test_the_record_lost_between_status_write_and_append_is_recovered_with_its_original_time() -> None:
    status = three_revisions()
    index = index_lines(logged(status, skip=frozenset({(3, "RolledBack")})))
    [found] = audit_recovery.missing("ml", "fraud", status.history, [index], recovered_at=RECOVERED_AT)
    entry = history.current(status.history, 3)
    assert entry is not None
    assert (found["action"], found["revision"], found["cause"]) == ("RolledBack", 3, "AutomaticRollback")
    assert found["ts"] == entry.at.isoformat(), "dated when the revision was decided, not when recovered"
    assert (found["recovered"], found["recovered_at"]) == (True, RECOVERED_AT.isoformat())
    assert found["entry"] == entry.to_wire(), "the signed entry verbatim"
    assert found["actor"] == "modelledger/rule:e"
    assert entry.pipeline is not None
    assert found["digests"] == entry.pipeline.to_wire()
    # Sealed like any other record, it chains and cross-checks with the status.
    record = audit_chain.seal(found, prev_hash="sha256:x", seq=9)
    assert set(record) == set(audit_chain.FIELDS)
    assert audit_chain.cross_check("ml", "fraud", status.history, [(1, record)]) is None


def test_a_lost_stable_mark_is_recovered_as_marked_stable_at_the_marks_time() -> None:
    status = three_revisions()
    index = index_lines(logged(status, skip=frozenset({(1, "MarkedStable")})))
    [found] = audit_recovery.missing("ml", "fraud", status.history, [index], recovered_at=RECOVERED_AT)
    entry = history.current(status.history, 1)
    assert entry is not None
    assert entry.stable_mark is not None
    assert (found["action"], found["revision"], found.get("entry")) == ("MarkedStable", 1, None)
    assert found["ts"] == entry.stable_mark.at.isoformat()
    assert found["actor"] == "modelledger/bake"


def test_several_missing_records_come_oldest_first() -> None:
    status = three_revisions()
    index = index_lines(
        logged(status, skip=frozenset({(2, "Deployed"), (3, "RolledBack"), (1, "MarkedStable")}))
    )
    found = audit_recovery.missing("ml", "fraud", status.history, [index], recovered_at=RECOVERED_AT)
    assert [(f["revision"], f["action"]) for f in found] == [
        (1, "MarkedStable"),
        (2, "Deployed"),
        (3, "RolledBack"),
    ]


def test_records_of_another_deployment_or_an_earlier_life_do_not_match() -> None:
    status = three_revisions()
    elsewhere = index_lines(logged(status, deployment="other"))
    assert (
        len(audit_recovery.missing("ml", "fraud", status.history, [elsewhere], recovered_at=RECOVERED_AT))
        == 4
    )
    # The same name deleted and created again: revision 1 again, a day later; the old records hold its
    # revision numbers and a MarkedStable for revision 1, but not these entries or this mark.
    earlier = logged(status)
    later = ModelDeploymentStatus()
    later = append(later, KEY, at=T0 + timedelta(days=1))
    entries = history.mark_stable(
        later.history,
        1,
        StableMark(at=T0 + timedelta(days=1, minutes=5), actor="modelledger/bake", actor_verified=True),
    )
    found = audit_recovery.missing("ml", "fraud", entries, [index_lines(earlier)], recovered_at=RECOVERED_AT)
    assert [(f["revision"], f["action"]) for f in found] == [(1, "Deployed"), (1, "MarkedStable")]


def test_entries_older_than_the_file_belong_to_an_earlier_file() -> None:
    status = three_revisions()
    index = RecordIndex(horizon=T0 + timedelta(hours=2))  # a rotated file that starts later
    assert audit_recovery.missing("ml", "fraud", status.history, [index], recovered_at=RECOVERED_AT) == []
    near = RecordIndex(horizon=T0 + timedelta(minutes=3, seconds=5))  # within the slack of revision 3
    found = audit_recovery.missing("ml", "fraud", status.history, [near], recovered_at=RECOVERED_AT)
    assert {f["revision"] for f in found} == {1, 2, 3}, (
        "passes overlap: minutes before the first record count"
    )


def test_the_queue_counts_as_known_and_adoption_marks_are_not_decisions() -> None:
    status = three_revisions()
    file = index_lines(logged(status, skip=frozenset({(3, "RolledBack")})))
    queued = RecordIndex()
    entry = history.current(status.history, 3)
    assert entry is not None
    queued.add(
        audit_recovery.recovered_entry("ml", "fraud", entry, RECOVERED_AT) | {"ts": entry.at.isoformat()}
    )
    assert (
        audit_recovery.missing("ml", "fraud", status.history, [file, queued], recovered_at=RECOVERED_AT) == []
    )
    adopted = [
        e.model_copy(update={"stable": True, "stable_mark": StableMark(at=e.at, actor="unverified")})
        for e in status.history
    ]
    found = audit_recovery.missing(
        "ml", "fraud", adopted, [index_lines(logged(status))], recovered_at=RECOVERED_AT
    )
    assert found == [], (
        "a mark made when an unsigned history was adopted is HistoryAdopted's, not a MarkedStable"
    )


def test_the_index_keeps_keys_not_records() -> None:
    status = three_revisions()
    lines = logged(status)
    index = index_lines([*lines, "not json\n", "[1]\n", "\n"])
    assert index.records == len(lines)
    assert len(index.entries) == 3
    assert len(index.marks) == 1
    assert all(isinstance(key, int) and key < 2**64 for key in index.entries)
    assert index.horizon is not None
    assert index.horizon == T0 + timedelta(minutes=1, seconds=1)


# --- the torn tail ------------------------------------------------------------------------------------


def sealed_line() -> str:
    return audit_chain.to_line(
        audit_chain.seal({"action": "Deployed", "namespace": "ml"}, prev_hash="", seq=1)
    )


@pytest.mark.parametrize(
    ("last", "verdict"),
    [
        (b"", Tail.INTACT),
        (b"\n", Tail.INTACT),
        (sealed_line().encode(), Tail.INTACT),
        (sealed_line().encode()[:-1], Tail.UNTERMINATED),
        (sealed_line().encode()[:40], Tail.TORN),
        (b'{"audit": true, "act\n', Tail.TORN),  # torn, then terminated by an older operator
        (b"[1,2]", Tail.TORN),
        (b"   ", Tail.TORN),
        (json.dumps({"hash": "sha256:forged", "seq": 2}).encode(), Tail.TORN),
    ],
)
def test_the_last_line_is_kept_terminated_or_set_aside(last: bytes, verdict: Tail) -> None:
    assert classify_tail(last) is verdict


# --- the queue ----------------------------------------------------------------------------------------


def test_the_queue_is_bounded_in_order_and_says_when_it_overflowed() -> None:
    queue: PendingQueue[int] = PendingQueue(3)
    assert [queue.push(i) for i in range(5)] == [True, True, True, False, False]
    assert (len(queue), queue.overflowed) == (3, 2)
    assert queue.peek() == 0
    assert [queue.pop() for _ in range(3)] == [0, 1, 2], "first in, first written"
    assert not queue
    with pytest.raises(ValueError, match="at least one"):
        PendingQueue(0)


def test_revision_causes_map_to_the_actions_the_operator_records() -> None:
    assert {cause: audit_recovery.ACTION_OF_CAUSE[cause] for cause in RevisionCause} == {
        RevisionCause.DEPLOY: "Deployed",
        RevisionCause.AUTOMATIC_ROLLBACK: "RolledBack",
        RevisionCause.MANUAL_ROLLBACK: "RolledBack",
        RevisionCause.REVOCATION: "VersionRevoked",
    }
