"""The deployments' work loop: watch events and timers queue deployment keys; a pool of workers takes
them, one worker per key at a time (core/workqueue.py), and runs a pass on each.

This replaces one Kopf daemon per ModelDeployment: no finalizer on the object, no 60 s daemon back-off
(a failing pass is retried after 0.25 s, 0.5 s, 1 s, ...), and a pass asked for while one runs is not
lost but runs right after. Keys whose pass may end in a rollback (a rule coming due, a person's request)
go first. Only the leader's workers take keys; a standby keeps queueing them, so it takes over with all
of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from modelledger.adapters.metrics import OperatorMetrics
from modelledger.core.bodies import slim
from modelledger.core.workqueue import WorkQueue
from modelledger.handlers.leadership import Gate

log = structlog.get_logger("modelledger.workers")
Key = tuple[str, str]
Process = Callable[[Key, Mapping[str, Any]], Awaitable[float | None]]


def _resource_version(body: Mapping[str, Any]) -> int | None:
    try:
        return int(str(body.get("metadata", {}).get("resourceVersion", "")))
    except ValueError:
        return None


@dataclass
class Bodies:
    """The newest ModelDeployment body per key, from watch events and from the responses to our own
    writes, so a pass never decides from a body older than the last write it made."""

    bodies: dict[Key, dict[str, Any]] = field(default_factory=dict)

    def observe(self, key: Key, body: Mapping[str, Any]) -> None:
        held = self.bodies.get(key)
        if held is not None and held.get("metadata", {}).get("uid") == body.get("metadata", {}).get("uid"):
            old, new = _resource_version(held), _resource_version(body)
            if old is not None and new is not None and new < old:
                return  # a watch event older than a write we already hold
        self.bodies[key] = slim(body)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self.bodies.get(key)

    def drop(self, key: Key) -> None:
        self.bodies.pop(key, None)


@dataclass
class Work:
    """The queue, the bodies it works on, and the workers; one per operator process."""

    queue: WorkQueue[Key] = field(default_factory=WorkQueue)
    bodies: Bodies = field(default_factory=Bodies)
    metrics: OperatorMetrics | None = None
    _ready: asyncio.Event | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def wake(self, namespace: str, name: str, *, urgent: bool = False) -> None:
        """Queue a pass of the deployment (if it is known; its first watch event queues it anyway)."""
        key = (namespace, name)
        if key in self.bodies.bodies:
            self.queue.add(key, time.monotonic(), urgent=urgent)
            self._notify()

    def wake_all(self, keys: Iterable[Key], *, urgent: bool = False) -> None:
        now = time.monotonic()
        for key in keys:
            self.queue.add(key, now, urgent=urgent)
        self._notify()

    def observed(self, key: Key, body: Mapping[str, Any]) -> None:
        """A watch event of the deployment: keep its body and queue a pass."""
        self.bodies.observe(key, body)
        self.queue.add(key, time.monotonic())
        self._notify()

    def written(self, key: Key, body: Mapping[str, Any]) -> None:
        """Our own write's response: the body the next pass must start from."""
        self.bodies.observe(key, body)

    def deleted(self, key: Key) -> None:
        self.bodies.drop(key)
        self.queue.forget(key)

    def _notify(self) -> None:
        if self._ready is not None:
            self._ready.set()

    def start(
        self, process: Process, gate: Gate, workers: int, metrics: OperatorMetrics | None = None
    ) -> None:
        self.metrics = metrics
        self._ready = asyncio.Event()
        self._tasks = [
            asyncio.create_task(self._worker(process, gate), name=f"modelledger worker {i}")
            for i in range(max(1, workers))
        ]
        if metrics is not None:
            self._tasks.append(asyncio.create_task(self._watch_lag(metrics), name="modelledger loop lag"))

    @staticmethod
    async def _watch_lag(metrics: OperatorMetrics, every: float = 0.5) -> None:
        """How late the event loop runs a timer: every pass, query and write waits behind a busy loop."""
        while True:
            start = time.monotonic()
            await asyncio.sleep(every)
            metrics.loop_lag.set(max(0.0, time.monotonic() - start - every))

    async def stop(self, grace: float = 10.0) -> None:
        """Let passes in flight finish (up to `grace` seconds), then cancel the workers."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), grace)

    async def _worker(self, process: Process, gate: Gate) -> None:
        assert self._ready is not None
        while True:
            if not gate.leading():
                await gate.until_leading()
                continue
            self._ready.clear()  # before looking: an add after this sets it again
            next_timer = self.queue.fire(time.monotonic())
            taken = self.queue.pop(time.monotonic())
            if taken is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ready.wait(), next_timer)
                continue
            key, waited = taken
            if self.metrics is not None:
                self.metrics.observe_phase("queue_wait", waited)
                self.metrics.queue_depth.set(len(self.queue))
            await self._pass(key, process)

    async def _pass(self, key: Key, process: Process) -> None:
        body = self.bodies.get(key)
        try:
            delay = await process(key, body) if body is not None else None
        except asyncio.CancelledError:
            self.queue.done(key, time.monotonic())
            raise
        except Exception as error:  # a bug or an unexpected API error: retry this key soon, not all
            retry = self.queue.failed(key, time.monotonic())
            if self.metrics is not None:
                self.metrics.retries.inc()
            log.exception("pass failed; retrying", namespace=key[0], deployment=key[1], retry_in=retry)
            del error
        else:
            self.queue.succeeded(key)
            if delay is not None and key in self.bodies.bodies:
                self.queue.schedule(key, delay, time.monotonic(), urgent=True)
        self.queue.done(key, time.monotonic())
        self._notify()  # a key queued again on `done`, or a new timer, wants a worker to look
