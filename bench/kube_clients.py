# mypy: disallow-untyped-calls=False
"""Python Kubernetes clients compared on the operator's own calls, against the local plane.

The clients: the sync `kubernetes` client on a 32-thread pool (the decision path before the aiohttp client),
`kubernetes_asyncio`, `lightkube` (AsyncClient), `kr8s` (async) and a bare `aiohttp` session with the
kubeconfig's client certificate (what Kopf does itself). Each one, with 32 requests in flight, makes:

- `get`: GET of one ModelDeployment by name;
- `status`: a merge patch of its /status with a resourceVersion precondition (`kube.status_patch`'s
  body shape), carrying the resourceVersion the previous write returned;
- `apply`: server-side apply (force, field manager `modelledger`) of a small ConfigMap;
- `event`: a core/v1 Event, `kube.event_body`'s shape.

Every write changes the object, so each one is a real etcd write. Each worker owns its own objects
(one request per object in flight, as the work queue will do). Each client runs in a fresh child
process, alone, so CPU (`time.process_time`, all threads) and RSS are its own; `--rounds` alternate
the order of the clients. Every call carries a timeout (connect 5 s, read 30 s).

    .venv/bin/python bench/kube_clients.py [--objects 500] [--requests 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, Protocol, cast

import yaml

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "kube-clients"
GROUP, VERSION, PLURAL = "modelledger.io", "v1alpha1", "modeldeployments"
FIELD_MANAGER = "modelledger"
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"
CONNECT, READ = 5.0, 30.0  # the operator's TIMEOUT
CLIENTS = ("kubernetes-threads", "kubernetes_asyncio", "lightkube", "kr8s", "aiohttp")
OPS = ("get", "status", "apply", "event")
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def name_of(i: int) -> str:
    return f"model-{i:05d}"


def model_deployment(i: int) -> dict[str, Any]:
    query = 'max(bench_rule_value{namespace="{{namespace}}",deployment="{{deployment}}",rule="%s"})'
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name_of(i), "namespace": NAMESPACE},
        "spec": {
            "modelName": "fraud-detector",
            "version": "fraud-detector-1-3-2",
            "replicas": 0,
            "rollback": {
                "interval": "5s",
                "rules": [
                    {"name": rule, "query": query % rule, "comparator": ">", "threshold": 0.5, "for": "2s"}
                    for rule in ("error-rate", "latency", "saturation")
                ],
            },
        },
    }


def status_patch(resource_version: str, seq: int) -> dict[str, Any]:
    """`kube._status_patch`'s shape: the precondition and the status fields the operator writes."""
    since = dt.datetime.now(dt.UTC).isoformat()
    rules = [
        {"name": rule, "state": "Pass", "value": seq / 1000, "since": since, "message": ""}
        for rule in ("error-rate", "latency", "saturation")
    ]
    status = {
        "phase": "Healthy",
        "observedGeneration": 1,
        "desiredVersion": "fraud-detector-1-3-2",
        "servingVersion": "fraud-detector-1-3-2",
        "replicas": 0,
        "rules": rules,
    }
    return {"metadata": {"resourceVersion": resource_version}, "status": status}


def config_map(i: int, seq: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": f"kube-clients-{i:05d}", "namespace": NAMESPACE},
        "data": {"revision": str(seq), "model": "fraud-detector-1-3-2"},
    }


def event(i: int, seq: int) -> dict[str, Any]:
    """`kube.event_body`'s shape."""
    now = dt.datetime.now(dt.UTC).isoformat()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name_of(i)}.", "namespace": NAMESPACE},
        "involvedObject": {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "ModelDeployment",
            "name": name_of(i),
            "namespace": NAMESPACE,
            "uid": "00000000-0000-0000-0000-000000000000",
        },
        "reason": "RuleEvaluated",
        "message": f"evaluation {seq}",
        "type": "Normal",
        "action": "RuleEvaluated",
        "source": {"component": "modelledger"},
        "reportingComponent": "modelledger.io/operator",
        "reportingInstance": "bench",
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def tls_context(kubeconfig: Path) -> ssl.SSLContext:
    """The kubeconfig's CA and client certificate (the local plane's admin)."""
    config = yaml.safe_load(kubeconfig.read_text())
    cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
    context = ssl.create_default_context(cafile=cluster["certificate-authority"])
    context.load_cert_chain(user["client-certificate"], user["client-key"])
    return context


