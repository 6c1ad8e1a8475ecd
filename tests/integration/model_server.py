"""A stand-in model server for the scrape contract: exports what a real one does, no labels of its own.

There is no kubelet on the local plane (kwok's pods run nothing), so a Prometheus cannot scrape the pods
themselves. What stands in for them: this exporter plays the pod's container, and its target carries the
`__meta_kubernetes_*` labels that Kubernetes service discovery would give that pod (taken from the pod
object, or from the pod template the operator builds), so the PodMonitor's relabelings, copied verbatim
into the scrape config (`core.podmonitor.scrape_config`), do the labelling exactly as they would.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from modelledger.core import podmonitor
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer

TICK = 0.1  # seconds between increments: rates are per second


@dataclass
class Load:
    """What the server sees per second, and what it reports; changed by the test at any time."""

    requests: float = 20.0
    error_fraction: float = 0.0
    latency: float = 0.06  # every request takes this long (seconds)
    approved: Mapping[str, float] = field(default_factory=lambda: {"a": 0.8, "b": 0.75})
    drift_psi: float = 0.05
    inflight: float = 2.0


class ModelServer:
    """Counters, a histogram and gauges as a model server exports them, advanced by a thread."""

    def __init__(self, *, hostile: bool = False) -> None:
        self.load = Load()
        self.registry = CollectorRegistry()
        self.requests = Counter("model_requests", "requests served", registry=self.registry)
        self.errors = Counter("model_errors", "requests failed", registry=self.registry)
        self.duration = Histogram("model_request_duration_seconds", "request latency", registry=self.registry)
        self.predictions = Counter(
            "model_predictions",
            "predictions by group and outcome",
            ("group", "outcome"),
            registry=self.registry,
        )
        self.psi = Gauge(
            "model_feature_drift_psi", "population stability index", ("feature",), registry=self.registry
        )
        self.inflight = Gauge("model_inflight_requests", "requests in flight", registry=self.registry)
        if hostile:
            # A pod claiming another namespace's (and deployment's) series: honorLabels false must refuse.
            claim = Gauge(
                "hostile_series", "claims labels", ("namespace", "deployment"), registry=self.registry
            )
            claim.labels(namespace="victim", deployment="someone-else").set(1)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self._server, self._thread = start_http_server(self.port, addr="127.0.0.1", registry=self.registry)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._run, daemon=True)
        self._ticker.start()

    def _run(self) -> None:
        while not self._stop.wait(TICK):
            load = self.load
            count = load.requests * TICK
            self.requests.inc(count)
            self.errors.inc(count * load.error_fraction)
            for _ in range(max(1, int(count))):
                self.duration.observe(load.latency)
            for group, approved in load.approved.items():
                self.predictions.labels(group=group, outcome="approved").inc(count * approved)
                self.predictions.labels(group=group, outcome="denied").inc(count * (1 - approved))
            self.psi.labels(feature="amount").set(load.drift_psi / 2)
            self.psi.labels(feature="merchant").set(load.drift_psi)
            self.inflight.set(load.inflight)

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def discovery_labels(namespace: str, pod_name: str, pod_labels: Mapping[str, str]) -> dict[str, str]:
    """The labels Kubernetes pod service discovery gives a pod's target (those the relabelings read)."""
    labels = {podmonitor.NAMESPACE_META: namespace, "__meta_kubernetes_pod_name": pod_name}
    for key, value in pod_labels.items():
        labels[podmonitor.pod_label_meta(key)] = value
        labels[podmonitor.pod_label_meta(key).replace("_label_", "_labelpresent_", 1)] = "true"
    return labels


def serve_as_pod(
    prometheus: PrometheusServer,
    job: str,
    server: ModelServer,
    namespace: str,
    pod_name: str,
    pod_labels: Mapping[str, str],
    target: str | None = None,
) -> str:
    """Point the PodMonitor job's target `target` at `server`, as the pod `pod_name` with `pod_labels`."""
    name = target or f"pod-{uuid.uuid4().hex[:8]}"
    prometheus.add_target(name, server.address, discovery_labels(namespace, pod_name, pod_labels), job=job)
    return name
