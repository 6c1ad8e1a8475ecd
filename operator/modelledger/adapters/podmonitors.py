"""PodMonitors (Prometheus Operator) on the cluster: server-side apply, removal, and what was done.

The state lives in one `PodMonitors` object in the operator's config (no module globals): whether the
feature is on (`modelledger run --pod-monitors`), whether the cluster serves the PodMonitor API, and the
hash last applied per ModelDeployment, so a deployment loop running every second makes no API call
while nothing changed (it applies again every `reapply_after` seconds, to restore a deleted object).

Without the CRD `podmonitors.monitoring.coreos.com` the apiserver answers 404 to the apply: that is
logged once and the operator carries on; the API is asked again after `recheck_after` seconds, so a
Prometheus Operator installed later is picked up without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import kubernetes
import structlog

from modelledger.adapters import kube
from modelledger.core import podmonitor

log = structlog.get_logger("modelledger.podmonitors")

Key = tuple[str, str]


@dataclass
class PodMonitors:
    """PodMonitors the operator manages: on or off, the API's presence, and what it applied."""

    enabled: bool = False
    recheck_after: float = 300.0
    reapply_after: float = 600.0
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    applied: dict[Key, tuple[str, float]] = field(default_factory=dict, repr=False)
    """The hash applied per (namespace, deployment), and when; "" for "none of ours exists"."""
    paused_until: float | None = field(default=None, repr=False)
    """While the PodMonitor API is missing (404) or refused (403): when to ask again."""
    refusal: int | None = field(default=None, repr=False)
    """The status of the refusal being waited out (404 or 403): each is logged once."""

    def paused(self) -> bool:
        return self.paused_until is not None and self.clock() < self.paused_until

    async def ensure(self, manifest: dict[str, Any]) -> bool:
        """Apply `manifest` unless it was applied recently; False when the API is missing or refused."""
        meta = manifest["metadata"]
        key = (meta["namespace"], meta["name"])
        digest = meta["annotations"][podmonitor.ANNOTATION_HASH]
        known = self.applied.get(key)
        if known is not None and known[0] == digest and self.clock() - known[1] < self.reapply_after:
            return True
        if self.paused():
            return False
        try:
            await kube.call(apply, manifest)
        except kubernetes.client.ApiException as error:
            return self._refused(error, key)
        if self.refusal is not None:
            log.info("PodMonitors can be written now", crd=podmonitor.CRD_NAME)
        self.paused_until = self.refusal = None
        self.applied[key] = (digest, self.clock())
        log.info("pod monitor applied", namespace=key[0], deployment=key[1])
        return True

    async def remove(self, namespace: str, name: str, uid: str) -> None:
        """Delete the PodMonitor this operator made for the deployment, if there is one (once per change)."""
        key = (namespace, name)
        known = self.applied.get(key)
        if (known is not None and known[0] == "") or self.paused():
            return
        try:
            removed = await kube.call(delete_owned, namespace, name, uid)
        except kubernetes.client.ApiException as error:
            self._refused(error, key)
            return
        self.applied[key] = ("", self.clock())
        if removed:
            log.info("pod monitor deleted (opt-in withdrawn)", namespace=namespace, deployment=name)

    def forget(self, namespace: str, name: str) -> None:
        self.applied.pop((namespace, name), None)

    def _refused(self, error: kubernetes.client.ApiException, key: Key) -> bool:
        """404 (no PodMonitor API) or 403 (no RBAC): log once, pause, carry on; anything else raises."""
        if error.status not in (403, 404):
            raise error
        if self.refusal != error.status:
            message = (
                "no PodMonitor API on this cluster (the Prometheus Operator's CRD is missing): no "
                "PodMonitors are made"
                if error.status == 404
                else "not allowed to write PodMonitors (RBAC: the chart's podMonitors.enabled)"
            )
            log.warning(
                message,
                crd=podmonitor.CRD_NAME,
                namespace=key[0],
                deployment=key[1],
                recheck_seconds=self.recheck_after,
            )
        self.refusal = error.status
        self.paused_until = self.clock() + self.recheck_after
        return False


def apply(manifest: dict[str, Any]) -> None:
    """Server-side apply as field manager `modelledger` (force: the operator owns what it made)."""
    meta = manifest["metadata"]
    kubernetes.client.CustomObjectsApi(kube.client()).patch_namespaced_custom_object(
        podmonitor.GROUP,
        podmonitor.VERSION,
        meta["namespace"],
        podmonitor.PLURAL,
        meta["name"],
        manifest,
        field_manager=kube.FIELD_MANAGER,
        force=True,
        _content_type=kube.APPLY,
        _request_timeout=kube.TIMEOUT,
    )


def delete_owned(namespace: str, name: str, uid: str) -> bool:
    """Delete the PodMonitor `name` if the ModelDeployment `uid` controls it; another one is left alone.

    404 on the read means there is none (or no PodMonitor API: then the caller learns it on the next
    apply); the delete is conditional on the object read, so a replacement is never deleted.
    """
    api = kubernetes.client.CustomObjectsApi(kube.client())
    try:
        found = cast(
            dict[str, Any],
            api.get_namespaced_custom_object(
                podmonitor.GROUP,
                podmonitor.VERSION,
                namespace,
                podmonitor.PLURAL,
                name,
                _request_timeout=kube.TIMEOUT,
            ),
        )
    except kubernetes.client.ApiException as error:
        if error.status == 404:
            return False
        raise
    owners = found.get("metadata", {}).get("ownerReferences") or []
    if not any(ref.get("uid") == uid and ref.get("controller") for ref in owners):
        return False
    try:
        api.delete_namespaced_custom_object(
            podmonitor.GROUP,
            podmonitor.VERSION,
            namespace,
            podmonitor.PLURAL,
            name,
            body=kubernetes.client.V1DeleteOptions(
                preconditions=kubernetes.client.V1Preconditions(uid=found["metadata"]["uid"])
            ),
            _request_timeout=kube.TIMEOUT,
        )
    except kubernetes.client.ApiException as error:
        if error.status in (404, 409):
            return False  # gone already, or replaced since the read
        raise
    return True
