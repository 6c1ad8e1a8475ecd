# mypy: disallow-untyped-calls=False
"""Rollback latency and steady-state cost at scale, on the local plane and a real Prometheus.

For every N: N ModelDeployments with 3 rules each serve 1.3.2 until it is stable, then 1.4.0. Then:

- **steady state** (`--steady` seconds, every rule passing): the operator's CPU, Prometheus requests
  per rule-engine tick against the number of rules, API writes, RSS;
- **storm**: a breach of one rule of `--breach-fraction` of the deployments is exported at once.
  Latency = from the breach being visible to a Prometheus query until the deployment's pod template
  names the stable version again; "decided" = when its rollback's history entry was written. Also the
  operator's, kube-apiserver's and etcd's CPU during the storm, 409s and retried passes.

RSS is sampled every 0.5 s throughout (peak and steady). `--tracemalloc` runs the operator under
tracemalloc and writes its top allocation sites at the steady state and at the peak (slower: use it
for the memory breakdown, not for the latency figures).

    .venv/bin/python bench/rollback_latency.py [--sizes 1,100,1000] [--interval 1s]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import kubernetes
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import runtime
from modelledger.testing.plane import LocalPlane, PlaneOptions
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
FOR = 2.0  # seconds a breach must hold
THRESHOLD = 0.5
RULES = ("error-rate", "latency", "saturation")
# The plane's kube-controller-manager rate limit (PlaneOptions): at its default of 20 requests/s a
# roll-out of 1,000 Deployments takes about 5 minutes, which the benchmarks would then measure.
BENCH_PLANE = PlaneOptions(nodes=2, controller_manager_qps=200)
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE"}
OPERATOR_RESOURCES = {
    "modeldeployments",
    "modelversions",
    "modeldeploymentrequests",
    "deployments",
    "services",
    "events",
}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PHASES = ("queue_wait", "pass", "evaluation", "status_write", "workload_apply", "event_post")


def rules() -> list[dict[str, Any]]:
    query = 'max(bench_rule_value{namespace="{{namespace}}",deployment="{{deployment}}",rule="%s"})'
    return [
        {"name": name, "query": query % name, "comparator": ">", "threshold": THRESHOLD, "for": f"{FOR:g}s"}
        for name in RULES
    ]


def model_deployment(name: str, version: str, interval: str, bake: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "modelName": "fraud-detector",
            "version": version,
            "replicas": replicas,
            "stability": {"bakeTime": bake},
            "rollback": {"interval": interval, "cooldown": "1h", "rules": rules()},
        },
    }


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 900) -> str:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=timeout,
    ).stdout


def apply_in_chunks(kubeconfig: Path, docs: list[dict[str, Any]], chunk: int = 500) -> None:
    for start in range(0, len(docs), chunk):
        kubectl(
            kubeconfig,
            "apply",
            "--server-side",
            "-f",
            "-",
            stdin=yaml.safe_dump_all(docs[start : start + chunk]),
        )


def wait(what: str, probe: Callable[[], bool], timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def listed(objects: Any) -> list[dict[str, Any]]:
    """Every ModelDeployment of the benchmark's namespace, as the apiserver has it now."""
    items = objects.list_namespaced_custom_object("modelledger.io", "v1alpha1", NAMESPACE, "modeldeployments")
    return cast(list[dict[str, Any]], items["items"])


def statuses(objects: Any) -> list[dict[str, Any]]:
    return [item.get("status") or {} for item in listed(objects)]


def operator_command(metrics_port: int, prometheus_url: str, log_level: str = "WARNING") -> list[str]:
    """`modelledger run` for the benchmark's namespace, its metrics on `metrics_port`."""
    return runtime.command(
        "run",
        "-n",
        NAMESPACE,
        "--log-level",
        log_level,
        "--liveness",
        f"http://127.0.0.1:{free_port()}/healthz",
        "--metrics-address",
        f"127.0.0.1:{metrics_port}",
        "--prometheus-url",
        prometheus_url,
    )


MACHINE = 0
"""The pid key of the whole machine in the CPU figures: busy CPU seconds of all cores (/proc/stat)."""


