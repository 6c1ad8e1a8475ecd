"""What the operator signs, and the check it makes before acting on a status. Pure: keys are injected.

Four kinds of signed statement, each an Ed25519 signature over a fixed, documented message
(docs/audit.md), so an examiner can check them with any Ed25519 library:

- an entry:      `modelledger.io/history-entry/v1\\n<namespace>/<name>\\n<hash>`
- a stable mark: `modelledger.io/stable-mark/v1\\n<namespace>/<name>\\n<hash>\\n<canonical JSON of the mark>`
- a watermark:   `modelledger.io/watermark/v1\\n<namespace>/<name>\\n<revision>`
- the seal:      `modelledger.io/status-seal/v1\\n<namespace>/<name>\\n<uid>\\n<sha256 of the status>`

Entries and marks travel into reports and are verified offline. The seal covers the whole status
(quarantine, rule states, handled requests, ...) and is what the operator checks before it acts: a
status anyone else wrote, or edited, does not verify, so it is never taken as the truth.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from modelledger.api import HistoryEntry, ModelDeploymentStatus, ModelVersion, Seal, StableMark, Watermark
from modelledger.core import history
from modelledger.core.history import canonical_json
from modelledger.core.signing import Check, Keyring, SigningKey
from modelledger.core.workload import pinned_pipeline

ENTRY_CONTEXT = "modelledger.io/history-entry/v1"
STABLE_CONTEXT = "modelledger.io/stable-mark/v1"
WATERMARK_CONTEXT = "modelledger.io/watermark/v1"
SEAL_CONTEXT = "modelledger.io/status-seal/v1"
AUDIT_RECORD_CONTEXT = "modelledger.io/audit-record/v1"


@dataclass(frozen=True)
class Subject:
    """The deployment a statement is about: a signature is never valid for another deployment."""

    namespace: str
    name: str
    uid: str = ""

    @property
    def path(self) -> str:
        return f"{self.namespace}/{self.name}"


def entry_message(subject: Subject, entry_hash: str) -> bytes:
    return f"{ENTRY_CONTEXT}\n{subject.path}\n{entry_hash}".encode()


def _mark_body(mark: StableMark) -> bytes:
    return canonical_json({k: v for k, v in mark.to_wire().items() if k not in ("signature", "keyId")})


def stable_message(subject: Subject, entry_hash: str, mark: StableMark) -> bytes:
    return f"{STABLE_CONTEXT}\n{subject.path}\n{entry_hash}\n".encode() + _mark_body(mark)


def watermark_message(subject: Subject, revision: int) -> bytes:
    return f"{WATERMARK_CONTEXT}\n{subject.path}\n{revision}".encode()


def status_digest(status: ModelDeploymentStatus) -> str:
    body = {k: v for k, v in status.to_wire().items() if k != "seal"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


def seal_message(subject: Subject, status: ModelDeploymentStatus) -> bytes:
    return f"{SEAL_CONTEXT}\n{subject.path}\n{subject.uid}\n{status_digest(status)}".encode()


def audit_record_message(record_hash: str) -> bytes:
    return f"{AUDIT_RECORD_CONTEXT}\n{record_hash}".encode()


# --- signing what a decision wrote ----------------------------------------------------------------


def sign(
    status: ModelDeploymentStatus,
    before: ModelDeploymentStatus,
    key: SigningKey,
    subject: Subject,
    *,
    adopt: bool = False,
) -> ModelDeploymentStatus:
    """Sign what this decision added (new entries, new stable marks, a new watermark), then seal.

    Entries that were already there keep their signatures as they were: the operator never signs what
    it did not decide, so a hand-inserted entry stays unsigned and fails verification. `adopt` (an
    unsigned history taken on by --adopt-unsigned-history, recorded as HistoryAdopted) signs them all.
    """
    old = {e.revision: e for e in before.history}
    entries = []
    for entry in status.history:
        previous = old.get(entry.revision)
        if previous is None or previous.hash != entry.hash or (adopt and entry.signature is None):
            entry = entry.model_copy(
                update={"key_id": key.key_id, "signature": key.sign(entry_message(subject, entry.hash))}
            )
        mark = entry.stable_mark
        changed = previous is None or previous.stable_mark != mark or adopt
        if mark is not None and changed and mark.signature is None:
            signed = mark.model_copy(update={"key_id": key.key_id})
            signed = signed.model_copy(
                update={"signature": key.sign(stable_message(subject, entry.hash, signed))}
            )
            entry = entry.model_copy(update={"stable_mark": signed})
        entries.append(entry)
    result = status.model_copy(update={"history": entries})
    watermark = result.history_watermark
    new_watermark = watermark != before.history_watermark or adopt
    if watermark is not None and new_watermark and watermark.signature is None:
        signed_watermark = Watermark(
            revision=watermark.revision,
            key_id=key.key_id,
            signature=key.sign(watermark_message(subject, watermark.revision)),
        )
        result = result.model_copy(update={"history_watermark": signed_watermark})
    return seal(result, key, subject)


def seal(status: ModelDeploymentStatus, key: SigningKey, subject: Subject) -> ModelDeploymentStatus:
    unsealed = status.model_copy(update={"seal": None})
    return unsealed.model_copy(
        update={"seal": Seal(key_id=key.key_id, signature=key.sign(seal_message(subject, unsealed)))}
    )


# --- verifying ----------------------------------------------------------------------------------------


class Verdict(StrEnum):
    SIGNED = "Signed"  # every entry signed, the chain and the seal verify
    UNSIGNED = "Unsigned"  # a consistent chain, but unsigned (no key, or written before signing)
    TAMPERED = "Tampered"  # something does not verify


@dataclass(frozen=True)
class HistoryCheck:
    """The result of checking one history: a verdict, and the first bad revision with what is wrong."""

    verdict: Verdict
    revision: int | None = None
    problem: str = ""
    signed: int = 0
    unsigned: int = 0

    @property
    def ok(self) -> bool:
        return self.verdict is not Verdict.TAMPERED

    def describe(self) -> str:
        if self.verdict is Verdict.TAMPERED:
            return f"revision {self.revision}: {self.problem}" if self.revision else self.problem
        if self.verdict is Verdict.UNSIGNED:
            return f"{self.unsigned} unsigned of {self.signed + self.unsigned} revisions"
        return f"{self.signed} revisions, every one signed"


def _tampered(revision: int | None, problem: str) -> HistoryCheck:
    return HistoryCheck(Verdict.TAMPERED, revision, problem)


def check_history(
    entries: Sequence[HistoryEntry],
    watermark: Watermark | None,
    keyring: Keyring,
    subject: Subject,
    *,
    limit: int | None = None,
) -> HistoryCheck:
    """The chain, every signature, every stable mark and the watermark; what an examiner runs offline.

    Once a chain holds a signed entry, a later unsigned one is tampering: it was not the operator's.
    `limit` (revisionHistoryLimit) only matters for a wholly unsigned history from before watermarks.
    """
    ordered = sorted(entries, key=lambda e: e.revision)
    any_signed = any(e.signature for e in ordered) or (watermark is not None and watermark.signature)
    complete_from = watermark.revision if watermark is not None else (1 if any_signed else None)
    if broken := history.verify(entries, limit=None if any_signed else limit, complete_from=complete_from):
        return _tampered(broken.revision, broken.problem)
    if watermark is not None and (any_signed or watermark.signature):
        result = keyring.check(
            watermark.key_id, watermark_message(subject, watermark.revision), watermark.signature or ""
        )
        if not watermark.signature or result is not Check.VALID:
            problem = "unsigned" if not watermark.signature else str(result)
            return _tampered(None, f"pruning watermark {watermark.revision}: {problem}")
    signed = unsigned = 0
    seen_signed = False
    for entry in ordered:
        if entry.signature is None:
            if seen_signed:
                problem = "unsigned entry after a signed one (not written by the operator)"
                return _tampered(entry.revision, problem)
            unsigned += 1
        else:
            seen_signed = True
            result = keyring.check(entry.key_id, entry_message(subject, entry.hash), entry.signature)
            if result is not Check.VALID:
                return _tampered(entry.revision, f"entry {result} (key {entry.key_id})")
            signed += 1
        if stable_problem := _stable_problem(entry, subject, keyring):
            return _tampered(entry.revision, stable_problem)
    if unsigned:
        return HistoryCheck(Verdict.UNSIGNED, signed=signed, unsigned=unsigned)
    return HistoryCheck(Verdict.SIGNED, signed=signed)


def _stable_problem(entry: HistoryEntry, subject: Subject, keyring: Keyring) -> str | None:
    mark = entry.stable_mark
    if mark is None:
        return "marked stable without a signed stable mark" if entry.stable and entry.signature else None
    if not entry.stable:
        return "has a stable mark but is not stable (stable flag flipped)"
    if mark.signature is None:
        return "stable mark is unsigned" if entry.signature else None
    result = keyring.check(mark.key_id, stable_message(subject, entry.hash, mark), mark.signature)
    return None if result is Check.VALID else f"stable mark {result} (key {mark.key_id})"


def check_status(
    status: ModelDeploymentStatus, keyring: Keyring, subject: Subject, *, limit: int | None = None
) -> HistoryCheck:
    """check_history, plus the seal over the whole status: what the operator runs before acting."""
    result = check_history(status.history, status.history_watermark, keyring, subject, limit=limit)
    if not result.ok:
        return result
    if status.seal is None:
        if result.signed:
            return _tampered(None, "the status seal was removed")
        recorded = status.history or status.quarantined or status.handled_requests
        return HistoryCheck(Verdict.UNSIGNED, unsigned=result.unsigned) if recorded else result
    check = keyring.check(status.seal.key_id, seal_message(subject, status), status.seal.signature)
    if check is not Check.VALID:
        return _tampered(
            None, f"status seal {check}: the status was written by someone other than the operator"
        )
    return result


def pipeline_mismatch(entry: HistoryEntry, version: ModelVersion, uid: str) -> str | None:
    """Why the live ModelVersion is not the one the entry pinned, or None when it is the same."""
    pinned = entry.pipeline
    if pinned is None:
        return None
    if pinned.version_uid and uid and pinned.version_uid != uid:
        return (
            f"ModelVersion {entry.version} was deleted and re-created: UID {uid} is not the pinned "
            f"{pinned.version_uid}"
        )
    live = pinned_pipeline(version)
    for field, want, have in (
        ("artifact digest", pinned.artifact_digest, live.artifact_digest),
        ("image", pinned.image, live.image),
        ("components", pinned.components, live.components),
    ):
        if want != have:
            return f"ModelVersion {entry.version}'s {field} differs from revision {entry.revision}'s pin"
    return None
