"""Verify an exported report offline: the signatures of the history it embeds, and that every fact it
derives from that history (changes, what served when, stable markings, quarantines, revocation
rollbacks) is what the signed entries say. Pure: the caller reads the file and the public keys.

The derived facts are recomputed with the code that built them (`model.derive` and `model.visible`),
so a report whose tables were edited fails even when its embedded history was left alone, and a report
whose history was edited and re-hashed fails on the signatures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from modelledger.api import HistoryEntry, RevisionCause, Watermark
from modelledger.core import trust
from modelledger.core.signing import Keyring
from modelledger.report import model
from modelledger.report.schema import DeploymentReport, HistoryCheck, Report

# Verification results, not facts of the history: the verifier's own check replaces them.
_NOT_COMPARED = frozenset({"signature_state", "signatureState"})  # a verdict, not a fact


@dataclass(frozen=True)
class DeploymentResult:
    namespace: str
    name: str
    check: HistoryCheck

    def describe(self) -> str:
        check = self.check
        if check.verdict == "Tampered":
            where = f"revision {check.revision}: " if check.revision is not None else ""
            return f"{where}{check.problem}"
        total = check.signed + check.unsigned
        if check.verdict == "Unsigned":
            return f"{check.unsigned} unsigned of {total} revisions; the report's facts match them"
        return f"{total} revisions, every one signed; the report's facts match them"


def _tampered(revision: int | None, problem: str) -> HistoryCheck:
    return HistoryCheck(verdict="Tampered", ok=False, revision=revision, problem=problem)


def verify(report: Report, keyring: Keyring) -> list[DeploymentResult]:
    """One result per deployment in the report."""
    return [
        DeploymentResult(d.namespace, d.name, verify_deployment(report, d, keyring))
        for d in report.deployments
    ]


def _revision_of(raw: Any) -> int | None:
    value = raw.get("revision") if isinstance(raw, Mapping) else None
    return value if isinstance(value, int) else None


def _entries(raws: Sequence[Mapping[str, Any]], what: str) -> list[HistoryEntry] | HistoryCheck:
    entries = []
    for raw in raws:
        try:
            entries.append(HistoryEntry.model_validate(raw))
        except ValidationError as error:
            return _tampered(_revision_of(raw), f"{what} entry unreadable: {error.errors()[0]['msg']}")
    return entries


def verify_deployment(report: Report, d: DeploymentReport, keyring: Keyring) -> HistoryCheck:
    status = _entries(d.history, "history")
    if isinstance(status, HistoryCheck):
        return status
    restored = _entries(d.audit_log_history, "auditLogHistory")
    if isinstance(restored, HistoryCheck):
        return restored
    try:
        watermark = Watermark.model_validate(d.history_watermark) if d.history_watermark else None
    except ValidationError as error:
        return _tampered(None, f"historyWatermark unreadable: {error.errors()[0]['msg']}")
    subject = trust.Subject(d.namespace, d.name, d.uid or "")
    check = model.check_entries(status, watermark, restored, keyring, subject, limit=d.revision_history_limit)
    if not check.ok:
        return check
    if found := facts_problem(report, d, status, restored, keyring, subject):
        revision, problem = found
        return _tampered(revision, problem)
    return check


def facts_problem(
    report: Report,
    d: DeploymentReport,
    status: Sequence[HistoryEntry],
    restored: Sequence[HistoryEntry],
    keyring: Keyring | None,
    subject: trust.Subject,
) -> tuple[int | None, str] | None:
    """The first (lowest revision) fact of `d` that does not follow from the embedded entries."""
    revisions = model.known_revisions(
        status, [e for e in restored if e.revision not in {s.revision for s in status}]
    )
    # Markings from the audit log and Events are not signed: they are taken as the report gives them,
    # but only where the signed history has no word of its own (derive drops them elsewhere).
    others = [m for m in d.stable_markings if m.source != "status"]
    derived = model.derive(revisions, others, keyring, subject)
    shown = model.visible(derived, report.window, report.at)
    problems: list[tuple[int | None, str]] = []
    problems += _compare("change", d.changes, shown.changes)
    problems += _compare("served interval", d.timeline, shown.timeline)
    problems += _compare("stable marking", d.stable_markings, shown.stable_markings)
    if _dump(d.served_at) != _dump(shown.served_at):
        revision = d.served_at.revision if d.served_at else None
        problems.append((revision, "servedAt does not follow from the signed history"))
    if d.history_complete != derived.history_complete:
        problems.append((None, "historyComplete does not follow from the signed history"))
    problems += _quarantine_problems(d, derived, report)
    problems += _revocation_problems(d, derived)
    if not problems:
        return None
    return min(problems, key=lambda p: (p[0] is None, p[0] or 0))


def _dump(value: BaseModel | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {k: v for k, v in value.model_dump().items() if k not in _NOT_COMPARED}


def _compare(what: str, claimed: Sequence[Any], derived: Sequence[Any]) -> list[tuple[int | None, str]]:
    """Facts keyed by revision: each claimed one must be the derived one, and none may be missing."""
    have = {item.revision: _dump(item) for item in claimed}
    want = {item.revision: _dump(item) for item in derived}
    problems: list[tuple[int | None, str]] = []
    if len(have) != len(claimed):
        problems.append((None, f"a {what} appears twice"))
    for revision in sorted(have.keys() | want.keys()):
        mine, theirs = have.get(revision), want.get(revision)
        if mine == theirs:
            continue
        if theirs is None:
            problems.append((revision, f"the report's {what} is not in the signed history"))
        elif mine is None:
            problems.append((revision, f"the signed history's {what} is missing from the report"))
        else:
            fields = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            problems.append(
                (revision, f"the report's {what} differs from the signed entry ({', '.join(fields)})")
            )
    return problems


def _quarantine_problems(
    d: DeploymentReport, derived: model.Derived, report: Report
) -> list[tuple[int | None, str]]:
    by_revision = {c.revision: c for c in derived.changes}
    problems: list[tuple[int | None, str]] = []
    claimed = set()
    for q in d.quarantines:
        change = by_revision.get(q.revision)
        claimed.add(q.revision)
        if (
            change is None
            or change.cause == RevisionCause.DEPLOY.value
            or (change.previous_version, change.at, change.cause, change.actor)
            != (q.version, q.at, q.cause, q.actor)
        ):
            problems.append((q.revision, "the report's quarantine does not follow from the signed history"))
    for change in derived.changes:
        rollback = change.cause != RevisionCause.DEPLOY.value and change.previous_version is not None
        if rollback and model.in_window(change.at, report.window) and change.revision not in claimed:
            problems.append(
                (change.revision, "a quarantine of the signed history is missing from the report")
            )
    return problems


def _revocation_problems(d: DeploymentReport, derived: model.Derived) -> list[tuple[int | None, str]]:
    problems: list[tuple[int | None, str]] = []
    for revocation in d.revocations:
        rollback = next(
            (
                c
                for c in derived.changes
                if c.cause == RevisionCause.REVOCATION.value and c.previous_version == revocation.version
            ),
            None,
        )
        expected = rollback.revision if rollback else None
        if revocation.rollback_revision != expected:
            revision = revocation.rollback_revision or expected
            problems.append(
                (revision, f"the revocation of {revocation.version} names the wrong rollback revision")
            )
    return problems
