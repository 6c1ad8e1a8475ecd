"""Which templates are fleet-safe, and the fleet queries printed from them (their answers are compared
with per-deployment queries on the real Prometheus in tests/integration/test_fleet.py)."""

from __future__ import annotations

import pytest

from modelledger.core import fleet, promql

SELECT = 'namespace="{{namespace}}",deployment="{{deployment}}"'
KEYS = [("team-a", "fraud"), ("team-b", "churn")]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (f"max(x{{{SELECT}}})", 'max by (namespace, deployment) (x{namespace=~"team\\\\-a|team\\\\-b",'),
        (f"sum by (le) (x{{{SELECT}}})", "sum by (le, namespace, deployment) ("),
        (f"sum without (pod) (x{{{SELECT}}})", "sum without (pod) ("),
        (f"x{{{SELECT}}} / on (pod) y{{{SELECT}}}", "/ on (pod, namespace, deployment) y{"),
        (f"rate(x{{{SELECT}}}[5m]) > 1", "rate(x{"),
        (f"topk(1, x{{{SELECT}}})", "topk by (namespace, deployment) (1.0, x{"),
    ],
)
def test_fleet_safe_templates_keep_the_deployment_labels(template: str, expected: str) -> None:
    shape = fleet.fleet_template(template)
    assert not isinstance(shape, str), shape
    query = shape.query(KEYS)
    assert expected in query
    assert promql.parse(query).text == query, "printed from the tree and read back the same"


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ('max(x{namespace="{{namespace}}"})', "needs {{namespace}} and {{deployment}}"),
        (f'max(x{{{SELECT},v="{{{{versionName}}}}"}})', "no placeholder but"),
        (f"max(x{{{SELECT}}}) + max(y)", "every selector needs"),
        (f"absent(x{{{SELECT}}})", "absent() does not keep"),
        (f"sum without (deployment) (x{{{SELECT}}})", "an aggregation drops"),
        (f"x{{{SELECT}}} / ignoring (namespace) y{{{SELECT}}}", "ignores one of"),
        (f"x{{{SELECT}}} * on (pod) group_left y{{{SELECT}}}", "group_left"),
        (f'count_values("v", x{{{SELECT}}})', "count_values"),
        (f'label_replace(x{{{SELECT}}}, "deployment", "other", "", "")', "label_replace() does not keep"),
        (f'x{{{SELECT},deployment!="b"}}', "matched more than once"),
        ('x{namespace="{{namespace}}",job="{{deployment}}"}', "every selector needs"),
        (f"scalar(x{{{SELECT}}})", "instant vector"),
    ],
)
def test_other_templates_go_per_deployment_with_the_reason(template: str, reason: str) -> None:
    shape = fleet.fleet_template(template)
    assert isinstance(shape, str)
    assert reason in shape


def test_model_and_version_are_keys_too() -> None:
    shape = fleet.fleet_template(f'max(x{{{SELECT},version="{{{{version}}}}"}})')
    assert not isinstance(shape, str)
    assert shape.labels == ("namespace", "deployment", "version")
    key = shape.key({"namespace": "a", "deployment": "d", "version": "1.2.0", "model": "m"})
    assert key == ("a", "d", "1.2.0")
    assert "by (namespace, deployment, version)" in shape.query([key])


def test_past_the_limit_only_namespaces_are_named_and_the_split_keeps_the_members() -> None:
    shape = fleet.fleet_template(f"max(x{{{SELECT}}})")
    assert not isinstance(shape, str)
    members = [("team-a", f"d{i}") for i in range(fleet.MAX_LISTED_DEPLOYMENTS + 1)]
    query = shape.query(members)
    assert 'deployment!=""' in query
    assert 'namespace="team-a"' in query
    result = [
        {"metric": {"namespace": "team-a", "deployment": "d1"}, "value": [0, "1"]},
        {"metric": {"namespace": "team-a", "deployment": "stranger"}, "value": [0, "9"]},
    ]
    split = fleet.split(result, shape.labels, members[:3])
    assert split[("team-a", "d1")] == [result[0]]
    assert split[("team-a", "d0")] == []
    assert ("team-a", "stranger") not in split
