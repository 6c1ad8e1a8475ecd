"""The serving workload of a revision: a Deployment and a Service, as plain manifests.

The pod runs the ModelVersion's pinned serving image with its args and env, plus MODEL_* variables
naming the artifact and every pipeline component by URI and digest, merged with the ModelDeployment's
`spec.template` overrides. Everything derives from the serving revision, so re-deriving it after a crash
gives the same manifest, and its hash tells whether the cluster already has it.

The pod stays within Pod Security `restricted` by construction: the model container gets
allowPrivilegeEscalation false, runAsNonRoot true, every capability dropped and the RuntimeDefault seccomp
profile, and the template (allowlisted at admission, see api/podtemplate.py) can only tighten that. The
template is validated again here and the pod is built from the typed model's fields only, so a template
that did not pass the allowlist (built in Python without validation, or stored before the allowlist)
never reaches a pod: `manifests` raises TemplateRefused instead.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from modelledger.api import ModelDeploymentSpec, ModelVersion, PinnedComponent, PinnedPipeline
from modelledger.api.common import API_VERSION
from modelledger.api.modelversion import PINNED_IMAGE_PATTERN
from modelledger.api.podtemplate import CONTAINER_FIELDS, PodTemplate

MANAGED_BY = "modelledger"
LABEL_DEPLOYMENT = "modelledger.io/deployment"
LABEL_VERSION = "modelledger.io/version"
LABEL_REVISION = "modelledger.io/revision"
# The scrape contract (docs/rules.md): serving pods carry these plain labels, which a PodMonitor
# (core/podmonitor.py) copies onto every series scraped from them, so rules can filter on them.
SCRAPE_MODEL = "model"  # spec.modelName of the ModelVersion
SCRAPE_VERSION = "version"  # spec.version of the ModelVersion: the semantic version, e.g. 1.4.0
SCRAPE_DEPLOYMENT = "deployment"  # the ModelDeployment's name
ANNOTATION_HASH = "modelledger.io/workload-hash"
CONTAINER = "model"
PORT_NAME = "http"
# What Pod Security `restricted` requires of every container, set unless the template tightens it.
RESTRICTED_CONTAINER_SECURITY: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
RUNTIME_DEFAULT_SECCOMP = {"type": "RuntimeDefault"}
# The template's pod-level fields, by their name in the PodSpec.
_POD_FIELDS = {
    "nodeSelector": "nodeSelector",
    "tolerations": "tolerations",
    "affinity": "affinity",
    "topologySpreadConstraints": "topologySpreadConstraints",
    "priorityClassName": "priorityClassName",
    "volumes": "volumes",
    "automountServiceAccountToken": "automountServiceAccountToken",
    "podSecurityContext": "securityContext",
}


class TemplateRefused(ValueError):
    """The pod would hold what admission refuses (a template field outside the allowlist, an image not
    pinned by digest): no workload is built."""


def selector(name: str) -> dict[str, str]:
    """Labels that select a deployment's pods; constant across revisions (selectors are immutable)."""
    return {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_DEPLOYMENT: name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector(name).items()))


def scrape_labels(deployment: str, version: ModelVersion) -> dict[str, str]:
    """The pod labels of the scrape contract: `model`, `version` (semantic) and `deployment`.

    Pod template labels only, never the selector: a Deployment's selector is immutable.
    """
    return {
        SCRAPE_MODEL: _label_value(version.spec.model_name),
        SCRAPE_VERSION: _label_value(version.spec.version),
        SCRAPE_DEPLOYMENT: deployment,
    }


def pinned_pipeline(version: ModelVersion) -> PinnedPipeline:
    serving = version.spec.serving
    return PinnedPipeline(
        artifact_digest=version.spec.artifact.digest,
        image=serving.image,
        components=[PinnedComponent(name=c.name, digest=c.digest) for c in serving.components],
        version_uid=str(version.metadata.get("uid") or "") or None,
    )


def _env_name(component: str) -> str:
    return re.sub(r"[^A-Z0-9]", "_", component.upper())


def model_env(version: ModelVersion) -> list[dict[str, str]]:
    spec = version.spec
    env = [{"name": e.name, "value": e.value} for e in spec.serving.env]
    env += [
        {"name": "MODEL_NAME", "value": spec.model_name},
        {"name": "MODEL_VERSION", "value": spec.version},
        {"name": "MODEL_URI", "value": spec.artifact.uri},
        {"name": "MODEL_DIGEST", "value": spec.artifact.digest},
    ]
    for component in spec.serving.components:
        prefix = f"MODEL_COMPONENT_{_env_name(component.name)}"
        env += [
            {"name": f"{prefix}_URI", "value": component.uri},
            {"name": f"{prefix}_DIGEST", "value": component.digest},
        ]
    return env