# --- the clients: each makes the same four requests ------------------------------------------------


class Client(Protocol):
    async def open(self, kubeconfig: Path) -> None: ...
    async def close(self) -> None: ...
    async def get(self, name: str) -> str:
        """The object's resourceVersion."""

    async def patch_status(self, name: str, body: dict[str, Any]) -> str:
        """The new resourceVersion."""

    async def apply(self, manifest: dict[str, Any]) -> None: ...
    async def event(self, body: dict[str, Any]) -> None: ...


class KubernetesThreads:
    """Today's path: the sync client, each call on a 32-thread pool via run_in_executor."""

    async def open(self, kubeconfig: Path) -> None:
        import kubernetes

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        self.api_client = kubernetes.client.ApiClient(configuration)
        self.objects = kubernetes.client.CustomObjectsApi(self.api_client)
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self.pool = ThreadPoolExecutor(32, thread_name_prefix="kube")

    async def close(self) -> None:
        self.pool.shutdown()
        self.api_client.close()

    async def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, partial(function, *args, **kwargs))

    async def get(self, name: str) -> str:
        body = await self._call(
            self.objects.get_namespaced_custom_object,
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            name,
            _request_timeout=(CONNECT, READ),
        )
        return str(body["metadata"]["resourceVersion"])

    async def patch_status(self, name: str, body: dict[str, Any]) -> str:
        result = await self._call(
            self.objects.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,
            _request_timeout=(CONNECT, READ),
        )
        return str(result["metadata"]["resourceVersion"])

    async def apply(self, manifest: dict[str, Any]) -> None:
        await self._call(
            self.core.patch_namespaced_config_map,
            manifest["metadata"]["name"],
            NAMESPACE,
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            _request_timeout=(CONNECT, READ),
        )

    async def event(self, body: dict[str, Any]) -> None:
        await self._call(self.core.create_namespaced_event, NAMESPACE, body, _request_timeout=(CONNECT, READ))


class KubernetesAsyncio:
    """The same generated API on aiohttp."""

    async def open(self, kubeconfig: Path) -> None:
        from kubernetes_asyncio import client, config

        configuration = client.Configuration()
        await config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        configuration.connection_pool_maxsize = 32
        self.api_client = client.ApiClient(configuration)
        self.objects = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)

    async def close(self) -> None:
        await self.api_client.close()

    async def get(self, name: str) -> str:
        body = await self.objects.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, name, _request_timeout=(CONNECT, READ)
        )
        return str(body["metadata"]["resourceVersion"])

    async def patch_status(self, name: str, body: dict[str, Any]) -> str:
        result = await self.objects.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            NAMESPACE,
            PLURAL,
            name,
            body,
            field_manager=FIELD_MANAGER,
            _content_type=MERGE,  # type: ignore[call-arg]  # accepted, but missing from its stubs
            _request_timeout=(CONNECT, READ),
        )
        return str(result["metadata"]["resourceVersion"])

    async def apply(self, manifest: dict[str, Any]) -> None:
        await self.core.patch_namespaced_config_map(
            manifest["metadata"]["name"],
            NAMESPACE,
            manifest,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,  # type: ignore[call-arg]
            _request_timeout=(CONNECT, READ),
        )

    async def event(self, body: dict[str, Any]) -> None:
        # Its stubs want a CoreV1Event; it serialises a dict as it does its models.
        await self.core.create_namespaced_event(NAMESPACE, cast(Any, body), _request_timeout=(CONNECT, READ))


