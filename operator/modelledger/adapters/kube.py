"""The sync Kubernetes client and what both clients share: the configuration, the status patch and Event
bodies, `Conflict`. The decision path's calls go over aiohttp (`adapters/kube_async.py`); the rare
ones here (test hooks) run with `call`, on a thread pool.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from typing import Any, TypeVar

import kubernetes
from kubernetes.client.exceptions import ApiException as ApiException

from modelledger.api.common import GROUP, VERSION

FIELD_MANAGER = "modelledger"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
DEPLOYMENTS = "modeldeployments"
# asyncio's default pool (cores + 4 threads) queues a rollout storm's writes behind each other.
WORKERS = 32
_EXECUTOR = ThreadPoolExecutor(WORKERS, thread_name_prefix="kube")
T = TypeVar("T")
# Every call has a deadline (connect, read): a half-open connection after an apiserver restart must
# not hang a decision; the caller's back-off takes it from there.
TIMEOUT = (5.0, 30.0)
VERSIONS = "modelversions"


@cache
def client() -> kubernetes.client.ApiClient:
    """In a pod: its service account; elsewhere: $KUBECONFIG or ~/.kube/config."""
    # The config loaders are untyped; the client they configure is typed.
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = kubernetes.client.Configuration.get_default_copy()
    configuration.connection_pool_maxsize = WORKERS  # one connection per worker thread
    return kubernetes.client.ApiClient(configuration)


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a blocking API call off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_EXECUTOR, partial(function, *args, **kwargs))


class Conflict(Exception):
    """The object changed since it was read: re-read and decide again."""


def status_patch(old: dict[str, Any], new: dict[str, Any], resource_version: str) -> dict[str, Any]:
    # A merge patch that sets exactly our fields: keys we drop are nulled, Kopf's own keys are untouched.
    status = {key: new.get(key) for key in sorted(set(old) | set(new))}
    return {"metadata": {"resourceVersion": resource_version}, "status": status}


def touch(plural: str, namespace: str, name: str) -> None:
    """Change one of our objects without changing what it says (tests: force a later write's 409)."""
    patch = {"metadata": {"annotations": {"modelledger.io/test-touched": str(time.time())}}}
    kubernetes.client.CustomObjectsApi(client()).patch_namespaced_custom_object(
        GROUP, VERSION, namespace, plural, name, patch, _content_type=MERGE, _request_timeout=TIMEOUT
    )


@dataclass(frozen=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str


_INSTANCE = os.environ.get("POD_NAME") or socket.gethostname()


def event_body(
    ref: ObjectRef, reason: str, message: str, *, warning: bool, action: str, now: dt.datetime
) -> dict[str, Any]:
    return {
        "metadata": {"generateName": f"{ref.name}.", "namespace": ref.namespace},
        "involvedObject": {
            "apiVersion": ref.api_version,
            "kind": ref.kind,
            "name": ref.name,
            "namespace": ref.namespace,
            "uid": ref.uid,
        },
        "reason": reason,
        "message": message[:1024],
        "type": "Warning" if warning else "Normal",
        "action": action or reason,
        "source": {"component": "modelledger"},
        "reportingComponent": "modelledger.io/operator",
        "reportingInstance": _INSTANCE[:128],
        "firstTimestamp": now.isoformat(),
        "lastTimestamp": now.isoformat(),
        "count": 1,
    }
