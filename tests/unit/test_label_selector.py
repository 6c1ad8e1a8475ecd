"""The label-selector evaluation that decides whether a guard binding covers a namespace."""

from __future__ import annotations

import pytest

from modelledger.adapters.admission import selects

LABELS = {"team": "fraud", "env": "prod"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, True),
        ({}, True),
        ({"matchLabels": {"team": "fraud"}}, True),
        ({"matchLabels": {"team": "risk"}}, False),
        ({"matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "stage"]}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["prod"]}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, True),
        ({"matchExpressions": [{"key": "env", "operator": "Bogus"}]}, False),
    ],
)
def test_selects(selector: dict[str, object] | None, expected: bool) -> None:
    assert selects(selector, LABELS) is expected
