"""The pydantic models: the examples are valid, every malformed manifest is rejected naming its field,
unknown fields are dropped like the apiserver prunes them, and valid objects round-trip."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any, get_args

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from modelledger.api import (
    Aggregate,
    HistoryEntry,
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
from modelledger.api.crdgen import crds
from modelledger.api.duration import _BOUNDED, DURATION_PATTERN, MAX_DURATION
from modelledger.api.podtemplate import REFUSED_RULE, PodTemplate, Refused
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
CRDS = crds()


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
    assert len(MALFORMED) >= 60
    assert len({case.id for case in MALFORMED}) == len(MALFORMED)
    assert {case.kind for case in MALFORMED} == {"ModelVersion", "ModelDeployment"}


@pytest.mark.parametrize("case", PRUNED, ids=lambda case: case.id)
def test_unknown_fields_are_dropped_like_the_apiserver_prunes_them(case: Pruned) -> None:
    model = RESOURCES[case.kind]
    assert model.model_validate(case.manifest) == model.model_validate(case.expected)


def test_template_keeps_what_it_allows_as_written() -> None:
    template = {
        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "2Gi"}, "requests": {"cpu": "500m"}},
        "env": [
            {"name": "THRESHOLD", "value": "0.8"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        ],
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "APP_"}],
        "volumes": [
            {"name": "config", "configMap": {"name": "settings", "items": [{"key": "a", "path": "a.yaml"}]}},
            {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o440}},
            {
                "name": "all",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "settings"}},
                        {
                            "downwardAPI": {
                                "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                            }
                        },
                    ]
                },
            },
        ],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/model", "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": 8080}},
        "startupProbe": {"exec": {"command": ["cat", "/tmp/ready"]}, "failureThreshold": 30},
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            "seccompProfile": {"type": "Localhost", "localhostProfile": "profiles/model.json"},
        },
        "podSecurityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 2000},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}
        },
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway",
            }
        ],
        "priorityClassName": "models",
        "automountServiceAccountToken": False,
    }
    deployment = ModelDeployment.model_validate(changed(MODEL_DEPLOYMENT, spec__template=template))
    assert deployment.to_wire()["spec"]["template"] == template


def _refused_fields(model: type[BaseModel], path: str) -> Iterator[tuple[str, Refused]]:
    """Every declared-but-refused field under `model`, by its path."""
    for name, field in model.model_fields.items():
        wire = field.alias or name
        marker = next((m for m in field.metadata if isinstance(m, Refused)), None)
        if marker is not None:
            yield f"{path}.{wire}", marker
            continue
        for inner in _models(field.annotation):
            yield from _refused_fields(inner, f"{path}.{wire}")


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    """The models an annotation holds (through Optional, list, dict and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for argument in get_args(annotation):
        yield from _models(argument)


REFUSED = sorted(dict(_refused_fields(PodTemplate, "spec.template")).items())


def test_every_pod_spec_and_container_field_outside_the_allowlist_is_declared_and_refused() -> None:
    top = {path.removeprefix("spec.template.") for path, _ in REFUSED if path.count(".") == 2}
    allowed = {field.alias or name for name, field in PodTemplate.model_fields.items()} - top
    # Kubernetes 1.34 PodSpec and Container fields; `securityContext` and `resources` are the container's.
    pod_spec = {
        "volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy",
        "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "nodeSelector",
        "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName", "hostNetwork",
        "hostPID", "hostIPC", "shareProcessNamespace", "securityContext", "imagePullSecrets", "hostname",
        "subdomain", "affinity", "schedulerName", "tolerations", "hostAliases", "priorityClassName",
        "priority", "dnsConfig", "readinessGates", "runtimeClassName", "enableServiceLinks",
        "preemptionPolicy", "overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers",
        "schedulingGates", "resourceClaims", "resources", "hostnameOverride",
    }  # fmt: skip
    container = {
        "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
        "resizePolicy", "restartPolicy", "restartPolicyRules", "volumeMounts", "volumeDevices",
        "livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
        "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty",
    }  # fmt: skip
    assert (pod_spec | container) - allowed == top - {"metadata"}
    assert allowed - (pod_spec | container) == {"podSecurityContext"}
    for path in (
        "spec.template.volumes.hostPath",
        "spec.template.securityContext.privileged",
        "spec.template.podSecurityContext.sysctls",
        "spec.template.volumes.projected.sources.serviceAccountToken",
        "spec.template.env.valueFrom.resourceFieldRef",
        "spec.template.readinessProbe.httpGet.host",
        "spec.template.volumeMounts.mountPropagation",
    ):
        assert path in dict(REFUSED), path


@pytest.mark.parametrize(("path", "marker"), REFUSED, ids=[path for path, _ in REFUSED])
def test_a_refused_field_is_rejected_by_the_model_and_the_crd_naming_it(path: str, marker: Refused) -> None:
    crd_node = _crd_node(path)
    assert {"rule": REFUSED_RULE, "message": marker.message} in crd_node["x-kubernetes-validations"]
    value = {"boolean": True, "integer": 1, "string": "x", "array": [], "object": {}}[crd_node["type"]]
    with pytest.raises(ValidationError) as raised:
        ModelDeployment.model_validate(changed(MODEL_DEPLOYMENT, spec__template=_template_with(path, value)))
    errors = raised.value.errors()
    assert any(
        names_field(error_path(e["loc"]), _indexed(path)) and marker.message in e["msg"] for e in errors
    )


def _crd_node(path: str) -> dict[str, Any]:
    node: dict[str, Any] = CRDS["modeldeployments.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for step in path.split("."):
        node = node.get("items", node)["properties"][step]
    return node


# The smallest valid parent of each nested refused field, so only the refused field is wrong.
_PARENTS: dict[str, dict[str, Any]] = {
    "volumes": {"name": "v", "emptyDir": {}},
    "sources": {"configMap": {"name": "c"}},
    "env": {"name": "X", "value": "1"},
    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    "readinessProbe": {"httpGet": {"port": 80}},
    "httpGet": {"port": 80},
    "livenessProbe": {"tcpSocket": {"port": 80}},
    "tcpSocket": {"port": 80},
    "volumeMounts": {"name": "v", "mountPath": "/v"},
}
_LISTS = {"volumes", "sources", "env", "volumeMounts"}


def _template_with(path: str, value: Any) -> dict[str, Any]:
    *parents, last = path.removeprefix("spec.template.").split(".")
    leaf: dict[str, Any] = {last: value}
    for parent in reversed(parents):
        node = {**_PARENTS.get(parent, {}), **leaf}
        leaf = {parent: [node] if parent in _LISTS else node}
    if parents and parents[0] == "volumeMounts":
        leaf["volumes"] = [_PARENTS["volumes"]]
    return leaf


def _indexed(path: str) -> str:
    """`spec.template.volumes.hostPath` → `spec.template.volumes[0].hostPath`."""
    return ".".join(f"{step}[0]" if step in _LISTS else step for step in path.split("."))


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


@given(st.integers(min_value=1, max_value=8760 * 3_600_000))
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
    total = sum((timedelta(milliseconds=number * UNIT_MS[unit]) for number, unit in parts), timedelta())
    if total > MAX_DURATION:
        with pytest.raises(ValueError, match="longer than the maximum, 8760h"):
            parse_duration(text)
        return
    value = parse_duration(text)
    assert parse_duration(format_duration(value)) == value


UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}
GO_MAX_DURATION_MS = (2**63 - 1) // 1_000_000


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"0{0,3}[0-9]{1,12}", fullmatch=True), st.sampled_from(["h", "m", "s", "ms"])
        ),
        min_size=1,
        max_size=5,
    )
)
def test_the_crd_duration_rule_guard_agrees_with_the_parser(parts: list[tuple[str, str]]) -> None:
    """The CEL rule is `self.matches(BOUNDED) && duration(self) <= duration('8760h')`. Its guard must
    hold for every duration the parser accepts (so the rule accepts the same), and keep CEL's
    `duration()` (Go's time.Duration) from overflowing on every text it lets through."""
    text = "".join(f"{number}{unit}" for number, unit in parts)
    assume(re.fullmatch(DURATION_PATTERN, text) and len(text) <= 32)
    total_ms = sum(int(number) * UNIT_MS[unit] for number, unit in parts)
    guard = re.fullmatch(_BOUNDED, text) is not None
    if total_ms <= 8760 * UNIT_MS["h"]:
        assert guard
        assert parse_duration(text) == timedelta(milliseconds=total_ms)
    else:
        with pytest.raises(ValueError, match="longer than the maximum"):
            parse_duration(text)
    if guard:
        assert total_ms <= GO_MAX_DURATION_MS


