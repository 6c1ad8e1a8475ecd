"""Rule queries against Prometheus through prometheus-api-client, turned into `Sample`s.

Every query has a deadline: the HTTP timeout (connect and read), the same timeout passed to Prometheus
so it stops evaluating, and in `query` an asyncio deadline slightly above it. Queries run on a
dedicated thread pool, so a slow Prometheus never blocks the event loop nor starves other
`asyncio.to_thread` users. There are no HTTP retries: the rule interval is the retry.

Answers are bounded: a body larger than `MAX_BODY` (after decompression) is an error, never read whole,
and redirects are not followed. Error messages are short (`MESSAGE_LIMIT`) and sanitised: they name the
server by its display name (a source's name, or its URL without credentials or query) and carry
Prometheus's own error text only from servers the admins configured (`detailed_errors`), never a body.

`PrometheusSource` and `load_sources` read the admins' sources file (`--prometheus-sources`).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import re
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import requests
import structlog
from prometheus_api_client import PrometheusConnect
from prometheus_api_client.exceptions import PrometheusApiClientException
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from modelledger.adapters.config_files import load_list
from modelledger.adapters.metrics import EvaluationResult, OperatorMetrics
from modelledger.api.common import DnsLabel
from modelledger.api.modeldeployment import Aggregate
from modelledger.core.promql import Tenancy
from modelledger.core.rules import NoData, QueryError, Sample, reduce

log = structlog.get_logger()

DEFAULT_TIMEOUT = 10.0
"""Seconds a query may take, end to end."""
# The asyncio deadline leaves the HTTP timeout room to fire first, with its clearer message.
_DEADLINE_GRACE = 1.0
MAX_BODY = 10 * 1024 * 1024
"""Bytes an answer may have (after decompression); a larger one is a query error."""
MESSAGE_LIMIT = 256
"""Characters of an error message, which rule statuses and conditions copy."""
_HTTP_ERROR = re.compile(r"^HTTP Status Code (\d+) \((b['\"].*['\"])\)$", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\] [^'\"()]*")
# 4xx that say "this query" (bad_data, execution error, a URL or body too long); others (401, 403,
# 404, 429) are about the server or the credentials and fail every query alike.
_QUERY_REFUSED = frozenset({400, 413, 414, 422})
_ERROR_TYPES = frozenset(
    {"bad_data", "execution", "timeout", "canceled", "internal", "unavailable", "not_found"}
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?#]*)[?#]\S*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


class RejectedQuery(QueryError):
    """Prometheus refused the query itself (HTTP 400/422, or 413/414 for a request too large), not a
    failure to reach it."""


class ResponseTooLarge(requests.exceptions.RequestException):
    """The answer is larger than the adapter's body limit."""


class _BoundedAdapter(HTTPAdapter):
    """Reads an answer only up to `limit` bytes (decompressed) and within `deadline` seconds."""

    def __init__(self, limit: int, deadline: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limit = limit
        self.deadline = deadline

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float, float] | tuple[float, None] | None = None,
        verify: bool | str = True,
        cert: bytes | str | tuple[bytes | str, bytes | str] | None = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        started = time.monotonic()
        response = super().send(request, True, timeout, verify, cert, proxies)
        if stream:
            return response
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.limit:
            response.close()
            raise ResponseTooLarge(f"the answer is larger than {_size(self.limit)}")
        body = bytearray()
        try:
            for chunk in response.iter_content(64 * 1024):
                body += chunk
                if len(body) > self.limit:
                    raise ResponseTooLarge(f"the answer is larger than {_size(self.limit)}")
                if time.monotonic() - started > self.deadline:
                    raise requests.exceptions.ReadTimeout("the answer took too long to arrive")
        except BaseException:
            response.close()
            raise
        response._content = bytes(body)
        return response


def _size(limit: int) -> str:
    return f"{limit / 1024 / 1024:g} MiB" if limit >= 1024 * 1024 else f"{limit} bytes"


