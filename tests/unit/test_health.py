"""Health that tells the truth: loop progress (core/health.py), what /healthz answers, the leader metrics,
and the audit trail continuing a chain another process (the previous leader) extended."""

from __future__ import annotations

from pathlib import Path

from modelledger.adapters import audit
from modelledger.adapters.metrics import OperatorMetrics
from modelledger.core import audit_chain
from modelledger.core.health import Progress, stall_bound
from modelledger.handlers.leadership import Gate, Health

KEY = ("ml-prod", "fraud")


def test_the_bound_is_three_intervals_and_at_least_the_floor() -> None:
    assert stall_bound(15.0) == 60.0
    assert stall_bound(60.0) == 180.0
    assert stall_bound(1.0, floor=5.0) == 5.0


def test_a_pass_that_hangs_is_a_stall() -> None:
    progress = Progress()
    progress.begin(KEY, 100.0, bound=60.0)
    assert progress.stalled(160.0) == []
    [stall] = progress.stalled(160.5)
    assert (stall.key, stall.busy, stall.seconds) == (KEY, True, 60.5)


def test_an_overdue_pass_is_a_stall_and_a_finished_one_is_not() -> None:
    progress = Progress()
    progress.begin(KEY, 100.0, bound=60.0)
    progress.end(KEY, 101.0, next_in=15.0, bound=60.0)
    assert progress.last_pass == 101.0
    assert progress.stalled(176.0) == []
    [stall] = progress.stalled(177.0)
    assert not stall.busy


def test_a_paused_or_forgotten_loop_is_not_watched() -> None:
    progress = Progress()
    progress.begin(KEY, 0.0, bound=1.0)
    progress.pause(KEY)
    assert progress.stalled(1000.0) == []
    progress.begin(KEY, 0.0, bound=1.0)
    progress.forget(KEY)
    assert progress.stalled(1000.0) == []


class FakeElection:
    identity = "pod-a"
    leading = True
    thread_alive = True

    def __init__(self) -> None:
        self.listeners: list[object] = []

    def is_leader(self) -> bool:
        return self.leading

    def holder(self) -> str:
        return "pod-a" if self.leading else "pod-b"

    def alive(self) -> bool:
        return self.thread_alive


def test_liveness_fails_on_a_stall_only_while_leading() -> None:
    election = FakeElection()
    health = Health(Gate(election), floor=5.0)
    health.progress.begin(KEY, 0.0, bound=5.0)
    ok, report = health.liveness(3.0)
    assert ok
    assert report["leader"] is True
    ok, report = health.liveness(6.0)
    assert not ok
    assert report["stalled"][0]["deployment"] == "fraud"
    election.leading = False
    ok, report = health.liveness(6.0)
    assert ok, "a standby's loops are not expected to move"
    assert report["holder"] == "pod-b"


def test_liveness_fails_when_the_election_thread_died() -> None:
    election = FakeElection()
    election.thread_alive = False
    ok, report = Health(Gate(election)).liveness(0.0)
    assert not ok
    assert "election" in report["problem"]


def test_without_an_election_the_gate_is_always_open() -> None:
    gate = Gate()
    assert gate.leading()
    assert not gate.elected


def test_leader_and_last_evaluation_metrics() -> None:
    metrics = OperatorMetrics()
    metrics.set_leader(False)
    assert metrics.registry.get_sample_value("modelledger_leader") == 0
    metrics.set_leader(True)
    assert metrics.registry.get_sample_value("modelledger_leader") == 1
    metrics.record_pass(1_800_000_000.5)
    assert (
        metrics.registry.get_sample_value("modelledger_last_evaluation_timestamp_seconds") == 1_800_000_000.5
    )


def test_a_standby_continues_the_chain_the_leader_extended(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    leader, standby = audit.AuditTrail(), audit.AuditTrail()
    leader.write_to(path)
    standby.use_file(path)  # named at start, not read: the leader keeps writing
    for n in range(3):
        leader.emit({"action": "X", "message": str(n)})
    path.write_text(path.read_text() + '{"torn": ')  # the leader was killed mid-line
    standby.reopen()  # the takeover
    record = standby.emit({"action": "Y", "message": "after the takeover"})
    assert record["seq"] == 4
    lines = path.read_text().splitlines(keepends=True)
    result = audit_chain.verify_lines([line for line in lines if not line.startswith('{"torn"')])
    assert result.broken is None
    assert result.records == 4


def test_a_trail_given_a_file_reads_its_tip_before_its_first_record(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    first = audit.AuditTrail()
    first.write_to(path)
    first.emit({"action": "X", "message": "one"})
    late = audit.AuditTrail()
    late.use_file(path)
    assert late.emit({"action": "X", "message": "two"})["seq"] == 2
