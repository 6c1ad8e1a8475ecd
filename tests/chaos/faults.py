"""The faults, each a thread that strikes while a script runs, at seeded random instants or rounds, and
records what it did and how long the struck part took to come back."""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path

from modelledger.testing.plane import LocalPlane
from modelledger.testing.prometheus import PrometheusServer
from tests.chaos.driver import Progress
from tests.chaos.invariants import ROLLBACK_CAUSES
from tests.chaos.proxy import FaultyProxy
from tests.chaos.script import STORM_ROUND
from tests.operator_process import OperatorProcess


@dataclass(frozen=True)
class Injection:
    at: float  # monotonic
    back_after: float  # seconds until the struck part served again (restart, liveness, takeover, window)


class Fault(threading.Thread):
    """Runs `strike` until the run finishes or `halt()`; an exception fails the test (`check`)."""

    label = "fault"

    def __init__(self, progress: Progress, rng: random.Random) -> None:
        super().__init__(name=f"chaos-{self.label}", daemon=True)
        self.progress = progress
        self.rng = rng
        self.injections: list[Injection] = []
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.strike()
        except BaseException as error:  # reported by `check` in the test's thread
            self.error = error

    def strike(self) -> None:
        raise NotImplementedError

    def pause(self, seconds: float) -> bool:
        """Sleep, unless the run ends first (False)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.stopping.is_set() or self.progress.finished.is_set():
                return False
            time.sleep(min(0.05, deadline - time.monotonic()))
        return True

    def halt(self) -> None:
        self.stopping.set()
        self.join(timeout=180)

    def check(self) -> None:
        if self.error is not None:
            raise AssertionError(f"{self.label} fault failed: {self.error!r}") from self.error

    what = ""


class KillOperator(Fault):
    """kill -9 of the (single) operator at random instants, restarted at once each time."""

    label = "kill -9"
    what = "kill -9 at random instants, restarted at once"

    def __init__(
        self,
        progress: Progress,
        rng: random.Random,
        operator: OperatorProcess,
        gap: tuple[float, float],
        limit: int,
    ) -> None:
        super().__init__(progress, rng)
        self.operator = operator
        self.gap = gap
        self.limit = limit

    def strike(self) -> None:
        while len(self.injections) < self.limit and self.pause(self.rng.uniform(*self.gap)):
            began = time.monotonic()
            self.operator.kill()
            self.operator.start()  # returns once /healthz answers
            self.injections.append(Injection(began, time.monotonic() - began))


class KillLeader(Fault):
    """kill -9 of the leader of two replicas as soon as the storm's first rollback is in the status; the
    killed one comes back as the standby."""

    label = "kill -9 leader"
    what = "kill -9 of the leader mid-storm, standby takes over"

    def __init__(self, progress: Progress, rng: random.Random, pair: Sequence[OperatorProcess]) -> None:
        super().__init__(progress, rng)
        self.pair = pair

    def strike(self) -> None:
        if not self.progress.wait_round(STORM_ROUND, self.stopping):
            return
        while not self._first_rollback():
            if not self.pause(0.05):
                return
        leader = next(o for o in self.pair if o.leading())
        standby = next(o for o in self.pair if o is not leader)
        began = time.monotonic()
        leader.kill()
        while not standby.leading():
            if time.monotonic() - began > 90:
                raise AssertionError("no takeover within 90 s of the leader's kill -9")
            time.sleep(0.05)
        self.injections.append(Injection(began, time.monotonic() - began))
        leader.start()  # the standby now

    def _first_rollback(self) -> bool:
        snapshot = self.progress.snapshot
        if snapshot is None or self.progress.round != STORM_ROUND:
            return False
        return any(
            ((item.get("status") or {}).get("history") or [{}])[0].get("cause") in ROLLBACK_CAUSES
            for item in snapshot.deployments.values()
        )


class Windows(Fault):
    """A fault that lasts a while: at each chosen round, after a random delay, `begin`, hold for a random
    time, `end`. `end` returns the seconds the struck part took to come back after the hold."""

    hold = (4.0, 8.0)
    lead = (0.2, 2.0)  # after the round's start

    def __init__(self, progress: Progress, rng: random.Random, rounds: Sequence[int]) -> None:
        super().__init__(progress, rng)
        self.rounds = rounds

    def strike(self) -> None:
        for index in self.rounds:
            if not self.progress.wait_round(index, self.stopping) or not self.pause(
                self.rng.uniform(*self.lead)
            ):
                return
            began = time.monotonic()
            self.begin()
            try:
                time.sleep(self.rng.uniform(*self.hold))
            finally:
                self.end()
            self.injections.append(Injection(began, time.monotonic() - began))

    def begin(self) -> None:
        raise NotImplementedError

    def end(self) -> None:
        raise NotImplementedError


class RestartComponent(Windows):
    """kube-apiserver or etcd stopped (SIGTERM), down for a random 1-3 s, started again. Started by
    `spawner`, a thread that outlives the run: the plane's children die with the thread that started
    them (PR_SET_PDEATHSIG), and this fault's thread ends with the run."""

    hold = (0.0, 0.0)

    def __init__(
        self,
        progress: Progress,
        rng: random.Random,
        rounds: Sequence[int],
        plane: LocalPlane,
        component: str,
        spawner: Executor,
    ) -> None:
        self.label = f"{component} restart"
        self.what = f"{component} stopped 1-3 s, restarted"
        super().__init__(progress, rng, rounds)
        self.restart: Callable[..., float] = (
            plane.restart_apiserver if component == "kube-apiserver" else plane.restart_etcd
        )
        self.spawner = spawner

    def begin(self) -> None:
        self.spawner.submit(self.restart, down=self.rng.uniform(1.0, 3.0)).result()

    def end(self) -> None:
        pass


