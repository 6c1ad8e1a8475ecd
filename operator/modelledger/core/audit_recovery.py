"""No audit record lost: what the file holds, what the status history says was decided, and the
records to write for the difference. Pure: no I/O (adapters/audit.py reads and writes the file).

A decision is written to the ModelDeployment's status first and to the audit log right after; a
process killed in between leaves a history entry (or a stable mark) without its record. On start and
on taking the lease over, the writer indexes the file once (`RecordIndex`, a few dozen bytes per
record whatever its size) and, on each deployment's first pass, appends a record marked `recovered`
for every entry and stable mark the file lacks, with the decision's own time as `ts`.

Matching. An entry's record is the record carrying that entry (`entry`), found by namespace,
deployment and the entry's `hash`: the hash chains the entry to every one before it and covers its
revision, cause, actor and time, so a deployment deleted and created again under the same name never
matches an entry of its earlier life. A stable mark's record is the `MarkedStable` record of the
namespace, deployment and revision written at or after the entry's time (an earlier life's mark was
recorded before this entry existed). Entries and marks older than the file's first record (or, for
an empty file, than the file itself), by more than `HORIZON_SLACK`, belong to an earlier file
(rotation) or predate `--audit-log`: they are not recovered.

Also here: what to do with the file's last line when it is torn (`classify_tail`), and the bounded
queue of records that wait for a sink that cannot be written (`PendingQueue`).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Generic, TypeVar

from modelledger.api import HistoryEntry, RevisionCause
from modelledger.core.actors import UNVERIFIED
from modelledger.core.audit_chain import record_hash

# The action of the record that carries a new revision's entry, by the revision's cause.
ACTION_OF_CAUSE = {
    RevisionCause.DEPLOY: "Deployed",
    RevisionCause.AUTOMATIC_ROLLBACK: "RolledBack",
    RevisionCause.MANUAL_ROLLBACK: "RolledBack",
    RevisionCause.REVOCATION: "VersionRevoked",
}
MARKED_STABLE = "MarkedStable"
# Passes run side by side: a decision taken just before the file's first record was written may be
# missing from it. Entries this much older than the first record are still looked for.
HORIZON_SLACK = timedelta(minutes=10)


def _key(*parts: object) -> int:
    """8 bytes of BLAKE2b over the parts: the index keeps these, not the records."""
    text = "\x1f".join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


@dataclass
class RecordIndex:
    """What the file holds, as much as recovery needs: one 8-byte key per record that carries a history
    entry, the newest time of each (deployment, revision) `MarkedStable` record, and the time of the
    file's first record. Memory grows with the number of revisions and markings in the file (about 100
    bytes each in CPython), not with the records' size or the rule state changes."""

    entries: set[int] = field(default_factory=set)
    marks: dict[int, datetime] = field(default_factory=dict)
    horizon: datetime | None = None  # nothing older than this is expected in the file
    records: int = 0

    def add(self, record: Mapping[str, Any]) -> None:
        """Index one record (from the file, or just written)."""
        self.records += 1
        at = _time(record.get("ts"))
        if self.horizon is None and at is not None:
            self.horizon = at
        namespace, deployment = record.get("namespace"), record.get("deployment")
        if not isinstance(namespace, str) or not isinstance(deployment, str):
            return  # a ModelVersion's own decision
        entry = record.get("entry")
        if isinstance(entry, Mapping) and entry.get("hash"):
            self.entries.add(_key(namespace, deployment, entry["hash"]))
        revision = record.get("revision")
        if record.get("action") == MARKED_STABLE and isinstance(revision, int) and at is not None:
            key = _key(namespace, deployment, revision)
            held = self.marks.get(key)
            if held is None or _comparable(held, at) < at:
                self.marks[key] = at

    def has_entry(self, namespace: str, deployment: str, entry_hash: str) -> bool:
        return _key(namespace, deployment, entry_hash) in self.entries

    def has_mark(self, namespace: str, deployment: str, revision: int, since: datetime) -> bool:
        at = self.marks.get(_key(namespace, deployment, revision))
        return at is not None and _comparable(at, since) >= since


def _comparable(value: datetime, like: datetime) -> datetime:
    """Compare naive and aware times without raising: a naive one is read in `like`'s zone."""
    if (value.tzinfo is None) == (like.tzinfo is None):
        return value
    return value.replace(tzinfo=like.tzinfo) if value.tzinfo is None else value.replace(tzinfo=None)


def index_lines(lines: Iterable[str | bytes], index: RecordIndex | None = None) -> RecordIndex:
    """Index the file's lines (the ones that are JSON objects; verification judges the rest)."""
    index = index if index is not None else RecordIndex()
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            index.add(record)
    return index


def _before_horizon(at: datetime, horizon: datetime | None) -> bool:
    return horizon is not None and at < _comparable(horizon, at) - HORIZON_SLACK


