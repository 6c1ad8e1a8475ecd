"""Leader election's I/O: the `coordination.k8s.io/v1` Lease (`LeaseClient`) and the thread that reads and
writes it every retry period (`LeaderElection`), driving the pure state machine of `core/leadership.py`.

The election runs on a thread of its own with an API client of its own, so a storm of decisions that
fills the event loop or the shared thread pool never delays a renewal, and every call has a timeout
shorter than the renew deadline. A process whose event loop is blocked still stops deciding in time:
the handlers ask `is_leader()`, which checks the renew deadline against the clock at that instant.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import kubernetes
import structlog
from kubernetes.client.exceptions import ApiException

from modelledger.core.leadership import Elector, LeaseRecord, LeaseTiming, Observed, Write

log = structlog.get_logger("modelledger.leader")
DEFAULT_NAME = "modelledger"
MANAGED = {"app.kubernetes.io/managed-by": "modelledger", "app.kubernetes.io/component": "leader-election"}
RETRY_JITTER = 0.2  # a standby's attempts are spread over [retry, 1.2 x retry]


def identity() -> str:
    """The pod's name (downward API, as the chart sets it), else hostname and process id."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


class Conflict(Exception):
    """The Lease changed since it was read (or was created meanwhile): read again."""


class LeaseError(Exception):
    """The Lease could not be read or written (apiserver unreachable, timeout, forbidden...)."""


def _micro_time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


def to_record(lease: dict[str, Any]) -> Observed:
    spec = lease.get("spec") or {}
    record = LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration=int(spec.get("leaseDurationSeconds") or 0),
        acquired=_parse_time(spec.get("acquireTime")),
        renewed=_parse_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
    )
    return Observed(record, str((lease.get("metadata") or {}).get("resourceVersion", "")))


