"""Notification delivery (adapters/notifier.py) against a real HTTP receiver on loopback: retries with
back-off inside the budget, never waiting in `submit`, one receiver's outage not delaying another, the
counters, and no credential or redirect followed."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client import generate_latest

from modelledger.adapters.metrics import OperatorMetrics
from modelledger.adapters.notifier import Notifier, load_receivers
from modelledger.core.notifications import Notice, Receiver, Trigger
from modelledger.testing.processes import free_port

NOTICE = Notice(
    trigger=Trigger.ROLLED_BACK,
    reason="RolledBack",
    namespace="ml-prod",
    deployment="fraud",
    uid="uid-1",
    at=datetime(2026, 11, 27, 10, tzinfo=UTC),
    message="revision 3: rule error-rate breached",
    actor="modelledger/rule:error-rate",
    revision=3,
    from_version="fraud-1-4-0",
    to_version="fraud-1-3-2",
    rule="error-rate",
    query="max(x)",
    value=0.9,
    comparator=">",
    threshold=0.5,
)


class Sink:
    """A webhook receiver: answers each POST with the next status of `answers` (then 200)."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.received: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.port = free_port()
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        status = self.answers.pop(0) if self.answers else 200
        if status == 302:
            return web.Response(status=302, headers={"Location": f"http://127.0.0.1:{self.port}/elsewhere"})
        if status == 200:
            self.received.append((dict(request.headers), await request.json()))
        return web.Response(status=status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


def receiver(tmp_path: Path, name: str, port: int, **fields: Any) -> Receiver:
    url_file = tmp_path / name
    url_file.write_text(f"http://127.0.0.1:{port}/hooks/{name}\n")
    return Receiver.model_validate(
        {"name": name, "type": "webhook", "urlFile": str(url_file), "maxBackoff": 0.1, "timeout": 2, **fields}
    )


def counts(metrics: OperatorMetrics) -> dict[tuple[str, str], float]:
    found = {}
    for family in metrics.notifications.collect():
        for sample in family.samples:
            if sample.name == "modelledger_notifications_total":
                found[(sample.labels["receiver"], sample.labels["result"])] = sample.value
    return found


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_delivers_once_with_its_id_and_no_credentials(tmp_path: Path) -> None:
    async def test() -> None:
        sink = Sink()
        await sink.start()
        metrics = OperatorMetrics()
        notifier = Notifier([receiver(tmp_path, "oncall", sink.port)], metrics, jitter=lambda: 0.0)
        notifier.start()
        assert counts(metrics) == {("oncall", r): 0.0 for r in ("sent", "retried", "failed", "dropped")}
        assert notifier.submit(notifier.receivers[0], NOTICE)
        assert await notifier.drained(5)
        await notifier.stop()
        await sink.stop()
        [(headers, body)] = sink.received
        assert headers["Idempotency-Key"] == NOTICE.id == body["id"]
        assert headers["Content-Type"] == "application/json"
        assert "Authorization" not in headers
        assert "Cookie" not in headers
        assert body["evidence"] == {"query": "max(x)", "value": 0.9, "comparator": ">", "threshold": 0.5}
        assert counts(metrics)[("oncall", "sent")] == 1
        assert (
            'modelledger_notifications_total{receiver="oncall",result="sent"} 1.0'
            in generate_latest(metrics.registry).decode()
        )

    run(test)


def test_a_failing_receiver_is_retried_with_backoff_and_submit_never_waits(tmp_path: Path) -> None:
    async def test() -> None:
        sink = Sink([503, 503, 429])
        await sink.start()
        metrics = OperatorMetrics()
        notifier = Notifier([receiver(tmp_path, "oncall", sink.port)], metrics)
        notifier.start()
        started = time.perf_counter()
        notifier.submit(notifier.receivers[0], NOTICE)
        assert time.perf_counter() - started < 0.01
        assert await notifier.drained(5)
        await notifier.stop()
        await sink.stop()
        assert len(sink.received) == 1
        c = counts(metrics)
        assert (c[("oncall", "retried")], c[("oncall", "sent")], c[("oncall", "failed")]) == (3, 1, 0)

    run(test)


def test_a_receiver_that_refuses_connections_gets_the_message_once_it_is_back(tmp_path: Path) -> None:
    async def test() -> None:
        sink = Sink()
        notifier = Notifier([receiver(tmp_path, "oncall", sink.port, retryBudget=30)], OperatorMetrics())
        notifier.start()
        notifier.submit(notifier.receivers[0], NOTICE)
        await asyncio.sleep(0.6)  # several refused attempts
        assert not sink.received
        await sink.start()
        assert await notifier.drained(5)
        await notifier.stop()
        await sink.stop()
        assert [body["id"] for _, body in sink.received] == [NOTICE.id]

    run(test)


def test_one_receiver_down_does_not_delay_another(tmp_path: Path) -> None:
    async def test() -> None:
        up = Sink()
        await up.start()
        down = receiver(tmp_path, "down", free_port(), retryBudget=30)
        notifier = Notifier([down, receiver(tmp_path, "up", up.port)], OperatorMetrics())
        notifier.start()
        for r in notifier.receivers:
            notifier.submit(r, NOTICE)
        started = time.monotonic()
        while not up.received and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        assert up.received
        assert time.monotonic() - started < 1
        await notifier.stop(grace=0)
        await up.stop()

    run(test)


def test_refused_and_out_of_budget_messages_fail_and_redirects_are_not_followed(tmp_path: Path) -> None:
    async def test() -> None:
        sink = Sink([400, 302, 503, 503, 503, 503, 503, 503])
        await sink.start()
        metrics = OperatorMetrics()
        notifier = Notifier([receiver(tmp_path, "oncall", sink.port, retryBudget=0.25)], metrics)
        notifier.start()
        for _ in range(3):
            notifier.submit(notifier.receivers[0], NOTICE)
        assert await notifier.drained(5)
        await notifier.stop()
        await sink.stop()
        c = counts(metrics)
        assert c[("oncall", "failed")] == 3  # 400, 302 (not followed), and 503s past the budget
        assert c[("oncall", "sent")] == 0
        assert not sink.received

    run(test)


def test_a_full_queue_drops_and_counts_and_stopping_counts_what_was_left(tmp_path: Path) -> None:
    async def test() -> None:
        metrics = OperatorMetrics()
        notifier = Notifier([receiver(tmp_path, "down", free_port(), retryBudget=60)], metrics, queue_size=2)
        notifier.start()
        results = [notifier.submit(notifier.receivers[0], NOTICE) for _ in range(4)]
        await asyncio.sleep(0.05)  # the sender takes the first, then the queue has room for one more
        results.append(notifier.submit(notifier.receivers[0], NOTICE))
        await notifier.stop(grace=0.1)
        assert results == [True, True, False, False, True]
        c = counts(metrics)
        assert c[("down", "dropped")] == 2 + 3  # two refused by the full queue, three left at stop
        assert c[("down", "sent")] == 0

    run(test)


def test_notifications_without_start_are_counted_dropped() -> None:
    metrics = OperatorMetrics()
    r = Receiver.model_validate({"name": "a", "type": "slack", "urlFile": "/nonexistent"})
    assert not Notifier([r], metrics).submit(r, NOTICE)
    assert counts(metrics)[("a", "dropped")] == 1


def test_load_receivers(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "receivers:\n"
        "  - {name: oncall, type: slack, urlFile: /u/oncall, triggers: [RolledBack, MarkedStable]}\n"
        "  - {name: audit, type: webhook, urlFile: /u/audit, routing: always, namespaces: [ml-*]}\n"
    )
    loaded = load_receivers(good)
    assert [r.name for r in loaded] == ["oncall", "audit"]
    assert loaded[0].triggers == {Trigger.ROLLED_BACK, Trigger.MARKED_STABLE}
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps([{"name": "a", "type": "teams", "urlFile": "/u"}]))
    with pytest.raises(ValueError, match=r"0\.type"):
        load_receivers(bad)
    bad.write_text(json.dumps([{"name": "a", "type": "slack", "urlFile": "/u"}] * 2))
    with pytest.raises(ValueError, match="unique"):
        load_receivers(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_receivers(empty) == []
    with pytest.raises(ValueError, match="cannot read"):
        load_receivers(tmp_path / "missing.yaml")


class Recording(Notifier):
    def __init__(self, receivers: list[Receiver]) -> None:
        super().__init__(receivers)
        self.sent: list[tuple[str, Notice]] = []

    def submit(self, receiver: Receiver, notice: Notice) -> bool:
        self.sent.append((receiver.name, notice))
        return True


def test_the_hook_routes_a_recorded_plans_notices_by_the_annotation() -> None:
    from modelledger.api import Comparator, Evidence, ModelDeploymentStatus, RevisionCause
    from modelledger.core.decision import Decision, Plan
    from modelledger.handlers.context import OperatorConfig
    from modelledger.handlers.notifications import decided

    def make(name: str, **fields: Any) -> Receiver:
        return Receiver.model_validate({"name": name, "type": "webhook", "urlFile": "/u", **fields})

    notifier = Recording(
        [make("team", routing="named"), make("oncall"), make("stable", triggers=["MarkedStable"])]
    )
    config = OperatorConfig(notifier=notifier)
    evidence = Evidence(query="max(x)", value=0.9, threshold=0.5, comparator=Comparator.GT)
    zero, one = "sha256:" + "0" * 64, "sha256:" + "1" * 64
    history = [
        {"revision": 3, "version": "v1", "cause": "AutomaticRollback", "at": "2026-11-27T10:00:00Z",
         "actor": "modelledger/rule:r", "rule": "r", "evidence": evidence.model_dump(mode="json"),
         "hash": zero},
        {"revision": 2, "version": "v2", "cause": "Deploy", "at": "2026-11-27T09:00:00Z", "actor": "a",
         "hash": one},
    ]  # fmt: skip
    status = ModelDeploymentStatus.model_validate(
        {"history": history, "currentRevision": 3, "servingVersion": "v1", "desiredVersion": "v2"}
    )
    rollback = Decision(
        "RolledBack", "m", warning=True, actor="modelledger/rule:r", revision=3, version="v1",
        cause=RevisionCause.AUTOMATIC_ROLLBACK, evidence=evidence,
    )  # fmt: skip
    plan = Plan(status, decisions=[rollback, Decision("RuleStateChanged", "m")])
    raw = {"metadata": {"uid": "u1", "annotations": {"modelledger.io/notify": "team,nosuch"}}}
    decided("ns", "d", raw, {"servingVersion": "v2"}, plan, config)
    assert [(name, n.reason, n.from_version, n.to_version, n.value) for name, n in notifier.sent] == [
        ("team", "RolledBack", "v2", "v1", 0.9)
    ]
    notifier.sent.clear()
    decided("ns", "d", {"metadata": {"uid": "u1"}}, {}, plan, config)  # no annotation: the defaults
    assert [name for name, _ in notifier.sent] == ["oncall"]
    notifier.sent.clear()
    decided("ns", "d", {"metadata": {"annotations": {"modelledger.io/notify": "none"}}}, {}, plan, config)
    assert notifier.sent == []
