"""Leader election's state machine (core/leadership.py) and its runner (adapters/lease.py), on a fake
Lease and injected clocks: acquire, renew, expiry, takeover, release, conflicts and clock skew."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from modelledger.adapters.lease import Conflict, LeaderElection, LeaseError, to_record
from modelledger.core.leadership import Elector, LeaseRecord, LeaseTiming, Observed, Write

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TIMING = LeaseTiming()  # 15 s lease, 10 s renew deadline, 2 s retry


@dataclass
class FakeLease:
    """A Lease with an apiserver's optimistic concurrency: a write names the version it read."""

    record: LeaseRecord | None = None
    version: int = 0
    writes: list[LeaseRecord] = field(default_factory=list)

    def read(self) -> Observed:
        return Observed(self.record, str(self.version) if self.record else "")

    def write(self, write: Write) -> Observed:
        if write.create and self.record is not None:
            raise Conflict("already exists")
        if not write.create and write.version != str(self.version):
            raise Conflict("changed meanwhile")
        self.record = write.record
        self.version += 1
        self.writes.append(write.record)
        return self.read()


def step(elector: Elector, lease: FakeLease, now: float, wall: datetime | None = None) -> bool:
    """One attempt of `elector` at monotonic `now`; returns whether its write landed."""
    write = elector.attempt(lease.read(), now, wall or T0 + timedelta(seconds=now))
    if write is None:
        return False
    try:
        written = lease.write(write)
    except Conflict:
        elector.failed()
        return False
    assert written.record is not None
    elector.succeeded(written.record, now)
    return True


def test_the_first_process_creates_the_lease_and_leads() -> None:
    lease, a = FakeLease(), Elector("a")
    assert not a.is_leader(0.0)
    assert step(a, lease, 0.0)
    assert a.is_leader(0.0)
    assert lease.record == LeaseRecord("a", 15, T0, T0, 0)


def test_the_leader_renews_and_keeps_its_acquire_time() -> None:
    lease, a = FakeLease(), Elector("a")
    step(a, lease, 0.0)
    for now in (2.0, 4.0, 6.0):
        assert step(a, lease, now)
        assert a.is_leader(now + 9.9)
    assert lease.record is not None
    assert lease.record.acquired == T0
    assert lease.record.renewed == T0 + timedelta(seconds=6)
    assert lease.record.transitions == 0


def test_a_leader_that_cannot_renew_stops_at_the_renew_deadline() -> None:
    lease, a = FakeLease(), Elector("a")
    step(a, lease, 0.0)
    a.failed()  # e.g. the apiserver timed out
    assert a.is_leader(9.99)
    assert not a.is_leader(10.0)
    assert a.leader_until() == 10.0


def test_a_standby_never_takes_a_lease_that_is_being_renewed() -> None:
    lease, a, b = FakeLease(), Elector("a"), Elector("b")
    step(a, lease, 0.0)
    now = 0.0
    while now < 120.0:
        now += 2.0
        assert step(a, lease, now)
        assert not step(b, lease, now + 1.0)
        assert not b.is_leader(now + 1.0)
    assert b.holder() == "a"


def test_takeover_after_the_lease_duration_without_overlap() -> None:
    lease, a, b = FakeLease(), Elector("a"), Elector("b")
    step(a, lease, 0.0)
    step(b, lease, 1.0)  # b sees a's record for the first time at 1.0
    step(a, lease, 2.0)  # a's last renewal: then it is killed
    taken_at = None
    now = 2.0
    while taken_at is None:
        now += 0.5
        if step(b, lease, now):
            taken_at = now
    # b saw the last change at 2.5 (its first attempt after a's renewal) and waited 15 s from there.
    assert taken_at == pytest.approx(17.5)
    # The old leader stopped acting at its renew deadline, 5.5 s before anyone took over.
    assert a.leader_until() == 12.0
    assert not a.is_leader(12.0)
    assert taken_at - 12.0 == pytest.approx(TIMING.lease_duration - TIMING.renew_deadline + 0.5)
    assert lease.record is not None
    assert (lease.record.holder, lease.record.transitions, lease.record.acquired) == (
        "b",
        1,
        T0 + timedelta(seconds=17.5),
    )