def display_url(url: str) -> str:
    """`url` without credentials, query or fragment: fit for a status message or a log line."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def sanitise(message: str, limit: int = MESSAGE_LIMIT) -> str:
    """One short line: control characters folded, credentials and query strings cut from URLs."""
    text = _CONTROL.sub(" ", message)
    text = _USERINFO.sub(r"\1", text)
    text = _URL_QUERY.sub(r"\1", text).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    """Runs one rule query and reduces its result to a `Sample`.

    `name` is how messages call the server (by default its URL without credentials). Credentials (a
    bearer token, a CA bundle) are given only for servers the admins configured; `detailed_errors`
    copies Prometheus's own error text into messages and is meant only for those servers too.
    """

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
        name: str | None = None,
        detailed_errors: bool = True,
        max_body: int = MAX_BODY,
        trust_env: bool = True,
    ) -> None:
        self.url = url.rstrip("/")
        self.name = name or display_url(self.url)
        self.timeout = timeout
        self.metrics = metrics
        self.detailed_errors = detailed_errors
        self._session = requests.Session()
        # Without trust_env no ~/.netrc credentials and no proxy or CA settings from the environment.
        self._session.trust_env = trust_env
        self._session.max_redirects = 0  # a redirect is an error: answers come from the URL configured
        self._session.verify = str(ca_bundle) if ca_bundle is not None else True
        no_retries = Retry(total=0, read=False, redirect=False, raise_on_status=False)
        auth = BearerAuth(bearer_token, bearer_token_file) if bearer_token or bearer_token_file else None
        self._client = PrometheusConnect(
            url=self.url, session=self._session, retry=no_retries, auth=auth, timeout=timeout
        )
        # Replaces the client's adapter (same prefix) to size the pool for the worker threads and to
        # bound every answer; mounted for any URL too, so nothing this session reads is unbounded.
        bounded = _BoundedAdapter(max_body, timeout, max_retries=no_retries, pool_maxsize=max_workers)
        for prefix in ("http://", "https://", self.url):
            self._session.mount(prefix, bounded)
        self._executor = ThreadPoolExecutor(max_workers, thread_name_prefix="prometheus-query")
        self.closed = False

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

    async def fetch(self, promql: str, at: float | None = None) -> Any:
        """`fetch_sync` on the adapter's thread pool, bounded by the timeout even if the thread hangs."""
        loop = asyncio.get_running_loop()
        try:
            work = loop.run_in_executor(self._executor, self.fetch_sync, promql, at)
        except RuntimeError:  # closed (evicted from the cache) between lookup and use
            return QueryError(f"the client for {self.name} was closed; queried again next interval")
        try:
            return await asyncio.wait_for(work, self.timeout + _DEADLINE_GRACE)
        except TimeoutError:
            message = sanitise(f"timed out after {self.timeout:g}s querying {self.name}")
            log.warning("prometheus query failed", url=self.name, query=promql[:2000], error=message)
            return QueryError(message)

    def fetch_sync(self, promql: str, at: float | None = None) -> Any:
        """The `data.result` of an instant query (at `at`, seconds since the epoch, or now), or a
        QueryError (a RejectedQuery when Prometheus refused the query itself). Never raises for query
        problems."""
        started = time.monotonic()
        params = {"timeout": f"{self.timeout:g}"}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            # Prometheus's own timeout stops the evaluation server-side when we stop waiting.
            result = self._client.custom_query(promql, params=params)
        except requests.exceptions.Timeout:
            return self._failed(promql, f"timed out after {self.timeout:g}s querying {self.name}", started)
        except requests.exceptions.SSLError as error:
            return self._failed(promql, f"TLS error talking to {self.name}: {_reason(error)}", started)
        except requests.exceptions.ConnectionError as error:
            return self._failed(promql, f"cannot connect to {self.name}: {_reason(error)}", started)
        except ResponseTooLarge as error:
            return self._failed(promql, f"{self.name} answered: {error}", started)
        except requests.exceptions.TooManyRedirects:
            return self._failed(promql, f"{self.name} answered with a redirect (not followed)", started)
        except PrometheusApiClientException as error:
            match = _HTTP_ERROR.match(str(error))
            rejected = match is not None and int(match.group(1)) in _QUERY_REFUSED
            message = _http_error_message(str(error), self.name, detailed=self.detailed_errors)
            return self._failed(promql, message, started, rejected=rejected)
        except (requests.exceptions.RequestException, ValueError, KeyError, TypeError) as error:
            # A 200 that is not Prometheus's JSON: a proxy's page, a wrong URL path.
            return self._failed(promql, f"unexpected answer from {self.name}: {_reason(error)}", started)
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
        series = await self.fetch_range(promql, start, end, step)
        return series if isinstance(series, QueryError) else range_points(series, aggregate)

    async def fetch_range(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[dict[str, Any]] | QueryError:
        """A range query's series as Prometheus answers them (`metric` and `values`), for a fleet query
        that is split by labels afterwards."""
        loop = asyncio.get_running_loop()
        try:
            work = loop.run_in_executor(self._executor, self._range_sync, promql, start, end, step)
        except RuntimeError:
            return QueryError(f"the client for {self.name} was closed")
        try:
            return await asyncio.wait_for(work, self.timeout + _DEADLINE_GRACE)
        except TimeoutError:
            return QueryError(sanitise(f"timed out after {self.timeout:g}s querying {self.name}"))

    def _range_sync(
        self, promql: str, start: datetime, end: datetime, step: timedelta
    ) -> list[dict[str, Any]] | QueryError:
        started = time.monotonic()
        try:
            result = self._client.custom_query_range(
                promql,
                start_time=start,
                end_time=end,
                step=f"{step.total_seconds():g}s",
                params={"timeout": f"{self.timeout:g}"},
            )
            series = [{"metric": dict(s.get("metric") or {}), "values": list(s["values"])} for s in result]
        except (
            requests.exceptions.RequestException,
            PrometheusApiClientException,
            ValueError,
            KeyError,
            TypeError,
        ) as error:
            return self._failed(promql, f"range query failed: {_reason(error)}", started)
        self._observe(started)
        return series

    def close(self, *, wait: bool = False) -> None:
        """Stop taking queries; those in flight finish, then the threads and connections go."""
        if self.closed:
            return
        self.closed = True

        def finish() -> None:
            self._executor.shutdown(wait=True)
            self._client.close()

        if wait:
            finish()
        else:
            self._executor.shutdown(wait=False, cancel_futures=False)
            threading.Thread(target=finish, name="prometheus-close", daemon=True).start()

    def _failed(self, promql: str, message: str, started: float, *, rejected: bool = False) -> QueryError:
        self._observe(started)
        message = sanitise(message)
        log.warning("prometheus query failed", url=self.name, query=promql[:2000], error=message)
        return RejectedQuery(message) if rejected else QueryError(message)

    def _observe(self, started: float) -> None:
        if self.metrics is not None:
            self.metrics.observe_query(time.monotonic() - started)

    def count(self, *samples: Sample) -> None:
        """Rule evaluations' results, for modelledger_rule_evaluations_total (one increment per result
        kind: a fleet query answers for thousands of rules at once)."""
        if self.metrics is None:
            return
        errors = sum(1 for sample in samples if isinstance(sample, QueryError))
        no_data = sum(1 for sample in samples if isinstance(sample, NoData))
        self.metrics.record_evaluation(EvaluationResult.ERROR, errors)
        self.metrics.record_evaluation(EvaluationResult.NO_DATA, no_data)
        self.metrics.record_evaluation(EvaluationResult.VALUE, len(samples) - errors - no_data)


def range_points(series: list[dict[str, Any]], aggregate: Aggregate) -> list[tuple[datetime, float]]:
    """A range answer's values reduced across series by `aggregate`, one point per timestamp; a
    timestamp without a finite value, or a value that is not a number, is left out."""
    by_time: dict[float, list[float]] = {}
    for one in series:
        for at, value in one.get("values") or []:
            with contextlib.suppress(TypeError, ValueError):
                by_time.setdefault(float(at), []).append(float(value))
    points = []
    for at, values in sorted(by_time.items()):
        value = reduce(values, aggregate)
        if value is not None:
            points.append((datetime.fromtimestamp(at, UTC), value))
    return points


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


def _http_error_message(text: str, name: str, *, detailed: bool = True) -> str:
    """What an HTTP error says: the status, and Prometheus's own error (type and message) where the
    server is trusted with it; never the body itself."""
    match = _HTTP_ERROR.match(text)
    if match is None:
        return f"{name} answered an error"
    status, body = match.groups()
    try:
        answer = json.loads(ast.literal_eval(body))
        error_type = str(answer["errorType"])
        error = str(answer["error"])
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        return f"{name} answered HTTP {status}"
    if error_type not in _ERROR_TYPES:
        return f"{name} answered HTTP {status}"
    if not detailed:
        return f"{name} answered HTTP {status} ({error_type})"
    return f"Prometheus answered HTTP {status}: {error_type}: {error}"


def _reason(error: Exception) -> str:
    # requests' messages repeat the whole URL (with the query); the errno text is the useful part.
    found = _ERRNO.search(str(error))
    return found.group(0).strip() if found else f"{type(error).__name__}: {str(error)[:160]}"


# --- the admins' sources -----------------------------------------------------------------------------


class PrometheusSource(BaseModel):
    """One Prometheus the admins define (`--prometheus-sources`); ModelDeployments name it."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: DnsLabel
    """What `spec.rollback.prometheus.source` says; `default` serves deployments that name none."""
    url: Annotated[str, Field(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")]
    tenancy: Tenancy = Tenancy.SHARED
    """`shared`: queries run as written; `enforced`: every selector is restricted to the namespace."""
    token_file: Annotated[Path | None, Field(alias="tokenFile")] = None
    """A bearer token, read at each request (projected and rotated tokens work)."""
    ca_file: Annotated[Path | None, Field(alias="caFile")] = None
    """A CA bundle for an https URL."""
    timeout: Annotated[float | None, Field(gt=0, le=300)] = None
    """Seconds per query; the operator's `--prometheus-timeout` when left out."""

    @field_validator("token_file", "ca_file")
    @classmethod
    def _readable(cls, path: Path | None) -> Path | None:
        if path is not None and not path.is_file():
            raise ValueError(f"{path} is not a readable file")
        return path


_SOURCES = TypeAdapter(list[PrometheusSource])


def load_sources(path: Path) -> list[PrometheusSource]:
    """The sources file: a YAML list of {name, url, tenancy, tokenFile?, caFile?, timeout?}.

    Raises ValueError naming the entry and field at fault; names must be unique.
    """
    sources = load_list(path, "sources", _SOURCES)
    names = [source.name for source in sources]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"{path}: source names must be unique: {', '.join(duplicates)}")
    return sources
