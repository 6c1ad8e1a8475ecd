"""Build the compliance report from what the cluster and the audit log hold. Pure: no I/O, no clock.

Sources, most durable first: the status history (hash-chained, bounded by revisionHistoryLimit), the
audit JSONL (every decision, unbounded, when given), the ModelVersions (provenance and revocation), and
Events (they expire after the apiserver's --event-ttl, so they only add detail while they exist).
Revision i served from its `at` until revision i+1's `at`.

What the report derives from the history (changes, what served when, stable markings) is computed by
`derive` and `visible` alone, from the history entries the report embeds verbatim; `report/verify.py`
runs the same two functions on the embedded entries of a report to check it offline.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelledger.api import (
    HistoryEntry,
    ModelDeployment,
    ModelVersion,
    PinnedPipeline,
    RevisionCause,
    StableMark,
    Watermark,
)
from modelledger.core import actors, audit_chain, history, trust
from modelledger.core.registration import RUN_URL_ANNOTATION
from modelledger.core.signing import Check, Keyring
from modelledger.report.schema import (
    AuditLogCheck,
    ChainCheck,
    Change,
    ComponentRef,
    DatasetRef,
    DeploymentReport,
    EventRecord,
    GitOpsRecord,
    HistoryCheck,
    PinnedDigests,
    Quarantine,
    Report,
    Revocation,
    ServedAt,
    ServedInterval,
    SignatureState,
    Source,
    StableMarking,
    Verification,
    VersionRecord,
    Window,
)

AuditRecords = Sequence[tuple[int, Mapping[str, Any]]]
_REVISION_IN_MESSAGE = re.compile(r"^revision (\d+)\b")

_EPOCH = datetime.min.replace(tzinfo=UTC)  # sorts Events without a time first


@dataclass(frozen=True)
class Sources:
    """What the report is built from, already read by the caller."""

    namespace: str
    deployments: Sequence[ModelDeployment]
    versions: Mapping[str, ModelVersion]
    events: Sequence[EventRecord] = ()
    audit_records: AuditRecords = ()
    audit_log: AuditLogCheck | None = None
    keyring: Keyring | None = None
    """The published public keys; None when they could not be read (signatures are then not checked)."""


@dataclass(frozen=True)
class Query:
    generated_at: datetime
    generated_by: str
    deployment: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Revision:
    entry: HistoryEntry
    source: Source


@dataclass
class _Known:
    """Every revision known for one deployment, oldest first, its other audit records, and the entries
    restored from the audit log as it recorded them (verbatim, for the report to embed)."""

    revisions: list[Revision]
    records: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)
    restored: list[Mapping[str, Any]] = field(default_factory=list)


def _previous(revisions: Sequence[Revision], index: int) -> HistoryEntry | None:
    if index == 0:
        return None
    before = revisions[index - 1].entry
    return before if before.revision == revisions[index].entry.revision - 1 else None


def known_revisions(status: Sequence[HistoryEntry], restored: Sequence[HistoryEntry]) -> list[Revision]:
    """The status's revisions and, for revisions it no longer holds, the audit log's; oldest first."""
    by_revision = {e.revision: Revision(e, "auditLog") for e in restored}
    by_revision.update({e.revision: Revision(e, "status") for e in status})
    return sorted(by_revision.values(), key=lambda r: r.entry.revision)


def build(sources: Sources, query: Query) -> Report:
    until = query.until or query.generated_at
    window = Window(since=query.since, until=until)
    deployments = [
        _deployment(md, sources, window, query.at)
        for md in sorted(sources.deployments, key=lambda d: _name(d))
        if query.deployment is None or _name(md) == query.deployment
    ]
    return Report(
        generated_at=query.generated_at,
        generated_by=query.generated_by,
        namespace=sources.namespace,
        deployment=query.deployment,
        window=window,
        at=query.at,
        deployments=deployments,
        audit_log=sources.audit_log,
        keys=sorted(sources.keyring.keys) if sources.keyring is not None else None,
    )


def _name(md: ModelDeployment) -> str:
    return str(md.metadata.get("name", ""))


def _known(md: ModelDeployment, sources: Sources) -> _Known:
    name = _name(md)
    status_entries = md.status.history if md.status else []
    in_status = {e.revision for e in status_entries}
    records = audit_chain.deployment_records(sources.namespace, name, sources.audit_records)
    restored: list[HistoryEntry] = []
    raw_restored: list[Mapping[str, Any]] = []
    for revision, (_line, raw) in audit_chain.logged_entries(sources.namespace, name, records).items():
        if revision in in_status:
            continue
        try:
            restored.append(HistoryEntry.model_validate(raw))
        except ValidationError:
            continue  # an altered line: the log's own verification reports it
        raw_restored.append(raw)
    raw_restored.sort(key=lambda raw: -int(raw["revision"]))
    return _Known(known_revisions(status_entries, restored), records, raw_restored)


def in_window(at: datetime | None, window: Window) -> bool:
    if at is None:
        return True
    return (window.since is None or at >= window.since) and at <= window.until


def _digests(pipeline: PinnedPipeline | None) -> PinnedDigests | None:
    if pipeline is None:
        return None
    return PinnedDigests(
        artifact_digest=pipeline.artifact_digest,
        image=pipeline.image,
        components={c.name: c.digest for c in pipeline.components},
    )


@dataclass(frozen=True)
class Derived:
    """What the history says, over all known revisions (before the window is applied)."""

    timeline: list[ServedInterval]
    changes: list[Change]
    stable_markings: list[StableMarking]
    history_complete: bool


@dataclass(frozen=True)
class Visible:
    """What of it the report shows for a window and an instant."""

    timeline: list[ServedInterval]
    changes: list[Change]
    stable_markings: list[StableMarking]
    served_at: ServedAt | None


def derive(
    revisions: Sequence[Revision],
    other_markings: Sequence[StableMarking],
    keyring: Keyring | None,
    subject: trust.Subject,
) -> Derived:
    """The facts the report derives from the history. `other_markings` are the stable markings found in
    the audit log and Events; the signed stable marks in the history take precedence over them."""
    markings = _stable_markings(revisions, other_markings, keyring, subject)
    marked = {m.revision for m in markings}
    return Derived(
        timeline=_timeline(revisions, marked),
        changes=_changes(revisions, keyring, subject),
        stable_markings=markings,
        history_complete=bool(revisions)
        and [r.entry.revision for r in revisions] == list(range(1, revisions[-1].entry.revision + 1)),
    )


def visible(derived: Derived, window: Window, at: datetime | None) -> Visible:
    """The window applied: intervals that overlap it, changes inside it, and the stable markings made
    inside it or of a revision shown (so a reader, and `verify`, sees why each shown interval is stable)."""
    timeline = [t for t in derived.timeline if _overlaps(t, window)]
    served_at = _served_at(derived.timeline, at) if at is not None else None
    shown = {t.revision for t in timeline} | (
        {served_at.revision} if served_at and served_at.revision else set()
    )
    return Visible(
        timeline=timeline,
        changes=[c for c in derived.changes if in_window(c.at, window)],
        stable_markings=[
            m
            for m in derived.stable_markings
            if (m.at is not None and in_window(m.at, window)) or m.revision in shown
        ],
        served_at=served_at,
    )


def _deployment(
    md: ModelDeployment, sources: Sources, window: Window, at: datetime | None
) -> DeploymentReport:
    name = _name(md)
    status = md.status
    known = _known(md, sources)
    subject = trust.Subject(sources.namespace, name, str(md.metadata.get("uid") or ""))
    other_markings = _logged_markings(known) + _event_markings(known, sources.events, name)
    derived = derive(known.revisions, other_markings, sources.keyring, subject)
    shown = visible(derived, window, at)
    names = {r.entry.version for r in known.revisions} | {md.spec.version}
    current_quarantine = set(status.quarantined if status else [])
    return DeploymentReport(
        namespace=sources.namespace,
        name=name,
        uid=subject.uid or None,
        model_name=md.spec.model_name,
        phase=status.phase.value if status and status.phase else None,
        desired_version=md.spec.version,
        serving_version=status.serving_version if status else None,
        current_revision=status.current_revision if status else None,
        stable_revision=status.stable_revision if status else None,
        quarantined=sorted(current_quarantine),
        history_complete=derived.history_complete,
        served_at=shown.served_at,
        timeline=shown.timeline,
        changes=shown.changes,
        stable_markings=shown.stable_markings,
        quarantines=[
            q
            for q in _quarantines(derived.changes, known, sources.events, name, current_quarantine)
            if in_window(q.at, window) or q.current
        ],
        revocations=_revocations(names, sources.versions, derived.changes),
        versions=[_version_record(n, sources.versions.get(n)) for n in sorted(names)],
        events=sorted(
            (
                e
                for e in sources.events
                if (e.object_kind == "ModelDeployment" and e.object_name == name)
                or (e.object_kind == "ModelVersion" and e.object_name in names)
            ),
            key=lambda e: (e.first_seen or e.last_seen or _EPOCH, e.reason),
        ),
        revision_history_limit=md.spec.revision_history_limit,
        history=[e.to_wire() for e in (status.history if status else [])],
        history_watermark=status.history_watermark.to_wire() if status and status.history_watermark else None,
        audit_log_history=[dict(raw) for raw in known.restored],
        verification=_verification(md, sources, known, subject),
    )


def _timeline(revisions: Sequence[Revision], marked: set[int]) -> list[ServedInterval]:
    intervals = []
    for index, revision in enumerate(revisions):
        entry = revision.entry
        following = revisions[index + 1].entry if index + 1 < len(revisions) else None
        consecutive = following is not None and following.revision == entry.revision + 1
        intervals.append(
            ServedInterval(
                revision=entry.revision,
                version=entry.version,
                start=entry.at,
                end=following.at if following is not None and consecutive else None,
                end_known=following is None or consecutive,
                cause=entry.cause.value,
                actor=entry.actor,
                stable=entry.stable or entry.revision in marked,
                digests=_digests(entry.pipeline),
                source=revision.source,
            )
        )
    return intervals


def _overlaps(interval: ServedInterval, window: Window) -> bool:
    if interval.start > window.until:
        return False
    return window.since is None or interval.end is None or interval.end >= window.since


def _served_at(timeline: Sequence[ServedInterval], at: datetime) -> ServedAt:
    for interval in reversed(timeline):
        if interval.start > at:
            continue
        if not interval.end_known:
            return ServedAt(at=at, known=False)  # it may have been replaced by a pruned revision
        return ServedAt(
            at=at, known=True, revision=interval.revision, version=interval.version, stable=interval.stable
        )
    return ServedAt(at=at, known=False)


def signature_state(
    key_id: str | None, signature: str | None, message: bytes, keyring: Keyring | None
) -> SignatureState:
    if not signature:
        return "unsigned"
    if keyring is None:
        return "notChecked"
    states: dict[Check, SignatureState] = {
        Check.VALID: "valid",
        Check.UNKNOWN_KEY: "unknownKey",
        Check.BAD_SIGNATURE: "invalid",
    }
    return states[keyring.check(key_id, message, signature)]


def _changes(revisions: Sequence[Revision], keyring: Keyring | None, subject: trust.Subject) -> list[Change]:
    changes = []
    for index, revision in enumerate(revisions):
        entry = revision.entry
        previous = _previous(revisions, index)
        changes.append(
            Change(
                revision=entry.revision,
                at=entry.at,
                version=entry.version,
                previous_version=previous.version if previous else None,
                previous_revision=previous.revision if previous else None,
                cause=entry.cause.value,
                actor=entry.actor,
                reason=entry.reason,
                rule=entry.rule,
                evidence=entry.evidence.to_wire() if entry.evidence else None,
                request_id=entry.request_id,
                request_name=entry.request_name,
                actor_verified=entry.actor_verified,
                actor_groups=list(entry.actor_groups),
                approvers=list(entry.approvers),
                digests=_digests(entry.pipeline),
                gitops=GitOpsRecord.model_validate(entry.gitops.to_wire()) if entry.gitops else None,
                hash=entry.hash,
                prev_hash=entry.prev_hash,
                key_id=entry.key_id,
                signature_state=signature_state(
                    entry.key_id, entry.signature, trust.entry_message(subject, entry.hash), keyring
                ),
                source=revision.source,
            )
        )
    return changes


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _logged_markings(known: _Known) -> list[StableMarking]:
    found: dict[int, StableMarking] = {}
    for _line, record in known.records:
        if record.get("action") == "MarkedStable" and isinstance(record.get("revision"), int):
            found.setdefault(
                record["revision"],
                StableMarking(
                    revision=record["revision"],
                    version=record.get("version"),
                    at=_timestamp(record.get("ts")),
                    actor=record.get("actor"),
                    message=str(record.get("message") or ""),
                    source="auditLog",
                ),
            )
    return list(found.values())


def _event_markings(known: _Known, events: Sequence[EventRecord], name: str) -> list[StableMarking]:
    versions = {r.entry.revision: r.entry.version for r in known.revisions}
    found: list[StableMarking] = []
    for event in events:
        match = _REVISION_IN_MESSAGE.match(event.message)
        if event.reason != "MarkedStable" or event.object_name != name or match is None:
            continue
        revision = int(match.group(1))
        found.append(
            StableMarking(
                revision=revision,
                version=versions.get(revision),
                at=event.first_seen,
                message=event.message,
                source="event",
            )
        )
    return found


def _signed_marking(
    entry: HistoryEntry, mark: StableMark, keyring: Keyring | None, subject: trust.Subject
) -> StableMarking:
    return StableMarking(
        revision=entry.revision,
        version=entry.version,
        at=mark.at,
        actor=mark.actor,
        actor_verified=mark.actor_verified,
        approvers=list(mark.approvers),
        request_name=mark.request_name,
        key_id=mark.key_id,
        signature_state=signature_state(
            mark.key_id, mark.signature, trust.stable_message(subject, entry.hash, mark), keyring
        ),
        source="status",
    )


def _stable_markings(
    revisions: Sequence[Revision],
    other_markings: Sequence[StableMarking],
    keyring: Keyring | None,
    subject: trust.Subject,
) -> list[StableMarking]:
    """Who marked which revision stable and when: the history's signed stable mark first, then the audit
    log and Events (in the order given), then the bare `stable` flag of entries from before marks.

    For a signed entry of the status the history is the whole truth: its stable mark, or none (the
    audit log's and Events' word is taken only for revisions the signed status does not hold)."""
    found: dict[int, StableMarking] = {}
    signed = {r.entry.revision for r in revisions if r.source == "status" and r.entry.signature}
    for revision in revisions:
        entry = revision.entry
        if entry.stable_mark is not None and revision.source == "status":
            found[entry.revision] = _signed_marking(entry, entry.stable_mark, keyring, subject)
    for marking in other_markings:
        if marking.revision not in signed:
            found.setdefault(marking.revision, marking)
    for revision in revisions:
        entry = revision.entry
        if entry.stable and revision.source == "status":
            found.setdefault(
                entry.revision, StableMarking(revision=entry.revision, version=entry.version, source="status")
            )
    return sorted(found.values(), key=lambda m: m.revision)


def _quarantines(
    changes: Sequence[Change],
    known: _Known,
    events: Sequence[EventRecord],
    name: str,
    current: set[str],
) -> list[Quarantine]:
    """A rollback (automatic, manual or by revocation) quarantines the version it rolled back from."""
    lifts: list[tuple[str, datetime | None, str | None]] = [
        (str(record.get("version")), _timestamp(record.get("ts")), record.get("actor"))
        for _line, record in known.records
        if record.get("action") == "QuarantineLifted"
    ]
    if not lifts:
        lifts = [
            (event.message.split(" ", 1)[0], event.first_seen, None)
            for event in events
            if event.reason == "QuarantineLifted" and event.object_name == name
        ]
    found = []
    for change in changes:
        if change.cause == RevisionCause.DEPLOY.value or change.previous_version is None:
            continue
        lifted = next(
            (
                lift
                for lift in lifts
                if lift[0] == change.previous_version and (lift[1] or change.at) >= change.at
            ),
            None,
        )
        found.append(
            Quarantine(
                version=change.previous_version,
                at=change.at,
                revision=change.revision,
                cause=change.cause,
                actor=change.actor,
                lifted_at=lifted[1] if lifted else None,
                lifted_by=lifted[2] if lifted else None,
                current=change.previous_version in current and lifted is None,
            )
        )
    return found


def _revocations(
    names: set[str], versions: Mapping[str, ModelVersion], changes: Sequence[Change]
) -> list[Revocation]:
    found = []
    for version_name in sorted(names):
        version = versions.get(version_name)
        if version is None or not version.spec.revoked:
            continue
        condition = next(
            (c for c in (version.status.conditions if version.status else []) if c.type == "Revoked"), None
        )
        rollback = next(
            (
                c
                for c in changes
                if c.cause == RevisionCause.REVOCATION.value and c.previous_version == version_name
            ),
            None,
        )
        found.append(
            Revocation(
                version=version_name,
                reason=version.spec.revocation_reason,
                revoked_at=condition.last_transition_time if condition else None,
                revoked_by=actors.last_writer(version.metadata.get("managedFields"), ("spec", "revoked")),
                rollback_revision=rollback.revision if rollback else None,
            )
        )
    return found


def _version_record(name: str, version: ModelVersion | None) -> VersionRecord:
    if version is None:
        return VersionRecord(name=name, found=False)
    spec = version.spec
    provenance = spec.provenance
    return VersionRecord(
        name=name,
        found=True,
        model_name=spec.model_name,
        version=spec.version,
        artifact_uri=spec.artifact.uri,
        artifact_digest=spec.artifact.digest,
        artifact_format=spec.artifact.format or None,
        image=spec.serving.image,
        components=[ComponentRef(name=c.name, uri=c.uri, digest=c.digest) for c in spec.serving.components],
        code_repository=provenance.code.repository if provenance and provenance.code else None,
        code_commit=provenance.code.commit if provenance and provenance.code else None,
        datasets=[
            DatasetRef(name=d.name, uri=d.uri, digest=d.digest)
            for d in (provenance.data if provenance else [])
        ],
        training_run=provenance.training_run if provenance else None,
        training_run_url=_training_run_url(version),
        metrics=dict(spec.metrics),
        hyperparameters=dict(spec.hyperparameters),
        tags=list(spec.tags),
        revoked=spec.revoked,
        revocation_reason=spec.revocation_reason or None,
    )


def _training_run_url(version: ModelVersion) -> str | None:
    """The http(s) link `modelledger register` annotates; anything else is not shown as a link."""
    url = str((version.metadata.get("annotations") or {}).get(RUN_URL_ANNOTATION) or "")
    return url if url.startswith(("https://", "http://")) else None


def check_entries(
    status_entries: Sequence[HistoryEntry],
    watermark: Watermark | None,
    restored: Sequence[HistoryEntry],
    keyring: Keyring | None,
    subject: trust.Subject,
    *,
    limit: int | None,
) -> HistoryCheck:
    """The status history (chain, signatures, stable marks, watermark: `trust.check_history`) and the
    entries restored from the audit log (each hash, each signature, the links between neighbours).

    Without a keyring the chains are checked and the signatures only counted (`NotChecked`).
    """
    if keyring is not None:
        own = trust.check_history(status_entries, watermark, keyring, subject, limit=limit)
        if not own.ok:
            return HistoryCheck(verdict="Tampered", ok=False, revision=own.revision, problem=own.problem)
    else:
        signed_start = any(e.signature for e in status_entries) or bool(watermark and watermark.signature)
        complete_from = watermark.revision if watermark else (1 if signed_start else None)
        broken = history.verify(
            status_entries, limit=None if signed_start else limit, complete_from=complete_from
        )
        if broken is not None:
            return HistoryCheck(
                verdict="Tampered", ok=False, revision=broken.revision, problem=broken.problem
            )
    in_status = {e.revision for e in status_entries}
    extra = [e for e in restored if e.revision not in in_status]
    combined = sorted([*status_entries, *extra], key=lambda e: -e.revision)
    if extra and (broken := history.verify(combined)) is not None:
        return HistoryCheck(verdict="Tampered", ok=False, revision=broken.revision, problem=broken.problem)
    seen_signed = False
    for entry in reversed(combined):
        if entry.signature:
            seen_signed = True
        if entry.revision in in_status:
            continue
        if problem := _restored_problem(entry, keyring, subject, seen_signed=seen_signed):
            problem = f"{problem} (restored from the audit log)"
            return HistoryCheck(verdict="Tampered", ok=False, revision=entry.revision, problem=problem)
    signed = sum(1 for e in combined if e.signature)
    unsigned = len(combined) - signed
    if keyring is None:
        return HistoryCheck(verdict="NotChecked", ok=True, signed=signed, unsigned=unsigned)
    return HistoryCheck(
        verdict="Unsigned" if unsigned else "Signed", ok=True, signed=signed, unsigned=unsigned
    )


def _restored_problem(
    entry: HistoryEntry, keyring: Keyring | None, subject: trust.Subject, *, seen_signed: bool
) -> str | None:
    if entry.signature is None:
        return "unsigned entry after a signed one (not written by the operator)" if seen_signed else None
    if keyring is not None:
        result = keyring.check(entry.key_id, trust.entry_message(subject, entry.hash), entry.signature)
        if result is not Check.VALID:
            return f"entry {result} (key {entry.key_id})"
    mark = entry.stable_mark
    if entry.stable and (mark is None or mark.signature is None):
        return "marked stable without a signed stable mark"
    if mark is not None and not entry.stable:
        return "has a stable mark but is not stable (stable flag flipped)"
    if mark is not None and mark.signature and keyring is not None:
        result = keyring.check(mark.key_id, trust.stable_message(subject, entry.hash, mark), mark.signature)
        if result is not Check.VALID:
            return f"stable mark {result} (key {mark.key_id})"
    return None


def _verification(
    md: ModelDeployment, sources: Sources, known: _Known, subject: trust.Subject
) -> Verification:
    status = md.status
    entries = status.history if status else []
    restored = [r.entry for r in known.revisions if r.source == "auditLog"]
    own = check_entries(
        entries,
        status.history_watermark if status else None,
        restored,
        sources.keyring,
        subject,
        limit=md.spec.revision_history_limit,
    )
    if sources.audit_log is None:
        return Verification(history=own)
    mismatch = audit_chain.cross_check(sources.namespace, _name(md), entries, sources.audit_records)
    against_log = ChainCheck(ok=mismatch is None)
    if mismatch is not None:
        against_log = ChainCheck(
            ok=False, revision=mismatch.revision, line=mismatch.line, problem=mismatch.problem
        )
    return Verification(history=own, audit_log=against_log)
