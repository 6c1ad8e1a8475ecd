"""The revision history: a hash chain of what served, newest first, bounded but never losing what matters.

Each entry's `hash` is sha256 over the previous entry's hash and the entry's canonical JSON, so editing,
removing or reordering an entry breaks the chain from there on. `stable` and its signed `stableMark` are
left out of the hash: they are what changes after an entry is written (a bake time later, or by a
person). The signatures are left out too: they sign the hash (see core/trust.py). Anyone can recompute a
hash, so the hash alone proves nothing against someone who rewrites the chain; the signatures do.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelledger.api import Evidence, GitOpsLineage, HistoryEntry, PinnedPipeline, RevisionCause, StableMark

GENESIS = ""  # the "previous hash" of the first revision
# Not hashed: the hash itself, what changes later (stability), and the signatures over the hash.
_UNHASHED = frozenset({"hash", "stable", "stableMark", "signature", "keyId"})


def canonical_json(document: dict[str, Any]) -> bytes:
    """One byte string per document: sorted keys, no whitespace, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


# Added after entries were first written: left out when empty, so entries from before still hash alike.
_OMITTED_WHEN_EMPTY = frozenset({"actorGroups", "approvers"})


def hashed_fields(entry: HistoryEntry) -> dict[str, Any]:
    return {
        k: v
        for k, v in entry.to_wire().items()
        if k not in _UNHASHED and not (k in _OMITTED_WHEN_EMPTY and v == [])
    }


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
    actor_verified: bool = False,
    actor_groups: Sequence[str] = (),
    approvers: Sequence[str] = (),
    request_name: str | None = None,
    gitops: GitOpsLineage | None = None,
) -> list[HistoryEntry]:
    """The history with a new newest revision, chained to the previous newest."""
    newest = history[0] if history else None
    entry = HistoryEntry(
        revision=newest.revision + 1 if newest else 1,
        version=version,
        cause=cause,
        actor=actor,
        actor_groups=list(actor_groups),
        actor_verified=actor_verified,
        approvers=list(approvers),
        request_name=request_name,
        at=at,
        reason=reason,
        rule=rule,
        evidence=evidence,
        pipeline=pipeline,
        gitops=gitops,
        prev_hash=newest.hash if newest else GENESIS,
        hash="sha256:" + "0" * 64,  # replaced below, once every other field is final
    )
    entry = entry.model_copy(update={"hash": entry_hash(entry)})
    return [entry, *history]


def mark_stable(history: Sequence[HistoryEntry], revision: int, mark: StableMark) -> list[HistoryEntry]:
    """Mark one revision stable, saying who and when (the operator signs the mark before it is written)."""
    return [
        e.model_copy(update={"stable": True, "stable_mark": mark}) if e.revision == revision else e
        for e in history
    ]


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


# etcd refuses objects over 1.5 MiB; the history gets a third of it, whatever the entries hold.
HISTORY_BYTES = 512 * 1024


def entry_size(entry: HistoryEntry) -> int:
    """About the bytes the entry takes in the stored JSON (a comma included)."""
    return len(entry.model_dump_json(by_alias=True, exclude_none=True)) + 1


def wire_size(entries: Sequence[HistoryEntry]) -> int:
    return sum(entry_size(e) for e in entries)


def prune(
    history: Sequence[HistoryEntry], limit: int, serving: int | None, max_bytes: int = HISTORY_BYTES
) -> list[HistoryEntry]:
    """Keep the newest `limit` revisions within `max_bytes`, and always the serving and the newest
    stable revision (the signed pruning watermark then says which gaps are pruning, not tampering)."""
    stable = next((e.revision for e in history if e.stable), None)
    kept = [e for i, e in enumerate(history) if i < limit or e.revision in (serving, stable)]
    size = wire_size(kept)
    while size > max_bytes:
        oldest = next((e for e in reversed(kept) if e.revision not in (serving, stable)), None)
        if oldest is None:
            break  # only what must stay is left
        kept.remove(oldest)
        size -= entry_size(oldest)
    return kept


def unbroken_from(history: Sequence[HistoryEntry]) -> int | None:
    """The oldest revision of the unbroken run that ends at the newest: the pruning watermark."""
    kept = {e.revision for e in history}
    if not kept:
        return None
    revision = max(kept)
    while revision - 1 in kept:
        revision -= 1
    return revision


@dataclass(frozen=True)
class ChainBreak:
    revision: int
    problem: str


def verify(
    history: Sequence[HistoryEntry], limit: int | None = None, complete_from: int | None = None
) -> ChainBreak | None:
    """The first (oldest) entry whose hash or link is wrong, or None when the chain holds.

    Every revision from `complete_from` (the signed pruning watermark, or 1) to the newest must be
    present. Unsigned histories from before the watermark existed give `limit` instead: pruning only
    drops revisions older than the newest `limit`. Every kept entry must hash correctly and link to its
    predecessor when that is kept, so an edit is caught. A rewrite with recomputed hashes is caught by
    the signatures (core/trust.py), not here.
    """
    ordered = sorted(history, key=lambda e: e.revision)
    if [e.revision for e in history] != [e.revision for e in reversed(ordered)]:
        out_of_order = next(
            e.revision for e, o in zip(history, reversed(ordered), strict=True) if e.revision != o.revision
        )
        return ChainBreak(out_of_order, "history is not ordered newest first")
    if (limit is not None or complete_from is not None) and ordered:
        newest = ordered[-1].revision
        kept = {e.revision for e in ordered}
        start = complete_from if complete_from is not None else newest - (limit or 0) + 1
        if missing := [r for r in range(max(1, start), newest + 1) if r not in kept]:
            why = (
                f"pruning watermark is {complete_from}"
                if complete_from is not None
                else "pruning keeps the newest revisionHistoryLimit"
            )
            return ChainBreak(missing[0], f"revision removed ({why})")
    for previous, entry in zip([None, *ordered], ordered, strict=False):
        if entry.hash != entry_hash(entry):
            return ChainBreak(entry.revision, "content does not match its hash (entry altered)")
        linked = previous is not None and previous.revision == entry.revision - 1
        if linked and previous is not None and entry.prev_hash != previous.hash:
            return ChainBreak(entry.revision, f"prevHash does not match revision {previous.revision}'s hash")
        if entry.revision == 1 and entry.prev_hash != GENESIS:
            return ChainBreak(entry.revision, "the first revision must not link to a previous hash")
    return None
