"""ArgoCD Applications (argoproj.io/v1alpha1), read for the GitOps lineage of Deploy entries.

A read is on the way to a deploy decision, so it is bounded: a short deadline and a few reads at once.
Deployments that ask for the same Application while a read of it is in flight share that read (a fleet
synced by one Application asks for it once per burst, not a thousand times). A finished read is not
reused: one made before a sync started would give a later Deploy the previous commit. A refusal (403) is
remembered for `refused_for`, so an operator without the RBAC does not ask on every pass. A read that
fails says why (Forbidden without the chart's `gitops.argocd.enabled`, NotFound, Unreachable) and the
deploy goes ahead without the lineage: nothing here raises into a decision.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import kubernetes
import structlog

from modelledger.adapters import kube
from modelledger.core import gitops

log = structlog.get_logger("modelledger.argocd")

GROUP = "argoproj.io"
VERSION = "v1alpha1"
PLURAL = "applications"


def read(namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """One Application as it is now (the API call; a deadline for connect and read)."""
    api = kubernetes.client.CustomObjectsApi(kube.client())
    found = api.get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name, _request_timeout=(timeout, timeout)
    )
    return cast(dict[str, Any], found)


@dataclass(frozen=True)
class Fetched:
    """An Application as read, or why it could not be."""

    application: dict[str, Any] | None
    reason: str = ""
    message: str = ""


@dataclass
class ArgoApplications:
    """Reads of ArgoCD Applications: where they are trusted, how long a read may take, what is cached."""

    namespaces: tuple[str, ...] = (gitops.DEFAULT_NAMESPACE,)
    """--argocd-namespaces: where Applications are read and believed; the first is ArgoCD's own (the
    namespace of an Application whose tracking mark names no namespace)."""
    timeout: float = 2.0
    fresh_for: float = 0.0  # a finished read serves others this long (0: only reads in flight)
    refused_for: float = 30.0  # a 403 is asked again after this long (RBAC granted later is picked up)
    concurrency: int = 4
    max_cached: int = 256
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    reader: Callable[[str, str, float], dict[str, Any]] = field(default=read, repr=False)
    _cache: OrderedDict[tuple[str, str], tuple[float, Fetched]] = field(
        default_factory=OrderedDict, repr=False
    )
    _inflight: dict[tuple[str, str], asyncio.Future[Fetched]] = field(default_factory=dict, repr=False)
    _slots: asyncio.Semaphore | None = field(default=None, repr=False)
    _refusal_logged: bool = field(default=False, repr=False)

    @property
    def default_namespace(self) -> str:
        return self.namespaces[0] if self.namespaces else gitops.DEFAULT_NAMESPACE

    async def fetch(self, namespace: str, name: str) -> Fetched:
        """The Application, from a recent read or a new one (one at a time per Application)."""
        key = (namespace, name)
        cached = self._cache.get(key)
        if cached is not None:
            at, fetched = cached
            ttl = self.refused_for if fetched.reason == gitops.FORBIDDEN else self.fresh_for
            if self.clock() - at < ttl:
                return fetched
        if (pending := self._inflight.get(key)) is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Fetched] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            fetched = await self._read(namespace, name)
            future.set_result(fetched)
        except BaseException:  # this pass was cancelled: the others waiting on the read go on without it
            future.set_result(
                Fetched(None, gitops.UNREACHABLE, f"reading Application {namespace}/{name}: cancelled")
            )
            raise
        finally:
            del self._inflight[key]
        self._cache[key] = (self.clock(), fetched)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)
        return fetched

    async def _read(self, namespace: str, name: str) -> Fetched:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.concurrency)
        where = f"Application {namespace}/{name}"
        try:
            async with self._slots:
                found = await asyncio.wait_for(
                    kube.call(self.reader, namespace, name, self.timeout), self.timeout
                )
        except kubernetes.client.ApiException as error:
            if error.status == 403:
                if not self._refusal_logged:
                    log.warning(
                        "not allowed to read ArgoCD Applications: Deploy entries record the lineage as "
                        "unavailable (RBAC: the chart's gitops.argocd.enabled)",
                        namespace=namespace,
                    )
                    self._refusal_logged = True
                return Fetched(None, gitops.FORBIDDEN, f"not allowed to read {where} (RBAC)")
            if error.status == 404:
                return Fetched(None, gitops.NOT_FOUND, f"{where} not found (or no Application API)")
            return Fetched(None, gitops.UNREACHABLE, f"reading {where}: HTTP {error.status} {error.reason}")
        except Exception as error:  # a timeout, a connection refused, urllib3's errors: never into a decision
            message = f"reading {where}: {type(error).__name__} {error}"
            return Fetched(None, gitops.UNREACHABLE, message[:512])
        self._refusal_logged = False
        return Fetched(found)
