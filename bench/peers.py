# mypy: disallow-untyped-calls=False
"""Side by side: the same breach, the same plane, the same Prometheus — modelledger and Argo Rollouts.

For every N, on one local plane and one Prometheus scraping one exporter, each tool in turn (modelledger
first, then Argo Rollouts; only one controller runs at a time, so neither's CPU is the other's load):

- **modelledger**: N ModelDeployments with 3 rules (as bench/rollback_latency.py: `max(bench_rule_value
  {namespace, deployment, rule}) > 0.5`, `for: 2s`), stable on 1.3.2, then serving 1.4.0 under a bake
  of 1 h, the rules evaluated every `--interval`.
- **Argo Rollouts**: N Rollouts (basic canary, `steps: [setWeight: 100, pause: {}]`), stable on 1.3.2,
  then 1.4.0 held at the pause with the stable ReplicaSet scaled to 0, and a background analysis
  (`strategy.canary.analysis`) of an AnalysisTemplate holding the same 3 queries on the Prometheus
  provider, `failureCondition: result[0] > 0.5`, `failureLimit: 0`, `interval: --interval`.

Then a **steady** window (every rule passing) and a **storm**: one rule of every object breaches at once
through the same exporter. Latency runs from the breach being visible to a Prometheus query until
(applied) the rollback is in the workload's spec — modelledger: the Deployment's pod template names
1.3.2; Rollouts: the stable ReplicaSet's `spec.replicas` is back to full — and (serving) the stable
version's pods are all Ready.

Prometheus requests/s come from Prometheus's own `prometheus_http_requests_total` (handlers
`/api/v1/query` and `/api/v1/query_range`), less the queries this script sends; the phases run one
after the other, so each window's requests are one tool's. Apiserver requests/s are every request the
apiserver counted (`apiserver_request_total`, all clients: the controllers, kube-controller-manager
acting on their changes, kwok); the idle plane's rate is printed beside them.

    bash hack/build-rollouts.sh     # once: the controller and its CRDs, cached by version
    .venv/bin/python bench/peers.py [--sizes 1,10] [--interval 1s]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from prometheus_client import CollectorRegistry, Gauge, start_http_server

import runtime
from modelledger.testing.binaries import MissingBinary, cache_dir, read_versions
from modelledger.testing.plane import LocalPlane
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer
from rollback_latency import (
    BENCH_PLANE,
    FOR,
    NAMESPACE,
    REPO,
    RULES,
    THRESHOLD,
    RssSampler,
    apply_in_chunks,
    cpu_seconds,
    kubectl,
    label,
    model_deployment,
    parse_metrics,
    percentile,
    scrape,
    statuses,
    total,
    wait,
)

ARGO_NAMESPACE = "bench-argo"
TEMPLATE = "bench-rules"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
STABLE, CANARY = "1.3.2", "1.4.0"
QUERY_HANDLERS = {"/api/v1/query", "/api/v1/query_range"}
TOOLS = ("modelledger", "Argo Rollouts")


# --- Argo Rollouts: binary, CRDs, manifests, process ---------------------------------------------------


def rollouts_paths() -> tuple[Path, Path]:
    """The cached rollouts-controller and its CRD folder (hack/build-rollouts.sh makes them)."""
    version = read_versions()["ARGO_ROLLOUTS_VERSION"]
    binary = cache_dir() / "bin" / f"rollouts-controller-{version}"
    crds = cache_dir() / "bin" / f"rollouts-crds-{version}"
    if not binary.exists() or not (crds / "rollout-crd.yaml").exists():
        raise MissingBinary(f"{binary} (or its CRDs) not built: run `bash hack/build-rollouts.sh`")
    return binary, crds


def install_rollouts_crds(kubeconfig: Path, crds: Path) -> None:
    # Server-side: the Rollout CRD is larger than client-side apply's last-applied annotation allows.
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(crds))

    def ready(name: str) -> Callable[[], bool]:
        def probe() -> bool:
            crd = json.loads(kubectl(kubeconfig, "get", f"crd/{name}", "-o", "json"))
            conditions = (crd.get("status") or {}).get("conditions") or []
            return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

        return probe

    # Polled: `kubectl wait` fails outright while a fresh CRD has no conditions yet.
    for name in ("rollouts", "analysistemplates", "analysisruns", "clusteranalysistemplates", "experiments"):
        wait(f"CRD {name}.argoproj.io Established", ready(f"{name}.argoproj.io"), 60)


def analysis_template(namespace: str, prometheus_url: str, interval: str) -> dict[str, Any]:
    """The same 3 queries as modelledger's rules; one failed measurement fails the run (failureLimit 0)."""
    query = 'max(bench_rule_value{namespace="{{args.namespace}}",deployment="{{args.deployment}}",rule="%s"})'
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": TEMPLATE, "namespace": namespace},
        "spec": {
            "args": [{"name": "namespace"}, {"name": "deployment"}],
            "metrics": [
                {
                    "name": rule,
                    "interval": interval,
                    "failureLimit": 0,
                    "failureCondition": f"result[0] > {THRESHOLD}",
                    "provider": {"prometheus": {"address": prometheus_url, "query": query % rule}},
                }
                for rule in RULES
            ],
        },
    }


