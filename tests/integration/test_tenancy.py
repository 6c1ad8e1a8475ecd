"""Tenant isolation on the real plane, a real Prometheus and the operator as a process (issue 13).

One operator watches two tenants' namespaces (A and B) and queries Prometheus sources its admins
defined in a sources file. A hostile tenant A:
- writes the batch injection of issue 13 (a query that closes the parentheses of the batch) next to
  B's normal rule on the same source, and keeps editing it: B's values never change, B never rolls
  back, and no request to Prometheus ever holds both tenants' queries;
- on an `enforced` source, reads B's series by leaving the namespace out, or by naming it: it reads its
  own series only, or its rule is refused naming the field;
- writes its own Prometheus URL: that server never receives the operator's token (a local HTTP server
  records the headers it gets), and its error bodies never reach the status. Where raw URLs are
  refused, and for an unknown source, the rules are in Error naming the field.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from modelledger.adapters.prometheus import PrometheusAdapter
from modelledger.core import promql
from modelledger.testing.access import ClusterAccess
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import Exporter
from tests.helpers import eventually
from tests.operator_process import OperatorProcess, operator_process
from tests.scenario import (
    QUERY,
    V132,
    V140,
    apply,
    served_revision,
    status,
    versions,
    wait_served,
    with_rules,
)

TOKEN = "operator-secret-token-7f3a"
BODY_MARKER = "INTERNAL-BODY-d41d8c"


@dataclass
class Tenants:
    a: str
    b: str
    pattern: str  # the operator's --namespace glob, matching both


@pytest.fixture
def tenants(api_client: kubernetes.client.ApiClient) -> Iterator[Tenants]:
    core = kubernetes.client.CoreV1Api(api_client)
    prefix = f"tenancy-{uuid.uuid4().hex[:6]}"
    names = [f"{prefix}-a", f"{prefix}-b"]
    for name in names:
        core.create_namespace({"metadata": {"name": name, "labels": {"modelledger.io/test": "true"}}})
    yield Tenants(names[0], names[1], f"{prefix}-*")
    for name in names:
        core.delete_namespace(name)


@pytest.fixture
def operator_for_tenants(
    plane: ClusterAccess,
    tenants: Tenants,
    installed_crds: object,
    identity_guards: None,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    """`modelledger run -n <both tenants>` with no --prometheus-url: only the sources file (see start)."""
    yield from operator_process(plane, tenants.pattern, tmp_path)


def start(
    operator: OperatorProcess, tmp_path: Path, sources: list[dict[str, Any]], *, raw: bool | None
) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text(yaml.safe_dump(sources))
    env = {"MODELLEDGER_PROMETHEUS_SOURCES": str(path)}
    if raw is not None:
        env["MODELLEDGER_ALLOW_RAW_PROMETHEUS_URLS"] = "true" if raw else "false"
    operator.start(**env)


def deployment(
    version: str, prometheus: dict[str, str], rules: list[dict[str, Any]], bake: str = "2s"
) -> dict[str, Any]:
    document = with_rules(version, bake=bake)
    document["spec"]["rollback"]["prometheus"] = prometheus
    document["spec"]["rollback"]["rules"] = rules
    return document


def rule(name: str, query: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "query": query, "comparator": ">", "threshold": 0.5, "for": "2s", **settings}


def rule_states(plane: ClusterAccess, namespace: str) -> dict[str, tuple[str, float | None, str]]:
    return {r.name: (r.state.value, r.value, r.message) for r in status(plane, namespace).rules}


def rule_value(operator: OperatorProcess, namespace: str, name: str) -> float | None:
    """The live value on /metrics (status keeps only the value that changed a rule's state)."""
    pattern = (
        r'modelledger_rule_value\{deployment="fraud-detector",namespace="' + re.escape(namespace)
        + r'",rule="' + re.escape(name) + r'"\} (\S+)'
    )  # fmt: skip
    found = re.search(pattern, operator.metrics())
    return float(found.group(1)) if found else None


# --- a recording server: a Prometheus stand-in, or a proxy in front of the real one ------------------


@dataclass
class Recorder:
    """A local HTTP server that records every request (path, query, headers) and answers with `reply`."""

    reply: Callable[[http.server.BaseHTTPRequestHandler], None]
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                with recorder.lock:
                    recorder.requests.append(
                        {
                            "path": url.path,
                            "query": urllib.parse.parse_qs(url.query).get("query", [""])[0],
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                        }
                    )
                recorder.reply(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def seen(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def answer(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def empty_vector(handler: http.server.BaseHTTPRequestHandler) -> None:
    answer(handler, 200, b'{"status":"success","data":{"resultType":"vector","result":[]}}')


@pytest.fixture
def recorders() -> Iterator[Callable[[Callable[[http.server.BaseHTTPRequestHandler], None]], Recorder]]:
    made: list[Recorder] = []

    def make(reply: Callable[[http.server.BaseHTTPRequestHandler], None]) -> Recorder:
        made.append(Recorder(reply))
        return made[-1]

    yield make
    for recorder in made:
        recorder.close()


def proxy_to(prometheus: PrometheusServer) -> Callable[[http.server.BaseHTTPRequestHandler], None]:
    def forward(handler: http.server.BaseHTTPRequestHandler) -> None:
        try:
            with urllib.request.urlopen(prometheus.url + handler.path, timeout=10) as response:
                answer(handler, response.status, response.read())
        except urllib.error.HTTPError as error:
            answer(handler, error.code, error.read())

    return forward


def namespaces_named(query: str, candidates: tuple[str, ...]) -> set[str]:
    return {namespace for namespace in candidates if namespace in query}


# --- (a) the batch injection -------------------------------------------------------------------------

# Issue 13: a query that closes the batch's `label_replace((` and adds a part labelled as another
# tenant's part k, so that under the old batcher B's rule read 1e9. Then the variants that parse as one
# expression and carry a batch label of their own, or end in a comment.
INJECTIONS = [
    *(
        f'vector(0)\n), "modelledger_batch", "99", "", "") or label_replace((\nvector(1e9)\n), '
        f'"modelledger_batch", "{k}", "", "") or label_replace((\nvector(0)'
        for k in range(4)
    ),
    'vector(0)) or label_replace(vector(1e9), "modelledger_batch", "0", "", "") # ',
    'vector(0)\n) or label_replace(vector(1e9), "modelledger_batch", "1", "", "") or (\nvector(0)',
]


def test_an_injection_next_to_another_tenant_changes_nothing_for_it(
    plane: ClusterAccess,
    tenants: Tenants,
    operator_for_tenants: OperatorProcess,
    prometheus: PrometheusServer,
    exporter: Exporter,
    recorders: Any,
    tmp_path: Path,
) -> None:
    gauge = exporter.gauge("test_error_rate", "errors per request", ("namespace", "deployment"))
    for namespace in (tenants.a, tenants.b):
        gauge.labels(namespace=namespace, deployment="fraud-detector").set(0.0)
    prometheus.wait_for_target(exporter.name)
    proxy = recorders(proxy_to(prometheus))  # records what the operator asks
    start(operator_for_tenants, tmp_path, [{"name": "main", "url": proxy.url}], raw=False)
    main = {"source": "main"}

    # B: 1.3.2 stable, then 1.4.0 serving, so a breach would have a revision to roll back to.
    versions(plane, tenants.b)
    apply(plane, tenants.b, deployment(V132, main, [rule("error-rate", QUERY)]))
    eventually(lambda: status(plane, tenants.b).stable_revision == 1, 30, "B: 1.3.2 stable")
    apply(plane, tenants.b, deployment(V140, main, [rule("error-rate", QUERY)], bake="1h"))
    wait_served(plane, tenants.b, V140, 2)

    # A: a normal rule (so A's queries share the source and the moment with B's) and the injection.
    versions(plane, tenants.a)
    a_rules = [rule("error-rate", QUERY), rule("inject", INJECTIONS[0])]
    apply(plane, tenants.a, deployment(V132, main, a_rules))

    def a_refused() -> bool:
        states = rule_states(plane, tenants.a)
        return "inject" in states and states["inject"][0] == "Error"

    eventually(a_refused, 30, "A's injection refused")
    _state, value, message = rule_states(plane, tenants.a)["inject"]
    assert value is None
    assert message.startswith("spec.rollback.rules[1].query: not a PromQL expression")
    assert len(message) <= 256

    # A keeps editing its query (each edit used to re-arm it); B is watched all the while.
    b_values: list[float | None] = []
    for injection in [*INJECTIONS[1:], *INJECTIONS[:2]]:
        apply(
            plane, tenants.a, deployment(V132, main, [rule("error-rate", QUERY), rule("inject", injection)])
        )
        until = time.monotonic() + 2.0
        while time.monotonic() < until:
            b_values.append(rule_value(operator_for_tenants, tenants.b, "error-rate"))
            time.sleep(0.25)
    assert b_values, "B's rule was evaluated"
    assert set(b_values) == {0.0}, f"B's values moved: {sorted(set(map(str, b_values)))}"
    st = status(plane, tenants.b)
    assert [(r.name, r.state.value, r.value) for r in st.rules] == [("error-rate", "Pass", 0.0)]
    assert len(st.history) == 2
    assert served_revision(plane, tenants.b) == (V140, "2")
    assert "inject" in rule_states(plane, tenants.a)
    assert rule_states(plane, tenants.a)["inject"][0] == "Error"

    # What reached Prometheus: only parsed, printed queries, never two tenants in one request, and
    # nothing of the injection's text.
    queries = [r["query"] for r in proxy.seen() if r["path"] == "/api/v1/query"]
    assert queries
    both = (tenants.a, tenants.b)
    assert all(len(namespaces_named(q, both)) == 1 for q in queries), [
        q for q in queries if len(namespaces_named(q, both)) != 1
    ]
    assert any(tenants.a in q for q in queries)
    assert any(tenants.b in q for q in queries)
    assert not any("1e9" in q or "1e+09" in q or "1000000000" in q for q in queries)
    for query in queries:
        promql.parse(query)  # each request is one expression


# --- (b) enforced tenancy ----------------------------------------------------------------------------


def test_on_an_enforced_source_a_tenant_reads_only_its_own_series(
    plane: ClusterAccess,
    tenants: Tenants,
    operator_for_tenants: OperatorProcess,
    prometheus: PrometheusServer,
    exporter: Exporter,
    tmp_path: Path,
) -> None:
    gauge = exporter.gauge("test_error_rate", "errors per request", ("namespace", "deployment"))
    gauge.labels(namespace=tenants.a, deployment="fraud-detector").set(0.1)
    gauge.labels(namespace=tenants.b, deployment="fraud-detector").set(0.9)
    prometheus.wait_for_target(exporter.name)
    everyone = f'max(test_error_rate{{deployment="fraud-detector",target="{exporter.name}"}})'
    direct = PrometheusAdapter(prometheus.url)
    try:  # without enforcement, this query reads B's 0.9: the test is not vacuous
        eventually(lambda: direct.query_sync(everyone) == 0.9, 30, "both tenants' series scraped")
    finally:
        direct.close(wait=True)
    start(
        operator_for_tenants,
        tmp_path,
        [{"name": "locked", "url": prometheus.url, "tenancy": "enforced"}],
        raw=False,
    )
    versions(plane, tenants.a)
    a_rules = [
        rule("peek", 'max(test_error_rate{deployment="fraud-detector"})'),
        rule("named", f'max(test_error_rate{{namespace="{tenants.b}"}})'),
        rule("regex", 'max({__name__=~"test_error_.*", deployment="fraud-detector"})'),
        rule("sub", "max_over_time(max(test_error_rate)[10s:1s])"),
        rule("own", QUERY),
    ]
    apply(plane, tenants.a, deployment(V132, {"source": "locked"}, a_rules))

    def evaluated() -> dict[str, tuple[str, float | None, str]] | None:
        states = rule_states(plane, tenants.a)
        return states if len(states) == len(a_rules) else None

    states = eventually(evaluated, 30, "A's rules evaluated")
    for name in ("peek", "regex", "sub", "own"):
        assert states[name][:2] == ("Pass", 0.1), (name, states[name])
    state, value, message = states["named"]
    assert (state, value) == ("Error", None)
    assert message.startswith("spec.rollback.rules[1].query: the selector matcher namespace=")
    assert f'restricts every selector to namespace="{tenants.a}"' in message
    time.sleep(3)  # and it stays so, evaluation after evaluation
    for name in ("peek", "regex", "sub"):
        assert rule_value(operator_for_tenants, tenants.a, name) == 0.1
    assert rule_states(plane, tenants.a)["named"][0] == "Error"


# --- (c) tenant-written URLs ---------------------------------------------------------------------------


def test_a_tenant_written_url_never_receives_the_operators_token(
    plane: ClusterAccess,
    tenants: Tenants,
    operator_for_tenants: OperatorProcess,
    recorders: Any,
    tmp_path: Path,
) -> None:
    admins = recorders(empty_vector)  # the admins' Prometheus: it gets the token

    def hostile(handler: http.server.BaseHTTPRequestHandler) -> None:
        body = json.dumps(
            {"status": "error", "errorType": "bad_data", "error": BODY_MARKER, "html": "x" * 5000}
        )
        answer(handler, 400, body.encode())

    tenant = recorders(hostile)  # a server tenant A controls, answering with errors holding a marker
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    sources = [{"name": "main", "url": admins.url, "tokenFile": str(token)}]
    start(operator_for_tenants, tmp_path, sources, raw=True)

    versions(plane, tenants.b)
    apply(plane, tenants.b, deployment(V132, {"source": "main"}, [rule("error-rate", QUERY)]))
    versions(plane, tenants.a)
    url = tenant.url.replace(
        "http://", "http://user:pw@"
    )  # the tenant's own credentials, if any, are its own
    apply(plane, tenants.a, deployment(V132, {"url": url}, [rule("error-rate", QUERY, onNoData="Hold")]))

    eventually(lambda: len(tenant.seen()) >= 3 and len(admins.seen()) >= 3, 30, "both servers queried")
    for request in tenant.seen():
        assert not request["headers"].get("authorization", "").startswith("Bearer"), request
        assert TOKEN not in json.dumps(request), request
    for request in admins.seen():
        assert request["headers"].get("authorization") == f"Bearer {TOKEN}"

    def a_error() -> tuple[str, float | None, str] | None:
        states = rule_states(plane, tenants.a)
        return states.get("error-rate") if states.get("error-rate", ("",))[0] == "Error" else None

    *_, message = eventually(a_error, 30, "A's rule in Error")
    assert "answered HTTP 400" in message
    assert BODY_MARKER not in message
    assert "user:pw" not in message
    assert len(message) <= 256
    raw = json.dumps(plane_status(plane, tenants.a))
    assert BODY_MARKER not in raw
    assert "user:pw" not in raw


def plane_status(plane: ClusterAccess, namespace: str) -> dict[str, Any]:
    found = plane.kubectl("get", "-n", namespace, "mdep", "fraud-detector", "-o", "json")
    document: dict[str, Any] = json.loads(found.stdout)
    return dict(document.get("status") or {})


def test_refused_urls_and_unknown_sources_put_the_rules_in_error_naming_the_field(
    plane: ClusterAccess,
    tenants: Tenants,
    operator_for_tenants: OperatorProcess,
    recorders: Any,
    tmp_path: Path,
) -> None:
    tenant = recorders(empty_vector)
    admins = recorders(empty_vector)
    # A sources file and no word on raw URLs: refused, as the chart configures by default.
    start(operator_for_tenants, tmp_path, [{"name": "main", "url": admins.url}], raw=None)
    versions(plane, tenants.a)
    apply(
        plane, tenants.a, deployment(V132, {"url": tenant.url}, [rule("error-rate", QUERY, onError="Breach")])
    )
    versions(plane, tenants.b)
    apply(plane, tenants.b, deployment(V132, {"source": "nope"}, [rule("error-rate", QUERY)]))

    def errors() -> tuple[str, str] | None:
        a, b = rule_states(plane, tenants.a), rule_states(plane, tenants.b)
        if a.get("error-rate", ("",))[0] == "Error" and b.get("error-rate", ("",))[0] == "Error":
            return a["error-rate"][2], b["error-rate"][2]
        return None

    a_message, b_message = eventually(errors, 30, "both rules in Error")
    assert a_message.startswith("spec.rollback.prometheus.url: this operator does not query URLs")
    assert "(defined: main)" in a_message
    assert b_message.startswith('spec.rollback.prometheus.source: no Prometheus source named "nope"')
    time.sleep(2)
    assert tenant.seen() == [], "a refused URL is never contacted"
    assert admins.seen() == [], "nobody named the admins' source"
    # onError: Breach is about failed queries: a rule that cannot run never breaches.
    assert [r.state.value for r in status(plane, tenants.a).rules] == ["Error"]
    wait_served(plane, tenants.a, V132, 1)