def test_a_fresh_standby_waits_a_full_lease_duration_whatever_the_record_says() -> None:
    """The record's renewTime is another node's clock: an ancient one proves nothing here."""
    lease = FakeLease(LeaseRecord("a", 15, T0 - timedelta(days=1), T0 - timedelta(days=1), 3), 7)
    b = Elector("b")
    assert not step(b, lease, 100.0)
    assert not step(b, lease, 114.9)
    assert step(b, lease, 115.0)
    assert lease.record is not None
    assert lease.record.transitions == 4


@pytest.mark.parametrize("skew", [timedelta(hours=-3), timedelta(0), timedelta(minutes=7), timedelta(days=2)])
def test_clock_skew_between_nodes_changes_nothing(skew: timedelta) -> None:
    """b's wall clock is off by `skew` and its monotonic clock has another origin: only b's own
    observation times count, so it neither takes over early nor late."""
    lease, a, b = FakeLease(), Elector("a"), Elector("b")
    b_origin = 1_000_000.0  # b's monotonic clock reads this when a's reads 0

    def b_step(now: float) -> bool:
        return step(b, lease, b_origin + now, T0 + skew + timedelta(seconds=now))

    step(a, lease, 0.0)
    for now in range(1, 31):
        if now % 2 == 0:
            step(a, lease, float(now))
        assert not b_step(now + 0.5)
    # a dies at 30.0 (its last renewal); b saw that change at 30.5.
    assert not b_step(45.0)
    assert b_step(45.5)
    assert b.is_leader(b_origin + 45.5)
    assert lease.record is not None
    assert lease.record.acquired == T0 + skew + timedelta(seconds=45.5)


def test_release_hands_over_at_the_next_attempt() -> None:
    lease, a, b = FakeLease(), Elector("a"), Elector("b")
    step(a, lease, 0.0)
    step(b, lease, 1.0)
    released = a.release(T0 + timedelta(seconds=2))
    assert released is not None
    assert (released.holder, released.duration) == ("", 1)
    lease.write(Write(released, create=False, version=str(lease.version)))
    a.released()
    assert not a.is_leader(2.0)
    assert step(b, lease, 3.0), "no waiting for the lease duration after a release"
    assert b.is_leader(3.0)
    assert lease.record is not None
    assert lease.record.transitions == 1


def test_only_the_holder_releases() -> None:
    lease, a, b = FakeLease(), Elector("a"), Elector("b")
    step(a, lease, 0.0)
    step(b, lease, 1.0)
    assert b.release(T0) is None


def test_of_two_simultaneous_takeovers_exactly_one_wins() -> None:
    lease = FakeLease(LeaseRecord("dead", 15, T0, T0, 0), 1)
    b, c = Elector("b"), Elector("c")
    found = lease.read()
    writes = [e.attempt(found, 0.0, T0) for e in (b, c)]
    assert writes == [None, None]  # both first see the record now: both wait
    found = lease.read()
    wb, wc = b.attempt(found, 15.0, T0), c.attempt(found, 15.0, T0)
    assert wb is not None
    assert wc is not None
    b.succeeded(lease.write(wb).record or wb.record, 15.0)
    with pytest.raises(Conflict):
        lease.write(wc)
    c.failed()
    assert b.is_leader(15.0)
    assert not c.is_leader(15.0)
    assert not step(c, lease, 16.0), "c now sees b's fresh record and waits"


def test_a_restarted_process_with_the_same_identity_resumes_at_once() -> None:
    """The pod's name is the identity: a container restarted in the same pod need not wait."""
    lease = FakeLease(LeaseRecord("pod-a", 15, T0, T0, 2), 4)
    again = Elector("pod-a")
    assert step(again, lease, 0.0)
    assert lease.record is not None
    assert (lease.record.acquired, lease.record.transitions) == (T0, 2)


