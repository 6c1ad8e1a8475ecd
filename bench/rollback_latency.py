# mypy: disallow-untyped-calls=False
"""Rollback latency at scale: N ModelDeployments with 3 rules each, on the local plane and a real Prometheus.

For every N: N deployments serve 1.3.2 until it is stable, then 1.4.0; a breach of one rule of every
deployment is exported at once. Latency = from the breach being visible to a Prometheus query until the
deployment's pod template names the stable version again. Also: the operator's Prometheus queries per
second, its RSS and CPU.

    .venv/bin/python bench/rollback_latency.py [--sizes 1,100,1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kubernetes
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from modelledger.testing.plane import LocalPlane, PlaneOptions
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "bench"
FOR = 2.0  # seconds a breach must hold
THRESHOLD = 0.5


def rules() -> list[dict[str, Any]]:
    query = 'max(bench_rule_value{namespace="{{namespace}}",deployment="{{deployment}}",rule="%s"})'
    return [
        {"name": name, "query": query % name, "comparator": ">", "threshold": THRESHOLD, "for": f"{FOR:g}s"}
        for name in ("error-rate", "latency", "saturation")
    ]


def model_deployment(name: str, version: str, interval: str, bake: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "modelName": "fraud-detector",
            "version": version,
            "replicas": 1,
            "stability": {"bakeTime": bake},
            "rollback": {"interval": interval, "cooldown": "1h", "rules": rules()},
        },
    }


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        [str(Path(sys.executable).parent / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout


def wait(what: str, probe: Any, timeout: float, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s")


def statuses(objects: Any) -> list[dict[str, Any]]:
    items = objects.list_namespaced_custom_object("modelledger.io", "v1alpha1", NAMESPACE, "modeldeployments")
    return [item.get("status") or {} for item in items["items"]]


@dataclass
class OperatorStats:
    pid: int

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks of 1/100 s


def counters(metrics_url: str) -> tuple[float, float]:
    """(rule evaluations, HTTP requests to Prometheus) the operator has made so far."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        lines = response.read().decode().splitlines()

    def total(prefix: str) -> float:
        return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))

    return total("modelledger_rule_evaluations_total{"), total("modelledger_prometheus_query_seconds_count")


