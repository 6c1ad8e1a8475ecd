"""The audit log's own hash chain: pure sealing and verification of JSON Lines records, no I/O.

Every record carries `prev_hash` (the previous record's `hash`) and `hash` = sha256 over `prev_hash`
and the canonical JSON of the record without `hash`. The chain runs across every deployment the
operator handles, because the file is one stream: removing, reordering or editing any line breaks the
link of the line after it (or its own hash). The history's canonicalisation is reused so both chains
mean the same thing by "the same document".
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelledger.api import HistoryEntry
from modelledger.core.history import GENESIS, canonical_json, hashed_fields

SCHEMA = "modelledger.audit/v1"
# The fixed schema: every record has exactly these keys (null where they do not apply).
FIELDS = (
    "audit",
    "schema",
    "seq",
    "ts",
    "actor",
    "action",
    "kind",
    "namespace",
    "deployment",
    "object",
    "revision",
    "version",
    "cause",
    "rule",
    "reason",
    "message",
    "digests",
    "evidence",
    "entry",
    "prev_hash",
    "hash",
)


def record_hash(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "hash"}
    prev = str(record.get("prev_hash") or "")
    return "sha256:" + hashlib.sha256(prev.encode() + canonical_json(body)).hexdigest()


def seal(fields: Mapping[str, Any], *, prev_hash: str, seq: int) -> dict[str, Any]:
    """The record with every schema key, linked to `prev_hash` and hashed."""
    record: dict[str, Any] = {key: None for key in FIELDS}
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"not in the audit schema: {', '.join(sorted(unknown))}")
    record.update(fields)
    record.update(audit=True, schema=SCHEMA, seq=seq, prev_hash=prev_hash)
    record["hash"] = record_hash(record)
    return record


def to_line(record: Mapping[str, Any]) -> str:
    """One line of the JSONL file (the canonical form, so the line is what was hashed)."""
    return canonical_json(dict(record)).decode() + "\n"


@dataclass(frozen=True)
class ChainTip:
    """Where the chain continues: the last good record's hash and sequence number."""

    hash: str = GENESIS
    seq: int = 0


def tip_of(last_line: str | None) -> ChainTip:
    """The tip a restarted writer continues from, given the file's last complete line."""
    if not last_line or not last_line.strip():
        return ChainTip()
    record = json.loads(last_line)
    return ChainTip(str(record["hash"]), int(record.get("seq") or 0))


@dataclass(frozen=True)
class LineBreak:
    """The first line where the chain does not hold, with what is wrong and whose record it was."""

    line: int
    problem: str
    seq: int | None = None
    subject: str = ""

    def describe(self) -> str:
        where = f"line {self.line}" + (f" (seq {self.seq}" if self.seq is not None else "")
        where += (f", {self.subject})" if self.subject else ")") if self.seq is not None else ""
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class ChainResult:
    records: int
    tip: ChainTip
    broken: LineBreak | None

    @property
    def ok(self) -> bool:
        return self.broken is None


def subject(record: Mapping[str, Any]) -> str:
    """`ns/deployment revision 3 Deployed`: how a record is named to a person."""
    name = record.get("deployment") or record.get("object") or "?"
    text = f"{record.get('namespace', '?')}/{name}"
    if record.get("revision") is not None:
        text += f" revision {record['revision']}"
    return f"{text} {record.get('action', '')}".strip()


def parse_lines(lines: Iterable[str]) -> list[tuple[int, dict[str, Any] | None, str]]:
    """(line number, record or None when not JSON, raw text) for each non-empty line."""
    parsed: list[tuple[int, dict[str, Any] | None, str]] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            parsed.append((number, None, text))
            continue
        parsed.append((number, value if isinstance(value, dict) else None, text))
    return parsed


