"""Runs a script against one namespace, round by round: each round's steps start together and the round
ends when every step's outcome is in the cluster. Fault threads watch `Progress` to strike at a round."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from prometheus_client import Gauge

from tests.chaos.cluster import Cluster, Snapshot, history, model_version, overshot, settled
from tests.chaos.script import DEPLOYMENTS, Action, Script

BREACHING, PASSING = 0.9, 0.0


@dataclass
class Progress:
    """What fault threads may look at: the round running, and the last snapshot taken."""

    rounds: int
    round: int = -1
    snapshot: Snapshot | None = None
    started: list[threading.Event] = field(default_factory=list)
    finished: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.started = [threading.Event() for _ in range(self.rounds)]

    def wait_round(self, index: int, stop: threading.Event) -> bool:
        """Block until round `index` starts (True) or the run ends or `stop` is set first (False)."""
        while not stop.is_set() and not self.finished.is_set():
            if self.started[index].wait(0.1):
                return True
        return False


def fingerprint(snapshot: Snapshot) -> object:
    """What only the operator changes: each history's length and newest entry's stability, and the phase."""
    return sorted(
        (name, len(history(item)), bool(history(item) and history(item)[0].get("stable")),
         (item.get("status") or {}).get("phase"))
        for name, item in snapshot.deployments.items()
    )  # fmt: skip


class RoundFailed(AssertionError):
    pass


class Driver:
    def __init__(self, cluster: Cluster, script: Script, errors: Gauge, *, round_timeout: float) -> None:
        self.cluster = cluster
        self.script = script
        self.errors = errors
        self.round_timeout = round_timeout
        self.progress = Progress(len(script.rounds))
        self.round_seconds: list[float] = []
        self.moved: list[float] = []  # when the operator last changed what it writes (see `fingerprint`)
        self._seen: object = None

    def prepare(self) -> None:
        ns = self.cluster.namespace
        for deployment in DEPLOYMENTS:
            self.errors.labels(namespace=ns, deployment=deployment).set(PASSING)
        self.cluster.apply(*[model_version(d, v) for d in DEPLOYMENTS for v in self.script.versions(d)])

    def run(self) -> list[float]:
        try:
            with ThreadPoolExecutor(max_workers=len(DEPLOYMENTS)) as pool:
                for index, steps in enumerate(self.script.rounds):
                    self._round(index, steps, pool)
        finally:
            self.progress.finished.set()
        return self.round_seconds

    def snapshot(self) -> Snapshot | None:
        try:
            return Snapshot(self.cluster.deployments(), self.cluster.workloads())
        except Exception:  # the apiserver (or etcd) is down: not yet
            return None

    def _round(self, index: int, steps: tuple, pool: ThreadPoolExecutor) -> None:  # type: ignore[type-arg]
        ns = self.cluster.namespace
        began = time.monotonic()
        self.progress.round = index
        self.progress.started[index].set()
        for step in steps:
            if step.action is Action.BREACH:
                self.errors.labels(namespace=ns, deployment=step.deployment).set(BREACHING)
        list(pool.map(self.cluster.act, [s for s in steps if s.action is not Action.BREACH]))
        cooled: set[str] = set()
        last: Snapshot | None = None
        while True:
            snapshot = self.snapshot()
            if snapshot is not None:
                last = self.progress.snapshot = snapshot
                if (seen := fingerprint(snapshot)) != self._seen:
                    self._seen = seen
                    self.moved.append(time.monotonic())
                for step in steps:
                    if step.action is Action.BREACH and step.deployment not in cooled:
                        item = snapshot.deployments.get(step.deployment)
                        if item is not None and len(history(item)) >= step.revisions:
                            # Rolled back: the error rate goes down, so the new revision can bake.
                            self.errors.labels(namespace=ns, deployment=step.deployment).set(PASSING)
                            cooled.add(step.deployment)
                    if problem := overshot(step, snapshot):
                        raise RoundFailed(f"round {index}: {problem}")
                if all(settled(step, snapshot) for step in steps):
                    break
            if time.monotonic() - began > self.round_timeout:
                waiting = [s.describe() for s in steps if last is None or not settled(s, last)]
                raise RoundFailed(f"round {index} not done in {self.round_timeout:.0f} s: {waiting}")
            time.sleep(0.25)
        self.round_seconds.append(time.monotonic() - began)
