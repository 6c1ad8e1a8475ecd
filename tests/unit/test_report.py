"""The compliance report: built from histories, versions, Events and the audit log; rendered."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from modelledger.api import (
    Evidence,
    HistoryEntry,
    ModelDeployment,
    ModelDeploymentStatus,
    ModelVersion,
    RevisionCause,
    StableMark,
    Watermark,
)
from modelledger.core import audit_chain, history, trust
from modelledger.core.signing import Keyring, SigningKey
from modelledger.core.workload import pinned_pipeline
from modelledger.report import model, render_html, render_json, render_markdown
from modelledger.report.schema import AuditLogCheck, EventRecord, Report
from modelledger.report.timeline import picture

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
V132, V140 = "fraud-detector-1-3-2", "fraud-detector-1-4-0"
EVIDENCE = Evidence(
    query='max(errors{deployment="fraud-detector"})', value=0.9, threshold=0.5, comparator=">"
)
KEY = SigningKey.generate()
KEYRING = Keyring.of(KEY.public)
SUBJECT = trust.Subject("ml", "fraud-detector")


def version(name: str, revoked: bool = False) -> ModelVersion:
    raw: dict[str, Any] = yaml.safe_load((ROOT / "examples" / f"{name}.yaml").read_text())
    if revoked:
        raw["spec"] |= {"revoked": True, "revocationReason": "failed the fairness audit"}
        raw["status"] = {
            "conditions": [
                {
                    "type": "Revoked",
                    "status": "True",
                    "reason": "VersionRevoked",
                    "lastTransitionTime": (T0 + timedelta(minutes=50)).isoformat(),
                }
            ]
        }
        raw["metadata"]["managedFields"] = [
            {
                "manager": "compliance-bot",
                "operation": "Update",
                "time": "2026-11-27T10:50:00Z",
                "fieldsV1": {"f:spec": {"f:revoked": {}, "f:revocationReason": {}}},
            }
        ]
    return ModelVersion.model_validate(raw)


VERSIONS = {V132: version(V132), V140: version(V140, revoked=True)}

# (minutes after T0, version, cause, actor, extra)
SCENARIO: list[tuple[int, str, RevisionCause, str, dict[str, Any]]] = [
    (0, V132, RevisionCause.DEPLOY, "argocd", {}),
    (10, V140, RevisionCause.DEPLOY, "argocd", {}),
    (
        20,
        V132,
        RevisionCause.AUTOMATIC_ROLLBACK,
        "modelledger/rule:errors",
        {"rule": "errors", "evidence": EVIDENCE},
    ),
    (30, V140, RevisionCause.DEPLOY, "alice", {"actor_verified": True}),
    (
        40,
        V132,
        RevisionCause.MANUAL_ROLLBACK,
        "bob",
        {
            "reason": "latency",
            "request_name": "rollback-1",
            "actor_verified": True,
            "approvers": ["carol"],
        },
    ),
    (50, V140, RevisionCause.DEPLOY, "argocd", {}),
    (51, V132, RevisionCause.REVOCATION, "modelledger/revocation", {"reason": f"{V140} revoked: audit"}),
]


BAKED = StableMark(at=T0 + timedelta(minutes=5), actor="modelledger/bake", actor_verified=True)


def scenario_history(key: SigningKey | None = KEY) -> list[HistoryEntry]:
    """The scenario's history, each decision signed as the operator signs it (unsigned without a key)."""
    entries: list[HistoryEntry] = []
    for minutes, name, cause, actor, extra in SCENARIO:
        entries = history.append(
            entries,
            version=name,
            cause=cause,
            actor=actor,
            at=T0 + timedelta(minutes=minutes),
            pipeline=pinned_pipeline(VERSIONS[name]),
            **extra,
        )
    entries = history.mark_stable(entries, 1, BAKED)
    if key is None:
        return entries
    return trust.sign(ModelDeploymentStatus(history=entries), ModelDeploymentStatus(), key, SUBJECT).history


def signed_watermark(revision: int) -> Watermark:
    status = ModelDeploymentStatus(history_watermark=Watermark(revision=revision))
    signed = trust.sign(status, ModelDeploymentStatus(), KEY, SUBJECT).history_watermark
    assert signed is not None
    return signed