def verify_lines(lines: Iterable[str], anchor: str = GENESIS) -> ChainResult:
    """Recompute the chain; the first line altered, removed or reordered is named.

    `anchor` is the hash the first line must link to: empty for a log that starts the chain, the
    previous file's last hash for a rotated one.
    """
    parsed = parse_lines(lines)
    line_of_hash = {str(r.get("hash")): n for n, r, _ in parsed if r is not None}
    tip, previous_line, count = ChainTip(anchor, 0), 0, 0
    for number, record, _text in parsed:
        if record is None:
            return ChainResult(count, tip, LineBreak(number, "not a JSON object (torn write or edited)"))
        seq = record.get("seq") if isinstance(record.get("seq"), int) else None
        name = subject(record)
        if record.get("hash") != record_hash(record):
            problem = "content does not match its hash (line altered)"
            return ChainResult(count, tip, LineBreak(number, problem, seq, name))
        prev_hash = str(record.get("prev_hash"))
        if prev_hash != tip.hash:
            problem = _link_problem(prev_hash, number, previous_line, line_of_hash)
            return ChainResult(count, tip, LineBreak(number, problem, seq, name))
        if seq is not None and tip.seq and seq != tip.seq + 1:
            problem = f"seq {seq} follows seq {tip.seq} (a line was removed)"
            return ChainResult(count, tip, LineBreak(number, problem, seq, name))
        tip, previous_line, count = ChainTip(str(record["hash"]), seq or tip.seq + 1), number, count + 1
    return ChainResult(count, tip, None)


def _link_problem(prev_hash: str, number: int, previous_line: int, line_of_hash: Mapping[str, int]) -> str:
    if line_of_hash.get(prev_hash, 0) > number:
        return f"links to line {line_of_hash[prev_hash]}, which comes after it (lines reordered)"
    if not previous_line:
        return "does not link to the start of the chain (lines before it removed, or the wrong anchor)"
    if prev_hash == GENESIS:
        return "starts a new chain in the middle of the log (lines removed or a second writer)"
    return (
        f"prev_hash does not match line {previous_line}'s hash: a line between them was removed, "
        f"or line {previous_line} was altered and its hash recomputed"
    )


# --- the status history against the log: a rewritten history with recomputed hashes ----------------


@dataclass(frozen=True)
class HistoryMismatch:
    revision: int
    line: int
    problem: str


def deployment_records(
    namespace: str, deployment: str, records: Sequence[tuple[int, Mapping[str, Any]]]
) -> list[tuple[int, Mapping[str, Any]]]:
    """The records of one deployment, from its latest incarnation (a recreated object restarts at 1)."""
    mine = [
        (number, record)
        for number, record in records
        if record.get("namespace") == namespace and record.get("deployment") == deployment
    ]
    starts = [i for i, (_, record) in enumerate(mine) if record.get("revision") == 1 and record.get("entry")]
    return mine[starts[-1] :] if starts else mine


def logged_entries(
    namespace: str, deployment: str, records: Sequence[tuple[int, Mapping[str, Any]]]
) -> dict[int, tuple[int, Mapping[str, Any]]]:
    """revision → (line, the history entry as the log recorded it when the revision was created)."""
    return {
        record["revision"]: (number, record["entry"])
        for number, record in deployment_records(namespace, deployment, records)
        if isinstance(record.get("entry"), Mapping) and isinstance(record.get("revision"), int)
    }


def cross_check(
    namespace: str,
    deployment: str,
    entries: Sequence[HistoryEntry],
    records: Sequence[tuple[int, Mapping[str, Any]]],
) -> HistoryMismatch | None:
    """The oldest history entry that differs from the entry the audit log recorded for its revision.

    The status history verifies itself, but a rewrite of its whole tail with recomputed hashes only
    shows against an anchor outside the object: the append-only log, which recorded every entry.
    """
    logged = logged_entries(namespace, deployment, records)
    for entry in sorted(entries, key=lambda e: e.revision):
        if entry.revision not in logged:
            continue
        number, raw = logged[entry.revision]
        try:
            recorded = HistoryEntry.model_validate(raw)
        except ValueError:
            return HistoryMismatch(
                entry.revision, number, f"the audit log's entry at line {number} is unreadable"
            )
        if recorded.hash != entry.hash or hashed_fields(recorded) != hashed_fields(entry):
            return HistoryMismatch(
                entry.revision, number, f"differs from the entry the audit log recorded at line {number}"
            )
    return None
