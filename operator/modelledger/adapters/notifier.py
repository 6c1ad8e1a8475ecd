"""Delivery of notifications to the admins' receivers: one bounded queue and one sender task per receiver,
so a receiver that is down delays neither the decisions nor the other receivers.

`submit` never waits: it puts the message on the receiver's queue or, when that is full, drops it
(counted `dropped`, logged). The sender POSTs with a timeout, retries failures (connection refused,
timeouts, 408/425/429/5xx) with exponential back-off while the receiver's retry budget (counted from the
decision) lasts, and counts each outcome in `modelledger_notifications_total{receiver,result}`.

What is sent holds no credential of the operator: no Authorization header, no cookies, no netrc, no
redirects followed; the URL is read from the admin's file (a mounted Secret key) at each attempt and
never logged.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import structlog
from pydantic import TypeAdapter

from modelledger import __version__
from modelledger.adapters.config_files import load_list
from modelledger.adapters.metrics import NOTIFICATION_RESULTS, OperatorMetrics
from modelledger.core.notifications import Notice, Receiver, backoff, check_unique, payload, retryable

log = structlog.get_logger("modelledger.notifications")
QUEUE_SIZE = 256  # per receiver: messages waiting while it is down
STOP_GRACE = 5.0  # seconds a stopping operator gives the queues to drain


class Result:
    """The `result` label of modelledger_notifications_total."""

    SENT = "sent"  # delivered (2xx)
    RETRIED = "retried"  # an attempt failed and another follows
    FAILED = "failed"  # given up: refused (4xx), or the retry budget ran out
    DROPPED = "dropped"  # never attempted: the receiver's queue was full, or the operator stopped

    ALL = NOTIFICATION_RESULTS


_RECEIVERS = TypeAdapter(list[Receiver])


def load_receivers(path: Path) -> list[Receiver]:
    """The receivers file: a YAML list (or {receivers: [...]}) of receivers. Raises ValueError naming the
    entry and field at fault."""
    receivers = load_list(path, "receivers", _RECEIVERS)
    try:
        check_unique(receivers)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    return receivers


@dataclass(frozen=True)
class Message:
    notice_id: str
    reason: str
    namespace: str
    deployment: str
    body: bytes
    deadline: float  # monotonic: retries stop here


class Attempt:
    """One POST's outcome: delivered, worth retrying, or refused for good."""

    OK = "ok"
    RETRY = "retry"
    REFUSED = "refused"


