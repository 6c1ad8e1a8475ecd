"""The work queue: deduplication, one holder per key, priorities, timers and back-off."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from modelledger.core.workqueue import BACKOFF_CAP, WorkQueue


def test_a_key_added_many_times_is_queued_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a", 0.0)
    assert len(queue) == 1
    assert queue.pop(1.0) == ("a", 1.0)
    assert queue.pop(1.0) is None


def test_a_key_added_while_held_runs_again_after_done_never_twice_at_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", 0.0)
    taken = queue.pop(0.0)
    assert taken is not None
    queue.add("a", 1.0)
    assert queue.pop(1.0) is None, "held by a worker: no second worker gets it"
    queue.done("a", 2.0)
    again = queue.pop(2.0)
    assert again is not None
    assert again[0] == "a"


def test_urgent_keys_go_first_and_a_queued_key_can_be_promoted() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("bookkeeping", 0.0)
    queue.add("later", 0.0)
    queue.add("rollback", 0.0, urgent=True)
    queue.add("later", 0.0, urgent=True)
    order = [queue.pop(0.0) for _ in range(3)]
    assert [taken[0] for taken in order if taken] == ["rollback", "later", "bookkeeping"]


def test_timers_fire_in_order_and_a_new_schedule_replaces_the_old() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.schedule("a", 10.0, 0.0)
    queue.schedule("b", 5.0, 0.0)
    queue.schedule("a", 2.0, 0.0)  # a later pass moved its timer earlier
    assert queue.fire(1.0) == 1.0
    assert queue.fire(2.0) == 3.0
    assert [queue.pop(2.0)] == [("a", 0.0)]
    queue.done("a", 2.0)
    assert queue.fire(20.0) is None, "a's superseded 10 s timer does not fire again"
    assert queue.pop(20.0) == ("b", 0.0)
    assert queue.pop(20.0) is None


def test_back_off_doubles_from_a_quarter_second_and_resets_on_success() -> None:
    queue: WorkQueue[str] = WorkQueue()
    delays = [queue.failed("a", 0.0) for _ in range(10)]
    assert delays[:4] == [0.25, 0.5, 1.0, 2.0]
    assert max(delays) == BACKOFF_CAP
    queue.succeeded("a")
    assert queue.failed("a", 0.0) == 0.25


def test_a_forgotten_key_leaves_no_timer_or_entry() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a", 0.0)
    queue.schedule("a", 1.0, 0.0)
    queue.forget("a")
    assert len(queue) == 0
    assert queue.timers == 0
    assert queue.fire(5.0) is None
    assert queue.pop(5.0) is None


def test_superseded_timers_do_not_pile_up() -> None:
    queue: WorkQueue[int] = WorkQueue()
    for round_ in range(1000):
        for key in range(10):
            queue.schedule(key, 100.0 - round_ * 0.01, float(round_))
    assert queue.timers == 10
    assert len(queue._heap) <= 4 * 10 + 64


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "urgent", "pop", "done", "fire"]), st.integers(0, 4))))
def test_no_key_is_ever_held_twice_and_no_add_is_lost(steps: list[tuple[str, int]]) -> None:
    queue: WorkQueue[int] = WorkQueue()
    held: set[int] = set()
    wanted: set[int] = set()  # added since its last pop began
    now = 0.0
    for action, key in steps:
        now += 0.1
        if action in ("add", "urgent"):
            queue.add(key, now, urgent=action == "urgent")
            wanted.add(key)
        elif action == "pop":
            taken = queue.pop(now)
            if taken is not None:
                assert taken[0] not in held
                held.add(taken[0])
                wanted.discard(taken[0])
        elif action == "done" and key in held:
            held.discard(key)
            queue.done(key, now)
        else:
            queue.schedule(key, 0.0, now)
            queue.fire(now)
            wanted.add(key)
    # Drain: every key wanted gets a pass once its holder is done.
    for key in sorted(held):
        queue.done(key, now)
    drained = set()
    while (taken := queue.pop(now)) is not None:
        drained.add(taken[0])
        queue.done(taken[0], now)
    assert wanted <= drained
