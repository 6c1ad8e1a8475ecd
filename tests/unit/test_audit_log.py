"""The audit adapter: records appended to the JSONL file, chained across restarts, mirrored in logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from modelledger.adapters import audit
from modelledger.api import Evidence, HistoryEntry, PinnedPipeline, RevisionCause
from modelledger.core import audit_chain, history, trust
from modelledger.core.decision import Decision
from modelledger.core.signing import Keyring, SigningKey

PIPELINE = PinnedPipeline(
    artifact_digest="sha256:" + "a" * 64, image="ghcr.io/acme/server@sha256:" + "b" * 64
)
AT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def revision_one() -> HistoryEntry:
    return history.append(
        [], version="m-1", cause=RevisionCause.DEPLOY, actor="argocd", at=AT, pipeline=PIPELINE
    )[0]


def fresh_trail(path: Path) -> audit.AuditTrail:
    trail = audit.AuditTrail()
    trail.write_to(path)
    return trail


@pytest.fixture
def trail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> audit.AuditTrail:
    """The process-wide trail, writing to a fresh file for this test."""
    fresh = fresh_trail(tmp_path / "audit" / "audit.jsonl")
    monkeypatch.setattr(audit, "TRAIL", fresh)
    return fresh


def test_a_decision_becomes_one_chained_line_in_the_file_and_the_log(trail: audit.AuditTrail) -> None:
    entry = revision_one()
    decision = Decision(
        "Deployed", "revision 1", actor="argocd", revision=1, version="m-1", cause=RevisionCause.DEPLOY
    )
    with capture_logs() as logs:
        written = audit.record("ModelDeployment", "ml", "fraud", decision, entry)
    assert trail.path is not None
    line = json.loads(trail.path.read_text())
    assert line == written
    assert (line["action"], line["actor"], line["namespace"], line["deployment"]) == (
        "Deployed",
        "argocd",
        "ml",
        "fraud",
    )
    assert line["digests"]["artifactDigest"] == PIPELINE.artifact_digest
    assert line["entry"]["hash"] == entry.hash, "the history entry, verbatim: anchors the status history"
    assert (line["prev_hash"], line["seq"]) == ("", 1)
    [logged] = [e for e in logs if e.get("audit")]
    assert logged["event"] == "Deployed"
    assert (logged["ts"], logged["hash"]) == (line["ts"], line["hash"]), "the log line is the same record"


def test_a_restarted_writer_continues_the_chain_from_the_last_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = fresh_trail(path)
    first.emit({"action": "Deployed", "namespace": "ml", "deployment": "a"})
    first.emit({"action": "RolloutComplete", "namespace": "ml", "deployment": "a"})
    second = fresh_trail(path)  # the operator restarted
    second.emit({"action": "MarkedStable", "namespace": "ml", "deployment": "a"})
    lines = path.read_text().splitlines(keepends=True)
    result = audit_chain.verify_lines(lines)
    assert result.ok, result.broken
    assert [json.loads(line)["seq"] for line in lines] == [1, 2, 3]


def test_a_torn_last_line_is_set_aside_and_the_chain_continues(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    fresh_trail(path).emit({"action": "Deployed", "namespace": "ml", "deployment": "a"})
    with path.open("a") as out:
        out.write('{"audit": true, "act')  # the process died mid-write
    fresh_trail(path).emit({"action": "MarkedStable", "namespace": "ml", "deployment": "a"})
    lines = path.read_text().splitlines(keepends=True)
    assert [json.loads(line)["seq"] for line in lines] == [1, 2], "nothing glued onto the torn line"
    assert audit_chain.verify_lines(lines).ok
    [aside] = [json.loads(line) for line in audit.torn_path(path).read_text().splitlines()]
    assert aside["text"] == '{"audit": true, "act', "the torn bytes are kept, not dropped"


def test_last_complete_line_reads_backwards_across_blocks(
    trail: audit.AuditTrail, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(50):
        trail.emit({"action": "Deployed", "namespace": "ml", "deployment": "a", "message": f"{'x' * 300}{i}"})
    monkeypatch.setattr(audit, "_TAIL_BLOCK", 128)  # smaller than one line: exercises the block loop
    assert trail.path is not None
    last = audit.last_complete_line(trail.path)
    assert last is not None
    assert json.loads(last)["seq"] == 50


def test_a_version_event_is_a_record_of_its_own(trail: audit.AuditTrail) -> None:
    blocked = audit.record_version_event("DeletionBlocked", "ml", "m-1", "history of fraud names it")
    assert (blocked["kind"], blocked["object"], blocked["deployment"]) == ("ModelVersion", "m-1", None)
    assert blocked["action"] == "DeletionBlocked"


def test_a_rule_state_change_names_its_rule(trail: audit.AuditTrail) -> None:
    decision = Decision(
        "RuleStateChanged",
        "rule errors: Pass -> Breached",
        actor="modelledger/rule:errors",
        rule="errors",
        warning=True,
    )
    assert audit.record("ModelDeployment", "ml", "fraud", decision, None)["rule"] == "errors"


def test_evidence_of_an_automatic_rollback_is_recorded(trail: audit.AuditTrail) -> None:
    evidence = Evidence(query='max(errors{deployment="fraud"})', value=0.9, threshold=0.5, comparator=">")
    decision = Decision(
        "RolledBack",
        "rolled back",
        actor="modelledger/rule:errors",
        revision=1,
        version="m-1",
        cause=RevisionCause.AUTOMATIC_ROLLBACK,
        evidence=evidence,
    )
    record = audit.record("ModelDeployment", "ml", "fraud", decision, None)
    assert record["evidence"] == {"query": evidence.query, "value": 0.9, "threshold": 0.5, "comparator": ">"}
    assert record["cause"] == "AutomaticRollback"


def test_with_a_key_every_record_is_signed_and_carries_the_signed_entry(trail: audit.AuditTrail) -> None:
    key = SigningKey.generate()
    trail.emit({"action": "Started", "namespace": "ml"})  # before the key was loaded: unsigned
    audit.use_key(key)
    subject = trust.Subject("ml", "fraud")
    entry = revision_one()
    entry = entry.model_copy(
        update={"key_id": key.key_id, "signature": key.sign(trust.entry_message(subject, entry.hash))}
    )
    decision = Decision(
        "Deployed", "revision 1", actor="argocd", revision=1, version="m-1", cause=RevisionCause.DEPLOY
    )
    written = audit.record("ModelDeployment", "ml", "fraud", decision, entry)
    assert written["schema"] == "modelledger.audit/v2"
    assert written["key_id"] == key.key_id
    assert (
        Keyring.of(key.public)
        .check(key.key_id, trust.audit_record_message(written["hash"]), written["signature"])
        .value
        == "valid"
    )
    assert written["entry"]["signature"] == entry.signature, "the history entry verbatim, signature too"
    assert trail.path is not None
    lines = trail.path.read_text().splitlines(keepends=True)
    result = audit_chain.verify_lines(lines, keyring=Keyring.of(key.public))
    assert (result.ok, result.signed, result.unsigned) == (True, 1, 1)
    assert not audit_chain.verify_lines(lines, keyring=Keyring()).ok, "an unknown key does not verify"