def missing(
    namespace: str,
    deployment: str,
    entries: Sequence[HistoryEntry],
    known: Sequence[RecordIndex],
    *,
    recovered_at: datetime,
) -> list[dict[str, Any]]:
    """The fields of a recovered record for every entry and stable mark of the history that no index in
    `known` holds (the file's, and the records still queued), oldest first. The first index's horizon
    applies."""
    horizon = known[0].horizon if known else None
    found: list[tuple[datetime, int, dict[str, Any]]] = []
    for entry in entries:
        logged = any(index.has_entry(namespace, deployment, entry.hash) for index in known)
        if entry.hash and not logged and not _before_horizon(entry.at, horizon):
            found.append((entry.at, 0, recovered_entry(namespace, deployment, entry, recovered_at)))
        mark = entry.stable_mark
        if not entry.stable or mark is None or _before_horizon(mark.at, horizon):
            continue
        if mark.actor == UNVERIFIED and mark.request_name is None:
            continue  # marked when an unsigned history was adopted: recorded as HistoryAdopted
        if not any(index.has_mark(namespace, deployment, entry.revision, entry.at) for index in known):
            found.append((mark.at, 1, recovered_mark(namespace, deployment, entry, recovered_at)))
    found.sort(key=lambda item: (item[0], item[2]["revision"], item[1]))
    return [fields for _at, _order, fields in found]


def recovered_entry(
    namespace: str, deployment: str, entry: HistoryEntry, recovered_at: datetime
) -> dict[str, Any]:
    """The record a revision's decision would have had, from its entry (carried verbatim, signature
    and all), dated when the revision was decided."""
    return {
        "ts": entry.at.isoformat(),
        "actor": entry.actor,
        "action": ACTION_OF_CAUSE.get(entry.cause, entry.cause.value),
        "kind": "ModelDeployment",
        "namespace": namespace,
        "deployment": deployment,
        "object": deployment,
        "revision": entry.revision,
        "version": entry.version,
        "cause": entry.cause.value,
        "rule": entry.rule,
        "reason": entry.reason,
        "message": (
            f"revision {entry.revision} ({entry.version}, {entry.cause.value} by {entry.actor}): recovered "
            "from status.history; its record was not written when the revision was decided"
        ),
        "digests": entry.pipeline.to_wire() if entry.pipeline else None,
        "evidence": entry.evidence.to_wire() if entry.evidence else None,
        "entry": entry.to_wire(),
        "recovered": True,
        "recovered_at": recovered_at.isoformat(),
    }


def recovered_mark(
    namespace: str, deployment: str, entry: HistoryEntry, recovered_at: datetime
) -> dict[str, Any]:
    """The `MarkedStable` record of the entry's (signed) stable mark, dated when it was marked."""
    mark = entry.stable_mark
    assert mark is not None
    approvers = f" (approved by {', '.join(mark.approvers)})" if mark.approvers else ""
    return {
        "ts": mark.at.isoformat(),
        "actor": mark.actor,
        "action": MARKED_STABLE,
        "kind": "ModelDeployment",
        "namespace": namespace,
        "deployment": deployment,
        "object": deployment,
        "revision": entry.revision,
        "version": entry.version,
        "message": (
            f"revision {entry.revision} ({entry.version}) marked stable by {mark.actor}{approvers}: "
            "recovered from status.history; its record was not written when it was marked"
        ),
        "recovered": True,
        "recovered_at": recovered_at.isoformat(),
    }


# --- the file's last line -----------------------------------------------------------------------------


class Tail(StrEnum):
    """What the file's last line is, and so what must happen before the next record is appended."""

    INTACT = "intact"  # empty file, or a newline-terminated JSON object (or blank line): append as is
    UNTERMINATED = "unterminated"  # a whole record that lacks only its newline: terminate it, keep it
    TORN = "torn"  # a fragment (or any line that is not a JSON object): set it aside, cut it off


def classify_tail(last: bytes) -> Tail:
    """`last` is the file's content after its second-to-last newline (its last line, with the newline
    if it has one)."""
    terminated = last.endswith(b"\n")
    body = last[:-1] if terminated else last
    if not body.strip():
        return Tail.INTACT if terminated or not body else Tail.TORN
    try:
        record = json.loads(body)
    except ValueError:
        return Tail.TORN
    if not isinstance(record, dict):
        return Tail.TORN
    if terminated:
        return Tail.INTACT
    # Whole but unterminated: keep it only if it is a record as written (its hash holds).
    return Tail.UNTERMINATED if record.get("hash") == record_hash(record) else Tail.TORN


# --- records waiting for the sink --------------------------------------------------------------------

T = TypeVar("T")


class PendingQueue(Generic[T]):
    """Records that could not be written yet, in decision order, at most `limit` of them. A record
    refused when full is the caller's to report (it is already on stderr); `overflowed` says so, so
    the writer can recover from the status what the queue could not hold."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the pending queue holds at least one record")
        self.limit = limit
        self._items: deque[T] = deque()
        self.overflowed = 0

    def push(self, item: T) -> bool:
        if len(self._items) >= self.limit:
            self.overflowed += 1
            return False
        self._items.append(item)
        return True

    def peek(self) -> T:
        return self._items[0]

    def pop(self) -> T:
        return self._items.popleft()

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)
