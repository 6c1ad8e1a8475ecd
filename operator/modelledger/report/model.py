"""Build the compliance report from what the cluster and the audit log hold. Pure: no I/O, no clock.

Sources, most durable first: the status history (hash-chained, bounded by revisionHistoryLimit), the
audit JSONL (every decision, unbounded, when given), the ModelVersions (provenance and revocation), and
Events (they expire after the apiserver's --event-ttl, so they only add detail while they exist).
Revision i served from its `at` until revision i+1's `at`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from modelledger.api import HistoryEntry, ModelDeployment, ModelVersion, PinnedPipeline, RevisionCause
from modelledger.core import actors, audit_chain, history
from modelledger.report.schema import (
    AuditLogCheck,
    ChainCheck,
    Change,
    ComponentRef,
    DatasetRef,
    DeploymentReport,
    EventRecord,
    PinnedDigests,
    Quarantine,
    Report,
    Revocation,
    ServedAt,
    ServedInterval,
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


@dataclass(frozen=True)
class Query:
    generated_at: datetime
    generated_by: str
    deployment: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class _Revision:
    entry: HistoryEntry
    source: Source


@dataclass
class _Known:
    """Every revision known for one deployment, oldest first, and its other audit records."""

    revisions: list[_Revision]
    records: list[tuple[int, Mapping[str, Any]]] = field(default_factory=list)

    def previous(self, index: int) -> HistoryEntry | None:
        if index == 0:
            return None
        before = self.revisions[index - 1].entry
        return before if before.revision == self.revisions[index].entry.revision - 1 else None


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
    )


def _name(md: ModelDeployment) -> str:
    return str(md.metadata.get("name", ""))


def _known(md: ModelDeployment, sources: Sources) -> _Known:
    name = _name(md)
    status_entries = md.status.history if md.status else []
    by_revision = {e.revision: _Revision(e, "status") for e in status_entries}
    records = audit_chain.deployment_records(sources.namespace, name, sources.audit_records)
    for revision, (_line, raw) in audit_chain.logged_entries(sources.namespace, name, records).items():
        if revision in by_revision:
            continue
        try:
            by_revision[revision] = _Revision(HistoryEntry.model_validate(raw), "auditLog")
        except ValidationError:
            continue  # an altered line: the log's own verification reports it
    return _Known(sorted(by_revision.values(), key=lambda r: r.entry.revision), records)


def _in_window(at: datetime | None, window: Window) -> bool:
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


def _deployment(
    md: ModelDeployment, sources: Sources, window: Window, at: datetime | None
) -> DeploymentReport:
    name = _name(md)
    status = md.status
    known = _known(md, sources)
    markings = _stable_markings(known, sources.events, name)
    marked = {m.revision for m in markings}
    timeline = _timeline(known, marked)
    changes = _changes(known)
    names = {r.entry.version for r in known.revisions} | {md.spec.version}
    current_quarantine = set(status.quarantined if status else [])
    return DeploymentReport(
        namespace=sources.namespace,
        name=name,
        model_name=md.spec.model_name,
        phase=status.phase.value if status and status.phase else None,
        desired_version=md.spec.version,
        serving_version=status.serving_version if status else None,
        current_revision=status.current_revision if status else None,
        stable_revision=status.stable_revision if status else None,
        quarantined=sorted(current_quarantine),
        history_complete=bool(known.revisions)
        and [r.entry.revision for r in known.revisions]
        == list(range(1, known.revisions[-1].entry.revision + 1)),
        served_at=_served_at(timeline, at) if at is not None else None,
        timeline=[t for t in timeline if _overlaps(t, window)],
        changes=[c for c in changes if _in_window(c.at, window)],
        stable_markings=[m for m in markings if _in_window(m.at, window)],
        quarantines=[
            q
            for q in _quarantines(changes, known, sources.events, name, current_quarantine)
            if _in_window(q.at, window) or q.current
        ],
        revocations=_revocations(names, sources.versions, changes),
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
        verification=_verification(md, sources),
    )


def _timeline(known: _Known, marked: set[int]) -> list[ServedInterval]:
    intervals = []
    revisions = known.revisions
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


def _changes(known: _Known) -> list[Change]:
    changes = []
    for index, revision in enumerate(known.revisions):
        entry = revision.entry
        previous = known.previous(index)
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
                digests=_digests(entry.pipeline),
                hash=entry.hash,
                prev_hash=entry.prev_hash,
                source=revision.source,
            )
        )
    return changes


def _timestamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _stable_markings(known: _Known, events: Sequence[EventRecord], name: str) -> list[StableMarking]:
    """Who marked which revision stable and when: the audit log first, then Events, then the flag."""
    versions = {r.entry.revision: r.entry.version for r in known.revisions}
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
    for event in events:
        match = _REVISION_IN_MESSAGE.match(event.message)
        if event.reason != "MarkedStable" or event.object_name != name or match is None:
            continue
        revision = int(match.group(1))
        found.setdefault(
            revision,
            StableMarking(
                revision=revision,
                version=versions.get(revision),
                at=event.first_seen,
                message=event.message,
                source="event",
            ),
        )
    for known_revision in known.revisions:
        entry = known_revision.entry
        if entry.stable:
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
        metrics=dict(spec.metrics),
        hyperparameters=dict(spec.hyperparameters),
        tags=list(spec.tags),
        revoked=spec.revoked,
        revocation_reason=spec.revocation_reason or None,
    )


def _verification(md: ModelDeployment, sources: Sources) -> Verification:
    entries = md.status.history if md.status else []
    broken = history.verify(entries, limit=md.spec.revision_history_limit)
    own = ChainCheck(ok=broken is None)
    if broken is not None:
        own = ChainCheck(ok=False, revision=broken.revision, problem=broken.problem)
    if sources.audit_log is None:
        return Verification(history=own)
    mismatch = audit_chain.cross_check(sources.namespace, _name(md), entries, sources.audit_records)
    against_log = ChainCheck(ok=mismatch is None)
    if mismatch is not None:
        against_log = ChainCheck(
            ok=False, revision=mismatch.revision, line=mismatch.line, problem=mismatch.problem
        )
    return Verification(history=own, audit_log=against_log)