def deployment(
    entries: list[HistoryEntry], limit: int = 10, watermark: Watermark | None = None
) -> ModelDeployment:
    status: dict[str, Any] = {
        "phase": "RolledBack",
        "currentRevision": entries[0].revision,
        "stableRevision": 1,
        "servingVersion": entries[0].version,
        "quarantined": [V140],
        "history": [e.to_wire() for e in entries],
    }
    if watermark is not None:
        status["historyWatermark"] = watermark.to_wire()
    return ModelDeployment.model_validate(
        {
            "metadata": {"name": "fraud-detector", "namespace": "ml", "uid": "5e1f-uid"},
            "spec": {"modelName": "fraud-detector", "version": V140, "revisionHistoryLimit": limit},
            "status": status,
        }
    )


def audit_log(entries: list[HistoryEntry]) -> list[tuple[int, dict[str, Any]]]:
    tip = audit_chain.ChainTip()
    lines = []
    for entry in sorted(entries, key=lambda e: e.revision):
        fields: dict[str, Any] = {
            "ts": entry.at.isoformat(),
            "actor": entry.actor,
            "action": "Deployed",
            "namespace": "ml",
            "deployment": "fraud-detector",
            "revision": entry.revision,
            "version": entry.version,
            "cause": entry.cause.value,
            # the entry as it was written: not yet stable
            "entry": entry.model_copy(update={"stable": False, "stable_mark": None}).to_wire(),
        }
        record = audit_chain.seal(fields, prev_hash=tip.hash, seq=tip.seq + 1, key=KEY)
        tip = audit_chain.ChainTip(record["hash"], record["seq"])
        lines.append(audit_chain.to_line(record))
        if entry.revision == 1:
            marked = {"ts": (entry.at + timedelta(minutes=5)).isoformat(), "actor": "modelledger/bake"}
            marked |= {"action": "MarkedStable", "namespace": "ml", "deployment": "fraud-detector"}
            record = audit_chain.seal(
                marked | {"revision": 1, "version": V132}, prev_hash=tip.hash, seq=tip.seq + 1, key=KEY
            )
            tip = audit_chain.ChainTip(record["hash"], record["seq"])
            lines.append(audit_chain.to_line(record))
    return [(n, r) for n, r, _ in audit_chain.parse_lines(lines) if r is not None]


_CACHE: list[list[HistoryEntry]] = []


def scenario_history_cached() -> list[HistoryEntry]:
    """The same signed history every time (Ed25519 is deterministic, so this equals scenario_history())."""
    if not _CACHE:
        _CACHE.append(scenario_history())
    return _CACHE[0]


def build(
    entries: list[HistoryEntry],
    limit: int = 10,
    with_log: bool = False,
    watermark: Watermark | None = None,
    keyring: Keyring | None = KEYRING,
    **query: Any,
) -> Report:
    sources = model.Sources(
        namespace="ml",
        deployments=[deployment(entries, limit, watermark)],
        versions=VERSIONS,
        events=[
            EventRecord(
                object_kind="ModelDeployment",
                object_name="fraud-detector",
                reason="RolledBack",
                type="Warning",
                message="revision 3: rule errors breached",
                first_seen=T0 + timedelta(minutes=20),
            )
        ],
        audit_records=audit_log(scenario_history()) if with_log else (),
        audit_log=AuditLogCheck(path="audit.jsonl", records=8, ok=True) if with_log else None,
        keyring=keyring,
    )
    return model.build(
        sources, model.Query(generated_at=T0 + timedelta(hours=1), generated_by="examiner", **query)
    )


