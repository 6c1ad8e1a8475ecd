"""Kopf's index readiness wakes its waiters only when the set's state changes (handlers/kopf_startup.py)."""

from __future__ import annotations

import asyncio

import pytest
from kopf._cogs.aiokits import aiotoggles

from modelledger.handlers import kopf_startup
from modelledger.handlers.kopf_startup import QuietToggleSet


def counted(toggles: QuietToggleSet) -> list[int]:
    calls = [0]
    notify_all = toggles._condition.notify_all

    def counting() -> None:
        calls[0] += 1
        notify_all()

    toggles._condition.notify_all = counting  # type: ignore[method-assign]
    return calls


def test_adding_and_dropping_objects_wakes_the_waiters_once_per_change_of_state() -> None:
    async def scenario() -> None:
        ready = QuietToggleSet(all)
        calls = counted(ready)
        waiter = asyncio.create_task(ready.wait_for(True))
        objects = [await ready.make_toggle(name=f"object {i}") for i in range(1000)]
        await asyncio.sleep(0)
        assert calls[0] == 1, "only the first toggle changed the state (empty: on; then off)"
        for toggle in objects[:-1]:
            await ready.drop_toggle(toggle)
        await asyncio.sleep(0)
        assert calls[0] == 1, "999 objects indexed, one still not: nothing a waiter can use"
        assert not waiter.done()
        await ready.drop_toggle(objects[-1])
        await asyncio.wait_for(waiter, 1)
        assert calls[0] == 2
        assert ready.is_on()

    asyncio.run(scenario())


def test_waiting_for_off_and_a_toggle_turned_on_still_wake() -> None:
    async def scenario() -> None:
        ready = QuietToggleSet(all)
        resource = await ready.make_toggle(name="resource listed")
        off = asyncio.create_task(ready.wait_for(False))
        await asyncio.wait_for(off, 1)  # already off
        on = asyncio.create_task(ready.wait_for(True))
        await asyncio.sleep(0)
        await resource.turn_to(True)  # Kopf's per-resource toggle notifies the shared condition itself
        await asyncio.wait_for(on, 1)
        again = asyncio.create_task(ready.wait_for(False))
        await asyncio.sleep(0)
        await ready.make_toggle(name="a new object")
        await asyncio.wait_for(again, 1)

    asyncio.run(scenario())


def test_install_makes_kopf_build_the_quiet_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aiotoggles, "ToggleSet", aiotoggles.ToggleSet)  # restored after the test
    kopf_startup.install()
    from kopf._core.reactor import orchestration

    assert vars(orchestration)["aiotoggles"].ToggleSet is QuietToggleSet, "Kopf looks it up at each use"
    kopf_startup.install()  # idempotent
    assert aiotoggles.ToggleSet is QuietToggleSet
