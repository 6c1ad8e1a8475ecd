"""The revision history: a hash chain of what served, newest first, bounded but never losing what matters.

Each entry's `hash` is sha256 over the previous entry's hash and the entry's canonical JSON, so editing,
removing or reordering an entry breaks the chain from there on. `stable` is left out of the hash: it is
the one field that changes after an entry is written (a bake time later, or by a person), and its
changes are audited as their own decisions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelledger.api import Evidence, HistoryEntry, PinnedPipeline, RevisionCause

GENESIS = ""  # the "previous hash" of the first revision
_MUTABLE = frozenset({"hash", "stable"})


def canonical_json(document: dict[str, Any]) -> bytes:
    """One byte string per document: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def hashed_fields(entry: HistoryEntry) -> dict[str, Any]:
    return {k: v for k, v in entry.to_wire().items() if k not in _MUTABLE}


def entry_hash(entry: HistoryEntry) -> str:
    digest = hashlib.sha256(entry.prev_hash.encode() + canonical_json(hashed_fields(entry)))
    return f"sha256:{digest.hexdigest()}"


def current(history: Sequence[HistoryEntry], revision: int | None) -> HistoryEntry | None:
    return next((entry for entry in history if entry.revision == revision), None)


def append(
    history: Sequence[HistoryEntry],
    *,
    version: str,
    cause: RevisionCause,
    actor: str,
    at: datetime,
    pipeline: PinnedPipeline | None,
    reason: str = "",
    rule: str | None = None,
    evidence: Evidence | None = None,
    request_id: str | None = None,
) -> list[HistoryEntry]:
    """The history with a new newest revision, chained to the previous newest."""
    newest = history[0] if history else None
    entry = HistoryEntry(
        revision=newest.revision + 1 if newest else 1,
        version=version,
        cause=cause,
        actor=actor,
        at=at,
        reason=reason,
        rule=rule,
        evidence=evidence,
        request_id=request_id,
        pipeline=pipeline,
        prev_hash=newest.hash if newest else GENESIS,
        hash="sha256:" + "0" * 64,  # replaced below, once every other field is final
    )
    entry = entry.model_copy(update={"hash": entry_hash(entry)})
    return [entry, *history]


def mark_stable(history: Sequence[HistoryEntry], revision: int) -> list[HistoryEntry]:
    return [e.model_copy(update={"stable": True}) if e.revision == revision else e for e in history]


def newest_stable(
    history: Sequence[HistoryEntry],
    *,
    other_than: int | None,
    usable: Callable[[str], bool] = lambda _version: True,
) -> HistoryEntry | None:
    """The newest stable revision that is not `other_than` and whose version is still usable."""
    return next(
        (e for e in history if e.stable and e.revision != other_than and usable(e.version)),
        None,
    )


def prune(history: Sequence[HistoryEntry], limit: int, serving: int | None) -> list[HistoryEntry]:
    """Keep the newest `limit` revisions, and always the serving and the newest stable revision."""
    stable = next((e.revision for e in history if e.stable), None)
    return [e for i, e in enumerate(history) if i < limit or e.revision in (serving, stable)]


@dataclass(frozen=True)
class ChainBreak:
    revision: int
    problem: str


def verify(history: Sequence[HistoryEntry], limit: int | None = None) -> ChainBreak | None:
    """The first (oldest) entry whose hash or link is wrong, or None when the chain holds.

    Pruning only drops revisions older than the newest `limit`, so with `limit` given a revision
    missing among the newest `limit` was removed by hand. Every kept entry must hash correctly and
    link to its predecessor when that is kept, so an edit is caught. A rewrite of the whole tail with
    recomputed hashes needs an anchor outside the object: the append-only audit log.
    """
    ordered = sorted(history, key=lambda e: e.revision)
    if [e.revision for e in history] != [e.revision for e in reversed(ordered)]:
        out_of_order = next(
            e.revision for e, o in zip(history, reversed(ordered), strict=True) if e.revision != o.revision
        )
        return ChainBreak(out_of_order, "history is not ordered newest first")
    if limit is not None and ordered:
        newest = ordered[-1].revision
        kept = {e.revision for e in ordered}
        window = range(max(1, newest - limit + 1), newest + 1)
        if missing := [r for r in window if r not in kept]:
            return ChainBreak(missing[0], "revision removed (pruning keeps the newest revisionHistoryLimit)")
    for previous, entry in zip([None, *ordered], ordered, strict=False):
        if entry.hash != entry_hash(entry):
            return ChainBreak(entry.revision, "content does not match its hash (entry altered)")
        linked = previous is not None and previous.revision == entry.revision - 1
        if linked and previous is not None and entry.prev_hash != previous.hash:
            return ChainBreak(entry.revision, f"prevHash does not match revision {previous.revision}'s hash")
        if entry.revision == 1 and entry.prev_hash != GENESIS:
            return ChainBreak(entry.revision, "the first revision must not link to a previous hash")
    return None
