"""Coalesce the rule queries of many deployments into few Prometheus requests.

Every deployment loop asks its own queries; at 1,000 deployments x 3 rules that is hundreds of HTTP
requests a second, and the operator's CPU goes to HTTP and JSON rather than to decisions. Queries that
arrive within a short window are sent as ONE query:

    label_replace(<q0>, "modelledger_batch", "0", "", "")
      or label_replace(<q1>, "modelledger_batch", "1", "", "") or ...

Each part keeps its own meaning (Prometheus evaluates it exactly as alone); the label tells the parts
apart in the answer, and each part's series are reduced by its own rule's aggregate. `or` never merges
series of different parts, since their batch labels differ. A part Prometheus refuses inside a batch (a
query of scalar type cannot take label_replace) makes the batch fall back to one request per query,
and that query is sent alone from then on.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from modelledger.adapters.prometheus import PrometheusAdapter, RejectedQuery, to_sample
from modelledger.api.modeldeployment import Aggregate
from modelledger.core.rules import QueryError, Sample

BATCH_LABEL = "modelledger_batch"


@dataclass
class _Waiting:
    promql: str
    aggregate: Aggregate
    answer: asyncio.Future[Sample]


@dataclass
class QueryBatcher:
    """`await batcher.query(promql, aggregate)` behaves as `adapter.query`, with fewer requests."""

    adapter: PrometheusAdapter
    window: float = 0.05  # seconds a query may wait for company; small against any rule interval
    max_batch: int = 64  # parts per request; keeps the URL well under Prometheus's limits
    _waiting: list[_Waiting] = field(default_factory=list)
    _flush: asyncio.TimerHandle | None = None
    _alone: set[str] = field(default_factory=set)  # queries Prometheus refused inside a batch
    requests_sent: int = 0
    _in_flight: set[asyncio.Future[None]] = field(default_factory=set)

    async def query(self, promql: str, aggregate: Aggregate = Aggregate.MAX) -> Sample:
        if promql in self._alone:
            self.requests_sent += 1
            return await self.adapter.query(promql, aggregate)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(promql, aggregate, loop.create_future())
        self._waiting.append(waiting)
        if len(self._waiting) >= self.max_batch:
            self._send()
        elif self._flush is None:
            self._flush = loop.call_later(self.window, self._send)
        return await waiting.answer

    def _send(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        batch, self._waiting = self._waiting, []
        if batch:
            task = asyncio.ensure_future(self._answer(batch))
            self._in_flight.add(task)  # a reference, so the task is not collected mid-flight
            task.add_done_callback(self._in_flight.discard)

    async def _answer(self, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                samples = await self._one_by_one(batch)
            else:
                samples = await self._batched(batch)
        except Exception as error:  # never leave a deployment loop waiting forever
            samples = [QueryError(f"batched query failed: {error}")] * len(batch)
        for waiting, sample in zip(batch, samples, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(sample)

    async def _batched(self, batch: list[_Waiting]) -> list[Sample]:
        combined = " or ".join(
            # Parentheses keep each part whole; the newlines end any `#` comment inside it.
            f'label_replace((\n{w.promql}\n), "{BATCH_LABEL}", "{i}", "", "")'
            for i, w in enumerate(batch)
        )
        self.requests_sent += 1
        result = await self.adapter.fetch(combined)
        if isinstance(result, RejectedQuery):
            return await self._one_by_one(batch)
        if isinstance(result, QueryError):
            samples: list[Sample] = [result] * len(batch)  # Prometheus unreachable: the same for all
        else:
            parts = split(result, len(batch))
            samples = [to_sample(part, w.aggregate) for part, w in zip(parts, batch, strict=True)]
        for sample in samples:
            self.adapter.count(sample)
        return samples

    async def _one_by_one(self, batch: list[_Waiting]) -> list[Sample]:
        results = await asyncio.gather(*(self.adapter.fetch(w.promql) for w in batch))
        self.requests_sent += len(batch)
        samples: list[Sample] = []
        for waiting, result in zip(batch, results, strict=True):
            vector = isinstance(result, list) and all(isinstance(item, dict) for item in result)
            if isinstance(result, RejectedQuery) or not (vector or isinstance(result, QueryError)):
                self._alone.add(waiting.promql)  # a bad or scalar query would break every batch
            sample = result if isinstance(result, QueryError) else to_sample(result, waiting.aggregate)
            self.adapter.count(sample)
            samples.append(sample)
        return samples


def split(result: Any, parts: int) -> list[list[dict[str, Any]]]:
    """The series of a batched answer, per part (by the batch label, which is then removed)."""
    by_part: list[list[dict[str, Any]]] = [[] for _ in range(parts)]
    for series in result if isinstance(result, list) else []:
        labels = dict(series.get("metric") or {})
        index = labels.pop(BATCH_LABEL, None)
        if index is not None and index.isdigit() and int(index) < parts:
            by_part[int(index)].append({**series, "metric": labels})
    return by_part