class LeaseClient:
    """Reads, creates and replaces one Lease (the write is conditional on the resourceVersion read)."""

    def __init__(
        self, api_client: kubernetes.client.ApiClient, namespace: str, name: str, timeout: float = 5.0
    ) -> None:
        # Untyped use: raw JSON bodies both ways (the typed models mangle MicroTime).
        self.api: Any = kubernetes.client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.timeout = timeout

    def read(self) -> Observed:
        try:
            response = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return Observed(None)
            raise LeaseError(f"read: {error.status} {error.reason}") from error
        except Exception as error:  # urllib3's and the socket's errors, timeouts
            raise LeaseError(f"read: {error}") from error
        return to_record(json.loads(response.data))

    def write(self, write: Write) -> Observed:
        body = self._body(write)
        try:
            if write.create:
                response = self.api.create_namespaced_lease(
                    self.namespace, body, _preload_content=False, _request_timeout=self.timeout
                )
            else:
                response = self.api.replace_namespaced_lease(
                    self.name, self.namespace, body, _preload_content=False, _request_timeout=self.timeout
                )
        except ApiException as error:
            if error.status == 409:
                raise Conflict(f"{self.namespace}/{self.name} changed meanwhile") from error
            raise LeaseError(f"write: {error.status} {error.reason}") from error
        except Exception as error:
            raise LeaseError(f"write: {error}") from error
        return to_record(json.loads(response.data))

    def _body(self, write: Write) -> dict[str, Any]:
        record = write.record
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "labels": dict(MANAGED)}
        if not write.create:
            metadata["resourceVersion"] = write.version
        spec: dict[str, Any] = {
            "leaseDurationSeconds": record.duration,
            "acquireTime": _micro_time(record.acquired),
            "renewTime": _micro_time(record.renewed),
            "leaseTransitions": record.transitions,
        }
        if record.holder:
            spec["holderIdentity"] = record.holder
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LeaderElection:
    """Runs an `Elector` against a `LeaseClient` on a daemon thread.

    `on_started` runs on the election thread when the lease is won, *before* `is_leader()` turns true
    (the audit trail re-reads its tip there); `on_stopped` runs when leadership ends; `on_change`
    listeners hear of either afterwards (the handlers' gate wakes its loops).
    """

    def __init__(
        self,
        leases: LeaseClient,
        elector: Elector,
        *,
        on_started: Callable[[], None] | None = None,
        on_stopped: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.leases = leases
        self.elector = elector
        self.on_started = on_started
        self.on_stopped = on_stopped
        self.listeners: list[Callable[[], None]] = []
        self.clock = clock
        self.wall = wall
        self._lock = threading.Lock()
        self._leading = False  # True once on_started has run, until leadership ends
        self._version = ""  # the Lease's resourceVersion after our last read or write
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_holder: str | None = None
        self._last_problem = ""
        self.last_attempt: float | None = None

    @property
    def identity(self) -> str:
        return self.elector.identity

    @property
    def where(self) -> str:
        return f"{self.leases.namespace}/{self.leases.name}"

    def is_leader(self) -> bool:
        """May this process act now? Checked against the renew deadline at this very instant."""
        with self._lock:
            return self._leading and self.elector.is_leader(self.clock())

    def holder(self) -> str:
        with self._lock:
            return self.elector.holder()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        timing = vars(self.elector.timing)
        log.info("leader election", lease=self.where, identity=self.identity, timing=timing)
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self, *, release: bool = True) -> None:
        """Stop electing; with `release`, hand the lease back so a standby takes over at once. Call it
        once the work loops have stopped: nothing decides after this."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.leases.timeout + self.elector.timing.retry_period)
        with self._lock:
            record = self.elector.release(self.wall()) if release else None
            was_leading = self._leading
            self._leading = False
            version = self._version
        if was_leading:
            self._stopped()
        if record is None:
            return
        try:
            self.leases.write(Write(record, create=False, version=version))
            log.info("lease released", lease=self.where, identity=self.identity)
        except (Conflict, LeaseError) as error:
            log.warning("lease not released; a standby takes over when it expires", error=str(error))
        finally:
            with self._lock:
                self.elector.released()

    def step(self) -> None:
        """One attempt: read, decide, write; then start or stop leading as the outcome says."""
        self.last_attempt = self.clock()
        try:
            found = self.leases.read()
        except LeaseError as error:
            self._problem(str(error))
        else:
            with self._lock:
                self._version = found.version
                write = self.elector.attempt(found, self.clock(), self.wall())
            if write is not None:
                try:
                    written = self.leases.write(write)
                except Conflict as error:
                    with self._lock:
                        self.elector.failed()
                    log.info("lease changed meanwhile; reading again", error=str(error))
                except LeaseError as error:
                    with self._lock:
                        self.elector.failed()
                    self._problem(str(error))
                else:
                    with self._lock:
                        self._version = written.version
                        self.elector.succeeded(written.record or write.record, self.clock())
                    self._last_problem = ""
        self._transition()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.step()
            except Exception as error:  # never let the election thread die: liveness watches it
                log.exception("leader election step failed", error=str(error))
            self._stopping.wait(self._pause())

    def _pause(self) -> float:
        retry = self.elector.timing.retry_period
        with self._lock:
            until = self.elector.leader_until() if self._leading else None
            expires = self.elector.expires_at() if self.elector.holder() else None
        now = self.clock()
        if until is not None:
            # A leader renews every retry period, and wakes up when its deadline passes to stop at once.
            return max(0.05, min(retry, until - now))
        pause = retry * (1 + RETRY_JITTER * random.random())
        if expires is not None and now < expires:
            pause = min(pause, expires - now + 0.01)  # try the moment the holder's lease runs out
        return max(0.05, pause)

    def _transition(self) -> None:
        now = self.clock()
        with self._lock:
            leader = self.elector.is_leader(now)
            holder = self.elector.holder()
            changed_holder = holder != self._last_holder
            self._last_holder = holder
            started = leader and not self._leading
            ended = self._leading and not leader
        if started:
            if self.on_started is not None:
                try:
                    self.on_started()
                except Exception as error:
                    log.exception("start of leadership failed; leading anyway", error=str(error))
            with self._lock:
                self._leading = self.elector.is_leader(self.clock())
            log.warning("leading", lease=self.where, identity=self.identity)
            self._notify()
        elif ended:
            with self._lock:
                self._leading = False
            log.warning("leadership lost: standing by", lease=self.where, identity=self.identity)
            self._stopped()
        elif changed_holder and not leader:
            log.info("standing by", lease=self.where, holder=holder or None, identity=self.identity)

    def _stopped(self) -> None:
        if self.on_stopped is not None:
            try:
                self.on_stopped()
            except Exception as error:
                log.exception("end of leadership failed", error=str(error))
        self._notify()

    def _notify(self) -> None:
        for listener in list(self.listeners):
            try:
                listener()
            except Exception as error:
                log.exception("leadership listener failed", error=str(error))

    def _problem(self, problem: str) -> None:
        if problem != self._last_problem:  # once per distinct problem, not every retry
            log.warning("lease unreachable", lease=self.where, problem=problem)
        self._last_problem = problem


def election(
    api_client: kubernetes.client.ApiClient,
    namespace: str,
    name: str = DEFAULT_NAME,
    timing: LeaseTiming | None = None,
    holder: str | None = None,
) -> LeaderElection:
    """An election on Lease `namespace/name` with its own API client (own connection pool)."""
    timing = timing or LeaseTiming()
    own = kubernetes.client.ApiClient(api_client.configuration)
    timeout = max(1.0, min(5.0, timing.renew_deadline / 2))
    return LeaderElection(LeaseClient(own, namespace, name, timeout), Elector(holder or identity(), timing))