def _merge_env(base: list[dict[str, Any]], overrides: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Override entries replace same-named ones in place; new ones are appended."""
    by_name = {e["name"]: e for e in overrides if "name" in e}
    merged = [by_name.pop(e["name"], e) for e in base]
    return merged + [e for e in overrides if e.get("name") in by_name]


def allowed_template(template: object) -> PodTemplate:
    """The template validated again against the allowlist, or TemplateRefused naming what it refuses.

    Admission already refused anything else; this is defence in depth against a PodTemplate built
    without validation (`model_construct`) or a plain dict in its place.
    """
    if isinstance(template, PodTemplate):
        raw: Any = template.model_dump(mode="json", by_alias=True, exclude_none=True, warnings=False)
    elif isinstance(template, dict):
        raw = template
        known = {field.alias or name for name, field in PodTemplate.model_fields.items()}
        if unknown := sorted(str(key) for key in raw if key not in known):
            raise TemplateRefused(f"spec.template.{unknown[0]}: not a field of the pod template allowlist")
    else:
        raise TemplateRefused(f"spec.template: expected the pod template, not {type(template).__name__}")
    try:
        return PodTemplate.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(step) for step in ("spec", "template", *first["loc"]))
        raise TemplateRefused(f"{where}: {first['msg']}") from error


def container_security(template: PodTemplate) -> dict[str, Any]:
    """The model container's security context: restricted's requirements, tightened by the template."""
    given = template.security_context.to_wire() if template.security_context else {}
    context = {**RESTRICTED_CONTAINER_SECURITY, **given}
    capabilities = given.get("capabilities") or {}
    dropped = [name for name in capabilities.get("drop", []) if name != "ALL"]
    context["capabilities"] = {**capabilities, "drop": ["ALL", *dropped]}
    pod = template.pod_security_context
    if "seccompProfile" not in context and not (pod and pod.seccomp_profile):
        context["seccompProfile"] = dict(RUNTIME_DEFAULT_SECCOMP)
    return context


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the workload (for ownerReferences)."""

    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        """The controlling owner reference to this ModelDeployment (deleting it deletes the object)."""
        return {
            "apiVersion": API_VERSION,
            "kind": "ModelDeployment",
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


def manifests(
    owner: Owner, spec: ModelDeploymentSpec, revision: int, version: ModelVersion
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and Service that serve `version` as `revision` of the ModelDeployment `owner`."""
    serving = version.spec.serving
    if not re.fullmatch(PINNED_IMAGE_PATTERN, serving.image):
        raise TemplateRefused(f"spec.serving.image: {serving.image!r} is not pinned by an @sha256: digest")
    template = allowed_template(spec.template)
    overrides = template.to_wire()
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": serving.image,
        "args": list(serving.args),
        "ports": [{"name": PORT_NAME, "containerPort": serving.port, "protocol": "TCP"}],
        "env": _merge_env(model_env(version), list(overrides.get("env", []))),
    }
    if serving.command is not None:
        container["command"] = list(serving.command)
    for key in CONTAINER_FIELDS:
        if key in overrides and key not in ("env", "securityContext"):
            container[key] = overrides[key]
    container["securityContext"] = container_security(template)
    pod_spec: dict[str, Any] = {
        pod_key: overrides[key] for key, pod_key in _POD_FIELDS.items() if key in overrides
    }
    version_labels = {LABEL_VERSION: version.metadata.get("name", ""), LABEL_REVISION: str(revision)}
    labels = {
        "app.kubernetes.io/name": version.spec.model_name,
        "app.kubernetes.io/instance": owner.name,
        "app.kubernetes.io/version": _label_value(version.spec.version),
        "app.kubernetes.io/component": "model-server",
        **selector(owner.name),
    }
    metadata = {
        "name": owner.name,
        "namespace": owner.namespace,
        "labels": {**labels, **version_labels},
        "ownerReferences": [owner.reference()],
    }
    deployment: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector(owner.name)},
            "template": {
                "metadata": {
                    "labels": {**labels, **version_labels, **scrape_labels(owner.name, version)},
                    "annotations": {"modelledger.io/artifact-digest": version.spec.artifact.digest},
                },
                "spec": {**pod_spec, "containers": [container]},
            },
        },
    }
    service: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {**metadata, "labels": labels},
        "spec": {
            "selector": selector(owner.name),
            "ports": [{"name": PORT_NAME, "port": serving.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
    for manifest in (deployment, service):
        manifest["metadata"]["annotations"] = {ANNOTATION_HASH: manifest_hash(manifest)}
    return deployment, service


def manifest_hash(manifest: dict[str, Any]) -> str:
    """Fingerprint of what we apply: equal hashes mean the cluster already has this manifest."""
    body = {k: v for k, v in manifest.items() if k != "metadata"}
    body["labels"] = manifest["metadata"].get("labels", {})
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def _label_value(text: str) -> str:
    """A label value: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", text)[:63]
    return cleaned.strip("-_.")


@dataclass(frozen=True)
class WorkloadState:
    """What the cluster's Deployment says about the rollout of a revision."""

    revision: int | None
    replicas: int
    generation: int
    observed_generation: int
    updated: int
    available: int
    total: int

    @classmethod
    def from_deployment(cls, body: dict[str, Any]) -> WorkloadState:
        labels = ((body.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        status = body.get("status") or {}
        revision = labels.get(LABEL_REVISION)
        return cls(
            revision=int(revision) if revision and revision.isdigit() else None,
            replicas=int((body.get("spec") or {}).get("replicas", 1)),
            generation=int(body.get("metadata", {}).get("generation", 0)),
            observed_generation=int(status.get("observedGeneration", 0)),
            updated=int(status.get("updatedReplicas", 0)),
            available=int(status.get("availableReplicas", 0)),
            total=int(status.get("replicas", 0)),
        )

    def rolled_out(self, revision: int) -> bool:
        """The revision runs on every replica, all available, and no old pod is left."""
        return (
            self.revision == revision
            and self.observed_generation >= self.generation
            and self.updated == self.replicas
            and self.available == self.replicas
            and self.total == self.replicas
        )
