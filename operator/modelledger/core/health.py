"""Liveness from progress: is every work loop moving? Pure, time injected (a monotonic clock).

A loop reports when a pass begins (`begin`) and ends (`end`, with when the next is due). It is stalled
when a pass has run longer than its bound, or when its next pass is overdue by more than the bound. A
loop that is not expected to move (a standby waiting for the lease: `pause`) or that is gone (`forget`)
is not watched. The bound of a loop is `max(floor, 3 x its interval)`, so a slow Prometheus within its
timeout never counts as a stall, and a hung call or a blocked loop always does.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

INTERVALS = 3.0  # a loop may be this many of its intervals late before it counts as stalled
DEFAULT_FLOOR = 60.0  # ... and never less than this many seconds


def stall_bound(interval: float, floor: float = DEFAULT_FLOOR) -> float:
    """How long a loop with this interval may go without progress: 3 x the interval, at least `floor`."""
    return max(floor, INTERVALS * interval)


@dataclass(frozen=True)
class Stall:
    key: Hashable
    seconds: float  # how long the loop has gone without progress
    bound: float
    busy: bool  # True: stuck inside a pass; False: its next pass did not start


@dataclass
class _Loop:
    bound: float
    busy_since: float | None = None
    due: float | None = None


@dataclass
class Progress:
    """The progress of every watched loop; one instance per process, touched from one event loop."""

    loops: dict[Hashable, _Loop] = field(default_factory=dict)
    last_pass: float | None = None  # when any loop last finished a pass

    def begin(self, key: Hashable, now: float, bound: float) -> None:
        self.loops[key] = _Loop(bound=bound, busy_since=now)

    def end(self, key: Hashable, now: float, next_in: float, bound: float) -> None:
        self.loops[key] = _Loop(bound=bound, due=now + max(0.0, next_in))
        self.last_pass = now

    def pause(self, key: Hashable) -> None:
        self.loops.pop(key, None)

    forget = pause

    def stalled(self, now: float) -> list[Stall]:
        found: list[Stall] = []
        for key, loop in self.loops.items():
            if loop.busy_since is not None and now - loop.busy_since > loop.bound:
                found.append(Stall(key, now - loop.busy_since, loop.bound, busy=True))
            elif loop.due is not None and now - loop.due > loop.bound:
                found.append(Stall(key, now - loop.due, loop.bound, busy=False))
        return found
