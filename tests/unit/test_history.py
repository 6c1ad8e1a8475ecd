"""The revision history: chaining, verification, pruning and choosing a stable target."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from modelledger.api import HistoryEntry, PinnedPipeline, RevisionCause, StableMark
from modelledger.core import history

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
MARK = StableMark(at=T0, actor="modelledger/bake", actor_verified=True)
PIPELINE = PinnedPipeline(
    artifact_digest="sha256:" + "a" * 64, image="ghcr.io/acme/server@sha256:" + "b" * 64
)


def build(versions: list[str]) -> list[HistoryEntry]:
    entries: list[HistoryEntry] = []
    for i, version in enumerate(versions):
        entries = history.append(
            entries,
            version=version,
            cause=RevisionCause.DEPLOY,
            actor="argocd",
            at=T0 + timedelta(minutes=i),
            pipeline=PIPELINE,
        )
    return entries


def test_revisions_count_up_newest_first_and_chain() -> None:
    entries = build(["m-1", "m-2", "m-3"])
    assert [e.revision for e in entries] == [3, 2, 1]
    assert entries[2].prev_hash == history.GENESIS
    assert entries[1].prev_hash == entries[2].hash
    assert entries[0].prev_hash == entries[1].hash
    assert history.verify(entries) is None


def test_hash_is_sha256_over_previous_hash_and_canonical_json() -> None:
    import hashlib

    entry = build(["m-1", "m-2"])[0]
    unhashed = ("hash", "stable", "stableMark", "signature", "keyId")
    fields = {k: v for k, v in entry.to_wire().items() if k not in unhashed}
    fields = {k: v for k, v in fields.items() if not (k in ("actorGroups", "approvers") and v == [])}
    expected = hashlib.sha256(entry.prev_hash.encode() + history.canonical_json(fields)).hexdigest()
    assert entry.hash == f"sha256:{expected}"


def test_marking_stable_keeps_the_chain_valid() -> None:
    entries = history.mark_stable(build(["m-1", "m-2"]), 1, MARK)
    assert [e.stable for e in entries] == [False, True]
    assert history.verify(entries) is None


@given(
    size=st.integers(min_value=1, max_value=12),
    data=st.data(),
)
def test_any_edit_is_detected_and_named(size: int, data: st.DataObject) -> None:
    entries = build([f"m-{i}" for i in range(size)])
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    field = data.draw(st.sampled_from(["version", "actor", "reason", "at", "cause"]))
    replacement = {
        "version": "evil-version",
        "actor": "mallory",
        "reason": "edited",
        "at": T0 - timedelta(days=1),
        "cause": RevisionCause.MANUAL_ROLLBACK,
    }[field]
    tampered = list(entries)
    tampered[index] = tampered[index].model_copy(update={field: replacement})
    found = history.verify(tampered)
    assert found is not None
    assert found.revision == entries[index].revision


def test_removing_an_entry_within_the_limit_is_detected_and_named() -> None:
    entries = build(["m-1", "m-2", "m-3", "m-4"])
    del entries[1]  # revision 3
    found = history.verify(entries, limit=10)
    assert found is not None
    assert found.revision == 3
    assert "removed" in found.problem


def test_a_removed_entry_breaks_the_successors_link_even_when_renumbered() -> None:
    entries = build(["m-1", "m-2", "m-3", "m-4"])
    renumbered = entries[0].model_copy(update={"revision": 3})  # 4 takes 3's place, hash not recomputed
    found = history.verify([renumbered, *entries[2:]], limit=10)
    assert found is not None
    assert found.revision == 3


def test_reordering_is_detected() -> None:
    entries = build(["m-1", "m-2", "m-3"])
    found = history.verify([entries[1], entries[0], entries[2]])
    assert found is not None
    assert "newest first" in found.problem


@given(
    size=st.integers(min_value=1, max_value=30),
    limit=st.integers(min_value=1, max_value=10),
    data=st.data(),
)
def test_pruning_keeps_the_newest_the_serving_and_the_stable_revision(
    size: int, limit: int, data: st.DataObject
) -> None:
    entries = build([f"m-{i}" for i in range(size)])
    stable = data.draw(st.integers(min_value=1, max_value=size))
    serving = data.draw(st.integers(min_value=1, max_value=size))
    entries = history.mark_stable(entries, stable, MARK)
    kept = history.prune(entries, limit, serving)
    revisions = [e.revision for e in kept]
    assert revisions[: min(limit, size)] == list(range(size, size - min(limit, size), -1))
    assert serving in revisions
    assert stable in revisions
    assert len(kept) <= limit + 2
    assert history.verify(kept, limit=limit) is None, "a pruned history still verifies"


def test_newest_stable_skips_the_current_and_unusable_versions() -> None:
    entries = build(["m-1", "m-2", "m-3", "m-4"])
    for revision in (1, 2, 3):
        entries = history.mark_stable(entries, revision, MARK)
    assert history.newest_stable(entries, other_than=4).revision == 3
    assert history.newest_stable(entries, other_than=3).revision == 2
    revoked = {"m-3", "m-2"}
    target = history.newest_stable(entries, other_than=4, usable=lambda v: v not in revoked)
    assert target is not None
    assert target.revision == 1
    assert history.newest_stable(entries, other_than=4, usable=lambda v: False) is None
