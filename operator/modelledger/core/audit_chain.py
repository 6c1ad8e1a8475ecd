"""The audit log's own hash chain: pure sealing, signing and verification of JSON Lines records, no I/O.

Every record carries `prev_hash` (the previous record's `hash`) and `hash` = sha256 over `prev_hash`
and the canonical JSON of the record without `hash`, `key_id` and `signature`. The chain runs across
every deployment the operator handles, because the file is one stream: removing, reordering or editing
any line breaks the link of the line after it (or its own hash). The history's canonicalisation is
reused so both chains mean the same thing by "the same document".

Anyone can recompute a hash chain, so since `modelledger.audit/v2` every record is also signed:
`signature` is Ed25519 over `trust.audit_record_message(hash)` by the key `key_id`. A `v1` record (no
signature) still verifies as a chain but counts as unsigned; once a file holds a signed record, an
unsigned one after it was not written by the operator.

`recovered` (true) and `recovered_at` mark a record written after the fact from the status history,
because the process stopped (or the file could not be written) between the status write and the
record (`core/audit_recovery.py`); its `ts` is the decision's own time. Records written before these
keys existed lack them, which reads as null: the hash covers the keys a record has.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelledger.api import HistoryEntry
from modelledger.core.history import GENESIS, canonical_json, hashed_fields
from modelledger.core.signing import Check, Keyring, SigningKey
from modelledger.core.trust import audit_record_message

SCHEMA = "modelledger.audit/v2"
SCHEMA_V1 = "modelledger.audit/v1"  # unsigned records written before signing; still verified as a chain
# Not hashed: the hash itself and the signature over it.
UNHASHED = frozenset({"hash", "key_id", "signature"})
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
    "recovered",
    "recovered_at",
    "prev_hash",
    "hash",
    "key_id",
    "signature",
)


def record_hash(record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key not in UNHASHED}
    prev = str(record.get("prev_hash") or "")
    return "sha256:" + hashlib.sha256(prev.encode() + canonical_json(body)).hexdigest()


def seal(
    fields: Mapping[str, Any], *, prev_hash: str, seq: int, key: SigningKey | None = None
) -> dict[str, Any]:
    """The record with every schema key, linked to `prev_hash`, hashed and, given a key, signed."""
    record: dict[str, Any] = {name: None for name in FIELDS}
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise ValueError(f"not in the audit schema: {', '.join(sorted(unknown))}")
    if reserved := set(fields) & UNHASHED:
        raise ValueError(f"set by sealing, not by the caller: {', '.join(sorted(reserved))}")
    record.update(fields)
    record.update(audit=True, schema=SCHEMA, seq=seq, prev_hash=prev_hash)
    record["hash"] = record_hash(record)
    if key is not None:
        record["key_id"] = key.key_id
        record["signature"] = key.sign(audit_record_message(record["hash"]))
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
    """What verification found: how many records, how many of them signed, and the first bad line.

    `checked` is False when no keyring was given: signatures were counted, not verified.
    """

    records: int
    tip: ChainTip
    broken: LineBreak | None
    signed: int = 0
    unsigned: int = 0
    checked: bool = True

    @property
    def ok(self) -> bool:
        return self.broken is None

    @property
    def all_signed(self) -> bool:
        """Every record signed and (with a keyring) verified: only then is the log "verified"."""
        return self.ok and self.checked and self.unsigned == 0


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


def verify_lines(lines: Iterable[str], anchor: str = GENESIS, keyring: Keyring | None = None) -> ChainResult:
    """Recompute the chain and check every signature; the first bad line is named.

    A line is bad when it was altered, removed or reordered, when its signature does not verify or
    names a key the keyring does not hold, or when it is unsigned after a signed line. `anchor` is the
    hash the first line must link to: empty for a log that starts the chain, the previous file's last
    hash for a rotated one. Without a keyring, signatures are counted but not checked (`checked`).
    """
    parsed = parse_lines(lines)
    line_of_hash = {str(r.get("hash")): n for n, r, _ in parsed if r is not None}
    tip, previous_line, count = ChainTip(anchor, 0), 0, 0
    signed = unsigned = 0
    checked = keyring is not None

    def broken(line: LineBreak) -> ChainResult:
        return ChainResult(count, tip, line, signed, unsigned, checked)

    for number, record, _text in parsed:
        if record is None:
            return broken(LineBreak(number, "not a JSON object (torn write or edited)"))
        seq = record.get("seq") if isinstance(record.get("seq"), int) else None
        name = subject(record)
        if record.get("hash") != record_hash(record):
            return broken(LineBreak(number, "content does not match its hash (line altered)", seq, name))
        prev_hash = str(record.get("prev_hash"))
        if prev_hash != tip.hash:
            problem = _link_problem(prev_hash, number, previous_line, line_of_hash)
            return broken(LineBreak(number, problem, seq, name))
        if seq is not None and tip.seq and seq != tip.seq + 1:
            problem = f"seq {seq} follows seq {tip.seq} (a line was removed)"
            return broken(LineBreak(number, problem, seq, name))
        if bad_signature := _signature_problem(record, keyring, seen_signed=signed > 0):
            return broken(LineBreak(number, bad_signature, seq, name))
        if record.get("signature"):
            signed += 1
        else:
            unsigned += 1
        tip, previous_line, count = ChainTip(str(record["hash"]), seq or tip.seq + 1), number, count + 1
    return ChainResult(count, tip, None, signed, unsigned, checked)


def _signature_problem(
    record: Mapping[str, Any], keyring: Keyring | None, *, seen_signed: bool
) -> str | None:
    signature, key_id = record.get("signature"), record.get("key_id")
    if not signature:
        if key_id:
            return "has a key id but no signature (signature removed)"
        if seen_signed:
            return "unsigned record after a signed one (not written by the operator)"
        return None
    if not isinstance(signature, str) or not isinstance(key_id, str):
        return "signature or key id is not a string"
    if keyring is None:
        return None
    result = keyring.check(key_id, audit_record_message(str(record["hash"])), signature)
    return None if result is Check.VALID else f"{result} (key {key_id})"


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
