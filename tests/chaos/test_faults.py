"""The fault suite (issue 12, item 5): the same seeded script of deploys, breaches, manual rollbacks and
revocations across four deployments, run once without faults and once under each fault. Every run must
lose no revision and make none twice, make no rollback the script did not call for, leave one audit
record per decision, verify, and end in the fault-free run's final state.

`make chaos` is the full form (>= 50 kill -9, more rounds and windows); `make test` runs the short form.
The seed is printed; `CHAOS_SEED=<seed>` replays a run. Run with `-s` to see each row as it is measured;
the table is printed at the end and written to .chaos/last-table.md.
"""

from __future__ import annotations

import random
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from pathlib import Path

import kubernetes
import pytest
from prometheus_client import Gauge

from modelledger.testing.access import ClusterAccess
from modelledger.testing.plane import LocalPlane
from modelledger.testing.prometheus import PrometheusServer
from tests.chaos.conftest import SETTINGS, Namespaces, Settings
from tests.chaos.driver import Progress
from tests.chaos.faults import (
    FailingPrometheus,
    Fault,
    FullDisk,
    KillLeader,
    KillOperator,
    RestartComponent,
    StopPrometheus,
    window_rounds,
)
from tests.chaos.invariants import Row
from tests.chaos.proxy import FaultyProxy
from tests.chaos.runs import Outcome, Reference, execute, row
from tests.chaos.script import Action, Script
from tests.operator_process import OperatorProcess

MakeFaults = Callable[[Progress, list[OperatorProcess]], list[Fault]]
# Generous: the full form's kill -9 runs take many minutes; a hung short form still fails in 20.
pytestmark = pytest.mark.timeout(3600 if SETTINGS.full else 1200)


def check(fault: str, outcomes: list[Outcome], rows: list[Row]) -> None:
    line = row(fault, outcomes)
    rows.append(line)
    print(f"\n{fault}: " + " | ".join(f"{h}: {c}" for h, c in zip(Row.HEADER, line.cells(), strict=True)))
    problems = [p for o in outcomes for p in o.problems]
    assert not problems, f"{fault} (seed {SETTINGS.seed}):\n" + "\n".join(problems)
    assert all(o.same is not False for o in outcomes)


class Runner:
    """What every run of a test shares; `run` does one in a fresh namespace."""

    def __init__(
        self,
        plane: ClusterAccess,
        api: kubernetes.client.ApiClient,
        script: Script,
        errors: Gauge,
        namespaces: Namespaces,
        workdir: Path,
        prometheus_url: str,
    ) -> None:
        self.plane, self.api, self.script, self.errors = plane, api, script, errors
        self.namespaces, self.workdir, self.prometheus_url = namespaces, workdir, prometheus_url
        self.runs = 0

    def run(
        self,
        stem: str,
        faults: MakeFaults | None,
        reference: Reference | None,
        *,
        replicas: int = 1,
        prometheus_url: str | None = None,
        audit_log: Path | None = None,
    ) -> Outcome:
        self.runs += 1
        namespace = self.namespaces.new(stem)
        workdir = self.workdir / f"run-{self.runs}"
        workdir.mkdir(parents=True)
        extra = ["--audit-log", str(audit_log)] if audit_log else []
        operators: list[OperatorProcess] = [
            OperatorProcess(
                self.plane, namespace, workdir, prometheus_url or self.prometheus_url, name=n, extra=extra
            )
            for n in "ab"[:replicas]
        ]
        make: MakeFaults = faults or (lambda _progress, _operators: [])
        outcome = execute(
            plane=self.plane,
            api=self.api,
            namespace=namespace,
            script=self.script,
            errors=self.errors,
            operators=operators,
            faults=lambda progress: make(progress, operators),
            audit_log=audit_log or workdir / "audit.jsonl",
            reference=reference,
        )
        outcome.workdir = workdir
        return outcome


@pytest.fixture(scope="module")
def runner(
    plane: ClusterAccess,
    api_client: kubernetes.client.ApiClient,
    installed_crds: object,
    identity_guards: None,
    script: Script,
    error_rates: Gauge,
    prometheus: PrometheusServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Runner]:
    made = Namespaces(api_client)
    yield Runner(
        plane, api_client, script, error_rates, made, tmp_path_factory.mktemp("chaos"), prometheus.url
    )
    made.delete()


@pytest.fixture(scope="module")
def reference(runner: Runner, settings: Settings, fault_rows: list[Row]) -> Reference:
    """The fault-free run of the script: every faulted run must end as it does."""
    print("\nthe script:\n" + "\n".join(f"  round {i}: " + "; ".join(s.describe() for s in r)
                                        for i, r in enumerate(runner.script.rounds)))  # fmt: skip
    outcome = runner.run("none", None, None)
    check("none (fault-free run)", [outcome], fault_rows)
    return Reference(outcome.final, outcome.round_seconds)


def rng(salt: str) -> random.Random:
    """A random stream per fault, from the seed: replaying a seed replays every fault's instants."""
    return random.Random(f"{SETTINGS.seed}:{salt}")


def test_fault_free_run_passes_every_check(reference: Reference, script: Script) -> None:
    """The reference itself: every step's outcome, the invariants, the final state the script implies."""
    for name, state in reference.final.items():
        if name in ("revoked", "requests"):
            continue
        steps = [s for s in script.steps if s.deployment == name]
        assert [cause for _r, _v, cause, _s in state["history"]] == [s.cause.value for s in steps]
        assert state["phase"] == steps[-1].phase.value
    assert reference.final["requests"] == ({"Applied": n} if (n := script.count(Action.ROLLBACK)) else {})


