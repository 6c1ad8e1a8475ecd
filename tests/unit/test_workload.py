"""The serving workload: built from the typed pod template only, within Pod Security `restricted` for
every template the allowlist admits, and refused (defence in depth) for one it would not admit."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from modelledger.api import ModelDeployment, ModelDeploymentSpec, ModelVersion
from modelledger.api.podtemplate import PodTemplate
from modelledger.core.workload import Owner, TemplateRefused, allowed_template, manifests
from tests.malformed_cases import MODEL_DEPLOYMENT, MODEL_VERSION, changed, pod_templates

OWNER = Owner("fraud-detector", "ml-prod", "uid-1")
VERSION = ModelVersion.model_validate(MODEL_VERSION)
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim"}
RESTRICTED_VOLUMES |= {"projected", "secret"}


def _pod(template: dict[str, Any]) -> dict[str, Any]:
    spec = ModelDeployment.model_validate(changed(MODEL_DEPLOYMENT, spec__template=template)).spec
    deployment, _ = manifests(OWNER, spec, 1, VERSION)
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What Pod Security `restricted` (and so `baseline`) would refuse in a PodSpec, as of Kubernetes 1.34."""
    found = [key for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    context = pod.get("securityContext") or {}
    found += ["sysctls"] if context.get("sysctls") else []
    for volume in pod.get("volumes") or []:
        found += [f"volume {key}" for key in volume if key != "name" and key not in RESTRICTED_VOLUMES]
    containers = (
        pod["containers"] + (pod.get("initContainers") or []) + (pod.get("ephemeralContainers") or [])
    )
    for container in containers:
        security = container.get("securityContext") or {}
        capabilities = security.get("capabilities") or {}
        checks = {
            "privileged": not security.get("privileged"),
            "allowPrivilegeEscalation": security.get("allowPrivilegeEscalation") is False,
            "capabilities.drop": "ALL" in (capabilities.get("drop") or []),
            "capabilities.add": set(capabilities.get("add") or []) <= {"NET_BIND_SERVICE"},
            "runAsNonRoot": security.get("runAsNonRoot", context.get("runAsNonRoot")) is True,
            "runAsUser": security.get("runAsUser", context.get("runAsUser")) != 0,
            "seccompProfile": (security.get("seccompProfile") or context.get("seccompProfile") or {}).get(
                "type"
            )
            in ("RuntimeDefault", "Localhost"),
            "procMount": security.get("procMount") in (None, "Default"),
            "hostPort": not any(port.get("hostPort") for port in container.get("ports") or []),
        }
        found += [f"{container['name']}: {name}" for name, ok in checks.items() if not ok]
    return found


def test_the_example_pod_is_restricted() -> None:
    pod = _pod(MODEL_DEPLOYMENT["spec"]["template"])
    assert restricted_violations(pod) == []
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["containers"][0]["resources"]["requests"] == {"cpu": "500m", "memory": "1Gi"}


@settings(max_examples=100, deadline=None)
@given(pod_templates)
def test_every_admitted_template_gives_a_restricted_pod(template: dict[str, Any]) -> None:
    assert restricted_violations(_pod(template)) == []


def test_the_template_tightens_and_goes_where_it_belongs() -> None:
    pod = _pod(
        {
            "securityContext": {
                "runAsUser": 1000,
                "readOnlyRootFilesystem": True,
                "capabilities": {"drop": ["NET_RAW"], "add": ["NET_BIND_SERVICE"]},
            },
            "podSecurityContext": {
                "fsGroup": 2000,
                "seccompProfile": {"type": "Localhost", "localhostProfile": "m.json"},
            },
            "env": [{"name": "THRESHOLD", "value": "0.9"}, {"name": "EXTRA", "value": "1"}],
            "volumes": [{"name": "cache", "emptyDir": {}}],
            "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": "http"}},
            "imagePullPolicy": "IfNotPresent",
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
            "priorityClassName": "models",
            "automountServiceAccountToken": False,
        }
    )
    container = pod["containers"][0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL", "NET_RAW"], "add": ["NET_BIND_SERVICE"]},
    }, "the pod's Localhost seccomp profile is not overridden by the default"
    assert pod["securityContext"] == {
        "fsGroup": 2000,
        "seccompProfile": {"type": "Localhost", "localhostProfile": "m.json"},
    }
    env = {e["name"]: e["value"] for e in container["env"]}
    assert (env["THRESHOLD"], env["EXTRA"], env["MODEL_DIGEST"]) == ("0.9", "1", VERSION.spec.artifact.digest)
    assert container["volumeMounts"] == [{"name": "cache", "mountPath": "/cache"}]
    assert container["readinessProbe"] == {"httpGet": {"path": "/ready", "port": "http"}}
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert pod["volumes"] == [{"name": "cache", "emptyDir": {}}]
    assert (pod["priorityClassName"], pod["automountServiceAccountToken"]) == ("models", False)
    assert set(pod) == {
        "securityContext",
        "volumes",
        "tolerations",
        "priorityClassName",
        "automountServiceAccountToken",
        "containers",
    }
    assert restricted_violations(pod) == []


