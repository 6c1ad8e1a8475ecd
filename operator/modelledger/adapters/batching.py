"""Coalesce the rule queries of one tenant into few Prometheus requests.

Every deployment loop asks its own queries; at 1,000 deployments x 3 rules that is hundreds of HTTP
requests a second, and the operator's CPU goes to HTTP and JSON rather than to decisions. Queries of the
SAME tenant (namespace) that arrive within a short window are sent as ONE query:

    label_replace((<q0>), "modelledger_batch", "0", "", "")
      or label_replace((<q1>), "modelledger_batch", "1", "", "") or ...

Each part is a parsed expression printed canonically (`core.promql.Query`), never the text a tenant
wrote, and the combination is parsed back and checked before it is sent (`promql.label_parts`): a part
cannot close a parenthesis or reach into another part. Parts of different tenants never share a
request, whatever they contain. Each part keeps its own meaning (Prometheus evaluates it exactly as
alone); the label tells the parts apart in the answer, and each part's series are reduced by its own
rule's aggregate. Only instant-vector queries are combined (a scalar cannot take `label_replace`; the
parser knows each query's type), the others go alone.

A batch Prometheus refuses (HTTP 400/422, or 413/414 for a request too large) falls back to one request
per query. A query refused alone is sent alone for `refusal_memory` seconds; a batch refused although
every part was accepted alone makes that tenant's queries go alone for the same time. Both memories are
bounded in time and size, so a transient refusal never disables batching for good.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelledger.adapters.prometheus import PrometheusAdapter, RejectedQuery, to_sample
from modelledger.api.modeldeployment import Aggregate
from modelledger.core import promql
from modelledger.core.rules import QueryError, Sample

BATCH_LABEL = "modelledger_batch"


@dataclass
class _Waiting:
    query: promql.Query
    aggregate: Aggregate
    answer: asyncio.Future[Sample]


class _Expiring:
    """A bounded set whose members leave after `ttl` seconds (or when the oldest must make room)."""

    def __init__(self, ttl: float, size: int, clock: Callable[[], float]) -> None:
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()

    def add(self, key: str) -> None:
        self._until.pop(key, None)
        self._until[key] = self.clock() + self.ttl
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or key not in self._until:
            return False
        if self._until[key] <= self.clock():
            del self._until[key]
            return False
        return True

    def __len__(self) -> int:
        return len(self._until)


@dataclass
class QueryBatcher:
    """`await batcher.query(query, aggregate, tenant)` behaves as `adapter.query`, with fewer requests.

    Queries are only ever combined with queries of the same `tenant` (a namespace).
    """

    adapter: PrometheusAdapter
    window: float = 0.05  # seconds a query may wait for company; small against any rule interval
    max_batch: int = 64  # parts per request; keeps the URL well under Prometheus's limits
    refusal_memory: float = 600.0  # seconds a refusal sends a query (or a tenant's queries) alone
    memory_size: int = 4096  # refusals remembered at most
    clock: Callable[[], float] = time.monotonic
    requests_sent: int = 0
    _waiting: dict[str, list[_Waiting]] = field(default_factory=dict)
    _flush: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _in_flight: set[asyncio.Future[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._alone = _Expiring(self.refusal_memory, self.memory_size, self.clock)  # refused queries
        self._unbatched = _Expiring(self.refusal_memory, self.memory_size, self.clock)  # refused tenants

    async def query(self, query: promql.Query, aggregate: Aggregate, tenant: str) -> Sample:
        alone = (
            query.type is not promql.QueryType.VECTOR
            or query.text in self._alone
            or tenant in self._unbatched
        )
        if alone:
            self.requests_sent += 1
            return await self.adapter.query(query.text, aggregate)
        loop = asyncio.get_running_loop()
        waiting = _Waiting(query, aggregate, loop.create_future())
        queue = self._waiting.setdefault(tenant, [])
        queue.append(waiting)
        if len(queue) >= self.max_batch:
            self._send(tenant)
        elif tenant not in self._flush:
            self._flush[tenant] = loop.call_later(self.window, self._send, tenant)
        return await waiting.answer

    def _send(self, tenant: str) -> None:
        timer = self._flush.pop(tenant, None)
        if timer is not None:
            timer.cancel()
        batch = self._waiting.pop(tenant, [])
        if batch:
            task = asyncio.ensure_future(self._answer(tenant, batch))
            self._in_flight.add(task)  # a reference, so the task is not collected mid-flight
            task.add_done_callback(self._in_flight.discard)

    async def _answer(self, tenant: str, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                samples = await self._one_by_one(batch)
            else:
                samples = await self._batched(tenant, batch)
        except Exception as error:  # never leave a deployment loop waiting forever
            samples = [QueryError(f"batched query failed: {type(error).__name__}")] * len(batch)
        for waiting, sample in zip(batch, samples, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(sample)

    async def _batched(self, tenant: str, batch: list[_Waiting]) -> list[Sample]:
        combined = promql.label_parts([w.query for w in batch], BATCH_LABEL)
        self.requests_sent += 1
        result = await self.adapter.fetch(combined)
        samples: list[Sample]
        if isinstance(result, RejectedQuery):
            samples = await self._one_by_one(batch)
            if not any(isinstance(sample, RejectedQuery) for sample in samples):
                self._unbatched.add(tenant)  # refused only together: no batches for this tenant a while
            return samples
        if isinstance(result, QueryError):
            samples = [result] * len(batch)  # Prometheus unreachable: the same for all
        else:
            parts = split(result, len(batch))
            samples = [to_sample(part, w.aggregate) for part, w in zip(parts, batch, strict=True)]
        for sample in samples:
            self.adapter.count(sample)
        return samples

    async def _one_by_one(self, batch: list[_Waiting]) -> list[Sample]:
        results = await asyncio.gather(*(self.adapter.fetch(w.query.text) for w in batch))
        self.requests_sent += len(batch)
        samples: list[Sample] = []
        for waiting, result in zip(batch, results, strict=True):
            vector = isinstance(result, list) and all(isinstance(item, dict) for item in result)
            if isinstance(result, RejectedQuery) or not (vector or isinstance(result, QueryError)):
                self._alone.add(waiting.query.text)  # a refused or non-vector answer would break batches
            sample = result if isinstance(result, QueryError) else to_sample(result, waiting.aggregate)
            self.adapter.count(sample)
            samples.append(sample)
        return samples


def split(result: Any, parts: int) -> list[list[dict[str, Any]]]:
    """The series of a batched answer, per part (by the batch label, which is then removed)."""
    by_part: list[list[dict[str, Any]]] = [[] for _ in range(parts)]
    for series in result if isinstance(result, list) else []:
        if not isinstance(series, dict):
            continue
        labels = dict(series.get("metric") or {})
        index = labels.pop(BATCH_LABEL, None)
        if isinstance(index, str) and index.isascii() and index.isdigit() and int(index) < parts:
            by_part[int(index)].append({**series, "metric": labels})
    return by_part