def cpu_seconds(pid: int) -> float:
    if pid == MACHINE:
        user, nice, system, _idle, _iowait, irq, softirq, steal = Path("/proc/stat").read_text().split()[1:9]
        return sum(int(v) for v in (user, nice, system, irq, softirq, steal)) / CLOCK_TICK
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime + stime


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class RssSampler:
    """RSS of one process every 0.5 s, in a thread, for the peak and the figure at any moment."""

    pid: int
    samples: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.samples.append((time.monotonic(), rss_mib(self.pid)))
            except OSError:
                return

    def stop(self) -> None:
        self._stop.set()

    def peak(self) -> float:
        return max((rss for _t, rss in self.samples), default=0.0)

    def between(self, start: float, end: float) -> float:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return statistics.median(inside) if inside else 0.0


def scrape(url: str) -> dict[str, float]:
    """Every sample of a /metrics page, keyed by name{labels} (labels sorted)."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return parse_metrics(text)


def parse_metrics(text: str) -> dict[str, float]:
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


def total(metrics: dict[str, float], name: str, where: Callable[[str], bool] = lambda _labels: True) -> float:
    found = 0.0
    for key, value in metrics.items():
        metric, _, labels = key.partition("{")
        if metric == name and where(labels):
            found += value
    return found


def label(labels: str, key: str) -> str:
    for pair in labels.rstrip("}").split(","):
        k, _, v = pair.partition("=")
        if k == key:
            return v
    return ""


@dataclass
class Snapshot:
    """Counters at one instant: the operator's metrics, the apiserver's writes, and CPU seconds."""

    at: float
    operator: dict[str, float]
    apiserver_writes: float
    cpu: dict[str, float]
    writes_by_resource: dict[str, float]

    @classmethod
    def take(cls, metrics_url: str, kubeconfig: Path, pids: dict[str, int]) -> Snapshot:
        apiserver = parse_metrics(kubectl(kubeconfig, "get", "--raw", "/metrics"))

        def operator_write(labels: str) -> bool:
            return label(labels, "verb") in WRITE_VERBS and label(labels, "resource") in OPERATOR_RESOURCES

        by_resource: dict[str, float] = {}
        for key, value in apiserver.items():
            metric, _, labels = key.partition("{")
            if metric == "apiserver_request_total" and label(labels, "verb") in WRITE_VERBS:
                what = "/".join(filter(None, (label(labels, "resource"), label(labels, "subresource"))))
                by_resource[what] = by_resource.get(what, 0.0) + value
        return cls(
            time.monotonic(),
            scrape(metrics_url),
            total(apiserver, "apiserver_request_total", operator_write),
            {name: cpu_seconds(pid) for name, pid in pids.items()},
            by_resource,
        )


@dataclass
class Window:
    """What happened between two snapshots."""

    before: Snapshot
    after: Snapshot

    @property
    def seconds(self) -> float:
        return self.after.at - self.before.at

    def cores(self, process: str) -> float:
        return (self.after.cpu[process] - self.before.cpu[process]) / self.seconds

    def delta(self, name: str, where: Callable[[str], bool] = lambda _labels: True) -> float:
        return total(self.after.operator, name, where) - total(self.before.operator, name, where)

    def phase_count(self, phase: str) -> float:
        return self.delta("modelledger_phase_seconds_count", lambda labels: label(labels, "phase") == phase)

    def phase_mean(self, phase: str) -> float:
        count = self.phase_count(phase)
        spent = self.delta("modelledger_phase_seconds_sum", lambda labels: label(labels, "phase") == phase)
        return spent / count if count else float("nan")

    def phases(self) -> dict[str, tuple[float, float]]:
        """Per phase: how many, and their mean duration in seconds."""
        return {phase: (self.phase_count(phase), self.phase_mean(phase)) for phase in PHASES}

    def busiest_writes(self, top: int = 4) -> str:
        """The resources the apiserver wrote most in the window (whoever wrote them), per second."""
        before = self.before.writes_by_resource
        rates = {k: (v - before.get(k, 0.0)) / self.seconds for k, v in self.after.writes_by_resource.items()}
        busiest = sorted(rates.items(), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{k} {v:.1f}/s" for k, v in busiest if v > 0) or "none"

    @property
    def api_writes(self) -> float:
        return self.after.apiserver_writes - self.before.apiserver_writes


def quiet(metrics_url: str) -> bool:
    """No pass queued and no Event or usedBy refresh waiting."""
    metrics = scrape(metrics_url)
    return (
        total(metrics, "modelledger_queue_depth") == 0
        and total(metrics, "modelledger_bookkeeping_pending") == 0
    )


def passes_settled(metrics_url: str, n: int, window: float = 10.0) -> bool:
    """Passes in a window no more than the settled resync's share (N / 300 s), with slack."""
    count = "modelledger_phase_seconds_count"
    before = total(scrape(metrics_url), count, lambda labels: label(labels, "phase") == "pass")
    time.sleep(window)
    after = total(scrape(metrics_url), count, lambda labels: label(labels, "phase") == "pass")
    return (after - before) / window <= max(1.0, 2 * n / 300)