def test_the_report_lists_every_revision_with_cause_actor_and_evidence() -> None:
    [d] = build(scenario_history()).deployments
    assert [(c.revision, c.version, c.cause, c.actor) for c in d.changes] == [
        (i + 1, name, cause.value, actor) for i, (_, name, cause, actor, _) in enumerate(SCENARIO)
    ]
    auto = d.changes[2]
    assert (auto.previous_version, auto.rule, auto.evidence) == (V140, "errors", EVIDENCE.to_wire())
    assert (d.changes[4].reason, d.changes[4].request_name) == ("latency", "rollback-1")
    assert (d.changes[4].actor_verified, d.changes[4].approvers) == (True, ["carol"])
    assert {c.signature_state for c in d.changes} == {"valid"}
    assert [c.key_id for c in d.changes] == [KEY.key_id] * 7
    assert [q.version for q in d.quarantines] == [V140, V140, V140]
    assert [q.current for q in d.quarantines] == [True, True, True]
    [revocation] = d.revocations
    assert (revocation.version, revocation.revoked_by, revocation.rollback_revision) == (
        V140,
        "compliance-bot",
        7,
    )
    assert [(m.revision, m.actor, m.source, m.signature_state) for m in d.stable_markings] == [
        (1, "modelledger/bake", "status", "valid")
    ]
    assert d.history_complete
    assert (d.verification.history.verdict, d.verification.history.signed) == ("Signed", 7)
    assert d.history == [e.to_wire() for e in scenario_history_cached()], "the signed entries, verbatim"
    assert d.uid == "5e1f-uid"
    provenance = next(v for v in d.versions if v.name == V140)
    assert provenance.code_commit == VERSIONS[V140].spec.provenance.code.commit
    assert provenance.metrics == {"auc": 0.941, "accuracy": 0.973}
    assert [e.reason for e in d.events] == ["RolledBack"]


def test_what_served_at_an_instant_between_changes() -> None:
    for minutes, expected in [(5, 1), (15, 2), (25, 3), (45, 5), (50, 6), (59, 7)]:
        report = build(scenario_history(), at=T0 + timedelta(minutes=minutes))
        served = report.deployments[0].served_at
        assert served is not None
        assert (served.known, served.revision) == (True, expected), minutes
    before = build(scenario_history(), at=T0 - timedelta(minutes=1)).deployments[0].served_at
    assert before is not None
    assert (before.known, before.revision) == (False, None)


def test_timeline_intervals_meet_and_the_last_is_open() -> None:
    [d] = build(scenario_history()).deployments
    assert all(a.end == b.start for a, b in zip(d.timeline, d.timeline[1:], strict=False))
    assert d.timeline[-1].end is None
    assert d.timeline[0].stable


def test_a_time_range_keeps_the_changes_inside_and_what_served_across_it() -> None:
    [d] = build(
        scenario_history(), since=T0 + timedelta(minutes=25), until=T0 + timedelta(minutes=45)
    ).deployments
    assert [c.revision for c in d.changes] == [4, 5]
    assert [t.revision for t in d.timeline] == [3, 4, 5]


def test_pruned_revisions_come_back_from_the_audit_log() -> None:
    pruned = history.prune(scenario_history(), 2, 7)
    assert [e.revision for e in pruned] == [7, 6, 1]
    watermark = signed_watermark(6)
    [without] = build(pruned, limit=2, watermark=watermark).deployments
    assert not without.history_complete
    assert without.verification.history.verdict == "Signed", "pruned below a signed watermark"
    at_25 = build(pruned, limit=2, watermark=watermark, at=T0 + timedelta(minutes=25)).deployments[0]
    assert at_25.served_at is not None
    assert not at_25.served_at.known, "revision 1 may have been replaced by a pruned revision"

    [full] = build(pruned, limit=2, with_log=True, watermark=watermark).deployments
    assert full.history_complete
    assert [(c.revision, c.source) for c in full.changes][:3] == [
        (1, "status"),
        (2, "auditLog"),
        (3, "auditLog"),
    ]
    assert [e["revision"] for e in full.audit_log_history] == [5, 4, 3, 2]
    assert full.history_watermark == watermark.to_wire()
    assert full.verification.audit_log is not None
    assert full.verification.audit_log.ok
    assert (full.verification.history.verdict, full.verification.history.signed) == ("Signed", 7)
    assert [(m.revision, m.actor, m.source) for m in full.stable_markings] == [
        (1, "modelledger/bake", "status")
    ]


def test_pruning_without_a_signed_watermark_is_tampering() -> None:
    pruned = history.prune(scenario_history(), 2, 7)
    check = build(pruned, limit=2).deployments[0].verification.history
    assert (check.verdict, check.revision) == ("Tampered", 2)