def run(n: int, interval: str, workdir: Path) -> dict[str, Any]:
    with (
        LocalPlane(workdir / "plane", PlaneOptions(nodes=2)) as plane,
        PrometheusServer(workdir / "prometheus") as prometheus,
    ):
        kc = plane.kubeconfig
        kubectl(kc, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(kc, "create", "namespace", NAMESPACE)
        for version in ("fraud-detector-1-3-2", "fraud-detector-1-4-0"):
            kubectl(kc, "apply", "-n", NAMESPACE, "-f", str(REPO / "examples" / f"{version}.yaml"))

        registry = CollectorRegistry()
        gauge = Gauge(
            "bench_rule_value", "a rule's value", ("namespace", "deployment", "rule"), registry=registry
        )
        names = [f"model-{i:04d}" for i in range(n)]
        for name in names:
            for rule in ("error-rate", "latency", "saturation"):
                gauge.labels(NAMESPACE, name, rule).set(0.0)
        port = free_port()
        server, _thread = start_http_server(port, addr="127.0.0.1", registry=registry)
        prometheus.add_target("bench", f"127.0.0.1:{port}")
        prometheus.wait_for_target("bench")

        metrics_port = free_port()
        log = (workdir / "operator.log").open("wb")
        operator = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelledger.cli.main",
                "run",
                "-n",
                NAMESPACE,
                "--log-level",
                "WARNING",
                "--liveness",
                f"http://127.0.0.1:{free_port()}/healthz",
                "--metrics-address",
                f"127.0.0.1:{metrics_port}",
                "--prometheus-url",
                prometheus.url,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=plane.access.env(),
        )
        stats = OperatorStats(operator.pid)
        try:
            client = kubernetes.config.new_client_from_config(config_file=str(kc))
            objects = kubernetes.client.CustomObjectsApi(client)
            apps = kubernetes.client.AppsV1Api(client)
            began = time.monotonic()
            docs = [model_deployment(name, "fraud-detector-1-3-2", interval, "2s") for name in names]
            kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
            wait(
                "1.3.2 stable everywhere",
                lambda: sum(1 for s in statuses(objects) if s.get("stableRevision") == 1) == n,
                1800,
                2,
            )
            docs = [model_deployment(name, "fraud-detector-1-4-0", interval, "1h") for name in names]
            kubectl(kc, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
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
                1800,
                2,
            )
            setup = time.monotonic() - began
            time.sleep(3)  # a quiet moment: every rule passing

            done: dict[str, float] = {}
            stop = threading.Event()

            def watch() -> None:
                # Raw dicts: turning each event into a V1Deployment costs milliseconds, and a rollback
                # storm sends thousands of Deployment updates; the clock must read arrival, not parsing.
                stream = kubernetes.watch.Watch(return_type="object")
                for event in stream.stream(apps.list_namespaced_deployment, NAMESPACE, timeout_seconds=900):
                    body = event["raw_object"]
                    labels = body["spec"]["template"]["metadata"].get("labels") or {}
                    name = body["metadata"]["name"]
                    if labels.get("modelledger.io/version") == "fraud-detector-1-3-2" and name not in done:
                        done[name] = time.monotonic()
                    if len(done) == n or stop.is_set():
                        stream.stop()

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            time.sleep(1)
            metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
            (evaluations_before, requests_before), cpu_before = counters(metrics_url), stats.cpu_seconds()
            t_before = time.monotonic()
            for name in names:
                gauge.labels(NAMESPACE, name, "error-rate").set(0.9)
            visible_query = (
                f'count(bench_rule_value{{namespace="{NAMESPACE}",rule="error-rate"}} > {THRESHOLD})'
            )

            def breach_visible() -> bool:
                url = f"{prometheus.url}/api/v1/query?query={urllib.parse.quote(visible_query)}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    result = json.loads(response.read())["data"]["result"]
                return bool(result) and int(float(result[0]["value"][1])) == n

            wait("breach visible to PromQL", breach_visible, 30, 0.05)
            visible = time.monotonic()
            visible_at = datetime.now(UTC)
            watcher.join(timeout=max(60.0, n * 0.5))
            stop.set()
            t_after = time.monotonic()
            evaluations_after, requests_after = counters(metrics_url)
            rules_per_s = (evaluations_after - evaluations_before) / (t_after - t_before)
            qps = (requests_after - requests_before) / (t_after - t_before)
            cpu = (stats.cpu_seconds() - cpu_before) / (t_after - t_before)
            latencies = sorted(done[name] - visible for name in done)
            # When each rollback was decided (its history entry), apart from when it was applied.
            decided = sorted(
                (datetime.fromisoformat(entry["at"]) - visible_at).total_seconds()
                for s in statuses(objects)
                for entry in s.get("history", [])[:1]
                if entry.get("cause") == "AutomaticRollback"
            )
            server.shutdown()
            return {
                "n": n,
                "interval": interval,
                "rolled_back": len(done),
                "setup_s": setup,
                "latencies": latencies,
                "decided": decided,
                "qps": qps,
                "rules_per_s": rules_per_s,
                "cpu": cpu,
                "rss": stats.rss_mib(),
            }
        finally:
            operator.terminate()
            operator.wait(timeout=30)
            log.close()


def percentile(values: list[float], q: int) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1,100,1000")
    args = parser.parse_args()
    rows = []
    for n in (int(size) for size in args.sizes.split(",")):
        interval = "1s" if n == 1 else "5s"
        with tempfile.TemporaryDirectory(prefix=f"modelledger-bench-{n}-") as tmp:
            result = run(n, interval, Path(tmp))
        rows.append(result)
        print(
            f"N={n}: done ({result['rolled_back']}/{n} rolled back, set-up {result['setup_s']:.0f} s)",
            flush=True,
        )
    print()
    print(
        f"{'N':>5} {'interval':>8} {'rolled back':>11} {'p50 s':>7} {'p95 s':>7} {'p99 s':>7} "
        f"{'p99-for s':>9} {'decided p99 s':>13} {'rules/s':>8} {'queries/s':>9} {'CPU cores':>9} "
        f"{'RSS MiB':>8}"
    )
    for r in rows:
        lat = r["latencies"]
        p99 = percentile(lat, 99)
        print(
            f"{r['n']:>5} {r['interval']:>8} {r['rolled_back']:>11} {percentile(lat, 50):>7.2f} "
            f"{percentile(lat, 95):>7.2f} {p99:>7.2f} {p99 - FOR:>9.2f} "
            f"{percentile(r['decided'], 99):>13.2f} "
            f"{r['rules_per_s']:>8.1f} "
            f"{r['qps']:>9.1f} {r['cpu']:>9.2f} "
            f"{r['rss']:>8.0f}"
        )
    print(f"(latency: breach visible to PromQL -> pod template names the stable version; for = {FOR:g} s;")
    print(" decided: when the rollback's history entry was written; rules/s: rule evaluations;")
    print(" queries/s: HTTP requests to Prometheus, after batching)")


if __name__ == "__main__":
    main()