@pytest.mark.parametrize(
    "text", ["99999999999h", "9" * 31 + "h", "8761h", "525601m", "31536001s", "1h" * 8761]
)
def test_a_duration_past_a_year_is_a_clean_error_never_an_overflow(text: str) -> None:
    with pytest.raises(ValueError, match=r"longer than the maximum, 8760h|positive duration"):
        parse_duration(text)
    with pytest.raises(ValidationError) as raised:
        ModelDeploymentSpec.model_validate(
            {"modelName": "m", "version": "v", "stability": {"bakeTime": text}}
        )
    assert error_path(raised.value.errors()[0]["loc"]) == "stability.bakeTime"


def test_a_year_is_the_longest_duration_and_a_second_the_shortest_interval() -> None:
    spec = ModelDeploymentSpec.model_validate(
        {
            "modelName": "m",
            "version": "v",
            "stability": {"bakeTime": "8760h"},
            "rollback": {"interval": "1s", "cooldown": "525600m"},
            "approval": {"timeout": "31536000s"},
        }
    )
    assert spec.stability.bake_time == MAX_DURATION == spec.approval.timeout
    assert spec.rollback.interval == timedelta(seconds=1)
    with pytest.raises(ValidationError, match="at least 1s"):
        ModelDeploymentSpec(model_name="m", version="v", rollback={"interval": timedelta(milliseconds=999)})
    with pytest.raises(ValidationError, match="longer than the maximum"):
        ModelDeploymentSpec(model_name="m", version="v", stability={"bake_time": timedelta(days=366)})