def test_an_unsigned_history_is_unsigned_and_without_keys_not_checked() -> None:
    unsigned = build(scenario_history(key=None)).deployments[0].verification.history
    assert (unsigned.verdict, unsigned.ok, unsigned.unsigned) == ("Unsigned", True, 7)
    report = build(scenario_history(), keyring=None)
    assert report.keys is None
    [d] = report.deployments
    assert (d.verification.history.verdict, d.verification.history.signed) == ("NotChecked", 7)
    assert {c.signature_state for c in d.changes} == {"notChecked"}
    other = Keyring.of(SigningKey.generate().public)
    foreign = build(scenario_history(), keyring=other).deployments[0]
    assert (foreign.verification.history.verdict, foreign.verification.history.revision) == ("Tampered", 1)
    assert foreign.changes[0].signature_state == "unknownKey"


def test_a_tampered_history_fails_verification_in_the_report() -> None:
    entries = scenario_history()
    entries[3] = entries[3].model_copy(update={"actor": "mallory"})
    report = build(entries, with_log=True)
    [d] = report.deployments
    assert (d.verification.history.verdict, d.verification.history.revision) == ("Tampered", 4)
    assert d.verification.audit_log is not None
    assert (d.verification.audit_log.ok, d.verification.audit_log.revision) == (False, 4)
    assert not report.ok


def test_json_is_the_versioned_schema_and_round_trips() -> None:
    report = build(scenario_history(), with_log=True, at=T0 + timedelta(minutes=25))
    document = json.loads(render_json.render(report))
    assert document["schema"] == "modelledger.report/v2"
    assert document["deployments"][0]["history"][0]["signature"] == scenario_history_cached()[0].signature
    assert document["deployments"][0]["servedAt"]["revision"] == 3
    assert set(document["deployments"][0]["timeline"][0]) >= {"revision", "version", "start", "end", "cause"}
    assert Report.model_validate(document) == report


def test_the_published_json_schema_is_current() -> None:
    published = ROOT / "docs" / "report-schema.json"
    assert published.read_text() == render_json.json_schema(), (
        "docs/report-schema.json is stale: modelledger report --json-schema > docs/report-schema.json"
    )


def test_markdown_and_html_carry_the_same_facts() -> None:
    report = build(scenario_history(), with_log=True, at=T0 + timedelta(minutes=25))
    text = render_markdown.render(report)
    assert "| 3 | fraud-detector-1-3-2 |" in text
    assert "AutomaticRollback (errors)" in text
    assert "**Served at 2026-11-27 10:25:00 UTC:** revision 3" in text
    assert "| bob | yes | carol | latency |" in text, "actor, verified, approvers"
    assert "every one of 7 revisions signed and verified" in text
    assert text.count("| signed |") == 7
    page = render_html.render(report)
    assert page.startswith("<!DOCTYPE html>")
    assert "<svg" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', ""), "self-contained"
    assert "@media print" in page
    assert "<script" not in page
    assert "<td>bob</td><td>yes</td>\n<td>carol</td>" in page
    assert "every one of 7 revisions signed and verified" in page


def test_html_escapes_what_people_wrote() -> None:
    entries = history.append(
        scenario_history(),
        version=V132,
        cause=RevisionCause.MANUAL_ROLLBACK,
        actor="eve",
        at=T0 + timedelta(minutes=55),
        pipeline=pinned_pipeline(VERSIONS[V132]),
        reason="<script>alert(1)</script>",
    )
    page = render_html.render(build(entries))
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;" in page


def test_timeline_picture_has_a_lane_per_version_and_marks_rollbacks() -> None:
    report = build(scenario_history())
    drawing = picture(report.deployments[0], report.window)
    assert [lane.version for lane in drawing.lanes] == [V132, V140]
    assert len(drawing.bars) == 7
    assert len(drawing.rollbacks) == 3, "automatic, manual and revocation"
    xs = [bar.x for bar in drawing.bars]
    assert xs == sorted(xs)
    assert all(b.x + b.width <= drawing.width for b in drawing.bars)
