"""Tampering with a signed history or a signed audit log: any single change is detected, and the first
bad revision (or line) is named. Pruning below a signed watermark is not tampering."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelledger.api import (
    Evidence,
    HistoryEntry,
    ModelDeploymentStatus,
    PinnedComponent,
    PinnedPipeline,
    RevisionCause,
    StableMark,
)
from modelledger.core import audit_chain, trust
from modelledger.core.signing import Keyring, SigningKey
from tests.unit import signed_histories as sh

KEY = SigningKey.generate()
KEYRING = Keyring.of(KEY.public)
OTHER = SigningKey.generate()
OTHER_SIGNATURE = OTHER.sign(b"something else")

# One replacement per field of an entry, each different from whatever the entry holds.
ALTERATIONS: dict[str, Callable[[HistoryEntry], Any]] = {
    "version": lambda e: e.version + "-evil",
    "cause": lambda e: (
        RevisionCause.MANUAL_ROLLBACK
        if e.cause is not RevisionCause.MANUAL_ROLLBACK
        else RevisionCause.DEPLOY
    ),
    "rule": lambda e: (e.rule or "") + "x",
    "reason": lambda e: e.reason + " (edited)",
    "evidence": lambda e: Evidence(query="up", value=1.0, threshold=0.5, comparator=">"),
    "at": lambda e: e.at - timedelta(days=1),
    "actor": lambda e: e.actor + "-mallory",
    "actor_groups": lambda e: [*e.actor_groups, "system:masters"],
    "actor_verified": lambda e: not e.actor_verified,
    "approvers": lambda e: [*e.approvers, "mallory"],
    "request_name": lambda e: (e.request_name or "") + "r",
    "request_id": lambda e: (e.request_id or "") + "r",
    "pipeline": lambda e: PinnedPipeline(
        artifact_digest="sha256:" + "c" * 64,
        image=e.pipeline.image if e.pipeline else "x",
        components=[PinnedComponent(name="pre", digest="sha256:" + "d" * 64)],
    ),
    "prev_hash": lambda e: "sha256:" + "e" * 64,
    "hash": lambda e: "sha256:" + "f" * 64,
    "key_id": lambda e: OTHER.key_id,
    "signature": lambda e: OTHER_SIGNATURE,
    "stable": lambda e: not e.stable,
    "stable_mark": lambda e: (
        e.stable_mark.model_copy(update={"actor": "mallory"})
        if e.stable_mark
        else StableMark(at=e.at, actor="mallory", actor_verified=True)
    ),
}


def history_of(size: int, stable: frozenset[int]) -> ModelDeploymentStatus:
    return sh.signed_status(size, KEY, stable=tuple(sorted(stable)))


@st.composite
def signed_histories(draw: st.DrawFn, min_size: int = 1) -> ModelDeploymentStatus:
    size = draw(st.integers(min_value=min_size, max_value=8))
    stable = draw(st.frozensets(st.integers(min_value=1, max_value=size), max_size=3))
    return history_of(size, stable)


def check(entries: list[HistoryEntry], status: ModelDeploymentStatus) -> trust.HistoryCheck:
    return trust.check_history(entries, status.history_watermark, KEYRING, sh.SUBJECT)


def replace(entries: list[HistoryEntry], revision: int, **update: Any) -> list[HistoryEntry]:
    return [e.model_copy(update=update) if e.revision == revision else e for e in entries]


@settings(max_examples=150, deadline=None)
@given(status=signed_histories(), data=st.data())
def test_any_single_altered_field_of_any_entry_is_named(
    status: ModelDeploymentStatus, data: st.DataObject
) -> None:
    assert check(status.history, status).verdict is trust.Verdict.SIGNED
    revision = data.draw(st.sampled_from([e.revision for e in status.history]), label="revision")
    field = data.draw(st.sampled_from(sorted(ALTERATIONS)), label="field")
    entry = next(e for e in status.history if e.revision == revision)
    tampered = replace(status.history, revision, **{field: ALTERATIONS[field](entry)})
    result = check(tampered, status)
    assert result.verdict is trust.Verdict.TAMPERED, (field, revision)
    assert result.revision == revision, (field, result)


@settings(max_examples=60, deadline=None)
@given(status=signed_histories(), data=st.data())
def test_a_rehashed_chain_signed_by_another_key_is_named(
    status: ModelDeploymentStatus, data: st.DataObject
) -> None:
    revision = data.draw(st.sampled_from([e.revision for e in status.history]))
    forged = sh.rehash(replace(status.history, revision, actor="mallory"))
    # The forger signs every entry it touched with its own key, under its own or under our key id.
    own_id = data.draw(st.booleans())
    resigned = [
        e.model_copy(
            update={
                "key_id": OTHER.key_id if own_id else KEY.key_id,
                "signature": OTHER.sign(trust.entry_message(sh.SUBJECT, e.hash)),
            }
        )
        if e.revision >= revision
        else e
        for e in forged
    ]
    result = check(resigned, status)
    assert (result.verdict, result.revision) == (trust.Verdict.TAMPERED, revision)
    assert ("unknown key id" if own_id else "does not verify") in result.problem


@settings(max_examples=60, deadline=None)
@given(status=signed_histories(), data=st.data())
def test_a_flipped_stable_flag_is_named_both_ways(status: ModelDeploymentStatus, data: st.DataObject) -> None:
    revision = data.draw(st.sampled_from([e.revision for e in status.history]))
    entry = next(e for e in status.history if e.revision == revision)
    result = check(replace(status.history, revision, stable=not entry.stable), status)
    assert (result.verdict, result.revision) == (trust.Verdict.TAMPERED, revision)
    if entry.stable:
        # Un-marking with the signed mark removed too leaves entries that could be from before the
        # marking; the status seal is what shows it (the operator's check, and `audit verify`).
        unmarked = status.model_copy(
            update={"history": replace(status.history, revision, stable=False, stable_mark=None)}
        )
        sealed = trust.check_status(unmarked, KEYRING, sh.SUBJECT)
        assert sealed.verdict is trust.Verdict.TAMPERED
        assert "status seal" in sealed.problem
    else:
        # Marking "properly", with a forged mark, fails as well.
        forged_mark = StableMark(at=entry.at, actor="modelledger/bake", actor_verified=True)
        forged_mark = forged_mark.model_copy(
            update={
                "key_id": KEY.key_id,
                "signature": OTHER.sign(trust.stable_message(sh.SUBJECT, entry.hash, forged_mark)),
            }
        )
        result = check(replace(status.history, revision, stable=True, stable_mark=forged_mark), status)
        assert (result.verdict, result.revision) == (trust.Verdict.TAMPERED, revision)


@settings(max_examples=60, deadline=None)
@given(status=signed_histories(min_size=2), data=st.data())
def test_a_removed_revision_above_the_watermark_is_named(
    status: ModelDeploymentStatus, data: st.DataObject
) -> None:
    pruned = sh.prune(status, data.draw(st.integers(min_value=1, max_value=len(status.history))), KEY)
    assert check(pruned.history, pruned).verdict is trust.Verdict.SIGNED, "pruning below the watermark"
    watermark = pruned.history_watermark.revision if pruned.history_watermark else 1
    above = [e.revision for e in pruned.history if e.revision >= watermark]
    newest = max(above)
    removable = [r for r in above if r != newest]
    if not removable:
        return
    revision = data.draw(st.sampled_from(removable))
    result = check([e for e in pruned.history if e.revision != revision], pruned)
    assert (result.verdict, result.revision) == (trust.Verdict.TAMPERED, revision)
    assert "revision removed" in result.problem


@settings(max_examples=40, deadline=None)
@given(status=signed_histories(min_size=2), data=st.data())
def test_an_unsigned_entry_after_a_signed_one_is_named(
    status: ModelDeploymentStatus, data: st.DataObject
) -> None:
    revision = data.draw(st.sampled_from([e.revision for e in status.history if e.revision > 1]))
    result = check(replace(status.history, revision, key_id=None, signature=None), status)
    assert (result.verdict, result.revision) == (trust.Verdict.TAMPERED, revision)
    assert "unsigned entry after a signed one" in result.problem


def test_an_unknown_key_id_is_named() -> None:
    status = history_of(3, frozenset())
    unknown = "sha256:" + "9" * 64
    result = check(replace(status.history, 2, key_id=unknown), status)
    assert (result.verdict, result.revision) == (trust.Verdict.TAMPERED, 2)
    assert f"unknown key id (key {unknown})" in result.problem


def test_pruning_below_a_signed_watermark_is_accepted_and_an_unsigned_watermark_is_not() -> None:
    status = history_of(8, frozenset({2}))
    status = status.model_copy(update={"current_revision": 8})
    pruned = sh.prune(status, 3, KEY)
    assert [e.revision for e in pruned.history] == [8, 7, 6, 2]
    assert pruned.history_watermark is not None
    assert pruned.history_watermark.revision == 6
    assert check(pruned.history, pruned).verdict is trust.Verdict.SIGNED
    lowered = pruned.history_watermark.model_copy(update={"revision": 7})
    result = trust.check_history(pruned.history, lowered, KEYRING, sh.SUBJECT)
    assert result.verdict is trust.Verdict.TAMPERED
    assert "pruning watermark 7" in result.problem
    unsigned = pruned.history_watermark.model_copy(update={"signature": None, "key_id": None})
    assert (
        trust.check_history(pruned.history, unsigned, KEYRING, sh.SUBJECT).verdict is trust.Verdict.TAMPERED
    )


def test_an_unsigned_history_is_unsigned_not_signed() -> None:
    status = sh.signed_status(3, None, stable=(1,))
    result = check(status.history, status)
    assert (result.verdict, result.unsigned) == (trust.Verdict.UNSIGNED, 3)


# --- the audit log ------------------------------------------------------------------------------------


def signed_log(count: int, key: SigningKey | None = KEY) -> list[str]:
    tip = audit_chain.ChainTip()
    lines = []
    for i in range(count):
        fields = {
            "ts": (sh.T0 + timedelta(seconds=i)).isoformat(),
            "actor": "modelledger/bake",
            "action": "Deployed",
            "kind": "ModelDeployment",
            "namespace": "ml",
            "deployment": "fraud",
            "object": "fraud",
            "revision": i + 1,
            "message": f"revision {i + 1}",
        }
        record = audit_chain.seal(fields, prev_hash=tip.hash, seq=tip.seq + 1, key=key)
        tip = audit_chain.ChainTip(record["hash"], record["seq"])
        lines.append(audit_chain.to_line(record))
    return lines


def rewrite(line: str, resign: SigningKey | None = None, rehash: bool = False, **changes: Any) -> str:
    record = json.loads(line)
    record.update(changes)
    if rehash:
        record["hash"] = audit_chain.record_hash(record)
    if resign is not None:
        record["key_id"] = resign.key_id
        record["signature"] = resign.sign(trust.audit_record_message(record["hash"]))
    return audit_chain.to_line(record)


LOG_FIELDS = ("ts", "actor", "action", "namespace", "deployment", "revision", "message", "seq", "prev_hash")


@settings(max_examples=100, deadline=None)
@given(size=st.integers(min_value=1, max_value=8), data=st.data())
def test_any_altered_line_of_a_signed_log_is_named(size: int, data: st.DataObject) -> None:
    lines = signed_log(size)
    result = audit_chain.verify_lines(lines, keyring=KEYRING)
    assert (result.ok, result.signed, result.unsigned, result.all_signed) == (True, size, 0, True)
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    field = data.draw(st.sampled_from(LOG_FIELDS))
    how = data.draw(st.sampled_from(["edited", "rehashed", "resigned-by-another-key"]))
    original = json.loads(lines[index])[field]
    value = original + 1000 if isinstance(original, int) else f"{original}-x"
    tampered = list(lines)
    tampered[index] = rewrite(
        lines[index],
        rehash=how != "edited",
        resign=OTHER if how == "resigned-by-another-key" else None,
        **{field: value},
    )
    broken = audit_chain.verify_lines(tampered, keyring=KEYRING).broken
    assert broken is not None
    assert broken.line == index + 1, (field, how, broken)


def test_signatures_of_the_log_unknown_keys_and_unsigned_lines() -> None:
    lines = signed_log(4)
    unknown = list(lines)
    unknown[2] = rewrite(lines[2], key_id="sha256:" + "9" * 64)
    broken = audit_chain.verify_lines(unknown, keyring=KEYRING).broken
    assert broken is not None
    assert (broken.line, broken.seq) == (3, 3)
    assert "unknown key id" in broken.problem

    stripped = list(lines)
    stripped[2] = rewrite(lines[2], key_id=None, signature=None)
    broken = audit_chain.verify_lines(stripped, keyring=KEYRING).broken
    assert broken is not None
    assert broken.line == 3
    assert "unsigned record after a signed one" in broken.problem

    assert not audit_chain.verify_lines(lines, keyring=Keyring()).ok, "no key trusted: not verified"
    unchecked = audit_chain.verify_lines(lines)
    assert (unchecked.ok, unchecked.checked, unchecked.all_signed) == (True, False, False)


def test_v1_records_still_verify_as_a_chain_but_count_as_unsigned() -> None:
    old = [rewrite(line, rehash=True, schema=audit_chain.SCHEMA_V1) for line in signed_log(3, key=None)]
    # A v1 record has no key_id/signature keys at all.
    old_records = [
        {k: v for k, v in json.loads(line).items() if k not in ("key_id", "signature")} for line in old
    ]
    tip = audit_chain.ChainTip()
    rechained = []
    for record in old_records:
        record["prev_hash"] = tip.hash
        record["hash"] = audit_chain.record_hash(record)
        tip = audit_chain.ChainTip(record["hash"], record["seq"])
        rechained.append(audit_chain.to_line(record))
    result = audit_chain.verify_lines(rechained, keyring=KEYRING)
    assert (result.ok, result.signed, result.unsigned, result.all_signed) == (True, 0, 3, False)
    # The operator, now with a key, continues the old file: signed after unsigned is fine...
    record = audit_chain.seal({"action": "Deployed"}, prev_hash=tip.hash, seq=tip.seq + 1, key=KEY)
    mixed = [*rechained, audit_chain.to_line(record)]
    result = audit_chain.verify_lines(mixed, keyring=KEYRING)
    assert (result.ok, result.signed, result.unsigned) == (True, 1, 3)
    # ...but an unsigned record after it was not written by the operator.
    after = audit_chain.seal({"action": "Deployed"}, prev_hash=record["hash"], seq=record["seq"] + 1)
    broken = audit_chain.verify_lines([*mixed, audit_chain.to_line(after)], keyring=KEYRING).broken
    assert broken is not None
    assert broken.line == 5
