"""The handlers' side of leader election and health: a gate every decision passes, and /healthz, /readyz.

`Gate.leading()` says whether this process may decide and write right now (always, without an
election). A standby keeps Kopf's watches and indices warm, and its loops wait in `until_leading`;
when the lease is won, the audit trail has re-read its tip (on the election thread) before the gate
opens, and what a standby deferred (`defer`: ModelVersion status) is caught up on.

Health: `/healthz` (liveness) fails while this process leads and a deployment loop has made no
progress for its bound (`core/health.py`), or when the election thread has died; a standby is alive as
long as it serves. `/readyz` (readiness) answers 200 once the process serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Hashable
from typing import TYPE_CHECKING, Any

import aiohttp.web
import kopf
import structlog

from modelledger.core.health import DEFAULT_FLOOR, Progress

if TYPE_CHECKING:
    from modelledger.adapters.lease import LeaderElection
    from modelledger.handlers.context import OperatorConfig

log = structlog.get_logger("modelledger.health")
POLL = 5.0  # a waiting loop looks at the gate at least this often; the election's notification is sooner


class Gate:
    """May this process decide now? Backed by a `LeaderElection`, or always open without one."""

    def __init__(self, election: LeaderElection | None = None) -> None:
        self.election = election
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed = asyncio.Event()
        self._was_leading = False
        self._deferred: dict[Hashable, Callable[[], Awaitable[None]]] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        if election is not None:
            election.listeners.append(self._from_thread)

    @property
    def elected(self) -> bool:
        return self.election is not None

    def leading(self) -> bool:
        return self.election is None or self.election.is_leader()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Receive the election's notifications in `loop` (Kopf's), where the loops wait."""
        self._loop = loop
        self._was_leading = self.leading()

    def defer(self, key: Hashable, catch_up: Callable[[], Awaitable[None]]) -> None:
        """A standby skipped work on `key`: run `catch_up` (the latest one per key) in the event loop
        when this process takes the lease over (at once if the takeover happened meanwhile)."""
        if self.leading() and self._was_leading:
            self._spawn(catch_up)
        else:
            self._deferred[key] = catch_up

    def _spawn(self, catch_up: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.ensure_future(catch_up())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def until_leading(
        self, stopped: kopf.DaemonStopped | None = None, timeout: float | None = None
    ) -> bool:
        """Wait until this process leads (True), or `stopped` is set or `timeout` passes (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.leading():
            if stopped is not None and stopped:
                return False
            remaining = POLL if deadline is None else min(POLL, deadline - time.monotonic())
            if remaining <= 0:
                return False
            waiters = [asyncio.ensure_future(self._changed.wait())]
            if stopped is not None:
                waiters.append(asyncio.ensure_future(stopped.wait()))
            try:
                await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()
        return True

    def _from_thread(self) -> None:
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: the operator is stopping
                self._loop.call_soon_threadsafe(self._notified)

    def _notified(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        leading = self.leading()
        if leading and not self._was_leading:
            deferred, self._deferred = self._deferred, {}
            if deferred:
                log.info("taking over: catching up on work deferred while standing by", items=len(deferred))
            for catch_up in deferred.values():
                self._spawn(catch_up)
        self._was_leading = leading


class Health:
    """What /healthz and /readyz answer: the progress of the loops while leading, and the election."""

    def __init__(self, gate: Gate, progress: Progress | None = None, floor: float = DEFAULT_FLOOR) -> None:
        self.gate = gate
        self.floor = floor
        self.progress = progress if progress is not None else Progress()

    def liveness(self, now: float) -> tuple[bool, dict[str, Any]]:
        leading = self.gate.leading()
        report: dict[str, Any] = {"leader": leading}
        election = self.gate.election
        if election is not None:
            report["identity"] = election.identity
            report["holder"] = election.holder() or None
            if not election.alive():
                report["problem"] = "the leader election thread has stopped"
                return False, report
        stalls = self.progress.stalled(now) if leading else []
        report["stalled"] = [
            {
                **(
                    {"namespace": stall.key[0], "deployment": stall.key[1]}
                    if isinstance(stall.key, tuple)
                    else {"loop": str(stall.key)}
                ),
                "seconds": round(stall.seconds, 1),
                "bound": stall.bound,
                "where": "inside a pass" if stall.busy else "next pass overdue",
            }
            for stall in stalls[:20]
        ]
        if stalls:
            report["problem"] = f"{len(stalls)} loop(s) made no progress within their bound"
        return not stalls, report


class HealthServer:
    """/healthz and /readyz over HTTP, in the operator's event loop (a blocked loop fails the probe)."""

    def __init__(self, health: Health, endpoint: str) -> None:
        parts = urllib.parse.urlsplit(endpoint)
        if parts.scheme != "http":
            raise ValueError(f"--liveness: only http:// endpoints are served, not {endpoint}")
        self.health = health
        self.host = parts.hostname or "0.0.0.0"
        self.port = parts.port or 80
        self.path = parts.path or "/healthz"
        self._runner: aiohttp.web.AppRunner | None = None
        self._reported: frozenset[str] = frozenset()

    async def start(self) -> None:
        app = aiohttp.web.Application()
        app.add_routes([aiohttp.web.get(self.path, self._live), aiohttp.web.get("/readyz", self._ready)])
        self._runner = aiohttp.web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        await aiohttp.web.TCPSite(self._runner, self.host, self.port).start()
        log.info("health served", liveness=f"http://{self.host}:{self.port}{self.path}", readiness="/readyz")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _live(self, _request: aiohttp.web.Request) -> aiohttp.web.Response:
        ok, report = self.health.liveness(time.monotonic())
        stalled = frozenset(
            s["loop"] if "loop" in s else f"{s['namespace']}/{s['deployment']}"
            for s in report.get("stalled", [])
        )
        if stalled != self._reported:  # say so once per change, not at every probe
            if stalled:
                log.error("liveness failing: loops stalled", stalled=sorted(stalled))
            self._reported = stalled
        if not ok and not stalled:
            log.error("liveness failing", problem=report.get("problem"))
        return aiohttp.web.json_response(report, status=200 if ok else 500)

    async def _ready(self, _request: aiohttp.web.Request) -> aiohttp.web.Response:
        return aiohttp.web.json_response({"ready": True, "leader": self.health.gate.leading()})


@kopf.on.startup()
async def serve_health(memo: kopf.Memo, **_: Any) -> None:
    """Bind the gate to Kopf's event loop and serve /healthz and /readyz (`--liveness`)."""
    if "config" not in memo:
        return  # not `modelledger run` (e.g. another operator in a process that imported these handlers)
    config: OperatorConfig = memo["config"]
    config.gate.bind(asyncio.get_running_loop())
    if config.health_endpoint:
        health = Health(config.gate, config.progress, config.stall_floor)
        server = HealthServer(health, config.health_endpoint)
        await server.start()
        memo["health_server"] = server


@kopf.on.cleanup()
async def stop_health(memo: kopf.Memo, **_: Any) -> None:
    server = memo.get("health_server")
    if isinstance(server, HealthServer):
        await server.stop()