class StopPrometheus(Windows):
    label = "Prometheus stopped"
    what = "Prometheus stopped 4-8 s, restarted"

    def __init__(
        self,
        progress: Progress,
        rng: random.Random,
        rounds: Sequence[int],
        prometheus: PrometheusServer,
        spawner: Executor,
    ) -> None:
        super().__init__(progress, rng, rounds)
        self.prometheus = prometheus
        self.spawner = spawner  # see RestartComponent

    def begin(self) -> None:
        self.prometheus.stop()

    def end(self) -> None:
        # Same port, same data: its /-/ready answers when this returns.
        self.spawner.submit(self.prometheus.start).result()


class FailingPrometheus(Windows):
    label = "Prometheus errors"
    what = "every query answered 500/503 for 4-8 s"

    def __init__(self, progress: Progress, rng: random.Random, rounds: Sequence[int], proxy: FaultyProxy):
        super().__init__(progress, rng, rounds)
        self.proxy = proxy

    def begin(self) -> None:
        self.proxy.fail(True)

    def end(self) -> None:
        self.proxy.fail(False)


class FullDisk(Windows):
    label = "audit disk full"
    what = "the audit file's tmpfs full for 4-8 s from the round's start"
    lead = (0.0, 0.0)  # full before the round's people act: their decisions must wait

    def __init__(self, progress: Progress, rng: random.Random, rounds: Sequence[int], disk: Path) -> None:
        super().__init__(progress, rng, rounds)
        self.disk = disk
        self.filler = disk / "filler"

    def begin(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            for size in (65536, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        os.write(fd, b"\0" * size)
        finally:
            os.close(fd)

    def end(self) -> None:
        self.filler.unlink()


def window_rounds(rng: random.Random, rounds: int, windows: int) -> list[int]:
    """The rounds a windowed fault strikes in: the storm first, then the deploy round (automatic decisions,
    then people's), then drawn from the rest."""
    chosen = [STORM_ROUND, 1][: max(0, windows)]
    rest = [r for r in range(STORM_ROUND + 1, rounds)]
    chosen += sorted(rng.sample(rest, min(len(rest), max(0, windows - len(chosen)))))
    return sorted(chosen)
