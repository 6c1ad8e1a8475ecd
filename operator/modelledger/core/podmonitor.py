"""The PodMonitor of a ModelDeployment (Prometheus Operator), as a plain manifest. Pure: no I/O.

The scrape contract (docs/rules.md): serving pods carry the labels `model`, `version` (semantic) and
`deployment` (`workload.scrape_labels`); the PodMonitor copies them onto every series it scrapes, and
takes `namespace` from Kubernetes service discovery (`__meta_kubernetes_namespace`), never from the pod.
With `honorLabels: false` these target labels win over the scraped ones: a pod that exports its own
`namespace="team-b"` (or `deployment`, `model`, `version`) gets it renamed to `exported_namespace`, so it
cannot put series into another namespace's rules.

Opt-in: `modelledger run --pod-monitors` for the operator, and the annotation
`modelledger.io/pod-monitor: "true"` on each ModelDeployment that wants one.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from modelledger.core.workload import (
    MANAGED_BY,
    PORT_NAME,
    SCRAPE_DEPLOYMENT,
    SCRAPE_MODEL,
    SCRAPE_VERSION,
    Owner,
    selector,
)

GROUP = "monitoring.coreos.com"
VERSION = "v1"
PLURAL = "podmonitors"
KIND = "PodMonitor"
CRD_NAME = f"{PLURAL}.{GROUP}"
ANNOTATION_OPT_IN = "modelledger.io/pod-monitor"
ANNOTATION_HASH = "modelledger.io/pod-monitor-hash"
METRICS_PATH = "/metrics"
NAMESPACE_META = "__meta_kubernetes_namespace"
_TRUE = frozenset({"true", "yes", "on", "1"})


def opted_in(annotations: Mapping[str, Any] | None) -> bool:
    """Whether the ModelDeployment asks for a PodMonitor (`modelledger.io/pod-monitor: "true"`)."""
    value = (annotations or {}).get(ANNOTATION_OPT_IN)
    return isinstance(value, str) and value.strip().lower() in _TRUE


def pod_label_meta(label: str) -> str:
    """The service-discovery label that holds a pod label's value (Prometheus sanitises the name)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def relabelings() -> list[dict[str, Any]]:
    """Pod labels → `deployment`, `model`, `version`; the namespace from discovery, never from the pod."""
    mapped = [
        {"sourceLabels": [pod_label_meta(label)], "targetLabel": label, "action": "replace"}
        for label in (SCRAPE_DEPLOYMENT, SCRAPE_MODEL, SCRAPE_VERSION)
    ]
    return [*mapped, {"sourceLabels": [NAMESPACE_META], "targetLabel": "namespace", "action": "replace"}]


def manifest(owner: Owner) -> dict[str, Any]:
    """The PodMonitor selecting the serving pods of the ModelDeployment `owner` (same name, namespace)."""
    body: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {
            "name": owner.name,
            "namespace": owner.namespace,
            "labels": {"app.kubernetes.io/managed-by": MANAGED_BY, "app.kubernetes.io/instance": owner.name},
            "ownerReferences": [owner.reference()],
        },
        "spec": {
            "selector": {"matchLabels": selector(owner.name)},
            "namespaceSelector": {"matchNames": [owner.namespace]},
            "podMetricsEndpoints": [
                {
                    "port": PORT_NAME,
                    "path": METRICS_PATH,
                    "honorLabels": False,
                    "relabelings": relabelings(),
                }
            ],
        },
    }
    digest = json.dumps({"spec": body["spec"], "owner": body["metadata"]["ownerReferences"]}, sort_keys=True)
    body["metadata"]["annotations"] = {ANNOTATION_HASH: hashlib.sha256(digest.encode()).hexdigest()[:32]}
    return body


def scrape_config(job: str, pod_monitor: Mapping[str, Any]) -> dict[str, Any]:
    """The Prometheus scrape config equivalent of a PodMonitor's endpoint, for a Prometheus that reads
    targets from elsewhere than Kubernetes (the tests: file_sd entries carrying `__meta_kubernetes_*`
    labels): the same `honor_labels` and relabelings, in Prometheus's own spelling."""
    endpoint = pod_monitor["spec"]["podMetricsEndpoints"][0]
    return {
        "job_name": job,
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "metrics_path": endpoint.get("path", METRICS_PATH),
        "relabel_configs": [
            {
                "source_labels": list(step["sourceLabels"]),
                "target_label": step["targetLabel"],
                "action": step.get("action", "replace"),
            }
            for step in endpoint.get("relabelings", [])
        ],
    }