class Lightkube:
    """lightkube's AsyncClient (httpx): typed resources, a client-wide timeout on every request."""

    async def open(self, kubeconfig: Path) -> None:
        import httpx2
        from lightkube import AsyncClient, KubeConfig
        from lightkube.generic_resource import create_namespaced_resource
        from lightkube.resources.core_v1 import ConfigMap, Event

        self.ConfigMap, self.Event = ConfigMap, Event
        self.resource = create_namespaced_resource(GROUP, VERSION, "ModelDeployment", PLURAL)
        # httpx keeps 20 idle connections by default: with 32 in flight, every 3rd request would open a
        # new TLS connection. A transport of our own keeps 32 (it needs the kubeconfig's TLS context).
        limits = httpx2.Limits(max_connections=32, max_keepalive_connections=32)
        self.client = AsyncClient(
            KubeConfig.from_file(kubeconfig),
            timeout=httpx2.Timeout(READ, connect=CONNECT),
            field_manager=FIELD_MANAGER,
            transport=httpx2.AsyncHTTPTransport(verify=tls_context(kubeconfig), limits=limits),
        )

    async def close(self) -> None:
        await self.client.close()

    async def get(self, name: str) -> str:
        obj = await self.client.get(self.resource, name, namespace=NAMESPACE)
        assert obj.metadata is not None
        return str(obj.metadata.resourceVersion)

    async def patch_status(self, name: str, body: dict[str, Any]) -> str:
        from lightkube.types import PatchType

        obj = await self.client.patch(
            self.resource.Status, name, body, namespace=NAMESPACE, patch_type=PatchType.MERGE
        )
        assert obj.metadata is not None
        return str(obj.metadata.resourceVersion)

    async def apply(self, manifest: dict[str, Any]) -> None:
        # `from_dict` is typed as returning its DictMixin base.
        await self.client.apply(cast(Any, self.ConfigMap.from_dict(manifest)), force=True)

    async def event(self, body: dict[str, Any]) -> None:
        await self.client.create(cast(Any, self.Event.from_dict(body)))


class Kr8s:
    """kr8s's async API (httpx). Its session has no timeout unless one is set; it has no server-side
    apply, so that one goes through its raw `call_api`."""

    async def open(self, kubeconfig: Path) -> None:
        import httpx
        import kr8s.asyncio
        from kr8s.asyncio.objects import Event, new_class

        self.api = await kr8s.asyncio.api(kubeconfig=str(kubeconfig))
        self.api.timeout = httpx.Timeout(READ, connect=CONNECT)
        self.Event = Event
        self.resource = new_class("ModelDeployment", f"{GROUP}/{VERSION}", namespaced=True, plural=PLURAL)

    async def close(self) -> None:
        if self.api._session is not None:
            await self.api._session.aclose()

    def _object(self, name: str) -> Any:
        return self.resource({"metadata": {"name": name, "namespace": NAMESPACE}}, api=self.api)

    async def get(self, name: str) -> str:
        # A GET by name; kr8s's own `Resource.get(name)` is a LIST with a field selector, and retries.
        obj = self._object(name)
        await obj.refresh()
        return str(obj.raw["metadata"]["resourceVersion"])

    async def patch_status(self, name: str, body: dict[str, Any]) -> str:
        obj = self._object(name)
        await obj.patch(body, subresource="status")
        return str(obj.raw["metadata"]["resourceVersion"])

    async def apply(self, manifest: dict[str, Any]) -> None:
        async with self.api.call_api(
            "PATCH",
            version="v1",
            namespace=NAMESPACE,
            url=f"configmaps/{manifest['metadata']['name']}",
            params={"fieldManager": FIELD_MANAGER, "force": "true"},
            content=json.dumps(manifest),
            headers={"Content-Type": APPLY},
        ) as response:
            response.json()

    async def event(self, body: dict[str, Any]) -> None:
        await self.Event(body, api=self.api).create()


class Aiohttp:
    """A bare aiohttp session with the kubeconfig's CA and client certificate, as Kopf does itself."""

    async def open(self, kubeconfig: Path) -> None:
        import aiohttp

        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        self.session = aiohttp.ClientSession(
            base_url=server,
            connector=aiohttp.TCPConnector(limit=32, ssl=tls_context(kubeconfig)),
            timeout=aiohttp.ClientTimeout(sock_connect=CONNECT, sock_read=READ),
        )
        self.objects = f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}"

    async def close(self) -> None:
        await self.session.close()

    async def _request(self, method: str, url: str, body: Any, content_type: str, **params: str) -> Any:
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with self.session.request(method, url, data=data, headers=headers, params=params) as response:
            response.raise_for_status()
            return await response.json()

    async def get(self, name: str) -> str:
        body = await self._request("GET", f"{self.objects}/{name}", None, "application/json")
        return str(body["metadata"]["resourceVersion"])

    async def patch_status(self, name: str, body: dict[str, Any]) -> str:
        url = f"{self.objects}/{name}/status"
        result = await self._request("PATCH", url, body, MERGE, fieldManager=FIELD_MANAGER)
        return str(result["metadata"]["resourceVersion"])

    async def apply(self, manifest: dict[str, Any]) -> None:
        url = f"/api/v1/namespaces/{NAMESPACE}/configmaps/{manifest['metadata']['name']}"
        await self._request("PATCH", url, manifest, APPLY, fieldManager=FIELD_MANAGER, force="true")

    async def event(self, body: dict[str, Any]) -> None:
        await self._request("POST", f"/api/v1/namespaces/{NAMESPACE}/events", body, "application/json")