def test_the_timing_must_leave_a_margin() -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaseTiming(lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="retry period"):
        LeaseTiming(lease_duration=15, renew_deadline=2, retry_period=2)
    with pytest.raises(ValueError, match="identity"):
        Elector("")


def test_a_lease_read_from_the_api_keeps_its_times_and_version() -> None:
    observed = to_record(
        {
            "metadata": {"resourceVersion": "42"},
            "spec": {
                "holderIdentity": "a",
                "leaseDurationSeconds": 15,
                "acquireTime": "2026-11-27T10:00:00.000000Z",
                "renewTime": "2026-11-27T10:00:02.500000Z",
                "leaseTransitions": 3,
            },
        }
    )
    assert observed == Observed(LeaseRecord("a", 15, T0, T0 + timedelta(seconds=2.5), 3), "42")
    assert to_record({"metadata": {"resourceVersion": "1"}, "spec": {}}).record == LeaseRecord("", 0)


# --- the runner --------------------------------------------------------------------------------------


class FakeClient(FakeLease):
    namespace = "modelledger-system"
    name = "modelledger"
    timeout = 1.0
    broken = False

    def read(self) -> Observed:
        if self.broken:
            raise LeaseError("read: timed out")
        return super().read()


@dataclass
class Clock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


def runner(client: FakeClient, identity: str, clock: Clock, events: list[str]) -> LeaderElection:
    election = LeaderElection(
        client,
        Elector(identity, TIMING),
        on_started=lambda: events.append(f"{identity} started, leader={election.is_leader()}"),
        on_stopped=lambda: events.append(f"{identity} stopped"),
        clock=clock,
        wall=lambda: T0 + timedelta(seconds=clock.now),
    )
    election.listeners.append(lambda: events.append(f"{identity} notified, leader={election.is_leader()}"))
    return election


def test_the_runner_starts_leading_only_after_its_start_callback() -> None:
    client, clock, events = FakeClient(), Clock(), list[str]()
    a = runner(client, "a", clock, events)
    a.step()
    assert events == ["a started, leader=False", "a notified, leader=True"]
    assert a.is_leader()


def test_the_runner_stops_leading_when_renewals_fail_and_standby_takes_over() -> None:
    client, clock, events = FakeClient(), Clock(), list[str]()
    a, b = runner(client, "a", clock, events), runner(client, "b", clock, events)
    a.step()
    b.step()
    client.broken = True  # a cannot reach the apiserver any more; nor, for a moment, can b
    for clock.now in (2.0, 4.0, 6.0, 8.0, 10.0):
        a.step()
    assert not a.is_leader()
    assert "a stopped" in events
    client.broken = False
    clock.now = 14.9
    b.step()
    assert not b.is_leader(), "b saw the last change at 0: it waits until 15"
    clock.now = 15.0
    b.step()
    assert b.is_leader()


def test_stop_releases_the_lease() -> None:
    client, clock, events = FakeClient(), Clock(), list[str]()
    a = runner(client, "a", clock, events)
    a.step()
    a.stop(release=True)
    assert not a.is_leader()
    assert client.record is not None
    assert client.record.holder == ""
    assert events[-2:] == ["a stopped", "a notified, leader=False"]


def test_seeing_another_holder_ends_leadership_at_once() -> None:
    """Only a clock running at another rate could let this happen; the leader then stops at once."""
    lease, a = FakeLease(), Elector("a")
    step(a, lease, 0.0)
    lease.record = LeaseRecord("b", 15, T0, T0, 1)
    lease.version += 1
    assert a.attempt(lease.read(), 1.0, T0) is None
    assert not a.is_leader(1.0)


def test_a_standby_tries_again_the_moment_the_lease_expires() -> None:
    client, clock, events = FakeClient(), Clock(), list[str]()
    a, b = runner(client, "a", clock, events), runner(client, "b", clock, events)
    a.step()
    clock.now = 14.0
    b.step()  # first sight of a's record at 14: it expires at 29
    assert b._pause() <= TIMING.retry_period * 1.2
    clock.now = 28.5
    assert b._pause() == pytest.approx(0.51)
