"""The serving workload of a revision: a Deployment and a Service, as plain manifests.

The pod runs the ModelVersion's pinned serving image with its args and env, plus MODEL_* variables
naming the artifact and every pipeline component by URI and digest, merged with the ModelDeployment's
`spec.template` overrides. Everything derives from the serving revision, so re-deriving it after a crash
gives the same manifest, and its hash tells whether the cluster already has it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from modelledger.api import ModelDeploymentSpec, ModelVersion, PinnedComponent, PinnedPipeline
from modelledger.api.common import API_VERSION

MANAGED_BY = "modelledger"
LABEL_DEPLOYMENT = "modelledger.io/deployment"
LABEL_VERSION = "modelledger.io/version"
LABEL_REVISION = "modelledger.io/revision"
ANNOTATION_HASH = "modelledger.io/workload-hash"
CONTAINER = "model"
PORT_NAME = "http"
# Overrides that belong to the model container rather than to the pod.
_CONTAINER_OVERRIDES = (
    "resources",
    "env",
    "envFrom",
    "volumeMounts",
    "securityContext",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "imagePullPolicy",
)


def selector(name: str) -> dict[str, str]:
    """Labels that select a deployment's pods; constant across revisions (selectors are immutable)."""
    return {"app.kubernetes.io/managed-by": MANAGED_BY, LABEL_DEPLOYMENT: name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(selector(name).items()))


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


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns the workload (for ownerReferences)."""

    name: str
    namespace: str
    uid: str


def manifests(
    owner: Owner, spec: ModelDeploymentSpec, revision: int, version: ModelVersion
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment and Service that serve `version` as `revision` of the ModelDeployment `owner`."""
    serving = version.spec.serving
    overrides = dict(spec.template)
    pod_metadata = overrides.pop("metadata", {}) or {}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": serving.image,
        "args": list(serving.args),
        "ports": [{"name": PORT_NAME, "containerPort": serving.port, "protocol": "TCP"}],
        "env": _merge_env(model_env(version), list(overrides.pop("env", []) or [])),
    }
    if serving.command is not None:
        container["command"] = list(serving.command)
    for key in _CONTAINER_OVERRIDES:
        if key in overrides:
            container[key] = overrides.pop(key)
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
        "ownerReferences": [
            {
                "apiVersion": API_VERSION,
                "kind": "ModelDeployment",
                "name": owner.name,
                "uid": owner.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
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
                    "labels": {**(pod_metadata.get("labels") or {}), **labels, **version_labels},
                    "annotations": {
                        **(pod_metadata.get("annotations") or {}),
                        "modelledger.io/artifact-digest": version.spec.artifact.digest,
                    },
                },
                "spec": {**overrides, "containers": [container]},
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
