"""The audit log's own hash chain: sealing, verification naming the first bad line, and the
cross-check of a status history against the entries the log recorded."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelledger.api import HistoryEntry, PinnedPipeline, RevisionCause
from modelledger.core import audit_chain, history
from modelledger.core.history import GENESIS

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
PIPELINE = PinnedPipeline(
    artifact_digest="sha256:" + "a" * 64, image="ghcr.io/acme/server@sha256:" + "b" * 64
)


def entries(count: int) -> list[HistoryEntry]:
    built: list[HistoryEntry] = []
    for i in range(count):
        built = history.append(
            built,
            version=f"m-{i + 1}",
            cause=RevisionCause.DEPLOY,
            actor="argocd",
            at=T0 + timedelta(minutes=i),
            pipeline=PIPELINE,
        )
    return built


def log_of(revisions: list[HistoryEntry], namespace: str = "ml", deployment: str = "fraud") -> list[str]:
    """One `Deployed` line per revision, oldest first, as the operator writes them."""
    tip = audit_chain.ChainTip()
    lines = []
    for entry in sorted(revisions, key=lambda e: e.revision):
        record = audit_chain.seal(
            {
                "ts": entry.at.isoformat(),
                "actor": entry.actor,
                "action": "Deployed",
                "kind": "ModelDeployment",
                "namespace": namespace,
                "deployment": deployment,
                "object": deployment,
                "revision": entry.revision,
                "version": entry.version,
                "cause": entry.cause.value,
                "entry": entry.to_wire(),
            },
            prev_hash=tip.hash,
            seq=tip.seq + 1,
        )
        tip = audit_chain.ChainTip(record["hash"], record["seq"])
        lines.append(audit_chain.to_line(record))
    return lines


def edit(line: str, **changes: Any) -> str:
    record = json.loads(line)
    record.update(changes)
    return json.dumps(record) + "\n"


def test_every_record_has_the_fixed_schema_and_links_to_the_previous() -> None:
    lines = log_of(entries(3))
    records = [json.loads(line) for line in lines]
    assert all(list(r) == sorted(r) for r in records), "canonical: sorted keys"
    assert all(set(r) == set(audit_chain.FIELDS) for r in records)
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[0]["prev_hash"] == GENESIS
    assert records[1]["prev_hash"] == records[0]["hash"]
    assert all(r["audit"] is True and r["schema"] == audit_chain.SCHEMA for r in records)
    assert records[2]["digests"] is None, "absent fields are null, not missing"
    result = audit_chain.verify_lines(lines)
    assert result.ok
    assert result.records == 3
    assert result.tip == audit_chain.ChainTip(records[2]["hash"], 3)


def test_sealing_refuses_fields_outside_the_schema() -> None:
    with pytest.raises(ValueError, match="not in the audit schema: colour"):
        audit_chain.seal({"colour": "red"}, prev_hash=GENESIS, seq=1)
    with pytest.raises(ValueError, match="set by sealing"):
        audit_chain.seal({"signature": "x"}, prev_hash=GENESIS, seq=1)


def test_the_hash_leaves_out_the_signature_and_key_id() -> None:
    record = json.loads(log_of(entries(1))[0])
    assert record["schema"] == "modelledger.audit/v2"
    assert (record["key_id"], record["signature"]) == (None, None), "no key: unsigned, keys still present"
    body = {k: v for k, v in record.items() if k not in ("hash", "key_id", "signature")}
    expected = hashlib.sha256(record["prev_hash"].encode() + history.canonical_json(body)).hexdigest()
    assert record["hash"] == f"sha256:{expected}"


def test_an_altered_line_is_named() -> None:
    lines = log_of(entries(4))
    lines[2] = edit(lines[2], actor="mallory")
    broken = audit_chain.verify_lines(lines).broken
    assert broken is not None
    assert (broken.line, broken.seq) == (3, 3)
    assert "altered" in broken.problem
    assert "line 3 (seq 3, ml/fraud revision 3 Deployed)" in broken.describe()


def test_a_removed_line_is_named_by_the_line_after_the_gap() -> None:
    lines = log_of(entries(4))
    del lines[1]
    broken = audit_chain.verify_lines(lines).broken
    assert broken is not None
    assert (broken.line, broken.seq) == (2, 3)
    assert "removed" in broken.problem


def test_reordered_lines_are_named() -> None:
    lines = log_of(entries(4))
    lines[1], lines[2] = lines[2], lines[1]
    broken = audit_chain.verify_lines(lines).broken
    assert broken is not None
    assert broken.line == 2
    assert "reordered" in broken.problem


def test_an_altered_line_with_a_recomputed_hash_breaks_the_next_link() -> None:
    lines = log_of(entries(3))
    forged = json.loads(lines[1])
    forged["actor"] = "mallory"
    forged["hash"] = audit_chain.record_hash(forged)
    lines[1] = json.dumps(forged) + "\n"
    broken = audit_chain.verify_lines(lines).broken
    assert broken is not None
    assert broken.line == 3
    assert "line 2 was altered" in broken.problem


def test_removing_the_first_line_or_a_torn_line_is_detected() -> None:
    lines = log_of(entries(3))
    first_gone = audit_chain.verify_lines(lines[1:]).broken
    assert first_gone is not None
    assert first_gone.line == 1
    assert "start of the chain" in first_gone.problem
    rotated = audit_chain.verify_lines(lines[1:], anchor=json.loads(lines[0])["hash"])
    assert rotated.ok, "a rotated file verifies from the previous file's last hash"
    torn = audit_chain.verify_lines([*lines, '{"audit": true, "seq'])
    assert torn.broken is not None
    assert torn.broken.line == 4
    assert "not a JSON object" in torn.broken.problem


def test_tip_of_the_last_line_continues_the_chain() -> None:
    lines = log_of(entries(2))
    tip = audit_chain.tip_of(lines[-1])
    assert tip.seq == 2
    assert tip.hash == json.loads(lines[-1])["hash"]
    assert audit_chain.tip_of(None) == audit_chain.ChainTip()


def test_cross_check_catches_a_history_rewritten_with_recomputed_hashes() -> None:
    original = entries(3)
    lines = log_of(original)
    records = [(n, r) for n, r, _ in audit_chain.parse_lines(lines) if r is not None]
    assert audit_chain.cross_check("ml", "fraud", original, records) is None

    # Rewrite revision 2 and re-chain everything after it: the history verifies on its own...
    oldest = sorted(original, key=lambda e: e.revision)
    forged = [oldest[0]]
    for entry in oldest[1:]:
        changed = entry.model_copy(
            update={"prev_hash": forged[-1].hash, "actor": "mallory" if entry.revision == 2 else entry.actor}
        )
        forged.append(changed.model_copy(update={"hash": history.entry_hash(changed)}))
    forged.reverse()
    assert history.verify(forged) is None
    # ...but not against the append-only log.
    mismatch = audit_chain.cross_check("ml", "fraud", forged, records)
    assert mismatch is not None
    assert (mismatch.revision, mismatch.line) == (2, 2)
    assert audit_chain.cross_check("ml", "other", forged, records) is None, "other deployments' lines"
