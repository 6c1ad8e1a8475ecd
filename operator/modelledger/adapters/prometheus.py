"""Rule queries against Prometheus through prometheus-api-client, turned into `Sample`s.

Every query has a deadline: the HTTP timeout (connect and read), the same timeout passed to Prometheus
so it stops evaluating, and in `query` an asyncio deadline slightly above it. Queries run on a
dedicated thread pool, so a slow Prometheus never blocks the event loop nor starves other
`asyncio.to_thread` users. There are no HTTP retries: the rule interval is the retry.
"""

from __future__ import annotations

import ast
import asyncio
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
import structlog
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from modelledger.adapters.metrics import EvaluationResult, OperatorMetrics
from modelledger.api.modeldeployment import Aggregate
from modelledger.core.rules import NoData, QueryError, Sample, reduce

log = structlog.get_logger()

DEFAULT_TIMEOUT = 10.0
"""Seconds a query may take, end to end."""
# The asyncio deadline leaves the HTTP timeout room to fire first, with its clearer message.
_DEADLINE_GRACE = 1.0
_HTTP_ERROR = re.compile(r"^HTTP Status Code (\d+) \((b['\"].*['\"])\)$", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\"()]*")


class RejectedQuery(QueryError):
    """Prometheus refused the query itself (HTTP 4xx: a parse or type error), not a failure to reach it."""


class BearerAuth(requests.auth.AuthBase):
    """A bearer token, given directly or read from a file at each request (projected tokens rotate)."""

    def __init__(self, token: str | None = None, token_file: Path | None = None) -> None:
        self.token = token
        self.token_file = token_file

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.token_file.read_text().strip() if self.token_file is not None else self.token
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        return request


