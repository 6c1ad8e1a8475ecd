"""The aiohttp client of the decision path, against a local HTTP server standing in for the apiserver:
the requests it makes, the credentials it sends (read at each request), and how it fails."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import aiohttp.web
import kubernetes
import pytest

from modelledger.adapters import kube
from modelledger.adapters.kube_async import AsyncKube

Seen = list[dict[str, Any]]


@asynccontextmanager
async def apiserver(
    status: int = 200, answer: Any = None, delay: float = 0.0
) -> AsyncIterator[tuple[str, Seen]]:
    seen: Seen = []

    async def handle(request: aiohttp.web.Request) -> aiohttp.web.Response:
        text = await request.text()
        seen.append(
            {
                "method": request.method,
                "path": request.path,
                "query": dict(request.query),
                "headers": dict(request.headers),
                "body": json.loads(text) if text else None,
            }
        )
        await asyncio.sleep(delay)
        return aiohttp.web.json_response(answer if answer is not None else {"kind": "Ok"}, status=status)

    app = aiohttp.web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = aiohttp.web.AppRunner(app)
    await runner.setup()
    site = aiohttp.web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def configured(host: str, token: Callable[[], str] | None = None) -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    configuration.host = host
    if token is not None:
        configuration.api_key = {"BearerToken": "placeholder"}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.refresh_api_key_hook = cast(
            Any, lambda c: c.api_key.__setitem__("BearerToken", token())
        )
    return configuration


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


def test_a_status_write_is_a_merge_patch_with_the_resource_version_and_a_fresh_token() -> None:
    tokens = iter(["t1", "t2"])

    async def scenario() -> None:
        async with apiserver(answer={"status": {"phase": "Healthy"}}) as (host, seen):
            client = AsyncKube(configured(host, token=lambda: next(tokens)))
            written = await client.write_status(
                kube.DEPLOYMENTS,
                "ml",
                "fraud",
                {"phase": "Progressing", "old": 1},
                {"phase": "Healthy"},
                "42",
            )
            await client.read(kube.DEPLOYMENTS, "ml", "fraud")
            await client.close()
        assert written == {"status": {"phase": "Healthy"}}
        write, read = seen
        assert (write["method"], write["path"]) == (
            "PATCH",
            "/apis/modelledger.io/v1alpha1/namespaces/ml/modeldeployments/fraud/status",
        )
        assert write["query"] == {"fieldManager": "modelledger"}
        assert write["headers"]["Content-Type"] == kube.MERGE
        assert write["body"] == {
            "metadata": {"resourceVersion": "42"},
            "status": {"old": None, "phase": "Healthy"},
        }, "keys we drop are nulled"
        assert write["headers"]["Authorization"] == "Bearer t1"
        assert read["headers"]["Authorization"] == "Bearer t2", "the token is read at each request"
        assert (read["method"], read["path"]) == (
            "GET",
            "/apis/modelledger.io/v1alpha1/namespaces/ml/modeldeployments/fraud",
        )

    run(scenario)


def test_apply_and_events_go_where_the_sync_client_sent_them() -> None:
    async def scenario() -> None:
        async with apiserver() as (host, seen):
            client = AsyncKube(configured(host))
            for kind in ("Deployment", "Service"):
                await client.apply({"kind": kind, "metadata": {"name": "fraud", "namespace": "ml"}})
            ref = kube.ObjectRef("modelledger.io/v1alpha1", "ModelDeployment", "ml", "fraud", "uid-1")
            await client.post_event(ref, "RolledBack", "m" * 2000, warning=True)
            await client.close()
        deployment, service, event = seen
        assert deployment["path"] == "/apis/apps/v1/namespaces/ml/deployments/fraud"
        assert service["path"] == "/api/v1/namespaces/ml/services/fraud"
        for applied in (deployment, service):
            assert applied["method"] == "PATCH"
            assert applied["query"] == {"fieldManager": "modelledger", "force": "true"}
            assert applied["headers"]["Content-Type"] == kube.APPLY
        assert (event["method"], event["path"]) == ("POST", "/api/v1/namespaces/ml/events")
        assert event["body"]["involvedObject"]["uid"] == "uid-1"
        assert (event["body"]["reason"], event["body"]["type"]) == ("RolledBack", "Warning")
        assert len(event["body"]["message"]) == 1024
        assert "Authorization" not in event["headers"], "no credentials configured, none sent"

    run(scenario)


@pytest.mark.parametrize(
    ("status", "raised"), [(409, kube.Conflict), (422, kube.ApiException), (503, kube.ApiException)]
)
def test_refusals_raise_what_the_handlers_catch(status: int, raised: type[Exception]) -> None:
    async def scenario() -> None:
        async with apiserver(status=status, answer={"kind": "Status", "message": "no"}) as (host, _seen):
            client = AsyncKube(configured(host))
            with pytest.raises(raised) as caught:
                await client.write_status(kube.DEPLOYMENTS, "ml", "fraud", {}, {"phase": "Healthy"}, "1")
            await client.close()
        if isinstance(caught.value, kube.ApiException):
            assert caught.value.status == status
            assert '"message": "no"' in str(caught.value.body)

    run(scenario)


def test_a_call_that_hangs_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("modelledger.adapters.kube_async.TIMEOUT", aiohttp.ClientTimeout(total=0.3))

    async def scenario() -> None:
        async with apiserver(delay=5.0) as (host, _seen):
            client = AsyncKube(configured(host))
            with pytest.raises(TimeoutError):
                await client.read(kube.DEPLOYMENTS, "ml", "fraud")
            await client.close()

    run(scenario)