@pytest.mark.parametrize(
    "template",
    [
        PodTemplate.model_construct(host_network=True),
        PodTemplate.model_construct(service_account_name="admin"),
        {"hostPID": True},
        {"serviceAccountName": "admin"},
        {"resources": {"limits": {"cpu": "1"}}, "schedulerName": "mine"},
        {"securityContext": {"privileged": True}},
        {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
        {"env": [{"name": "MODEL_URI", "value": "s3://elsewhere"}]},
    ],
    ids=repr,
)
def test_a_template_the_allowlist_refuses_never_becomes_a_pod(template: Any) -> None:
    spec = ModelDeploymentSpec.model_construct(
        **{**ModelDeploymentSpec.model_validate(MODEL_DEPLOYMENT["spec"]).__dict__, "template": template}
    )
    with pytest.raises(TemplateRefused, match=r"spec\.template\."):
        manifests(OWNER, spec, 1, VERSION)
    with pytest.raises(TemplateRefused):
        allowed_template(template)


def test_an_image_not_pinned_by_digest_never_becomes_a_pod() -> None:
    serving = VERSION.spec.serving.model_copy(update={"image": "ghcr.io/acme/fraud-server:latest"})
    version = VERSION.model_copy(update={"spec": VERSION.spec.model_copy(update={"serving": serving})})
    spec = ModelDeploymentSpec.model_validate(MODEL_DEPLOYMENT["spec"])
    with pytest.raises(TemplateRefused, match=r"spec\.serving\.image"):
        manifests(OWNER, spec, 1, version)


def test_the_restricted_check_itself_sees_violations() -> None:
    pod = _pod({})
    pod["hostPID"] = True
    pod["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
    pod["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    assert restricted_violations(pod) == ["hostPID", "volume hostPath", "model: capabilities.add"]


def test_pods_carry_the_scrape_labels_and_the_selector_does_not_change() -> None:
    spec = ModelDeployment.model_validate(MODEL_DEPLOYMENT).spec
    deployment, service = manifests(OWNER, spec, 3, VERSION)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert (pod_labels["model"], pod_labels["version"], pod_labels["deployment"]) == (
        VERSION.spec.model_name,
        VERSION.spec.version,
        "fraud-detector",
    )
    assert pod_labels["modelledger.io/version"] == VERSION.metadata["name"]
    assert pod_labels["modelledger.io/revision"] == "3"
    # The selector (immutable on a Deployment) is what it was before the scrape labels.
    expected = {"app.kubernetes.io/managed-by": "modelledger", "modelledger.io/deployment": "fraud-detector"}
    assert deployment["spec"]["selector"] == {"matchLabels": expected}
    assert service["spec"]["selector"] == expected
    assert set(pod_labels.items()) >= set(expected.items())
    # Only the pods carry them: the Deployment's and Service's own labels are unchanged.
    assert "version" not in deployment["metadata"]["labels"]
    assert "model" not in service["metadata"]["labels"]


def test_a_version_that_is_no_label_value_is_cleaned_the_same_way_for_pods_and_rules() -> None:
    from modelledger.core.rules import template_values
    from modelledger.core.workload import scrape_labels

    odd = ModelVersion.model_validate(changed(MODEL_VERSION, spec__version="1.4.0+build/7"))
    assert scrape_labels("fraud-detector", odd)["version"] == "1.4.0-build-7"
    values = template_values("ml-prod", "fraud-detector", "fraud-detector", "fraud-detector-1-4-0", odd)
    assert values == {
        "namespace": "ml-prod",
        "deployment": "fraud-detector",
        "model": "fraud-detector",
        "version": "1.4.0-build-7",
        "versionName": "fraud-detector-1-4-0",
    }
    # Without the ModelVersion the semantic version is unknown: no value, so a rule using it is Error.
    assert "version" not in template_values("ml-prod", "d", "m", "mv", None)