IMPLEMENTATIONS: dict[str, Callable[[], Client]] = {
    "kubernetes-threads": KubernetesThreads,
    "kubernetes_asyncio": KubernetesAsyncio,
    "lightkube": Lightkube,
    "kr8s": Kr8s,
    "aiohttp": Aiohttp,
}


# --- the child: one client, alone in its process --------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime + stime


def memory_mib(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def drive(
    client: Client, op: str, keys: list[list[int]], per_worker: int, versions: dict[int, str]
) -> tuple[list[float], int]:
    """`per_worker` requests from each worker, over its own keys; latencies (s) and errors."""
    latencies: list[float] = []
    errors = 0

    def request(key: int, seq: int) -> Awaitable[Any]:
        if op == "get":
            return client.get(name_of(key))
        if op == "status":
            return client.patch_status(name_of(key), status_patch(versions[key], seq))
        if op == "apply":
            return client.apply(config_map(key, seq))
        return client.event(event(key, seq))

    async def worker(own: list[int]) -> None:
        nonlocal errors
        for n in range(per_worker):
            key = own[n % len(own)]
            seq = time.time_ns()
            began = time.perf_counter()
            try:
                result = await request(key, seq)
            except Exception as error:
                errors += 1
                if errors <= 3:
                    print(f"{op} {name_of(key)}: {type(error).__name__}: {error}"[:300], file=sys.stderr)
                continue
            latencies.append(time.perf_counter() - began)
            if op == "status":
                versions[key] = result

    await asyncio.gather(*(worker(own) for own in keys))
    return latencies, errors


async def child(args: argparse.Namespace) -> dict[str, Any]:
    rss_start = memory_mib()
    client = IMPLEMENTATIONS[args.worker]()
    await client.open(Path(args.kubeconfig))
    keys = [list(range(w, args.objects, args.concurrency)) for w in range(args.concurrency)]
    versions = {key: await client.get(name_of(key)) for key in range(args.objects)}
    rss_open = memory_mib()
    server_pids = [int(pid) for pid in args.server_pids.split(",") if pid]
    results: dict[str, Any] = {}
    for op in OPS:
        await drive(client, op, keys, max(1, args.warmup // args.concurrency), versions)
        per_worker = args.requests // args.concurrency
        server_before = sum(cpu_seconds(pid) for pid in server_pids)
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        latencies, errors = await drive(client, op, keys, per_worker, versions)
        wall = time.perf_counter() - wall_before
        cpu = time.process_time() - cpu_before
        server = sum(cpu_seconds(pid) for pid in server_pids) - server_before
        done = len(latencies)
        cuts = statistics.quantiles(latencies, n=100, method="inclusive") if done > 1 else [0.0] * 99
        results[op] = {
            "requests": done,
            "errors": errors,
            "rate": done / wall,
            "p50_ms": cuts[49] * 1000,
            "p99_ms": cuts[98] * 1000,
            "cpu_per_1000": cpu / max(done, 1) * 1000,
            "server_cpu_per_1000": server / max(done, 1) * 1000,
        }
    await client.close()
    return {
        "client": args.worker,
        "ops": results,
        "rss_open_mib": rss_open - rss_start,
        "rss_end_mib": memory_mib() - rss_start,
        "rss_peak_mib": memory_mib("VmHWM"),
    }


# --- the parent: the plane, the objects, the children ---------------------------------------------


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    # Imported here, in the parent only: each client's child process stays free of the benchmark's
    # other libraries, so its RSS is its own.
    from rollback_latency import kubectl as run_kubectl

    return run_kubectl(kubeconfig, *args, stdin=stdin, timeout=600)


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{os.cpu_count()} cores, {model}, Python {sys.version.split()[0]}"


def versions_of_clients() -> str:
    from importlib.metadata import version

    packages = ("kubernetes", "kubernetes_asyncio", "lightkube", "kr8s", "aiohttp", "httpx")
    return ", ".join(f"{package} {version(package)}" for package in packages)


def parent(args: argparse.Namespace) -> None:
    from modelledger.testing.plane import LocalPlane, PlaneOptions

    clients = [c for c in args.clients.split(",") if c]
    with (
        tempfile.TemporaryDirectory(prefix="kube-clients-") as tmp,
        LocalPlane(Path(tmp) / "plane", PlaneOptions(nodes=1)) as plane,
    ):
        kc = plane.kubeconfig
        kubectl(kc, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(kc, "create", "namespace", NAMESPACE)
        docs = [model_deployment(i) for i in range(args.objects)]
        for start in range(0, len(docs), 250):
            kubectl(
                kc,
                "apply",
                "--server-side",
                "-f",
                "-",
                stdin=yaml.safe_dump_all(docs[start : start + 250]),
            )
        server_pids = ",".join(
            str(c.pid) for c in plane.processes.children if c.name in ("kube-apiserver", "etcd")
        )
        runs: list[dict[str, Any]] = []
        for round_ in range(args.rounds):
            for name in clients if round_ % 2 == 0 else list(reversed(clients)):
                argv = [sys.executable, __file__, "--worker", name, "--kubeconfig", str(kc)]
                argv += ["--server-pids", server_pids]
                for flag in ("objects", "requests", "warmup", "concurrency"):
                    argv += [f"--{flag}", str(getattr(args, flag))]
                began = time.monotonic()
                out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
                if out.returncode != 0:
                    print(f"{name}: failed\n{out.stderr[-3000:]}", file=sys.stderr)
                    continue
                if out.stderr.strip():
                    print(f"{name}: {out.stderr.strip()[-1000:]}", file=sys.stderr)
                result = json.loads(out.stdout.strip().splitlines()[-1])
                result["round"] = round_ + 1
                runs.append(result)
                print(f"round {round_ + 1} {name}: {time.monotonic() - began:.0f} s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    print(report(runs, clients, args))


def report(runs: list[dict[str, Any]], clients: list[str], args: argparse.Namespace) -> str:
    lines = [
        f"Machine: {machine()}; {versions_of_clients()}.",
        f"{args.objects} ModelDeployments, {args.concurrency} requests in flight, "
        f"{args.requests} timed requests per cell after {args.warmup} warm-up; "
        f"figures are `round 1 / round 2` ({args.rounds} rounds, alternating order).",
        "",
        "| client | request | req/s | p50 ms | p99 ms | client CPU s / 1000 req "
        "| apiserver+etcd CPU s / 1000 req |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]

    def cell(values: list[float], fmt: str) -> str:
        return " / ".join(format(v, fmt) for v in values)

    for name in clients:
        mine = sorted((r for r in runs if r["client"] == name), key=lambda r: r["round"])
        for op in OPS:
            figures = [r["ops"][op] for r in mine]
            errors = sum(f["errors"] for f in figures)
            label = op + (f" ({errors} errors)" if errors else "")
            lines.append(
                f"| {name} | {label} | {cell([f['rate'] for f in figures], '.0f')} "
                f"| {cell([f['p50_ms'] for f in figures], '.1f')} "
                f"| {cell([f['p99_ms'] for f in figures], '.1f')} "
                f"| {cell([f['cpu_per_1000'] for f in figures], '.2f')} "
                f"| {cell([f['server_cpu_per_1000'] for f in figures], '.2f')} |"
            )
    lines += [
        "",
        "| client | RSS after import + connect, MiB | RSS increase at the end, MiB | peak RSS, MiB |",
    ]
    lines.append("| --- | ---: | ---: | ---: |")
    for name in clients:
        mine = sorted((r for r in runs if r["client"] == name), key=lambda r: r["round"])
        lines.append(
            f"| {name} | {cell([r['rss_open_mib'] for r in mine], '.1f')} "
            f"| {cell([r['rss_end_mib'] for r in mine], '.1f')} "
            f"| {cell([r['rss_peak_mib'] for r in mine], '.0f')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=500)
    parser.add_argument("--requests", type=int, default=2000, help="timed requests per client and request")
    parser.add_argument("--warmup", type=int, default=256)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", default=",".join(CLIENTS))
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--worker", choices=CLIENTS, help=argparse.SUPPRESS)
    parser.add_argument("--kubeconfig", help=argparse.SUPPRESS)
    parser.add_argument("--server-pids", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(child(args))))
    else:
        parent(args)


if __name__ == "__main__":
    main()
