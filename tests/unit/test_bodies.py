"""Slim bodies keep what decisions read and drop other clients' bookkeeping."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from modelledger.core.bodies import LAST_APPLIED, slim

NAMES = st.text("abcdefghijklmnopqrstuvwxyz-./", min_size=1, max_size=20)


@given(
    annotations=st.dictionaries(NAMES, st.text(max_size=30), max_size=5),
    spec=st.dictionaries(NAMES, st.integers() | st.text(max_size=10), max_size=5),
)
def test_slim_drops_managed_fields_and_last_applied_only(
    annotations: dict[str, str], spec: dict[str, Any]
) -> None:
    body = {
        "metadata": {
            "name": "m",
            "uid": "u",
            "resourceVersion": "7",
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            "annotations": {**annotations, LAST_APPLIED: '{"spec": {}}'},
        },
        "spec": spec,
        "status": {"phase": "Available"},
    }
    kept = slim(body)
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    assert {k: kept["metadata"][k] for k in ("name", "uid", "resourceVersion")} == {
        "name": "m",
        "uid": "u",
        "resourceVersion": "7",
    }
    assert kept["spec"] == spec
    assert kept["status"] == body["status"]
    assert "managedFields" in body["metadata"], "the watched body itself is left as it is"
