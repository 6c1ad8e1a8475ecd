"""Leader election on a lease, the way client-go's `leaderelection` does it: pure, time injected.

One record (a `coordination.k8s.io/v1` Lease, written by `adapters/lease.py`) names the holder. Every
`retry_period` each process reads it and asks `Elector.attempt` what to write:

- nobody holds it (no Lease, or an empty holder after a release): take it;
- this process holds it: renew it (a new `renewTime`);
- another process holds it: wait until the record has not changed for the lease's duration, *as timed
  on this process's own monotonic clock from when it last saw the record change*, then take it over.

The holder's wall-clock times in the record are written for people and never compared with this
process's clock, so clock skew between nodes cannot hand the lease over early (only a clock running
at a different *rate* could, which is why the renew deadline leaves a margin). Every write carries the
read version (optimistic concurrency): of two processes that decide to take the lease at once, one
wins and the other sees a conflict.

The leader considers itself the leader only while its last successful write is younger than
`renew_deadline` (shorter than the lease's duration), so it stops acting before any standby may start:
the gap `lease_duration - renew_deadline` covers writes in flight. `release()` empties the holder on a
graceful stop, so a standby takes over at its next attempt instead of after the lease's duration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime

JITTER = 1.2  # client-go's JitterFactor: the renew deadline must leave room for a retry and its jitter


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's defaults: lease 15 s, renew deadline 10 s, retry 2 s."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError("the lease duration must be longer than the renew deadline")
        if not self.renew_deadline > JITTER * self.retry_period:
            raise ValueError(f"the renew deadline must be longer than {JITTER} x the retry period")
        if not self.retry_period > 0:
            raise ValueError("the retry period must be positive")


@dataclass(frozen=True)
class LeaseRecord:
    """The fields of the Lease's spec that election reads and writes."""

    holder: str = ""  # "" = nobody (never held, or released)
    duration: int = 15  # leaseDurationSeconds: how long a standby waits for a silent holder
    acquired: datetime | None = None
    renewed: datetime | None = None
    transitions: int = 0


@dataclass(frozen=True)
class Observed:
    """What a read found: the record (None: no Lease yet) and its version, the write's precondition."""

    record: LeaseRecord | None
    version: str = ""


@dataclass(frozen=True)
class Write:
    """What to write: create the Lease, or replace it if it is still at `version`."""

    record: LeaseRecord
    create: bool
    version: str = ""


class Elector:
    """One process's view of the lease. Call `attempt` with each read, then `succeeded` or `failed`
    with the outcome of the write it asked for; `is_leader` answers for any instant."""

    def __init__(self, identity: str, timing: LeaseTiming | None = None) -> None:
        if not identity:
            raise ValueError("a holder identity is required")
        self.identity = identity
        self.timing = timing or LeaseTiming()
        self.observed: LeaseRecord | None = None
        self.observed_at: float | None = None  # this process's clock when the record last changed
        self.renewed_at: float | None = None  # this process's clock at its last successful write

    def attempt(self, found: Observed, now: float, wall: datetime) -> Write | None:
        """client-go's tryAcquireOrRenew, first half: the write to make, or None while another live
        holder has the lease. `now` is a monotonic clock, `wall` the time written into the record."""
        record = found.record
        if record is None:
            self._observe(None, now)
            return Write(self._mine(None, wall), create=True)
        self._observe(record, now)
        if record.holder != self.identity:
            self.renewed_at = (
                None  # another holder (or a release): whatever this process thought, it does not lead
            )
        if record.holder and record.holder != self.identity and not self.expired(now):
            return None
        return Write(self._mine(record, wall), create=False, version=found.version)

    def succeeded(self, written: LeaseRecord, now: float) -> None:
        """The write landed: this process holds the lease from `now` on."""
        self._observe(written, now)
        self.observed_at = now
        self.renewed_at = now if written.holder == self.identity else None

    def failed(self) -> None:
        """The write did not land (a conflict, an error, a timeout): nothing changes. Leadership, if
        any, runs out `renew_deadline` after the last success; the next attempt reads again."""

    def is_leader(self, now: float) -> bool:
        """True while the last successful write (as holder) is younger than the renew deadline."""
        return self.renewed_at is not None and now - self.renewed_at < self.timing.renew_deadline

    def leader_until(self) -> float | None:
        """When (on the monotonic clock) leadership ends unless renewed; None when not leading."""
        return None if self.renewed_at is None else self.renewed_at + self.timing.renew_deadline

    def expired(self, now: float) -> bool:
        """Has the observed record stayed unchanged for its whole lease duration?"""
        expires = self.expires_at()
        return expires is None or now >= expires

    def expires_at(self) -> float | None:
        """When (on the monotonic clock) the observed record expires unless it changes; None when
        nothing was observed yet."""
        if self.observed is None or self.observed_at is None:
            return None
        duration = self.observed.duration if self.observed.duration > 0 else self.timing.lease_duration
        return self.observed_at + duration

    def holder(self) -> str:
        """Who holds the lease, as last seen ("" when nobody)."""
        return self.observed.holder if self.observed else ""

    def release(self, wall: datetime) -> LeaseRecord | None:
        """The record that hands the lease back (empty holder, 1 s duration, as client-go writes it),
        or None when this process does not hold it."""
        if self.renewed_at is None or self.observed is None or self.observed.holder != self.identity:
            return None
        return replace(self.observed, holder="", duration=1, acquired=wall, renewed=wall)

    def released(self) -> None:
        """The release landed (or the process gives up the lease): not the leader any more."""
        self.renewed_at = None

    def _observe(self, record: LeaseRecord | None, now: float) -> None:
        if record != self.observed or self.observed_at is None:
            self.observed = record
            self.observed_at = now

    def _mine(self, record: LeaseRecord | None, wall: datetime) -> LeaseRecord:
        duration = math.ceil(self.timing.lease_duration)
        if record is not None and record.holder == self.identity:
            return replace(record, duration=duration, renewed=wall)  # a renewal keeps acquired/transitions
        transitions = 0 if record is None else record.transitions + 1  # a new holder: one more transition
        return LeaseRecord(
            holder=self.identity, duration=duration, acquired=wall, renewed=wall, transitions=transitions
        )
