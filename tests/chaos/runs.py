"""One run of the script under faults, judged: operators started, faults struck, invariants checked."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from prometheus_client import Gauge

from modelledger.testing.access import ClusterAccess
from tests.chaos.cluster import Cluster, final_state
from tests.chaos.driver import Driver, Progress
from tests.chaos.faults import Fault, Injection
from tests.chaos.invariants import Row, audit_per_decision, revisions
from tests.chaos.script import DEPLOYMENTS, Script
from tests.operator_process import OperatorProcess

ROUND_TIMEOUT = 240.0  # a round under a fault; fault-free rounds take seconds
SETTLE = 60.0  # after the last round: requests answered, every record written


@dataclass(frozen=True)
class Reference:
    """The fault-free run: its final state and how long each round took."""

    final: dict[str, Any]
    round_seconds: list[float]


@dataclass
class Outcome:
    namespace: str
    injections: int = 0
    detail: str = ""  # what was injected
    back: list[float] = field(default_factory=list)  # per injection: seconds until the struck part was back
    workdir: Path | None = None  # the operators' logs
    # Per injection: seconds until the operator moved again, from the fault's start and from when the
    # struck part was back.
    recoveries: list[tuple[float, float]] = field(default_factory=list)
    lost: tuple[int, int] = (0, 0)  # (revisions, audit records)
    duplicated: tuple[int, int] = (0, 0)
    wrong_rollbacks: int = 0
    chains: tuple[int, int] = (0, 0)  # (verified, checked)
    same: bool | None = None  # final state = the fault-free run's (None: this is that run)
    seconds: float = 0.0
    final: dict[str, Any] = field(default_factory=dict)
    round_seconds: list[float] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def cli(plane: ClusterAccess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelledger.cli.main", *args],
        capture_output=True, text=True, env={**plane.env(), "COLUMNS": "200"}, timeout=120,
    )  # fmt: skip


def execute(
    *,
    plane: ClusterAccess,
    api: kubernetes.client.ApiClient,
    namespace: str,
    script: Script,
    errors: Gauge,
    operators: Sequence[OperatorProcess],
    faults: Callable[[Progress], list[Fault]],
    audit_log: Path,
    reference: Reference | None,
) -> Outcome:
    """Run the script with `operators` (the first one leads) while `faults` strike; judge the result."""
    cluster = Cluster(plane, api, namespace)
    driver = Driver(cluster, script, errors, round_timeout=ROUND_TIMEOUT)
    outcome = Outcome(namespace)
    driver.prepare()
    began = time.monotonic()
    struck: list[Fault] = []
    try:
        operators[0].start()
        deadline = time.monotonic() + 30
        while not operators[0].leading():
            assert time.monotonic() < deadline, "the first operator leads within 30 s"
            time.sleep(0.1)
        for standby in operators[1:]:
            standby.start()
        struck = faults(driver.progress)
        for fault in struck:
            fault.start()
        try:
            outcome.round_seconds = driver.run()
        finally:
            for fault in struck:
                fault.halt()
        for fault in struck:
            fault.check()
        outcome.injections = sum(len(f.injections) for f in struck)
        outcome.recoveries = recoveries([i for f in struck for i in f.injections], driver.moved)
        outcome.detail = "; ".join(f.what for f in struck)
        outcome.back = [i.back_after for f in struck for i in f.injections]
        _settle(cluster, namespace, audit_log)
    finally:
        for operator in operators:
            operator.stop()
        outcome.seconds = time.monotonic() - began
    _judge(plane, cluster, script, audit_log, reference, outcome)
    return outcome


def _settle(cluster: Cluster, namespace: str, audit_log: Path) -> None:
    """Wait (bounded) until every request is answered and every decision has its record."""
    deadline = time.monotonic() + SETTLE
    while time.monotonic() < deadline:
        try:
            answered = all((r.get("status") or {}).get("phase") for r in cluster.requests())
            count = audit_per_decision(namespace, cluster.deployments(), audit_log)
            if answered and not count.problems:
                return
        except Exception:  # not yet (the apiserver back a moment ago)
            pass
        time.sleep(0.5)


def _judge(
    plane: ClusterAccess,
    cluster: Cluster,
    script: Script,
    audit_log: Path,
    reference: Reference | None,
    outcome: Outcome,
) -> None:
    deployments = cluster.deployments()
    outcome.final = final_state(cluster)
    audit = audit_per_decision(cluster.namespace, deployments, audit_log)
    revs = revisions(script, deployments, reference.final if reference else None)
    outcome.lost = (revs.lost, audit.lost)
    outcome.duplicated = (revs.duplicated, audit.duplicated + audit.phantom)
    outcome.wrong_rollbacks = revs.wrong_rollbacks
    outcome.problems += revs.problems + audit.problems
    verified = 0
    checks = {("-n", cluster.namespace): len(DEPLOYMENTS), ("--file", str(audit_log)): 1}
    for args, chains in checks.items():
        result = cli(plane, "audit", "verify", *args)
        if result.returncode == 0 and "BROKEN" not in result.stdout:
            verified += chains
        else:
            outcome.problems.append(f"audit verify {' '.join(args)}: {result.stdout[-2000:]}{result.stderr}")
    outcome.chains = (verified, len(DEPLOYMENTS) + 1)
    if reference is not None:
        outcome.same = outcome.final == reference.final
        if not outcome.same:
            outcome.problems.append(f"final state differs from the fault-free run: {outcome.final}")


def recoveries(injections: Sequence[Injection], moved: Sequence[float]) -> list[tuple[float, float]]:
    """For each injection: when the operator next changed a status (a revision, a stable mark, a phase)
    after the struck part was back, in seconds from the fault's start and from that return. Not counted:
    an injection the next one struck before that change (the kill -9 that came 0.3 s after a restart),
    and one nothing followed (the run's last)."""
    found = []
    ordered = sorted(injections, key=lambda i: i.at)
    for index, injection in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        back = injection.at + injection.back_after
        after = [t for t in moved if t >= back]
        if after and (following is None or after[0] < following.at):
            found.append((after[0] - injection.at, after[0] - back))
    return found


def row(fault: str, outcomes: Sequence[Outcome]) -> Row:
    """One line of the table for a fault (several runs when the kill count needed more than one)."""
    runs = f" in {len(outcomes)} runs" if len(outcomes) > 1 else ""
    same = [o.same for o in outcomes]
    back = [b for o in outcomes for b in o.back]
    injected = sum(o.injections for o in outcomes)
    recovered = [r for o in outcomes for r in o.recoveries]
    return Row(
        fault=fault,
        injections=(
            f"{injected}{runs}: {outcomes[0].detail}" + (f" (back within {max(back):.1f} s)" if back else "")
            if injected
            else "0"
        ),
        max_recovery=(
            f"{max(r[0] for r in recovered):.1f} ({max(r[1] for r in recovered):.1f} once back)"
            if recovered
            else "-"
        ),
        rounds=" / ".join(" ".join(f"{s:.0f}" for s in o.round_seconds) for o in outcomes),
        lost=f"{sum(o.lost[0] for o in outcomes)} / {sum(o.lost[1] for o in outcomes)}",
        duplicated=f"{sum(o.duplicated[0] for o in outcomes)} / {sum(o.duplicated[1] for o in outcomes)}",
        wrong_rollbacks=sum(o.wrong_rollbacks for o in outcomes),
        chains=f"{sum(o.chains[0] for o in outcomes)}/{sum(o.chains[1] for o in outcomes)}",
        same_final_state="(reference)" if same == [None] else ("yes" if all(same) else "NO"),
        seconds=sum(o.seconds for o in outcomes),
    )
