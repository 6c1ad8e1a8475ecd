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


def _append(into: list[str], value: str) -> Job:
    async def job() -> None:
        into.append(value)

    return job


async def _until(done: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not within the timeout"
        await asyncio.sleep(0.01)
