"""Kopf's start on a large cluster: index readiness without a thundering herd.

Kopf holds every object's handlers until all index handlers have seen the initial listing. It does so
with one `ToggleSet` (`operator_indexed`): a toggle per object until it is indexed, and every object's
worker waits on the set's condition. Each toggle added or dropped calls `notify_all()`, so with N
objects listed at start the event loop wakes O(N²) waiters: 1,000 ModelDeployments and 10,000
ModelVersions kept one core busy for minutes before the first pass (docs/benchmarks.md, cold start).

A waiter only waits for the set's overall state (`is_on()`), so a change that leaves that state as it
was cannot satisfy any of them: `QuietToggleSet` notifies only when the overall state changes. Every
other behaviour of Kopf's class is kept; `install()` swaps it in before `kopf.run()`.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from kopf._cogs.aiokits import aiotoggles

log = structlog.get_logger("modelledger.kopf")


class QuietToggleSet(aiotoggles.ToggleSet):
    """Kopf's ToggleSet, waking its waiters only when `is_on()` changes."""

    async def make_toggle(self, __val: bool = False, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = aiotoggles.Toggle(__val, name=name, condition=self._condition)
        async with self._condition:
            before = self.is_on()
            self._toggles.add(toggle)
            if self.is_on() != before:
                self._condition.notify_all()
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            before = self.is_on()
            self._toggles.difference_update(toggles)
            if self.is_on() != before:
                self._condition.notify_all()


def install() -> None:
    """Make Kopf build its toggle sets as QuietToggleSet (it looks the class up at each use)."""
    if aiotoggles.ToggleSet is QuietToggleSet:
        return
    probe = aiotoggles.ToggleSet(all)
    if not (hasattr(probe, "_condition") and hasattr(probe, "_toggles")):
        log.warning("kopf's ToggleSet has changed; its index readiness is left as it is")
        return
    aiotoggles.ToggleSet = QuietToggleSet  # type: ignore[misc]
    log.debug("kopf toggle sets wake waiters on state changes only")