def rollout(name: str, namespace: str, version: str, replicas: int) -> dict[str, Any]:
    """A basic canary (no traffic router): 100 % to the new version, held at an indefinite pause while
    the background analysis runs; an abort scales the stable ReplicaSet back up."""
    labels = {"app": name}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, "bench/version": version}},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": PAUSE_IMAGE,
                            "env": [{"name": "MODEL_VERSION", "value": version}],
                        }
                    ]
                },
            },
            "strategy": {
                "canary": {
                    "analysis": {
                        "templates": [{"templateName": TEMPLATE}],
                        "args": [
                            {"name": "namespace", "value": namespace},
                            {"name": "deployment", "value": name},
                        ],
                    },
                    "steps": [{"setWeight": 100}, {"pause": {}}],
                }
            },
        },
    }


@contextmanager
def rollouts_controller(
    binary: Path, kubeconfig: Path, namespace: str, log: Path, log_level: str = "warn"
) -> Iterator[subprocess.Popen[bytes]]:
    """The controller as a process, namespaced (as a per-team install runs), no leader election."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(binary),
                f"--kubeconfig={kubeconfig}",
                "--namespaced",
                f"--namespace={namespace}",
                "--leader-elect=false",
                f"--metricsPort={free_port()}",
                f"--healthzPort={free_port()}",
                f"--loglevel={log_level}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def rollouts(objects: Any, namespace: str) -> list[dict[str, Any]]:
    found = objects.list_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "rollouts")
    items: list[dict[str, Any]] = found["items"]
    return items


def analysis_runs(objects: Any, namespace: str) -> list[dict[str, Any]]:
    found = objects.list_namespaced_custom_object("argoproj.io", "v1alpha1", namespace, "analysisruns")
    items: list[dict[str, Any]] = found["items"]
    return items


def paused_under_analysis(objects: Any, namespace: str, n: int) -> bool:
    """Every Rollout held at the pause step, and n background AnalysisRuns with a measurement each."""
    held = [
        r
        for r in rollouts(objects, namespace)
        if (r.get("status") or {}).get("currentStepIndex") == 1
        and any(c.get("reason") == "CanaryPauseStep" for c in (r["status"].get("pauseConditions") or []))
    ]
    running = [
        run
        for run in analysis_runs(objects, namespace)
        if (run.get("status") or {}).get("phase") == "Running"
        and len(run["status"].get("metricResults") or []) == len(RULES)
    ]
    return len(held) == n and len(running) == n


# --- measuring ------------------------------------------------------------------------------------------


@dataclass
class Counts:
    """Counters at one instant: CPU seconds, the apiserver's requests, Prometheus's query requests."""

    at: float
    cpu: dict[str, float]
    apiserver_requests: float
    apiserver_writes: float
    prometheus_queries: float
    own_queries: int

    @classmethod
    def take(cls, kubeconfig: Path, prometheus_url: str, pids: dict[str, int], own: int) -> Counts:
        apiserver = parse_metrics(kubectl(kubeconfig, "get", "--raw", "/metrics"))
        prometheus = scrape(f"{prometheus_url}/metrics")
        return cls(
            time.monotonic(),
            {name: cpu_seconds(pid) for name, pid in pids.items()},
            total(apiserver, "apiserver_request_total"),
            total(
                apiserver,
                "apiserver_request_total",
                lambda labels: (
                    label(labels, "verb") != "WATCH" and label(labels, "verb") not in {"GET", "LIST"}
                ),
            ),
            total(
                prometheus,
                "prometheus_http_requests_total",
                lambda labels: label(labels, "handler") in QUERY_HANDLERS,
            ),
            own,
        )


@dataclass
class Span:
    before: Counts
    after: Counts

    @property
    def seconds(self) -> float:
        return self.after.at - self.before.at

    def cores(self, process: str) -> float:
        return (self.after.cpu[process] - self.before.cpu[process]) / self.seconds

    def rates(self) -> dict[str, float]:
        own = self.after.own_queries - self.before.own_queries
        queries = self.after.prometheus_queries - self.before.prometheus_queries - own
        return {
            "seconds": self.seconds,
            "controller_cores": self.cores("controller"),
            "apiserver_cores": self.cores("apiserver"),
            "prometheus_requests_per_s": queries / self.seconds,
            "apiserver_requests_per_s": (self.after.apiserver_requests - self.before.apiserver_requests)
            / self.seconds,
            "apiserver_writes_per_s": (self.after.apiserver_writes - self.before.apiserver_writes)
            / self.seconds,
        }


@dataclass
class Bench:
    """One N: the plane, Prometheus, the exporter, and the queries this script itself sent."""

    n: int
    args: argparse.Namespace
    workdir: Path
    plane: LocalPlane
    prometheus: PrometheusServer
    gauge: Gauge
    objects: Any
    apps: Any
    own_queries: int = 0
    names: list[str] = field(default_factory=list)

    def query(self, expression: str) -> list[dict[str, Any]]:
        self.own_queries += 1
        return self.prometheus.query(expression)

    def counts(self, pids: dict[str, int]) -> Counts:
        return Counts.take(self.plane.kubeconfig, self.prometheus.url, pids, self.own_queries)

    def pids(self, controller: int) -> dict[str, int]:
        children = {child.name: child.pid for child in self.plane.processes.children}
        return {"controller": controller, "apiserver": children["kube-apiserver"]}

    def breach(self, namespace: str) -> float:
        """Export one rule's breach for every object at once; returns when Prometheus answers with it."""
        for name in self.names:
            self.gauge.labels(namespace, name, "error-rate").set(0.9)
        expression = f'count(bench_rule_value{{namespace="{namespace}",rule="error-rate"}} > {THRESHOLD})'

        def visible() -> bool:
            found = self.query(expression)
            return bool(found) and int(float(found[0]["value"][1])) == self.n

        wait(f"breach in {namespace} visible to PromQL", visible, 60, 0.05)
        return time.monotonic()

    def steady(self, pids: dict[str, int], rss: RssSampler) -> dict[str, float]:
        time.sleep(max(5.0, 2 * seconds(self.args.interval)))
        before = self.counts(pids)
        time.sleep(self.args.steady)
        span = Span(before, self.counts(pids))
        return {**span.rates(), "rss_mib": rss.between(span.before.at, span.after.at)}