def test_revocation_reasons_are_capped_and_history_reasons_still_read() -> None:
    entry = {
        "revision": 1,
        "version": "v",
        "cause": "Revocation",
        "at": "2026-01-01T00:00:00Z",
        "actor": "modelledger/revocation",
        "hash": "sha256:" + "a" * 64,
    }
    # Inputs are capped at 1024; entries written before the bound (longer) must still be read.
    HistoryEntry.model_validate({**entry, "reason": "x" * 5000})
    spec = {**MODEL_VERSION["spec"], "revoked": True}
    assert ModelVersionSpec.model_validate({**spec, "revocationReason": "x" * 1024}).revoked
    with pytest.raises(ValidationError):
        ModelVersionSpec.model_validate({**spec, "revocationReason": "x" * 1025})


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


def test_a_request_reason_is_capped_and_a_rollback_needs_one() -> None:
    from modelledger.api import ModelDeploymentRequestSpec

    ok = {"deployment": "fraud-detector", "action": "Rollback", "reason": "x" * 1024}
    assert ModelDeploymentRequestSpec.model_validate(ok).reason
    with pytest.raises(ValidationError) as raised:
        ModelDeploymentRequestSpec.model_validate({**ok, "reason": "x" * 1025})
    assert error_path(raised.value.errors()[0]["loc"]) == "reason"
    with pytest.raises(ValidationError, match="reason is required for a Rollback"):
        ModelDeploymentRequestSpec.model_validate({**ok, "reason": ""})
    with pytest.raises(ValidationError, match="only an Approve has it"):
        ModelDeploymentRequestSpec.model_validate({**ok, "approves": "other"})


def test_used_by_is_capped_but_counted() -> None:
    from modelledger.api import ModelVersionStatus
    from modelledger.handlers.versions import named

    users = [f"deployment-{i:04d}" for i in range(1100)]
    with pytest.raises(ValidationError):
        ModelVersionStatus.model_validate({"usedBy": users})
    status = ModelVersionStatus.model_validate({"usedBy": users[:100], "usedByCount": 1100})
    assert status.used_by_count == 1100
    assert named(users).endswith("and 1090 more")
