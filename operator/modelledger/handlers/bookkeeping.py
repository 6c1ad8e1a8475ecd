"""The bookkeeping lane: Events and ModelVersion finalizer and status writes, behind the rollback path.

A rollback storm, or a first start on ten thousand versions, makes thousands of these at once. They go
through one queue, keyed so that repeats merge (a second refresh of a version while one waits is the
same job; identical Events are posted once), drained by a few workers under a rate limit, so they never
take the API client's connections from a decision or flood the apiserver:

- Events go before version jobs (`first=True`): they explain decisions just made;
- while passes wait in the work queue (`behind`), the lane slows to `yielding_rate`, leaving the
  apiserver to the decisions;
- a job that made no API call (it found nothing to change) returns False and gives its token back, so
  the re-runs that our own writes' watch events cause cost no rate.

Nothing here is a record: the history and the audit log are, so a job that fails is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

import structlog

log = structlog.get_logger("modelledger.bookkeeping")
Job = Callable[[], Awaitable[bool | None]]  # False: it made no API call


@dataclass
class Lane:
    workers: int = 4  # API calls at once, of the kube client's pool (kube.WORKERS)
    rate: float = 50.0  # jobs per second, on average
    burst: int = 100
    limit: int = 100_000  # jobs waiting at most; the oldest go first when it is reached
    yielding_rate: float = 5.0  # jobs per second while `behind()`
    behind: Callable[[], bool] | None = None  # decisions are waiting
    _first: OrderedDict[Hashable, Job] = field(default_factory=OrderedDict)
    _jobs: OrderedDict[Hashable, Job] = field(default_factory=OrderedDict)
    _ready: asyncio.Event | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _later: dict[Hashable, asyncio.TimerHandle] = field(default_factory=dict)
    _tokens: float = 0.0
    _refilled: float = 0.0
    merged: int = 0
    dropped: int = 0

    def submit(self, key: Hashable, job: Job, *, first: bool = False) -> None:
        """Queue `job` under `key`; a job already waiting under that key is replaced (merged)."""
        jobs = self._first if first else self._jobs
        if key in jobs:
            self.merged += 1
        elif self.pending() >= self.limit:
            (self._jobs or self._first).popitem(last=False)
            self.dropped += 1
        jobs[key] = job
        if self._ready is not None:
            self._ready.set()

    def submit_later(self, key: Hashable, job: Job, delay: float) -> None:
        """Queue `job` under `key` after `delay` seconds, unless a later submission of `key` waits
        already: a job that re-arms itself each run keeps one timer, however often it also runs."""
        if key in self._later:
            return

        def due() -> None:
            del self._later[key]
            self.submit(key, job)

        self._later[key] = asyncio.get_running_loop().call_later(delay, due)

    def pending(self) -> int:
        return len(self._first) + len(self._jobs)

    def start(self) -> None:
        self._ready = asyncio.Event()
        self._tokens, self._refilled = float(self.burst), time.monotonic()
        if self.pending():
            self._ready.set()
        self._tasks = [
            asyncio.create_task(self._drain(), name=f"bookkeeping {i}") for i in range(self.workers)
        ]

    async def stop(self) -> None:
        for handle in self._later.values():
            handle.cancel()
        self._later.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _drain(self) -> None:
        assert self._ready is not None
        while True:
            if not self.pending():
                self._ready.clear()
                await self._ready.wait()
                continue
            await self._token()
            if not self.pending():
                self._refund()
                continue
            key, job = (self._first or self._jobs).popitem(last=False)
            try:
                if await job() is False:
                    self._refund()  # nothing was sent
            except Exception as error:  # bookkeeping is best effort; the records are elsewhere
                log.warning("bookkeeping job failed", job=str(key)[:200], error=str(error)[:300])

    def _refund(self) -> None:
        self._tokens = min(float(self.burst), self._tokens + 1.0)

    async def _token(self) -> None:
        while True:
            yielding = self.behind is not None and self.behind()
            rate, burst = (self.yielding_rate, 1.0) if yielding else (self.rate, float(self.burst))
            now = time.monotonic()
            self._tokens = min(burst, self._tokens + (now - self._refilled) * rate)
            self._refilled = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return
            # Short naps while yielding: the decisions may be done sooner.
            await asyncio.sleep(min((1.0 - self._tokens) / rate, 0.1))