class PrometheusAdapter:
    """Runs one rule query and reduces its result to a `Sample`."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        bearer_token: str | None = None,
        bearer_token_file: Path | None = None,
        ca_bundle: Path | None = None,
        metrics: OperatorMetrics | None = None,
        max_workers: int = 16,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.metrics = metrics
        self._session = requests.Session()
        self._session.verify = str(ca_bundle) if ca_bundle is not None else True
        no_retries = Retry(total=0, read=False, raise_on_status=False)  # as requests, timeouts stay timeouts
        auth = BearerAuth(bearer_token, bearer_token_file) if bearer_token or bearer_token_file else None
        self._client = PrometheusConnect(
            url=self.url, session=self._session, retry=no_retries, auth=auth, timeout=timeout
        )
        # Replaces the client's adapter (same prefix) to size the pool for the worker threads.
        self._session.mount(self.url, HTTPAdapter(max_retries=no_retries, pool_maxsize=max_workers))
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="prometheus-query")

    async def query(self, promql: str, aggregate: Aggregate = Aggregate.MAX) -> Sample:
        """One rule query, reduced to a sample; off the event loop, bounded by the timeout."""
        result = await self.fetch(promql)
        sample = result if isinstance(result, QueryError) else to_sample(result, aggregate)
        self.count(sample)
        return sample

    def query_sync(self, promql: str, aggregate: Aggregate = Aggregate.MAX) -> Sample:
        """Run `promql` now; a vector is reduced by `aggregate`. Never raises for query problems."""
        result = self.fetch_sync(promql)
        sample = result if isinstance(result, QueryError) else to_sample(result, aggregate)
        self.count(sample)
        return sample

    async def fetch(self, promql: str) -> Any:
        """`fetch_sync` on the adapter's thread pool, bounded by the timeout even if the thread hangs."""
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, self.fetch_sync, promql)
        try:
            return await asyncio.wait_for(work, self.timeout + _DEADLINE_GRACE)
        except TimeoutError:
            message = f"timed out after {self.timeout:g}s querying {self.url}"
            log.warning("prometheus query failed", url=self.url, query=promql, error=message)
            return QueryError(message)

    def fetch_sync(self, promql: str) -> Any:
        """The `data.result` of an instant query, or a QueryError (a RejectedQuery when Prometheus
        refused the query itself). Never raises for query problems."""
        started = time.monotonic()
        try:
            # Prometheus's own timeout stops the evaluation server-side when we stop waiting.
            result = self._client.custom_query(promql, params={"timeout": f"{self.timeout:g}"})
        except requests.exceptions.Timeout:
            return self._failed(promql, f"timed out after {self.timeout:g}s querying {self.url}", started)
        except requests.exceptions.SSLError as error:
            return self._failed(promql, f"TLS error talking to {self.url}: {_reason(error)}", started)
        except requests.exceptions.ConnectionError as error:
            return self._failed(promql, f"cannot connect to {self.url}: {_reason(error)}", started)
        except PrometheusApiClientException as error:
            match = _HTTP_ERROR.match(str(error))
            rejected = match is not None and match.group(1).startswith("4")
            return self._failed(promql, _http_error_message(str(error)), started, rejected=rejected)
        except (requests.exceptions.RequestException, ValueError, KeyError, TypeError) as error:
            # A 200 that is not Prometheus's JSON: a proxy's page, a wrong URL path.
            return self._failed(promql, f"unexpected answer from {self.url}: {_reason(error)}", started)
        self._observe(started)
        return result

    async def recent_values(
        self,
        promql: str,
        start: datetime,
        end: datetime,
        step: timedelta,
        aggregate: Aggregate = Aggregate.MAX,
    ) -> list[tuple[datetime, float]] | QueryError:
        """The query's value at every `step` from `start` to `end` (a range query), each reduced by
        `aggregate` across series; timestamps without a finite value are left out. The client sends
        whole seconds, so `start` and `end` are rounded."""
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self._executor, self._range_sync, promql, start, end, step, aggregate)
        try:
            return await asyncio.wait_for(work, self.timeout + _DEADLINE_GRACE)
        except TimeoutError:
            return QueryError(f"timed out after {self.timeout:g}s querying {self.url}")

    def _range_sync(
        self, promql: str, start: datetime, end: datetime, step: timedelta, aggregate: Aggregate
    ) -> list[tuple[datetime, float]] | QueryError:
        started = time.monotonic()
        try:
            result = self._client.custom_query_range(
                promql,
                start_time=start,
                end_time=end,
                step=f"{step.total_seconds():g}s",
                params={"timeout": f"{self.timeout:g}"},
            )
            by_time: dict[float, list[float]] = {}
            for series in result:
                for at, value in series["values"]:
                    by_time.setdefault(float(at), []).append(float(value))
        except (
            requests.exceptions.RequestException,
            PrometheusApiClientException,
            ValueError,
            KeyError,
            TypeError,
        ) as error:
            return self._failed(promql, f"range query failed: {_reason(error)}", started)
        self._observe(started)
        points = []
        for at, values in sorted(by_time.items()):
            value = reduce(values, aggregate)
            if value is not None:
                points.append((datetime.fromtimestamp(at, UTC), value))
        return points

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._client.close()

    def _failed(self, promql: str, message: str, started: float, *, rejected: bool = False) -> QueryError:
        self._observe(started)
        log.warning("prometheus query failed", url=self.url, query=promql, error=message)
        return RejectedQuery(message) if rejected else QueryError(message)

    def _observe(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_query(time.monotonic() - started)

    def count(self, sample: Sample) -> None:
        """One rule evaluation's result, for modelledger_rule_evaluations_total."""
        if self.metrics is None:
            return
        if isinstance(sample, QueryError):
            self.metrics.record_evaluation(EvaluationResult.ERROR)
        elif isinstance(sample, NoData):
            self.metrics.record_evaluation(EvaluationResult.NO_DATA)
        else:
            self.metrics.record_evaluation(EvaluationResult.VALUE)


def to_sample(result: Any, aggregate: Aggregate) -> Sample:
    """The `data.result` of an instant query as one sample.

    An instant vector is reduced by `aggregate` (empty, or only NaN/±Inf: NoData); a scalar is its
    value (NaN/±Inf: NoData); a range vector or a string is an error, since a rule needs one number.
    """
    if not isinstance(result, list):
        return QueryError(f"unexpected result {str(result)[:200]!r}")
    if not result:
        return NoData("the query returned an empty vector")
    if all(isinstance(item, dict) for item in result):
        if any("values" in item for item in result):
            return QueryError("the query returns a range vector; a rule needs an instant vector or a scalar")
        try:
            values = [float(item["value"][1]) for item in result]
        except (KeyError, IndexError, TypeError, ValueError):
            return QueryError(f"unexpected vector {str(result)[:200]!r}")
        value = reduce(values, aggregate)
        if value is None:
            return NoData(f"all {len(values)} series of the vector are NaN or ±Inf")
        return value
    try:
        scalar = float(result[1])
    except (IndexError, TypeError, ValueError):
        return QueryError(f"the query returns {str(result)[:200]}, not a number")
    value = reduce([scalar], aggregate)
    return NoData(f"the query returned the scalar {result[1]}") if value is None else value


def _http_error_message(text: str) -> str:
    """Prometheus's own error (type and message) out of the client's `HTTP Status Code ...` text."""
    match = _HTTP_ERROR.match(text)
    if match is None:
        return f"Prometheus answered: {text[:500]}"
    status, body = match.groups()
    try:
        answer = json.loads(ast.literal_eval(body))
        detail = f"{answer['errorType']}: {answer['error']}"
    except (ValueError, SyntaxError, KeyError, TypeError):
        detail = body[:500]
    return f"Prometheus answered HTTP {status}: {detail}"


def _reason(error: Exception) -> str:
    # requests' messages repeat the whole URL (with the query); the errno text is the useful part.
    found = _ERRNO.search(str(error))
    return found.group(0).strip() if found else f"{type(error).__name__}: {str(error)[:300]}"
