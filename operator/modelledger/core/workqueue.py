"""A work queue in the shape of client-go's: deduplicated keys, one worker per key at a time, two
priorities, delayed adds, and per-key exponential back-off. Pure: the caller passes a monotonic clock.

- `add` queues a key once, however often it is added; a key added while a worker holds it is queued
  again when that worker is `done`, so no change is lost and no two workers hold one key.
- Urgent keys (a rollback may follow: a rule comes due, a person's request) go before the rest.
- `schedule` sets a key's one timer (a later pass supersedes the timer of an earlier one).
- `failed` schedules a retry after 0.25 s, 0.5 s, 1 s, ... up to `backoff_cap`; `succeeded` resets it.
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BACKOFF_BASE = 0.25
BACKOFF_CAP = 30.0


@dataclass
class WorkQueue(Generic[K]):
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    _urgent: deque[K] = field(default_factory=deque)
    _normal: deque[K] = field(default_factory=deque)
    _queued: dict[K, bool] = field(default_factory=dict)  # key -> urgent; in one of the two deques
    _queued_at: dict[K, float] = field(default_factory=dict)
    _processing: set[K] = field(default_factory=set)
    _dirty: dict[K, bool] = field(default_factory=dict)  # added while processing -> urgent
    _timers: dict[K, tuple[float, bool]] = field(default_factory=dict)  # key -> (when, urgent)
    _heap: list[tuple[float, int, K]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _failures: dict[K, int] = field(default_factory=dict)

    def add(self, key: K, now: float, *, urgent: bool = False) -> None:
        if key in self._processing:
            self._dirty[key] = self._dirty.get(key, False) or urgent
            return
        if key in self._queued:
            if urgent and not self._queued[key]:
                self._normal.remove(key)  # promoted: rare, and the deque holds each key once
                self._urgent.append(key)
                self._queued[key] = True
            return
        self._queued[key] = urgent
        self._queued_at[key] = now
        (self._urgent if urgent else self._normal).append(key)

    def schedule(self, key: K, delay: float, now: float, *, urgent: bool = False) -> None:
        """Add `key` after `delay` seconds, replacing any timer it had."""
        when = now + max(0.0, delay)
        self._timers[key] = (when, urgent)
        heapq.heappush(self._heap, (when, next(self._seq), key))
        if len(self._heap) > 4 * len(self._timers) + 64:  # superseded timers: drop them now and then
            self._heap = [(w, next(self._seq), k) for k, (w, _u) in self._timers.items()]
            heapq.heapify(self._heap)

    def fire(self, now: float) -> float | None:
        """Add the keys whose timers have come due; returns the seconds to the next timer, if any."""
        while self._heap:
            when, _seq, key = self._heap[0]
            timer = self._timers.get(key)
            if timer is None or timer[0] != when:
                heapq.heappop(self._heap)  # superseded or cancelled
                continue
            if when > now:
                return when - now
            heapq.heappop(self._heap)
            del self._timers[key]
            self.add(key, now, urgent=timer[1])
        return None

    def pop(self, now: float) -> tuple[K, float] | None:
        """The next key for a worker, and how long it waited; None when nothing is ready."""
        for lane in (self._urgent, self._normal):
            if lane:
                key = lane.popleft()
                del self._queued[key]
                self._processing.add(key)
                return key, now - self._queued_at.pop(key, now)
        return None

    def done(self, key: K, now: float) -> None:
        """The worker is finished with `key`; a change that came meanwhile queues it again."""
        self._processing.discard(key)
        if key in self._dirty:
            self.add(key, now, urgent=self._dirty.pop(key))

    def failed(self, key: K, now: float) -> float:
        """Schedule a retry after the key's next back-off; returns that delay."""
        failures = self._failures.get(key, 0)
        self._failures[key] = failures + 1
        delay = min(self.backoff_cap, self.backoff_base * 2.0**failures)
        self.schedule(key, delay, now)
        return delay

    def succeeded(self, key: K) -> None:
        self._failures.pop(key, None)

    def forget(self, key: K) -> None:
        """The object is gone: drop its timer, back-off and queued entry (a held key finishes)."""
        self._timers.pop(key, None)
        self._failures.pop(key, None)
        self._dirty.pop(key, None)
        if self._queued.pop(key, None) is not None:
            self._queued_at.pop(key, None)
            for lane in (self._urgent, self._normal):
                if key in lane:
                    lane.remove(key)

    def __len__(self) -> int:
        return len(self._queued)

    @property
    def timers(self) -> int:
        return len(self._timers)

    def processing(self, key: K) -> bool:
        return key in self._processing