def _proxy(url: str) -> str | None:
    """The admin's HTTP(S)_PROXY for this URL (NO_PROXY honoured), without trusting anything else of the
    environment (aiohttp's trust_env would also read ~/.netrc credentials)."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme)


class Notifier:
    """The receivers and their senders; one per operator process, started and stopped with it."""

    def __init__(
        self,
        receivers: Sequence[Receiver] = (),
        metrics: OperatorMetrics | None = None,
        *,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.receivers = tuple(receivers)
        self.metrics = metrics
        self.queue_size = queue_size
        self.clock = clock
        self.jitter = jitter
        self.warned: dict[tuple[str, str], str] = {}  # (namespace, name) -> the annotation value warned of
        self._queues: dict[str, asyncio.Queue[Message]] = {}
        self._pending = 0  # queued or in flight, every receiver
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    def start(self, metrics: OperatorMetrics | None = None) -> None:
        if metrics is not None:
            self.metrics = metrics
        if self.metrics is not None:
            self.metrics.know_receivers(r.name for r in self.receivers)
        if self._tasks or not self.receivers:
            return
        self._session = aiohttp.ClientSession(
            trust_env=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": f"modelledger/{__version__}", "Content-Type": "application/json"},
        )
        for receiver in self.receivers:
            queue: asyncio.Queue[Message] = asyncio.Queue(self.queue_size)
            self._queues[receiver.name] = queue
            self._tasks.append(
                asyncio.create_task(
                    self._send_from(receiver, queue), name=f"modelledger notify {receiver.name}"
                )
            )

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Give the queues `grace` seconds to drain, then stop; what is left is counted `dropped`."""
        if not self._tasks:
            return
        end = self.clock() + grace
        while self._pending and self.clock() < end:
            await asyncio.sleep(0.05)
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for name, queue in self._queues.items():
            while not queue.empty():
                message = queue.get_nowait()
                self._pending -= 1
                self._count(name, Result.DROPPED)
                log.warning(
                    "notification not sent: the operator stopped", receiver=name, id=message.notice_id
                )
        self._queues = {}
        if self._session is not None:
            await self._session.close()
            self._session = None

    def submit(self, receiver: Receiver, notice: Notice) -> bool:
        """Queue the notice for the receiver; never waits. False when it was dropped."""
        queue = self._queues.get(receiver.name)
        if queue is None:
            log.warning("notification not sent: notifications are not running", receiver=receiver.name)
            self._count(receiver.name, Result.DROPPED)
            return False
        message = Message(
            notice_id=notice.id,
            reason=notice.reason,
            namespace=notice.namespace,
            deployment=notice.deployment,
            body=json.dumps(payload(receiver, notice), separators=(",", ":")).encode(),
            deadline=self.clock() + receiver.retry_budget,
        )
        try:
            queue.put_nowait(message)
            self._pending += 1
        except asyncio.QueueFull:
            self._count(receiver.name, Result.DROPPED)
            log.error(
                "notification dropped: the receiver's queue is full",
                receiver=receiver.name,
                id=notice.id,
                namespace=notice.namespace,
                deployment=notice.deployment,
                queued=queue.qsize(),
            )
            return False
        return True

    def _count(self, receiver: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.record_notification(receiver, result)

    async def _send_from(self, receiver: Receiver, queue: asyncio.Queue[Message]) -> None:
        while True:
            message = await queue.get()
            try:
                await self._deliver(receiver, message)
            except asyncio.CancelledError:
                self._count(receiver.name, Result.DROPPED)
                log.warning(
                    "notification not sent: the operator stopped",
                    receiver=receiver.name,
                    id=message.notice_id,
                )
                raise
            except Exception:  # a bug: lose this message, keep the sender
                self._count(receiver.name, Result.FAILED)
                log.exception("notification failed", receiver=receiver.name, id=message.notice_id)
            finally:
                self._pending -= 1

    async def _deliver(self, receiver: Receiver, message: Message) -> None:
        fields: dict[str, Any] = {
            "receiver": receiver.name,
            "id": message.notice_id,
            "reason": message.reason,
            "namespace": message.namespace,
            "deployment": message.deployment,
        }
        attempt = 0
        while True:
            outcome, detail = await self._post(receiver, message)
            if outcome == Attempt.OK:
                self._count(receiver.name, Result.SENT)
                log.info("notification sent", attempts=attempt + 1, **fields)
                return
            wait = backoff(attempt, receiver.max_backoff, self.jitter())
            if outcome == Attempt.REFUSED or self.clock() + wait > message.deadline:
                self._count(receiver.name, Result.FAILED)
                why = "refused" if outcome == Attempt.REFUSED else "retry budget spent"
                log.error(f"notification lost: {why}", attempts=attempt + 1, error=detail, **fields)
                return
            self._count(receiver.name, Result.RETRIED)
            log.warning(
                "notification attempt failed; retrying",
                attempt=attempt + 1,
                retry_in=round(wait, 2),
                error=detail,
                **fields,
            )
            await asyncio.sleep(wait)
            attempt += 1

    async def _post(self, receiver: Receiver, message: Message) -> tuple[str, str]:
        """One POST; (outcome, what went wrong). Errors are named by type: their text may hold the URL."""
        assert self._session is not None
        try:
            url = Path(receiver.url_file).read_text().strip()
        except OSError as error:
            return Attempt.RETRY, f"the URL file cannot be read ({type(error).__name__})"  # mounted late?
        if urlsplit(url).scheme not in ("http", "https"):
            return Attempt.REFUSED, "the URL file does not hold an http(s) URL"
        try:
            async with self._session.post(
                url,
                data=message.body,
                headers={"Idempotency-Key": message.notice_id},
                timeout=aiohttp.ClientTimeout(total=receiver.timeout),
                allow_redirects=False,
                proxy=_proxy(url),
            ) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            return Attempt.RETRY, type(error).__name__
        if 200 <= status < 300:
            return Attempt.OK, ""
        return (Attempt.RETRY if retryable(status) else Attempt.REFUSED), f"HTTP {status}"

    async def drained(self, timeout: float) -> bool:
        """Test helper: wait until every queue is empty and nothing is in flight."""
        end = self.clock() + timeout
        while self.clock() < end:
            if not self._pending:
                return True
            await asyncio.sleep(0.01)
        return False


def describe(receivers: Sequence[Receiver]) -> dict[str, str]:
    """What the start log says of each receiver (never its URL)."""
    return {
        r.name: f"{r.type.value}, {r.routing.value}, {','.join(sorted(t.value for t in r.triggers))}"
        for r in receivers
    }
