"""Signed histories for tests, made the way the operator makes them: one decision at a time, each
signed with `trust.sign` against the status before it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from modelledger.api import (
    HistoryEntry,
    ModelDeploymentStatus,
    PinnedPipeline,
    RevisionCause,
    StableMark,
    Watermark,
)
from modelledger.core import history, trust
from modelledger.core.signing import SigningKey

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
PIPELINE = PinnedPipeline(
    artifact_digest="sha256:" + "a" * 64, image="ghcr.io/acme/server@sha256:" + "b" * 64
)
SUBJECT = trust.Subject("ml", "fraud", "0b1e3c52-uid")


def append(
    status: ModelDeploymentStatus, key: SigningKey | None, subject: trust.Subject = SUBJECT, **fields: Any
) -> ModelDeploymentStatus:
    """A new revision, signed (unsigned when `key` is None, as an operator without a key writes it)."""
    revision = status.history[0].revision + 1 if status.history else 1
    fields = {
        "version": f"m-{revision}",
        "cause": RevisionCause.DEPLOY,
        "actor": "alice",
        "actor_verified": True,
        "at": T0 + timedelta(minutes=revision),
        "pipeline": PIPELINE,
        **fields,
    }
    entries = history.append(status.history, **fields)
    after = status.model_copy(update={"history": entries, "current_revision": entries[0].revision})
    return trust.sign(after, status, key, subject) if key else after


def mark(
    status: ModelDeploymentStatus,
    revision: int,
    key: SigningKey | None,
    subject: trust.Subject = SUBJECT,
    actor: str = "modelledger/bake",
) -> ModelDeploymentStatus:
    entry = next(e for e in status.history if e.revision == revision)
    stamp = StableMark(at=entry.at + timedelta(seconds=30), actor=actor, actor_verified=True)
    entries = history.mark_stable(status.history, revision, stamp)
    after = status.model_copy(update={"history": entries, "stable_revision": revision})
    return trust.sign(after, status, key, subject) if key else after


def prune(
    status: ModelDeploymentStatus, limit: int, key: SigningKey | None, subject: trust.Subject = SUBJECT
) -> ModelDeploymentStatus:
    """Prune as the operator does, and set (and sign) the watermark."""
    kept = history.prune(status.history, limit, status.current_revision)
    watermark = history.unbroken_from(kept)
    after = status.model_copy(
        update={
            "history": kept,
            "history_watermark": Watermark(revision=watermark) if watermark else None,
        }
    )
    return trust.sign(after, status, key, subject) if key else after


def signed_status(
    count: int, key: SigningKey | None, stable: tuple[int, ...] = (), subject: trust.Subject = SUBJECT
) -> ModelDeploymentStatus:
    status = ModelDeploymentStatus()
    for _ in range(count):
        status = append(status, key, subject)
    for revision in stable:
        status = mark(status, revision, key, subject)
    return status


def rehash(entries: list[HistoryEntry]) -> list[HistoryEntry]:
    """Re-chain a (tampered) history, newest first, as someone without the key would: every hash and
    prevHash recomputed, signatures left as they were."""
    chained: list[HistoryEntry] = []
    for entry in sorted(entries, key=lambda e: e.revision):
        previous = chained[-1] if chained and chained[-1].revision == entry.revision - 1 else None
        linked = entry.model_copy(update={"prev_hash": previous.hash if previous else entry.prev_hash})
        chained.append(linked.model_copy(update={"hash": history.entry_hash(linked)}))
    return list(reversed(chained))
