"""The bookkeeping lane: repeats merge, the rate holds, a failing job does not stop the lane."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from modelledger.handlers.bookkeeping import Job, Lane


def test_repeats_under_one_key_merge_into_the_latest_job() -> None:
    ran: list[str] = []

    async def scenario() -> None:
        lane = Lane(workers=1)
        for i in range(5):
            lane.submit(("usedBy", "ns", "v1"), _append(ran, f"v1-{i}"))
        lane.submit(("usedBy", "ns", "v2"), _append(ran, "v2"))
        assert lane.pending() == 2
        lane.start()
        await _until(lambda: lane.pending() == 0 and len(ran) == 2)
        await lane.stop()
        assert lane.merged == 4

    asyncio.run(scenario())
    assert ran == ["v1-4", "v2"]


def test_the_rate_limit_spaces_jobs_after_the_burst() -> None:
    ran: list[str] = []

    async def scenario() -> float:
        lane = Lane(workers=4, rate=20.0, burst=5)
        for i in range(15):
            lane.submit(i, _append(ran, str(i)))
        began = time.monotonic()
        lane.start()
        await _until(lambda: len(ran) == 15)
        await lane.stop()
        return time.monotonic() - began

    took = asyncio.run(scenario())
    assert 0.4 <= took < 2.0, f"5 at once, then 10 at 20/s: about 0.5 s, took {took:.2f} s"


def test_a_failing_job_is_dropped_and_the_next_runs() -> None:
    ran: list[str] = []

    async def fail() -> None:
        raise RuntimeError("apiserver said no")

    async def scenario() -> None:
        lane = Lane(workers=1)
        lane.submit("bad", fail)
        lane.submit("good", _append(ran, "good"))
        lane.start()
        await _until(lambda: ran == ["good"])
        await lane.stop()

    asyncio.run(scenario())


def test_a_full_lane_drops_its_oldest_job() -> None:
    lane = Lane(limit=2)
    for key in ("a", "b", "c"):
        lane.submit(key, _append([], key))
    assert (lane.pending(), lane.dropped) == (2, 1)


def test_a_job_that_re_arms_itself_on_every_run_keeps_one_timer() -> None:
    """A blocked deletion looks again after a delay each time it runs, and events run it too: the
    retries must not multiply."""
    ran: list[str] = []

    async def scenario() -> None:
        lane = Lane(workers=1)
        lane.start()
        for _ in range(5):
            lane.submit_later("blocked", _append(ran, "retry"), 0.2)
        lane.submit_later("other", _append(ran, "other"), 0.05)
        await _until(lambda: len(ran) == 2)
        await asyncio.sleep(0.4)
        lane.submit_later("blocked", _append(ran, "again"), 0.05)
        await _until(lambda: len(ran) == 3)
        lane.submit_later("late", _append(ran, "never"), 10.0)
        await lane.stop()

    asyncio.run(scenario())
    assert ran == ["other", "retry", "again"], "one run per armed timer; a stopped lane's timers cancelled"


def test_events_go_before_version_jobs() -> None:
    ran: list[str] = []

    async def scenario() -> None:
        lane = Lane(workers=1)
        for i in range(3):
            lane.submit(("usedBy", "ns", f"v{i}"), _append(ran, f"v{i}"))
        lane.submit(("Event", "ns", "d", "RolledBack"), _append(ran, "event"), first=True)
        lane.start()
        await _until(lambda: len(ran) == 4)
        await lane.stop()

    asyncio.run(scenario())
    assert ran == ["event", "v0", "v1", "v2"]


def test_a_job_that_sent_nothing_costs_no_rate() -> None:
    """The re-runs our own writes' watch events cause find nothing to change: they must not hold up
    the jobs that do write."""
    ran: list[str] = []

    async def idle() -> bool:
        ran.append("idle")
        return False

    async def scenario() -> float:
        lane = Lane(workers=1, rate=10.0, burst=1)
        for i in range(20):
            lane.submit(("idle", i), idle)
        lane.submit("write", _append(ran, "write"))
        began = time.monotonic()
        lane.start()
        await _until(lambda: "write" in ran)
        await lane.stop()
        return time.monotonic() - began

    took = asyncio.run(scenario())
    assert took < 0.5, f"20 jobs that sent nothing at 10/s took {took:.2f} s: they were rate-limited"


def test_the_lane_yields_to_waiting_decisions() -> None:
    ran: list[str] = []
    waiting = [True]

    async def scenario() -> tuple[int, int]:
        lane = Lane(workers=4, rate=1000.0, burst=100, yielding_rate=5.0, behind=lambda: waiting[0])
        for i in range(200):
            lane.submit(i, _append(ran, str(i)))
        lane.start()
        await asyncio.sleep(0.5)
        while_behind = len(ran)
        waiting[0] = False
        await _until(lambda: len(ran) == 200)
        await lane.stop()
        return while_behind, len(ran)

    while_behind, total = asyncio.run(scenario())
    assert while_behind <= 5, f"{while_behind} jobs in 0.5 s at 5/s while decisions waited"
    assert total == 200


def _append(into: list[str], value: str) -> Job:
    async def job() -> None:
        into.append(value)

    return job


async def _until(done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not within the timeout"
        await asyncio.sleep(0.01)