def seconds(duration: str) -> float:
    return float(duration.rstrip("s"))


def watch_until(
    stream_of: Callable[[], Iterator[dict[str, Any]]],
    record: Callable[[dict[str, Any]], bool],
    stop: threading.Event,
) -> threading.Thread:
    """Reads raw watch events in a thread (parsing costs milliseconds; the clock must read arrival)
    until `record` says everything is seen or `stop` is set."""

    def run() -> None:
        for event in stream_of():
            if record(event["raw_object"]) or stop.is_set():
                return

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


OnObject = Callable[[dict[str, Any], dict[str, float], dict[str, float]], None]
Watched = tuple[Callable[[], Iterator[dict[str, Any]]], OnObject]


def replicasets(apps: Any, namespace: str) -> Callable[[], Iterator[dict[str, Any]]]:
    def stream() -> Iterator[dict[str, Any]]:
        yield from kubernetes.watch.Watch(return_type="object").stream(
            apps.list_namespaced_replica_set, namespace, timeout_seconds=900
        )

    return stream


def stable_serving(stable_of: Callable[[dict[str, Any]], str | None], replicas: int) -> OnObject:
    """For both tools alike: the workload's stable version serves once its ReplicaSet (the one
    `stable_of` names a workload for) wants and has all its pods available."""

    def on_replicaset(body: dict[str, Any], _applied: dict[str, float], serving: dict[str, float]) -> None:
        name = stable_of(body)
        if (
            name is not None
            and (body["spec"].get("replicas") or 0) >= replicas
            and (body.get("status") or {}).get("availableReplicas", 0) >= replicas
        ):
            serving.setdefault(name, time.monotonic())

    return on_replicaset


