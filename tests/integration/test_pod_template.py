"""The pod template allowlist on the REAL apiserver, whatever the client: every escalation field is
rejected naming it through `kubectl apply --validate=false`, server-side apply and the bare API (no
field validation, where an undeclared field would only be pruned); and the serving pod the operator
builds from an allowed template passes Pod Security `restricted` admission."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest
import yaml

from modelledger.api import GROUP, VERSION, ModelDeployment, ModelVersion
from modelledger.core.workload import Owner, manifests
from modelledger.testing.access import ClusterAccess
from tests.malformed_cases import MALFORMED, MODEL_DEPLOYMENT, MODEL_VERSION, Malformed, changed

pytestmark = pytest.mark.integration

ESCALATIONS = [case for case in MALFORMED if case.field.startswith("spec.template.")]


@pytest.fixture
def custom_objects(api_client: kubernetes.client.ApiClient, installed_crds: object) -> Any:
    return kubernetes.client.CustomObjectsApi(api_client)


def test_the_table_covers_the_escalations() -> None:
    fields = {case.field for case in ESCALATIONS}
    for field in (
        "spec.template.serviceAccountName",
        "spec.template.hostPID",
        "spec.template.hostNetwork",
        "spec.template.initContainers",
        "spec.template.volumes[0].hostPath",
        "spec.template.securityContext.privileged",
        "spec.template.automountServiceAccountToken",
    ):
        assert field in fields


@pytest.mark.parametrize("case", ESCALATIONS, ids=lambda case: case.id)
@pytest.mark.parametrize(
    "client",
    [("apply", "--validate=false"), ("apply", "--server-side", "--field-manager=tenant")],
    ids=["validate-false", "server-side"],
)
def test_escalation_is_rejected_naming_the_field_whatever_the_client(
    plane: ClusterAccess, installed_crds: Any, namespace: str, case: Malformed, client: tuple[str, ...]
) -> None:
    result = plane.kubectl(*client, "-n", namespace, "-f", "-", input=json.dumps(case.manifest), check=False)
    assert result.returncode != 0, f"the apiserver accepted {case.id} through kubectl {' '.join(client)}"
    assert case.field in result.stderr, result.stderr
    assert plane.kubectl("get", "mdep", "-n", namespace, "-o", "name").stdout == ""


@pytest.mark.parametrize("case", ESCALATIONS, ids=lambda case: case.id)
def test_escalation_is_rejected_by_the_api_without_field_validation(
    custom_objects: Any, namespace: str, case: Malformed
) -> None:
    with pytest.raises(kubernetes.client.ApiException) as raised:
        custom_objects.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "modeldeployments", case.manifest
        )
    assert raised.value.status == 422
    assert case.field in str(raised.value.body)


RICH_TEMPLATE: dict[str, Any] = {
    "resources": {"limits": {"memory": "2Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}},
    "env": [
        {"name": "THRESHOLD", "value": "0.8"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ],
    "envFrom": [{"configMapRef": {"name": "settings", "optional": True}}],
    "volumes": [
        {"name": "config", "configMap": {"name": "settings", "optional": True}},
        {"name": "scratch", "emptyDir": {"sizeLimit": "1Gi"}},
        {
            "name": "info",
            "projected": {
                "sources": [
                    {
                        "downwardAPI": {
                            "items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]
                        }
                    }
                ]
            },
        },
    ],
    "volumeMounts": [
        {"name": "config", "mountPath": "/etc/model", "readOnly": True},
        {"name": "scratch", "mountPath": "/tmp"},
    ],
    "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5},
    "livenessProbe": {"tcpSocket": {"port": 8080}},
    "securityContext": {
        "runAsUser": 1000,
        "readOnlyRootFilesystem": True,
        "capabilities": {"add": ["NET_BIND_SERVICE"]},
    },
    "podSecurityContext": {"runAsNonRoot": True, "fsGroup": 2000},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
    ],
    "automountServiceAccountToken": False,
}


@pytest.mark.parametrize("template", [{}, RICH_TEMPLATE], ids=["no-template", "rich-template"])
def test_the_serving_pod_passes_pod_security_restricted(
    plane: ClusterAccess, installed_crds: Any, namespace: str, template: dict[str, Any]
) -> None:
    plane.kubectl(
        "label", "namespace", namespace,
        "pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest",
    )  # fmt: skip
    deployment_body = changed(MODEL_DEPLOYMENT, spec__template=template)
    # The allowed template is admitted as the operator will read it...
    plane.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(deployment_body))
    stored = json.loads(plane.kubectl("get", "mdep", "fraud-detector", "-n", namespace, "-o", "json").stdout)
    spec = ModelDeployment.model_validate(stored).spec
    deployment, _ = manifests(
        Owner("fraud-detector", namespace, "uid-1"), spec, 1, ModelVersion.model_validate(MODEL_VERSION)
    )
    # ...its Deployment is valid, and a pod made from it passes restricted admission (PodSecurity
    # enforces on pods, so the pod is what is checked; dry run, no pod is created).
    applied = plane.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=json.dumps(deployment), check=False
    )
    assert applied.returncode == 0, applied.stderr
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "serving", "labels": deployment["spec"]["template"]["metadata"]["labels"]},
        "spec": deployment["spec"]["template"]["spec"],
    }
    created = plane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(pod), check=False
    )
    assert created.returncode == 0, created.stderr
    assert "violate" not in created.stderr, created.stderr
    # The check is live: the same pod without the operator's security context is refused.
    bare = json.loads(json.dumps(pod))
    del bare["spec"]["containers"][0]["securityContext"]
    refused = plane.kubectl(
        "create", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(bare), check=False
    )
    assert refused.returncode != 0
    assert "restricted" in refused.stderr
