"""The generated CRDs in a REAL apiserver: they install, the examples apply, bad input is rejected with
the same verdict the pydantic models give, unknown fields are pruned, ModelVersion spec is immutable
except revocation, and anything the models accept round-trips through the apiserver unchanged."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from hypothesis import HealthCheck, given, settings

from modelledger.api import (
    GROUP,
    VERSION,
    ModelDeployment,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    ModelVersion,
    ModelVersionSpec,
)
from modelledger.api.crdgen import KINDS
from modelledger.api.modelversion import IMMUTABLE_MESSAGE
from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.malformed_cases import (
    MALFORMED,
    MODEL_DEPLOYMENT,
    MODEL_VERSION,
    PRUNED,
    Malformed,
    Pruned,
    model_deployment_specs,
    model_deployment_statuses,
    model_version_specs,
    steps,
)

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_NAMES = [f"{kind.plural}.{GROUP}" for kind in KINDS]
PLURALS = {kind.kind: kind.plural for kind in KINDS}
MODELS: dict[str, type[ModelVersion] | type[ModelDeployment]] = {
    "ModelVersion": ModelVersion,
    "ModelDeployment": ModelDeployment,
}
ROUND_TRIP = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def custom_objects(api_client: kubernetes.client.ApiClient, installed_crds: object) -> Any:
    return kubernetes.client.CustomObjectsApi(api_client)


def _apply(plane: ClusterAccess, namespace: str, document: dict[str, Any], verb: str = "create") -> Any:
    return plane.kubectl(verb, "-n", namespace, "-f", "-", input=json.dumps(document), check=False)


def _normalise(value: Any) -> Any:
    """Every number as a float: the apiserver writes whole floats as integer literals (`1.0` → `1`,
    `6.92e16` → `69216582888563570`), which denote the same float64 but not the same Python int."""
    if isinstance(value, dict):
        return {key: _normalise(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalise(item) for item in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def test_crds_install_and_become_established(plane: ClusterAccess, installed_crds: Any) -> None:
    assert "Warning" not in installed_crds.stderr, installed_crds.stderr
    for name in CRD_NAMES:
        crd = json.loads(plane.kubectl("get", "crd", name, "-o", "json").stdout)
        conditions = {condition["type"]: condition["status"] for condition in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True"
        assert conditions.get("NamesAccepted") == "True"
        assert conditions.get("NonStructuralSchema") is None


def test_examples_apply_cleanly(plane: ClusterAccess, installed_crds: Any, namespace: str) -> None:
    result = plane.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples"), check=False)
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr, result.stderr
    names = plane.kubectl("get", "modelledger", "-n", namespace, "-o", "name").stdout.split()
    assert sorted(names) == [
        "modeldeployment.modelledger.io/fraud-detector",
        "modelversion.modelledger.io/fraud-detector-1-3-2",
        "modelversion.modelledger.io/fraud-detector-1-4-0",
    ]
    stored = json.loads(plane.kubectl("get", "mdep", "fraud-detector", "-n", namespace, "-o", "json").stdout)
    assert (
        ModelDeployment.model_validate(stored).spec == ModelDeployment.model_validate(MODEL_DEPLOYMENT).spec
    )


def test_get_shows_the_printer_columns(plane: ClusterAccess, installed_crds: Any, namespace: str) -> None:
    plane.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples"))
    versions = plane.kubectl("get", "mv", "-n", namespace).stdout.splitlines()
    assert versions[0].split() == ["NAME", "MODEL", "VERSION", "DIGEST", "PHASE", "AGE"]
    assert versions[1].split()[:3] == ["fraud-detector-1-3-2", "fraud-detector", "1.3.2"]
    deployments = plane.kubectl("get", "mdep", "-n", namespace).stdout.splitlines()
    assert deployments[0].split() == [
        "NAME",
        "MODEL",
        "DESIRED",
        "SERVING",
        "REVISION",
        "STABLE",
        "PHASE",
        "AGE",
    ]
    assert deployments[1].split()[:3] == ["fraud-detector", "fraud-detector", "fraud-detector-1-4-0"]
    both = plane.kubectl("get", "mv,mdep", "-n", namespace).stdout
    assert "DESIRED" in both
    assert "DIGEST" in both
    wide = plane.kubectl("get", "mv", "-n", namespace, "-o", "wide").stdout
    assert MODEL_VERSION["spec"]["artifact"]["digest"] in wide


def test_explain_reads_the_descriptions(plane: ClusterAccess, installed_crds: Any) -> None:
    def explained() -> str | None:
        # The OpenAPI document is published a moment after the CRD is Established.
        result = plane.kubectl("explain", "modelversion.spec.artifact", check=False)
        return " ".join(result.stdout.split()) if result.returncode == 0 else None

    text = eventually(explained, 60, "kubectl explain modelversion.spec.artifact")
    assert "The trained model file, pinned by digest." in text
    assert "digest" in text
    assert "64 lower-case hex digits" in text
    assert "<string> -required-" in text
    rule = " ".join(plane.kubectl("explain", "modeldeployment.spec.rollback.rules.onNoData").stdout.split())
    assert "What an empty result (or only NaN/±Inf) counts as" in rule


@pytest.mark.parametrize("case", MALFORMED, ids=lambda case: case.id)
def test_malformed_manifest_is_rejected_naming_the_field(
    plane: ClusterAccess, installed_crds: Any, namespace: str, case: Malformed
) -> None:
    result = _apply(plane, namespace, case.manifest)
    assert result.returncode != 0, f"the apiserver accepted {case.id}"
    assert case.field in result.stderr, f"expected the error to name {case.field}: {result.stderr}"
    # Same verdict as the models (which the unit tests check name the same field).
    with pytest.raises(ValueError):  # noqa: PT011 - pydantic's ValidationError; its content is unit-tested
        MODELS[case.kind].model_validate(case.manifest)


@pytest.mark.parametrize("case", PRUNED, ids=lambda case: case.id)
def test_unknown_fields_are_pruned(
    plane: ClusterAccess, custom_objects: Any, namespace: str, case: Pruned
) -> None:
    # Without strict field validation (the API's default) unknown fields are pruned, with a warning.
    created = custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[case.kind], case.manifest
    )
    for path in case.unknown:
        holder: Any = created
        *parents, last = steps(path)
        for step in parents:
            holder = holder[step]
        assert last not in holder, f"{path} was not pruned"
    model = MODELS[case.kind]
    assert model.model_validate(created).spec == model.model_validate(case.expected).spec
    assert model.model_validate(case.manifest).spec == model.model_validate(created).spec
    # kubectl validates strictly by default: there the unknown field is named and refused.
    strict = _apply(
        plane, namespace, {**case.manifest, "metadata": {"name": "strict-" + uuid.uuid4().hex[:6]}}
    )
    assert strict.returncode != 0
    assert "unknown field" in strict.stderr
    assert case.unknown[0] in strict.stderr


def test_template_keeps_what_it_allows_as_written(custom_objects: Any, namespace: str) -> None:
    template = {
        "resources": {"limits": {"nvidia.com/gpu": 1, "memory": "2Gi"}, "requests": {"cpu": "500m"}},
        "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}],
        "volumes": [{"name": "config", "configMap": {"name": "settings"}}],
        "volumeMounts": [{"name": "config", "mountPath": "/etc/model", "readOnly": True}],
        "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
        "securityContext": {"runAsUser": 1000, "capabilities": {"add": ["NET_BIND_SERVICE"]}},
        "automountServiceAccountToken": False,
    }
    body = {**MODEL_DEPLOYMENT, "spec": {**MODEL_DEPLOYMENT["spec"], "template": template}}
    created = custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", body
    )
    assert created["spec"]["template"] == template


IMMUTABLE_CHANGES = {
    "modelName": {"modelName": "other-model"},
    "version": {"version": "1.4.1"},
    "artifact": {"artifact": {"digest": "sha256:" + "cd" * 32}},
    "serving": {"serving": {"image": "ghcr.io/acme/fraud-server@sha256:" + "cd" * 32}},
    "provenance": {"provenance": None},
    "hyperparameters": {"hyperparameters": {"max_depth": "9"}},
    "metrics": {"metrics": {"auc": 0.99}},
    "tags": {"tags": ["compliant", "gold"]},
}


@pytest.fixture
def registered(plane: ClusterAccess, installed_crds: Any, namespace: str) -> str:
    plane.kubectl("apply", "-n", namespace, "-f", str(REPO_ROOT / "examples" / "fraud-detector-1-4-0.yaml"))
    return namespace


def _patch_spec(plane: ClusterAccess, namespace: str, spec: dict[str, Any]) -> Any:
    return plane.kubectl(
        "patch",
        "mv",
        "fraud-detector-1-4-0",
        "-n",
        namespace,
        "--type=merge",
        "-p",
        json.dumps({"spec": spec}),
        check=False,
    )


def test_revoking_is_accepted(plane: ClusterAccess, registered: str) -> None:
    result = _patch_spec(plane, registered, {"revoked": True, "revocationReason": "audit 2026-11 failed"})
    assert result.returncode == 0, result.stderr
    stored = json.loads(
        plane.kubectl("get", "mv", "fraud-detector-1-4-0", "-n", registered, "-o", "json").stdout
    )
    assert ModelVersion.model_validate(stored).spec.revoked is True
    # ...and revocationReason may be reworded afterwards.
    assert _patch_spec(plane, registered, {"revocationReason": "audit 2026-11: data leak"}).returncode == 0


def test_revoking_without_a_reason_is_rejected(plane: ClusterAccess, registered: str) -> None:
    result = _patch_spec(plane, registered, {"revoked": True})
    assert result.returncode != 0
    assert "spec.revoked" in result.stderr
    assert "revocationReason is required" in result.stderr


@pytest.mark.parametrize("change", IMMUTABLE_CHANGES.values(), ids=list(IMMUTABLE_CHANGES))
def test_changing_the_rest_of_the_spec_is_rejected(
    plane: ClusterAccess, registered: str, change: dict[str, Any]
) -> None:
    result = _patch_spec(plane, registered, change)
    assert result.returncode != 0, "the apiserver accepted a change of an immutable field"
    assert IMMUTABLE_MESSAGE in result.stderr
    assert f"spec.{next(iter(change))}" in result.stderr


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@ROUND_TRIP
@given(spec=model_version_specs)
def test_model_version_round_trips_unchanged(
    custom_objects: Any, namespace: str, spec: dict[str, Any]
) -> None:
    parsed = ModelVersionSpec.model_validate(spec)
    wire = parsed.to_wire()
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelVersion",
        "metadata": {"name": _name("mv")},
        "spec": wire,
    }
    custom_objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelversions", body)
    stored = custom_objects.get_namespaced_custom_object(
        GROUP, VERSION, namespace, "modelversions", body["metadata"]["name"]
    )
    assert _normalise(stored["spec"]) == _normalise(wire)
    assert ModelVersionSpec.model_validate(stored["spec"]) == parsed


@ROUND_TRIP
@given(spec=model_deployment_specs, status=model_deployment_statuses)
def test_model_deployment_round_trips_unchanged(
    custom_objects: Any, namespace: str, spec: dict[str, Any], status: dict[str, Any]
) -> None:
    parsed_spec = ModelDeploymentSpec.model_validate(spec)
    parsed_status = ModelDeploymentStatus.model_validate(status)
    name = _name("mdep")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": parsed_spec.to_wire(),
    }
    created = custom_objects.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", body
    )
    # Status goes through its subresource, as the operator (and the CLI's requests) write it.
    custom_objects.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "modeldeployments", name, {**created, "status": parsed_status.to_wire()}
    )
    stored = custom_objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", name)
    assert _normalise(stored["spec"]) == _normalise(parsed_spec.to_wire())
    assert _normalise(stored["status"]) == _normalise(parsed_status.to_wire())
    assert ModelDeploymentSpec.model_validate(stored["spec"]) == parsed_spec
    assert ModelDeploymentStatus.model_validate(stored["status"]) == parsed_status