def storm(bench: Bench, namespace: str, pids: dict[str, int], watched: list[Watched]) -> dict[str, Any]:
    """The breach, and the watches that time the rollback until every workload is back."""
    applied: dict[str, float] = {}
    serving: dict[str, float] = {}
    stop = threading.Event()
    threads = []
    for stream_of, on_object in watched:

        def record(body: dict[str, Any], on_object: OnObject = on_object) -> bool:
            on_object(body, applied, serving)
            return len(serving) >= bench.n and len(applied) >= bench.n

        threads.append(watch_until(stream_of, record, stop))
    time.sleep(1)
    before = bench.counts(pids)
    visible = bench.breach(namespace)
    deadline = time.monotonic() + max(120.0, bench.n * 0.5)
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    stop.set()
    span = Span(before, bench.counts(pids))
    return {
        **span.rates(),
        "applied": sorted(t - visible for t in applied.values()),
        "serving": sorted(t - visible for t in serving.values()),
    }


# --- the two tools ----------------------------------------------------------------------------------------


def run_modelledger(bench: Bench) -> dict[str, Any]:
    kc, args = bench.plane.kubeconfig, bench.args
    metrics_port = free_port()
    log = (bench.workdir / "modelledger.log").open("wb")
    operator = subprocess.Popen(
        runtime.command(
            "run",
            "-n",
            NAMESPACE,
            "--log-level",
            args.log_level.upper(),
            "--liveness",
            f"http://127.0.0.1:{free_port()}/healthz",
            "--metrics-address",
            f"127.0.0.1:{metrics_port}",
            "--prometheus-url",
            bench.prometheus.url,
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=runtime.env(bench.plane.access.env()),
    )
    pids = bench.pids(operator.pid)
    rss = RssSampler(operator.pid)
    rss.start()
    try:
        began = time.monotonic()
        apply_in_chunks(
            kc,
            [
                model_deployment(name, "fraud-detector-1-3-2", args.interval, "2s", args.replicas)
                for name in bench.names
            ],
        )
        wait(
            "1.3.2 stable everywhere",
            lambda: sum(1 for s in statuses(bench.objects) if s.get("stableRevision") == 1) == bench.n,
            3600,
            2,
        )
        apply_in_chunks(
            kc,
            [
                model_deployment(name, "fraud-detector-1-4-0", args.interval, "1h", args.replicas)
                for name in bench.names
            ],
        )
        wait(
            "1.4.0 healthy everywhere",
            lambda: (
                sum(
                    1
                    for s in statuses(bench.objects)
                    if s.get("servingVersion") == "fraud-detector-1-4-0" and s.get("phase") == "Healthy"
                )
                == bench.n
            ),
            3600,
            2,
        )
        setup = time.monotonic() - began
        steady = bench.steady(pids, rss)

        def on_deployment(
            body: dict[str, Any], applied: dict[str, float], _serving: dict[str, float]
        ) -> None:
            labels = body["spec"]["template"]["metadata"].get("labels") or {}
            if labels.get("modelledger.io/version") == "fraud-detector-1-3-2":
                applied.setdefault(body["metadata"]["name"], time.monotonic())

        def deployments() -> Iterator[dict[str, Any]]:
            stream = kubernetes.watch.Watch(return_type="object")
            yield from stream.stream(bench.apps.list_namespaced_deployment, NAMESPACE, timeout_seconds=900)

        def stable_of(replicaset: dict[str, Any]) -> str | None:
            labels = replicaset["spec"]["template"]["metadata"].get("labels") or {}
            owners = replicaset["metadata"].get("ownerReferences") or [{}]
            stable = labels.get("modelledger.io/version") == "fraud-detector-1-3-2"
            return str(owners[0].get("name")) if stable else None

        watched: list[Watched] = [
            (deployments, on_deployment),
            (replicasets(bench.apps, NAMESPACE), stable_serving(stable_of, args.replicas)),
        ]
        result = storm(bench, NAMESPACE, pids, watched)
        return {"setup_s": setup, "steady": steady, "storm": result, "rss_peak_mib": rss.peak()}
    finally:
        rss.stop()
        operator.terminate()
        operator.wait(timeout=60)
        log.close()


def run_rollouts(bench: Bench, binary: Path) -> dict[str, Any]:
    kc, args, ns = bench.plane.kubeconfig, bench.args, ARGO_NAMESPACE
    with rollouts_controller(
        binary, kc, ns, bench.workdir / "rollouts.log", args.log_level.lower()
    ) as controller:
        pids = bench.pids(controller.pid)
        rss = RssSampler(controller.pid)
        rss.start()
        try:
            began = time.monotonic()
            kubectl(
                kc,
                "apply",
                "-f",
                "-",
                stdin=json.dumps(analysis_template(ns, bench.prometheus.url, args.interval)),
            )
            apply_in_chunks(kc, [rollout(name, ns, STABLE, args.replicas) for name in bench.names])
            wait(
                "Rollouts healthy on 1.3.2",
                lambda: (
                    sum(
                        1
                        for r in rollouts(bench.objects, ns)
                        if (r.get("status") or {}).get("phase") == "Healthy"
                    )
                    == bench.n
                ),
                3600,
                2,
            )
            apply_in_chunks(kc, [rollout(name, ns, CANARY, args.replicas) for name in bench.names])
            wait(
                "Rollouts paused on 1.4.0 under analysis",
                lambda: paused_under_analysis(bench.objects, ns, bench.n),
                3600,
                2,
            )
            stable_rs = {
                r["metadata"]["name"]: f"{r['metadata']['name']}-{r['status']['stableRS']}"
                for r in rollouts(bench.objects, ns)
            }
            setup = time.monotonic() - began
            steady = bench.steady(pids, rss)
            owner = {rs: name for name, rs in stable_rs.items()}

            def stable_of(replicaset: dict[str, Any]) -> str | None:
                return owner.get(replicaset["metadata"]["name"])

            serves = stable_serving(stable_of, args.replicas)

            def on_replicaset(
                body: dict[str, Any], applied: dict[str, float], serving: dict[str, float]
            ) -> None:
                # The abort's own write: the stable ReplicaSet scaled back to full.
                name = stable_of(body)
                if name is not None and (body["spec"].get("replicas") or 0) >= args.replicas:
                    applied.setdefault(name, time.monotonic())
                serves(body, applied, serving)

            result = storm(bench, ns, pids, [(replicasets(bench.apps, ns), on_replicaset)])
            aborted = sum(1 for r in rollouts(bench.objects, ns) if (r.get("status") or {}).get("abort"))
            return {
                "setup_s": setup,
                "steady": steady,
                "storm": {**result, "aborted": aborted},
                "rss_peak_mib": rss.peak(),
            }
        finally:
            rss.stop()


def run(n: int, args: argparse.Namespace, workdir: Path, binary: Path, crds: Path) -> dict[str, Any]:
    with (
        LocalPlane(workdir / "plane", BENCH_PLANE) as plane,
        PrometheusServer(workdir / "prometheus") as prometheus,
    ):
        kc = plane.kubeconfig
        kubectl(kc, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        install_rollouts_crds(kc, crds)
        for namespace in (NAMESPACE, "modelledger-system", ARGO_NAMESPACE):
            kubectl(kc, "create", "namespace", namespace)
        for version in ("fraud-detector-1-3-2", "fraud-detector-1-4-0"):
            kubectl(kc, "apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / f"{version}.yaml"))

        registry = CollectorRegistry()
        gauge = Gauge(
            "bench_rule_value", "a rule's value", ("namespace", "deployment", "rule"), registry=registry
        )
        names = [f"model-{i:05d}" for i in range(n)]
        for namespace in (NAMESPACE, ARGO_NAMESPACE):
            for name in names:
                for rule in RULES:
                    gauge.labels(namespace, name, rule).set(0.0)
        port = free_port()
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        prometheus.add_target("bench", f"127.0.0.1:{port}")
        prometheus.wait_for_target("bench")
        client = kubernetes.config.new_client_from_config(config_file=str(kc))
        bench = Bench(
            n,
            args,
            workdir,
            plane,
            prometheus,
            gauge,
            kubernetes.client.CustomObjectsApi(client),
            kubernetes.client.AppsV1Api(client),
            names=names,
        )
        try:
            # The idle plane (kwok's heartbeats, the controller-manager): the floor of apiserver requests/s.
            apiserver = {child.name: child.pid for child in plane.processes.children}["kube-apiserver"]
            idle_pids = bench.pids(apiserver)
            before = bench.counts(idle_pids)
            time.sleep(10)
            idle = Span(before, bench.counts(idle_pids)).rates()
            result = {"n": n, "interval": args.interval, "idle": idle}
            result["modelledger"] = run_modelledger(bench)
            result["Argo Rollouts"] = run_rollouts(bench, binary)
            return result
        finally:
            server.shutdown()


# --- the table ---------------------------------------------------------------------------------------------


def rows_of(result: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(what, modelledger, Argo Rollouts) per row; a row names a window and a key in each tool's result."""
    spec: list[tuple[str, str, str]] = [
        (f"{what} p{q} s", key, str(q))
        for key, what in (("applied", "rollback applied"), ("serving", "stable pods Ready"))
        for q in (50, 95, 99)
    ]
    for what, key in (
        ("Prometheus req/s", "prometheus_requests_per_s"),
        ("controller CPU cores", "controller_cores"),
        ("apiserver req/s", "apiserver_requests_per_s"),
        ("apiserver writes/s", "apiserver_writes_per_s"),
        ("apiserver CPU cores", "apiserver_cores"),
    ):
        spec += [(f"{what}, {window}", window, key) for window in ("steady", "storm")]
    spec += [("controller RSS MiB, steady", "steady", "rss_mib"), ("controller RSS MiB, peak", "", "")]

    def value(tool: dict[str, Any], first: str, second: str) -> float:
        if first in ("applied", "serving"):
            return percentile(tool["storm"][first], int(second))
        if not first:
            return float(tool["rss_peak_mib"])
        return float(tool[first][second])

    return [
        (what, value(result["modelledger"], a, b), value(result["Argo Rollouts"], a, b))
        for what, a, b in spec
    ]


def print_table(results: list[dict[str, Any]]) -> None:
    print(f"{'N':>5}  {'':<32} {'modelledger':>12} {'Argo Rollouts':>14} {'ratio':>7}")
    for result in results:
        ml, argo = result["modelledger"]["storm"], result["Argo Rollouts"]["storm"]
        print(
            f"{result['n']:>5}  {'rolled back (of N)':<32} "
            f"{len(ml['serving']):>12} {len(argo['serving']):>14}"
            f"   (Rollouts aborted: {argo['aborted']})"
        )
        for what, mine, theirs in rows_of(result):
            ratio = mine / theirs if theirs else float("nan")
            print(f"{result['n']:>5}  {what:<32} {mine:>12.3f} {theirs:>14.3f} {ratio:>7.2f}")
        idle = result["idle"]
        print(
            f"{result['n']:>5}  (idle plane, no controller: apiserver "
            f"{idle['apiserver_requests_per_s']:.1f} req/s, "
            f"{idle['apiserver_writes_per_s']:.1f} writes/s)"
        )
    interval = results[0]["interval"]
    print(
        f"(interval {interval} for both; modelledger rules `for: {FOR:g}s`, Rollouts failureLimit 0; "
        "ratio = modelledger / Argo Rollouts;"
    )
    print(" latency from the breach visible to PromQL; applied: Deployment template names 1.3.2 / stable")
    print(" ReplicaSet spec.replicas full; Ready: those pods available. Prometheus req/s: query handlers.)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,10")
    parser.add_argument(
        "--interval", default="1s", help="rule interval (modelledger) and metric interval (Rollouts)"
    )
    parser.add_argument("--replicas", type=int, default=1, help="pods per workload (kwok nodes)")
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady state measured")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--log-level", default="WARNING", help="both controllers'")
    args = parser.parse_args()
    binary, crds = rollouts_paths()
    results = []
    for n in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"modelledger-peers-{n}-") as tmp:
            result = run(n, args, Path(tmp), binary, crds)
        results.append(result)
        print(
            f"N={n}: modelledger {len(result['modelledger']['storm']['serving'])}/{n}, "
            f"Argo Rollouts {len(result['Argo Rollouts']['storm']['serving'])}/{n} "
            "back on the stable version",
            flush=True,
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    print()
    print_table(results)


if __name__ == "__main__":
    main()
