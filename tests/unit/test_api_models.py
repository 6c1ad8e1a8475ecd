"""The pydantic models: the examples are valid, every malformed manifest is rejected naming its field,
unknown fields are dropped like the apiserver prunes them, and valid objects round-trip."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from modelledger.api import (
    Aggregate,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    ModelVersionSpec,
    Outcome,
    changed_immutable_fields,
    format_duration,
    parse_duration,
    short_digest,
)
from tests.malformed_cases import (
    MALFORMED,
    MODEL_DEPLOYMENT,
    MODEL_VERSION,
    PRUNED,
    Malformed,
    Pruned,
    changed,
    error_path,
    load_example,
    model_deployment_specs,
    model_deployment_statuses,
    model_version_specs,
    names_field,
)

RESOURCES: dict[str, type[BaseModel]] = {"ModelVersion": ModelVersion, "ModelDeployment": ModelDeployment}


@pytest.mark.parametrize("name", ["fraud-detector-1-3-2", "fraud-detector-1-4-0"])
def test_example_model_versions_are_valid(name: str) -> None:
    version = ModelVersion.model_validate(load_example(name))
    assert version.spec.model_name == "fraud-detector"
    assert version.spec.artifact.digest.startswith("sha256:")


def test_example_deployment_is_valid_and_reads_durations() -> None:
    deployment = ModelDeployment.model_validate(MODEL_DEPLOYMENT)
    rules = deployment.spec.rollback.rules
    assert [rule.name for rule in rules] == ["error-rate", "p99-latency"]
    assert rules[0].for_ == timedelta(minutes=1)
    assert deployment.spec.rollback.interval == timedelta(seconds=15)
    assert "histogram_quantile" in rules[1].query


def test_defaults_are_those_of_the_design() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "modelName": "m",
            "version": "m-1",
            "rollback": {"rules": [{"name": "r", "query": "up", "comparator": ">", "threshold": 1}]},
        }
    )
    assert spec.replicas == 1
    assert spec.revision_history_limit == 10
    assert spec.stability.bake_time == timedelta(minutes=10)
    assert spec.rollback.automatic is True
    assert spec.rollback.interval == timedelta(seconds=15)
    assert spec.rollback.cooldown == timedelta(minutes=5)
    rule = spec.rollback.rules[0]
    assert (rule.aggregate, rule.on_no_data, rule.on_error) == (Aggregate.MAX, Outcome.HOLD, Outcome.HOLD)
    assert rule.threshold == 1.0


def test_wire_form_uses_camel_case_and_canonical_durations() -> None:
    wire = ModelDeployment.model_validate(
        changed(MODEL_DEPLOYMENT, spec__stability__bakeTime="90m")
    ).to_wire()
    assert wire["spec"]["stability"] == {"bakeTime": "1h30m"}
    assert wire["spec"]["revisionHistoryLimit"] == 10
    assert wire["spec"]["rollback"]["rules"][0]["for"] == "1m"
    assert wire["spec"]["rollback"]["rules"][0]["onNoData"] == "Hold"


def test_python_names_populate_too() -> None:
    spec = ModelDeploymentSpec(model_name="m", version="m-1", revision_history_limit=3)
    assert spec.to_wire()["revisionHistoryLimit"] == 3


@pytest.mark.parametrize("case", MALFORMED, ids=lambda case: case.id)
def test_malformed_manifest_is_rejected_naming_the_field(case: Malformed) -> None:
    with pytest.raises(ValidationError) as raised:
        RESOURCES[case.kind].model_validate(case.manifest)
    reported = [error_path(error["loc"]) for error in raised.value.errors()]
    assert any(names_field(path, case.field) for path in reported), (
        f"expected an error naming {case.field}, got {reported}"
    )


def test_malformed_table_is_large_and_distinct() -> None:
    assert len(MALFORMED) >= 30
    assert len({case.id for case in MALFORMED}) == len(MALFORMED)
    assert {case.kind for case in MALFORMED} == {"ModelVersion", "ModelDeployment"}


@pytest.mark.parametrize("case", PRUNED, ids=lambda case: case.id)
def test_unknown_fields_are_dropped_like_the_apiserver_prunes_them(case: Pruned) -> None:
    model = RESOURCES[case.kind]
    assert model.model_validate(case.manifest) == model.model_validate(case.expected)


def test_template_keeps_whatever_the_user_writes() -> None:
    template = {"resources": {"limits": {"nvidia.com/gpu": 1}}, "anything": {"nested": [1, "x"]}}
    deployment = ModelDeployment.model_validate(changed(MODEL_DEPLOYMENT, spec__template=template))
    assert deployment.to_wire()["spec"]["template"] == template


def test_revoking_with_a_reason_is_valid() -> None:
    spec = ModelVersionSpec.model_validate(
        {**MODEL_VERSION["spec"], "revoked": True, "revocationReason": "audit 2026-11 failed"}
    )
    assert spec.revoked


def test_changed_immutable_fields_ignores_revocation() -> None:
    old = ModelVersionSpec.model_validate(MODEL_VERSION["spec"])
    revoked = old.model_copy(update={"revoked": True, "revocation_reason": "audit"})
    assert changed_immutable_fields(old, revoked) == []
    retrained = ModelVersionSpec.model_validate(changed(MODEL_VERSION, spec__metrics__auc=0.5)["spec"])
    assert changed_immutable_fields(old, retrained) == ["metrics"]


def test_short_digest() -> None:
    assert short_digest("sha256:" + "0123456789abcdef" * 4) == "0123456789ab"


# --- durations ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1m", timedelta(minutes=1)),
        ("10m", timedelta(minutes=10)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("500ms", timedelta(milliseconds=500)),
        ("1m30s250ms", timedelta(seconds=90, milliseconds=250)),
        ("90m", timedelta(minutes=90)),
        ("0h1s", timedelta(seconds=1)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "0s", "0m0s", "-5m", "5", "1d", "1.5h", "1 m", "m", "5M", "1h 30m", "1us"]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="positive duration"):
        parse_duration(text)


@pytest.mark.parametrize("value", [timedelta(0), timedelta(seconds=-1), timedelta(microseconds=1500)])
def test_format_duration_rejects(value: timedelta) -> None:
    with pytest.raises(ValueError, match=r"duration|millisecond"):
        format_duration(value)


@given(st.integers(min_value=1, max_value=10**12))
def test_duration_round_trip_from_timedelta(milliseconds: int) -> None:
    value = timedelta(milliseconds=milliseconds)
    text = format_duration(value)
    assert parse_duration(text) == value
    assert format_duration(parse_duration(text)) == text  # canonical text is a fixed point


@given(
    st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["h", "m", "s", "ms"])), min_size=1, max_size=4)
)
def test_duration_round_trip_from_text(parts: list[tuple[int, str]]) -> None:
    text = "".join(f"{number}{unit}" for number, unit in parts)
    if not any(number for number, _ in parts) or len(text) > 32:
        with pytest.raises(ValueError, match="positive duration"):
            parse_duration(text)
        return
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value


def test_durations_must_be_strings_not_numbers() -> None:
    with pytest.raises(ValidationError) as raised:
        ModelDeploymentSpec.model_validate({"modelName": "m", "version": "v", "stability": {"bakeTime": 600}})
    assert error_path(raised.value.errors()[0]["loc"]) == "stability.bakeTime"


# --- round trips --------------------------------------------------------------------------------------


def _round_trips(model: type[BaseModel], document: dict[str, Any]) -> None:
    parsed = model.model_validate(document)
    wire = parsed.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert model.model_validate(wire) == parsed
    assert model.model_validate(wire).model_dump(mode="json", by_alias=True, exclude_none=True) == wire


@settings(max_examples=60)
@given(model_version_specs)
def test_model_version_spec_round_trips(spec: dict[str, Any]) -> None:
    _round_trips(ModelVersionSpec, spec)


@settings(max_examples=60)
@given(model_deployment_specs)
def test_model_deployment_spec_round_trips(spec: dict[str, Any]) -> None:
    _round_trips(ModelDeploymentSpec, spec)


@settings(max_examples=60)
@given(model_deployment_statuses)
def test_model_deployment_status_round_trips(status: dict[str, Any]) -> None:
    _round_trips(ModelDeploymentStatus, status)


def test_status_ignores_what_kopf_stores_there() -> None:
    status = ModelDeploymentStatus.model_validate({"phase": "Healthy", "kopf": {"progress": {}}})
    assert "kopf" not in status.to_wire()