def tracemalloc_report(pid: int, path: Path) -> str:
    if not path.parent.exists():
        return ""
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not path.exists():
        time.sleep(0.5)
    time.sleep(1)
    return path.read_text() if path.exists() else "(no report)"


def run(n: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    interval = args.interval
    with (
        LocalPlane(workdir / "plane", BENCH_PLANE) as plane,
        PrometheusServer(workdir / "prometheus") as prometheus,
    ):
        kc = plane.kubeconfig
        kubectl(kc, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(kc, "create", "namespace", NAMESPACE)
        kubectl(kc, "create", "namespace", "modelledger-system")  # the Lease and the signing key
        for version in ("fraud-detector-1-3-2", "fraud-detector-1-4-0"):
            kubectl(kc, "apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / f"{version}.yaml"))

        registry = CollectorRegistry()
        gauge = Gauge(
            "bench_rule_value", "a rule's value", ("namespace", "deployment", "rule"), registry=registry
        )
        names = [f"model-{i:05d}" for i in range(n)]
        for name in names:
            for rule in RULES:
                gauge.labels(NAMESPACE, name, rule).set(0.0)
        port = free_port()
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        prometheus.add_target("bench", f"127.0.0.1:{port}")
        prometheus.wait_for_target("bench")

        metrics_port = free_port()
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        report_path = workdir / "tracemalloc.txt"
        env = runtime.env(plane.access.env())
        if args.tracemalloc:
            env["MODELLEDGER_TRACEMALLOC"] = str(report_path)
        log = (workdir / "operator.log").open("wb")
        operator = subprocess.Popen(
            operator_command(metrics_port, prometheus.url, args.log_level),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        children = {child.name: child.pid for child in plane.processes.children}
        pids = {
            **{name: pid for name, pid in children.items() if name not in ("kube-apiserver", "etcd")},
            "operator": operator.pid,
            "apiserver": children["kube-apiserver"],
            "etcd": children["etcd"],
            **{child.name: child.pid for child in prometheus.processes.children},
            "machine": MACHINE,
        }
        rss = RssSampler(operator.pid)
        rss.start()
        result: dict[str, Any] = {"n": n, "interval": interval, "replicas": args.replicas}
        try:
            client = kubernetes.config.new_client_from_config(config_file=str(kc))
            objects = kubernetes.client.CustomObjectsApi(client)
            apps = kubernetes.client.AppsV1Api(client)
            began = time.monotonic()
            docs = [
                model_deployment(name, "fraud-detector-1-3-2", interval, "2s", args.replicas)
                for name in names
            ]
            apply_in_chunks(kc, docs)
            wait(
                "1.3.2 stable everywhere",
                lambda: sum(1 for s in statuses(objects) if s.get("stableRevision") == 1) == n,
                3600,
                2,
            )
            result["first_stable_s"] = time.monotonic() - began
            docs = [
                model_deployment(name, "fraud-detector-1-4-0", interval, "1h", args.replicas)
                for name in names
            ]
            apply_in_chunks(kc, docs)
            wait(
                "1.4.0 healthy everywhere",
                lambda: (
                    sum(
                        1
                        for s in statuses(objects)
                        if s.get("servingVersion") == "fraud-detector-1-4-0" and s.get("phase") == "Healthy"
                    )
                    == n
                ),
                3600,
                2,
            )
            result["setup_s"] = time.monotonic() - began

            # Steady state: every rule passing, nothing to decide, the set-up's Events all posted, and
            # the controller-manager done with the roll-out (its status updates wake passes).
            wait("the operator idle", lambda: quiet(metrics_url), 1800, 1)
            wait("passes settled", lambda: passes_settled(metrics_url, n), 1800, 0)
            time.sleep(max(5.0, 2 * float(interval.rstrip("s"))))
            steady_before = Snapshot.take(metrics_url, kc, pids)
            time.sleep(args.steady)
            steady = Window(steady_before, Snapshot.take(metrics_url, kc, pids))
            tick_key = f"modelledger_rule_tick_requests{{interval={float(interval.rstrip('s')):g}}}"
            result["steady"] = {
                "seconds": steady.seconds,
                "operator_cores": steady.cores("operator"),
                "apiserver_cores": steady.cores("apiserver"),
                "etcd_cores": steady.cores("etcd"),
                "prometheus_requests_per_s": steady.delta("modelledger_prometheus_query_seconds_count")
                / steady.seconds,
                "tick_requests": steady.after.operator.get(tick_key, float("nan")),
                "rule_evaluations_per_s": steady.delta("modelledger_rule_evaluations_total") / steady.seconds,
                "status_writes": steady.phase_count("status_write"),
                "passes_per_s": steady.phase_count("pass") / steady.seconds,
                "api_writes": steady.api_writes,
                "workload_applies": steady.phase_count("workload_apply"),
                "all_writes": steady.busiest_writes(),
                "rss_mib": rss.between(steady.before.at, steady.after.at),
                "cpu": {name: steady.cores(name) for name in pids},
            }
            if args.tracemalloc:
                result["tracemalloc_steady"] = tracemalloc_report(operator.pid, report_path)

            # The storm: one rule of the chosen deployments breaches at once.
            breaching = names[: max(1, round(n * args.breach_fraction))]
            done: dict[str, float] = {}
            stop = threading.Event()

            def watch() -> None:
                # Raw dicts: parsing each event into a V1Deployment costs milliseconds, and the clock
                # must read arrival, not parsing.
                stream = kubernetes.watch.Watch(return_type="object")
                for event in stream.stream(apps.list_namespaced_deployment, NAMESPACE, timeout_seconds=900):
                    body = event["raw_object"]
                    labels = body["spec"]["template"]["metadata"].get("labels") or {}
                    name = body["metadata"]["name"]
                    if labels.get("modelledger.io/version") == "fraud-detector-1-3-2" and name not in done:
                        done[name] = time.monotonic()
                    if len(done) >= len(breaching) or stop.is_set():
                        stream.stop()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            time.sleep(1)
            storm_before = Snapshot.take(metrics_url, kc, pids)
            for name in breaching:
                gauge.labels(NAMESPACE, name, "error-rate").set(0.9)
            visible_query = (
                f'count(bench_rule_value{{namespace="{NAMESPACE}",rule="error-rate"}} > {THRESHOLD})'
            )

            def breach_visible() -> bool:
                url = f"{prometheus.url}/api/v1/query?query={urllib.parse.quote(visible_query)}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    found = json.loads(response.read())["data"]["result"]
                return bool(found) and int(float(found[0]["value"][1])) == len(breaching)

            wait("breach visible to PromQL", breach_visible, 60, 0.05)
            visible = time.monotonic()
            visible_at = datetime.now(UTC)
            watcher.join(timeout=max(120.0, len(breaching) * 0.5))
            stop.set()
            storm = Window(storm_before, Snapshot.take(metrics_url, kc, pids))
            latencies = sorted(done[name] - visible for name in done)
            decided = sorted(
                (datetime.fromisoformat(entry["at"]) - visible_at).total_seconds()
                for s in statuses(objects)
                for entry in s.get("history", [])[:1]
                if entry.get("cause") == "AutomaticRollback"
            )
            result["storm"] = {
                "breached": len(breaching),
                "rolled_back": len(done),
                "latencies": latencies,
                "decided": decided,
                "seconds": storm.seconds,
                "operator_cores": storm.cores("operator"),
                "apiserver_cores": storm.cores("apiserver"),
                "etcd_cores": storm.cores("etcd"),
                "prometheus_requests_per_s": storm.delta("modelledger_prometheus_query_seconds_count")
                / storm.seconds,
                "conflicts": storm.delta("modelledger_conflicts_total"),
                "retries": storm.delta("modelledger_pass_retries_total"),
                "api_writes": storm.api_writes,
                "phases": storm.phases(),
                "cpu": {name: storm.cores(name) for name in pids},
            }
            result["rss_peak_mib"] = rss.peak()
            if args.tracemalloc:
                result["tracemalloc_peak"] = tracemalloc_report(operator.pid, report_path)
            server.shutdown()
            return result
        finally:
            rss.stop()
            operator.terminate()
            operator.wait(timeout=60)
            log.close()
            if args.keep_log:
                args.keep_log.write_bytes((workdir / "operator.log").read_bytes())


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def cpu_line(cores: dict[str, float]) -> str:
    """Who is busy: each process's cores, busiest first, then the machine's busy cores of all it has."""
    named = sorted(((v, k) for k, v in cores.items() if k != "machine"), reverse=True)
    shown = ", ".join(f"{name} {value:.2f}" for value, name in named)
    return f"{shown}; machine busy {cores.get('machine', float('nan')):.2f} of {os.cpu_count()}"


def print_tables(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'N':>6} {'interval':>8} {'breached':>8} {'rolled back':>11} "
        f"{'p50 s':>6} {'p95 s':>6} {'p99 s':>6} "
        f"{'p99-for s':>9} {'decided p99':>11} {'op cores':>8} {'apiserver':>9} {'etcd':>5} "
        f"{'409s':>5} {'RSS peak':>8}"
    )
    for r in rows:
        s = r["storm"]
        lat = s["latencies"]
        print(
            f"{r['n']:>6} {r['interval']:>8} {s['breached']:>8} {s['rolled_back']:>11} "
            f"{percentile(lat, 50):>6.2f} "
            f"{percentile(lat, 95):>6.2f} {percentile(lat, 99):>6.2f} {percentile(lat, 99) - FOR:>9.2f} "
            f"{percentile(s['decided'], 99):>11.2f} {s['operator_cores']:>8.2f} {s['apiserver_cores']:>9.2f} "
            f"{s['etcd_cores']:>5.2f} {s['conflicts']:>5.0f} {r['rss_peak_mib']:>8.0f}"
        )
        print(
            "       phases: "
            + ", ".join(f"{p} {c:.0f} x {m * 1000:.0f} ms" for p, (c, m) in s["phases"].items())
        )
    for r in rows:
        print(f"  N={r['n']}: storm CPU (cores) {cpu_line(r['storm']['cpu'])}")
    print("(storm: breach visible to PromQL -> pod template names the stable version; for = 2 s;")
    print(" phases: count x mean duration during the storm, from modelledger_phase_seconds)")
    print(" decided: the rollback's history entry; cores: CPU during the storm; RSS in MiB)")
    print()
    print(
        f"{'N':>6} {'interval':>8} {'rules':>6} {'requests/tick':>13} {'Prom req/s':>10} {'passes/s':>8} "
        f"{'op cores':>8} {'apiserver':>9} {'etcd':>5} {'status writes':>13} {'API writes':>10} "
        f"{'RSS MiB':>7} "
        f"{'set-up s':>8}"
    )
    for r in rows:
        s = r["steady"]
        print(
            f"{r['n']:>6} {r['interval']:>8} {r['n'] * len(RULES):>6} {s['tick_requests']:>13.0f} "
            f"{s['prometheus_requests_per_s']:>10.1f} {s['passes_per_s']:>8.1f} {s['operator_cores']:>8.3f} "
            f"{s['apiserver_cores']:>9.2f} {s['etcd_cores']:>5.2f} {s['status_writes']:>13.0f} "
            f"{s['api_writes']:>10.0f} {s['rss_mib']:>7.0f} {r['setup_s']:>8.0f}"
        )
    for r in rows:
        s = r["steady"]
        print(
            f"  N={r['n']}: workload applies {s['workload_applies']:.0f}; apiserver writes: {s['all_writes']}"
        )
        print(f"  N={r['n']}: steady CPU (cores) {cpu_line(s['cpu'])}")
    print(
        f"(steady state over {rows[0]['steady']['seconds']:.0f} s, every rule passing; API writes: writes the"
    )
    print(" apiserver counted to modelledger's kinds, Deployments, Services and Events)")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,100,1000")
    parser.add_argument("--interval", default="1s", help="spec.rollback.interval of every deployment")
    parser.add_argument("--breach-fraction", type=float, default=1.0, help="share of deployments that breach")
    parser.add_argument("--replicas", type=int, default=1, help="pods per deployment (kwok nodes)")
    parser.add_argument("--steady", type=float, default=20.0, help="seconds of steady state measured")
    parser.add_argument("--tracemalloc", action="store_true", help="memory breakdown (slows the operator)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep-log", type=Path, help="copy the operator's log here")
    parser.add_argument("--log-level", default="WARNING", help="the operator's")
    args = parser.parse_args()
    rows = []
    for n in (int(size) for size in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"modelledger-bench-{n}-") as tmp:
            result = run(n, args, Path(tmp))
        rows.append(result)
        print(
            f"N={n}: {result['storm']['rolled_back']}/{result['storm']['breached']} rolled back, "
            f"set-up {result['setup_s']:.0f} s",
            flush=True,
        )
        for key in ("tracemalloc_steady", "tracemalloc_peak"):
            if key in result:
                print(f"--- {key} (N={n})\n{result[key]}")
    print()
    print_tables(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
