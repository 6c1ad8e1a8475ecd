"""The decision path's API calls over one aiohttp session: status writes, reads, server-side apply and
Events, on the operator's event loop.

Chosen by measurement (`bench/kube_clients.py`, docs/benchmarks.md): the same requests cost about half
the client CPU of the sync `kubernetes` client on a thread pool, and a tenth of kr8s's; aiohttp is
already loaded for Kopf. The credentials are the `kubernetes` client's own configuration (in-cluster
service account, or the kubeconfig), read at each request, so a rotated token is picked up. Every call
has a deadline (connect 5 s, 30 s in all): a half-open connection after an apiserver restart must not
hang a decision. The rest of the API calls (rare ones) stay on `adapters/kube.py`.
"""

from __future__ import annotations

import datetime as dt
import json
import ssl
from collections.abc import Mapping
from functools import cache
from typing import Any, cast

import aiohttp
import kubernetes

from modelledger.adapters import kube
from modelledger.api.common import GROUP, VERSION

CONNECTIONS = 64
# `sock_connect`, not `connect`: aiohttp's `connect` also counts the wait for a free pooled connection,
# which under load is queueing, not a dead server; `total` bounds the whole call either way.
TIMEOUT = aiohttp.ClientTimeout(total=kube.TIMEOUT[1], sock_connect=kube.TIMEOUT[0])
_JSON = "application/json"


class AsyncKube:
    """One session per event loop; created on first use, closed at the operator's cleanup."""

    def __init__(self, configuration: kubernetes.client.Configuration) -> None:
        self.configuration = configuration
        self.host = configuration.host.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def _tls(self) -> ssl.SSLContext | bool:
        if not self.host.startswith("https://"):
            return False
        if not self.configuration.verify_ssl:
            return False  # the kubeconfig says insecure-skip-tls-verify
        context = ssl.create_default_context(cafile=self.configuration.ssl_ca_cert or None)
        if self.configuration.cert_file:
            context.load_cert_chain(self.configuration.cert_file, self.configuration.key_file or None)
        return context

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=CONNECTIONS, ssl=self._tls())
            self._session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self, content_type: str | None) -> dict[str, str]:
        headers = {"Accept": _JSON}
        if content_type:
            headers["Content-Type"] = content_type
        settings = cast(
            dict[str, dict[str, Any]], self.configuration.auth_settings()
        )  # a rotated token: refreshed
        for setting in settings.values():
            if setting.get("in") == "header" and setting.get("value"):
                headers[str(setting["key"])] = str(setting["value"])
        return headers

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        data = None if body is None else json.dumps(body, separators=(",", ":"))
        async with self.session().request(
            method,
            self.host + path,
            data=data,
            params=params,
            headers=self._headers(content_type if body is not None else None),
            proxy=self.configuration.proxy or None,
        ) as response:
            text = await response.text()
            if response.status == 409:
                raise kube.Conflict(f"{method} {path}: 409 {response.reason}")
            if response.status >= 400:
                error = kube.ApiException(status=response.status, reason=response.reason)
                error.body = text
                raise error
            loaded = json.loads(text) if text else {}
            return loaded if isinstance(loaded, dict) else {}

    # --- the calls ---------------------------------------------------------------------------------------

    async def write_status(
        self,
        plural: str,
        namespace: str,
        name: str,
        old: dict[str, Any],
        new: dict[str, Any],
        resource_version: str,
    ) -> dict[str, Any]:
        """Write status only if the object is still at `resource_version`; raise Conflict otherwise."""
        return await self.request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}/status",
            kube.status_patch(old, new, resource_version),
            content_type=kube.MERGE,
            params={"fieldManager": kube.FIELD_MANAGER},
        )

    async def write_finalizers(
        self, plural: str, namespace: str, name: str, finalizers: list[str], resource_version: str
    ) -> dict[str, Any]:
        """Set an object's finalizers only if it is still at `resource_version`; raise Conflict otherwise."""
        patch = {"metadata": {"resourceVersion": resource_version, "finalizers": finalizers}}
        return await self.request(
            "PATCH",
            f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}",
            patch,
            content_type=kube.MERGE,
            params={"fieldManager": kube.FIELD_MANAGER},
        )

    async def drop_finalizer(
        self, plural: str, namespace: str, name: str, finalizer: str, meta: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Remove `finalizer` from one of our objects, if it is still as `meta` says (Conflict otherwise)."""
        kept = [f for f in meta.get("finalizers") or [] if f != finalizer]
        return await self.write_finalizers(plural, namespace, name, kept, meta["resourceVersion"])

    async def read(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return await self.request("GET", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}/{name}")

    async def apply(self, manifest: dict[str, Any]) -> None:
        """Server-side apply as field manager `modelledger` (force: the operator owns its workload)."""
        meta = manifest["metadata"]
        prefix = {"Deployment": "/apis/apps/v1", "Service": "/api/v1"}[manifest["kind"]]
        plural = {"Deployment": "deployments", "Service": "services"}[manifest["kind"]]
        await self.request(
            "PATCH",
            f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}",
            manifest,
            content_type=kube.APPLY,
            params={"fieldManager": kube.FIELD_MANAGER, "force": "true"},
        )

    async def post_event(
        self, ref: kube.ObjectRef, reason: str, message: str, *, warning: bool = False, action: str = ""
    ) -> None:
        body = kube.event_body(
            ref, reason, message, warning=warning, action=action, now=dt.datetime.now(dt.UTC)
        )
        await self.request("POST", f"/api/v1/namespaces/{ref.namespace}/events", body, content_type=_JSON)


@cache
def client() -> AsyncKube:
    """The process's client, with the sync client's configuration (loaded once)."""
    return AsyncKube(kube.client().configuration)


async def close() -> None:
    if client.cache_info().currsize:
        await client().close()