def test_kill_9_of_the_operator_at_random_instants(
    runner: Runner, reference: Reference, settings: Settings, fault_rows: list[Row]
) -> None:
    """kill -9 at seeded random instants, restarted at once, until the kill count is reached (the script
    runs again, in a new namespace, as often as that takes)."""
    outcomes: list[Outcome] = []
    stream = rng("kill-9")
    while sum(o.injections for o in outcomes) < settings.kills:
        left = settings.kills - sum(o.injections for o in outcomes)

        def faults(progress: Progress, operators: list[OperatorProcess], left: int = left) -> list[Fault]:
            return [KillOperator(progress, stream, operators[0], gap=(0.3, 2.0), limit=left)]

        outcomes.append(runner.run("kill9", faults, reference))
    check(f"kill -9 of the operator (x{settings.kills})", outcomes, fault_rows)


def test_kill_9_of_the_leader_of_two_during_the_rollback_storm(
    runner: Runner, reference: Reference, fault_rows: list[Row]
) -> None:
    def faults(progress: Progress, operators: list[OperatorProcess]) -> list[Fault]:
        return [KillLeader(progress, rng("leader"), operators)]

    outcome = runner.run("leader", faults, reference, replicas=2)
    check("kill -9 of the leader of two, mid-storm", [outcome], fault_rows)
    assert outcome.injections == 1, "the leader was killed during the storm"


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_restart_of_a_control_plane_component(
    runner: Runner,
    reference: Reference,
    local_plane: LocalPlane,
    spawner: Executor,
    settings: Settings,
    fault_rows: list[Row],
    component: str,
) -> None:
    stream = rng(component)
    rounds = window_rounds(stream, len(runner.script.rounds), settings.windows)

    def faults(progress: Progress, operators: list[OperatorProcess]) -> list[Fault]:
        return [RestartComponent(progress, stream, rounds, local_plane, component, spawner)]

    outcome = runner.run(component.split("-")[-1], faults, reference)
    check(f"{component} restarted", [outcome], fault_rows)
    assert outcome.injections == len(rounds)


def test_prometheus_stopped_and_started_again(
    runner: Runner,
    reference: Reference,
    prometheus: PrometheusServer,
    spawner: Executor,
    settings: Settings,
    fault_rows: list[Row],
) -> None:
    stream = rng("prometheus-stopped")
    rounds = window_rounds(stream, len(runner.script.rounds), settings.windows)

    def faults(progress: Progress, operators: list[OperatorProcess]) -> list[Fault]:
        return [StopPrometheus(progress, stream, rounds, prometheus, spawner)]

    outcome = runner.run("promstop", faults, reference)
    check("Prometheus stopped", [outcome], fault_rows)
    assert outcome.injections == len(rounds)


def test_prometheus_slow(
    runner: Runner, reference: Reference, prometheus: PrometheusServer, fault_rows: list[Row]
) -> None:
    """Every answer delayed 0.5-2.5 s, one in ten by 6 s (past the operator's 5 s query timeout)."""
    with FaultyProxy(prometheus.url, SETTINGS.seed) as proxy:
        proxy.slow(0.5, 2.5, beyond=0.1, by=6.0)
        outcome = runner.run("promslow", None, reference, prometheus_url=proxy.url)
    counts = proxy.counts
    outcome.injections = counts.delayed
    outcome.detail = f"{counts.delayed} answers delayed, {counts.timed_out} past the query timeout"
    check("Prometheus slow (delaying proxy)", [outcome], fault_rows)
    assert counts.delayed > 0
    assert counts.timed_out > 0, "some answers came after the operator's query timeout"


def test_prometheus_answering_errors(
    runner: Runner,
    reference: Reference,
    prometheus: PrometheusServer,
    settings: Settings,
    fault_rows: list[Row],
) -> None:
    stream = rng("prometheus-errors")
    rounds = window_rounds(stream, len(runner.script.rounds), settings.windows)
    with FaultyProxy(prometheus.url, SETTINGS.seed) as proxy:

        def faults(progress: Progress, operators: list[OperatorProcess]) -> list[Fault]:
            return [FailingPrometheus(progress, stream, rounds, proxy)]

        outcome = runner.run("promerr", faults, reference, prometheus_url=proxy.url)
    outcome.detail += f" ({proxy.counts.failed} answers 500/503)"
    check("Prometheus answering 500/503", [outcome], fault_rows)
    assert proxy.counts.failed > 0


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs for the audit file (needs root, or CAP_SYS_ADMIN)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_audit_disk_full(
    runner: Runner, reference: Reference, small_disk: Path, settings: Settings, fault_rows: list[Row]
) -> None:
    """The audit file's tmpfs filled to the last byte for a while (--audit-failure=block, the default):
    people's decisions wait, rollbacks go ahead, every record is written once there is room."""
    stream = rng("disk-full")
    rounds = window_rounds(stream, len(runner.script.rounds), settings.windows)

    def faults(progress: Progress, operators: list[OperatorProcess]) -> list[Fault]:
        return [FullDisk(progress, stream, rounds, small_disk)]

    outcome = runner.run("diskfull", faults, reference, audit_log=small_disk / "audit.jsonl")
    check("audit disk full", [outcome], fault_rows)
    assert outcome.injections == len(rounds)
    assert outcome.workdir is not None
    logs = "".join(log.read_text() for log in outcome.workdir.glob("*.log"))
    assert '"audit_pending": true' in logs, "records were queued while the disk was full: the fault hit"
    assert "audit sink healthy again" in logs
