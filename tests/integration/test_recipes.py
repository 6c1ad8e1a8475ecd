"""The rule recipes of docs/rules.md, read from the page itself, against a real Prometheus.

Each recipe is rendered and parsed as the operator does (`core.rules.template_values`, `core.promql`),
run by the operator's Prometheus adapter, and its answer compared as the rule says. The series are
labelled as the operator's PodMonitor labels them: its relabelings are the scrape config, and each
stand-in model server is a target carrying the discovery labels of the pod template the operator builds
(see tests/integration/model_server.py). Two deployments serve at once, one healthy and one breaching
every recipe, so both outcomes are checked in one wait. The `ALERTS` recipe reads a real alert: the
alerting rule of the page, loaded into Prometheus (its `for` shortened to a second).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.adapters.prometheus import PrometheusAdapter
from modelledger.api import ModelDeployment, ModelVersion, RollbackRule
from modelledger.core import podmonitor, promql
from modelledger.core.rules import NoData, QueryError, compare, template_values
from modelledger.core.workload import Owner, manifests
from modelledger.testing.prometheus import PrometheusServer
from tests.helpers import eventually
from tests.integration.model_server import ModelServer, serve_as_pod
from tests.malformed_cases import MODEL_DEPLOYMENT, MODEL_VERSION

RULES_PAGE = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
NAMESPACE = "ml-prod"
JOB = "podmonitor"
HEALTHY, BREACHING = "fraud-healthy", "fraud-breaching"
RECIPES = {"error-ratio", "p99-latency", "approval-gap", "feature-drift", "saturated"}


def recipes_section() -> tuple[dict[str, RollbackRule], dict[str, Any]]:
    """The rules and the alerting rule group that docs/rules.md's Recipes section shows."""
    section = RULES_PAGE.read_text().split("\n## Recipes\n", 1)[1].split("\n## ", 1)[0]
    rules: dict[str, RollbackRule] = {}
    groups: dict[str, Any] = {}
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        document = yaml.safe_load(block)
        if isinstance(document, list):
            for raw in document:
                rule = RollbackRule.model_validate(raw)
                rules[rule.name] = rule
        else:
            groups = document
    return rules, groups


def pod_labels(deployment: str) -> dict[str, str]:
    """The labels of the serving pods the operator would create for `deployment` (1.4.0)."""
    spec = ModelDeployment.model_validate(MODEL_DEPLOYMENT).spec
    built, _ = manifests(
        Owner(deployment, NAMESPACE, "uid"), spec, 1, ModelVersion.model_validate(MODEL_VERSION)
    )
    labels: dict[str, str] = built["spec"]["template"]["metadata"]["labels"]
    return labels


@pytest.fixture(scope="module")
def recipes_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    _, groups = recipes_section()
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule["for"] = "1s"  # the page's 1m, shortened so the test need not wait a minute
    job = podmonitor.scrape_config(JOB, podmonitor.manifest(Owner("any", NAMESPACE, "uid")))
    with PrometheusServer(tmp_path_factory.mktemp("recipes-prometheus"), jobs=[job], rules=groups) as server:
        yield server


@pytest.fixture(scope="module")
def servers(recipes_prometheus: PrometheusServer) -> Iterator[dict[str, ModelServer]]:
    healthy, breaching = ModelServer(), ModelServer()
    breaching.load.error_fraction = 0.2
    breaching.load.latency = 0.3
    breaching.load.approved = {"a": 0.8, "b": 0.4}
    breaching.load.drift_psi = 0.4
    breaching.load.inflight = 12
    healthy.load.error_fraction = 0.02
    found = {HEALTHY: healthy, BREACHING: breaching}
    try:
        for name, server in found.items():
            target = serve_as_pod(
                recipes_prometheus, JOB, server, NAMESPACE, f"{name}-0", pod_labels(name), name
            )
            recipes_prometheus.wait_for_target(target)
        yield found
    finally:
        for server in found.values():
            server.close()


def test_the_page_has_every_recipe_and_each_is_a_valid_rule() -> None:
    rules, groups = recipes_section()
    assert set(rules) == RECIPES
    for rule in rules.values():
        query = promql.parse(
            promql.render(rule.query, template_values(NAMESPACE, "d", "m", "mv", None) | {"version": "1"})
        )
        assert query.type in (promql.QueryType.VECTOR, promql.QueryType.SCALAR), rule.name
        assert {"namespace", "deployment"} <= promql.placeholders(rule.query), rule.name
    alert = groups["groups"][0]["rules"][0]
    assert alert["alert"] in rules["saturated"].query


def _evaluate(adapter: PrometheusAdapter, rule: RollbackRule, deployment: str) -> tuple[float | None, bool]:
    """(value, breaches) for the rule on `deployment`, as the operator computes them."""
    version = ModelVersion.model_validate(MODEL_VERSION)
    values = template_values(
        NAMESPACE, deployment, version.spec.model_name, version.metadata["name"], version
    )
    query = promql.parse(promql.render(rule.query, values))
    sample = adapter.query_sync(query.text, rule.aggregate)
    assert not isinstance(sample, QueryError), f"{rule.name}: {sample}"
    if isinstance(sample, NoData):
        return None, rule.on_no_data.value == "Breach"
    return sample, compare(sample, rule.comparator, rule.threshold)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_passes_on_a_healthy_model_and_breaches_on_a_bad_one(
    name: str, recipes_prometheus: PrometheusServer, servers: dict[str, ModelServer]
) -> None:
    rules, _ = recipes_section()
    rule = rules[name]
    adapter = PrometheusAdapter(recipes_prometheus.url, timeout=5)

    def breaches() -> tuple[float | None, bool] | None:
        answer = _evaluate(adapter, rule, BREACHING)
        return answer if answer[1] else None

    try:
        # Until the rates have two samples (and the alert has fired) the answers are still settling.
        breaching_value, _ = eventually(breaches, 30, f"{name} breaches")
        healthy_value, healthy_breaches = _evaluate(adapter, rule, HEALTHY)
    finally:
        adapter.close()
    assert healthy_breaches is False, f"{name} on the healthy model: {healthy_value}"
    if name == "saturated":
        assert healthy_value is None, "no alert firing: no series, which the recipe counts as Pass"
        assert breaching_value == 1.0
        return
    assert healthy_value is not None
    assert breaching_value is not None
    if name == "p99-latency":  # within the buckets the latencies (0.06 s, 0.3 s) fall in
        assert 0.05 < healthy_value <= 0.075
        assert 0.25 < breaching_value <= 0.5
    else:
        healthy, breaching = {
            "error-ratio": (0.02, 0.2),
            "approval-gap": (0.05, 0.4),
            "feature-drift": (0.05, 0.4),
        }[name]
        assert healthy_value == pytest.approx(healthy, abs=0.02)
        assert breaching_value == pytest.approx(breaching, abs=0.03)


def test_the_alert_is_real_and_labelled_with_the_deployment(
    recipes_prometheus: PrometheusServer, servers: dict[str, ModelServer]
) -> None:
    def firing() -> list[dict[str, Any]]:
        return [a for a in recipes_prometheus.alerts() if a["state"] == "firing"]

    alerts = eventually(firing, 30, "ModelServerSaturated firing")
    assert [(a["labels"]["alertname"], a["labels"]["deployment"]) for a in alerts] == [
        ("ModelServerSaturated", BREACHING)
    ]
    assert alerts[0]["labels"]["namespace"] == NAMESPACE
    assert alerts[0]["labels"]["version"] == ModelVersion.model_validate(MODEL_VERSION).spec.version
