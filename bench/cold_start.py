# mypy: disallow-untyped-calls=False
"""Cold start: how long until the operator is current on a cluster that already holds a fleet.

N ModelDeployments (3 rules each) and M ModelVersions exist before the operator starts (each
deployment serves a version of its own; the rest are unused). Measured:

- **first start**: from `modelledger run` until every deployment's `status.observedGeneration` equals
  its generation (decided, its workload applied, its status written), and until every one is Healthy;
- **restart**: with all of them Healthy, the operator is stopped and started again; from the start
  until it has run a pass for every deployment and its rule engine has evaluated every rule once
  (nothing is written: nothing changed).

    .venv/bin/python bench/cold_start.py [--deployments 1000] [--versions 10000]
"""

from __future__ import annotations

import argparse
import copy
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kubernetes
import yaml

import runtime
from modelledger.testing.plane import LocalPlane
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rollback_latency import (
    BENCH_PLANE,
    NAMESPACE,
    REPO,
    RssSampler,
    apply_in_chunks,
    kubectl,
    listed,
    model_deployment,
    operator_command,
    quiet,
    scrape,
    statuses,
    total,
    wait,
)


def versions(count: int) -> list[dict[str, Any]]:
    base = yaml.safe_load((REPO / "examples" / "fraud-detector-1-3-2.yaml").read_text())
    made = []
    for i in range(count):
        one = copy.deepcopy(base)
        one["metadata"] = {"name": f"fraud-detector-v{i:05d}", "namespace": NAMESPACE}
        one["spec"]["version"] = f"1.{i // 1000}.{i % 1000}"
        made.append(one)
    return made


def start_operator(
    workdir: Path, env: dict[str, str], prometheus_url: str, metrics_port: int
) -> subprocess.Popen[bytes]:
    log = (workdir / f"operator-{time.monotonic_ns()}.log").open("wb")
    return subprocess.Popen(
        operator_command(metrics_port, prometheus_url),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=runtime.env(env),
    )


def metric(url: str, name: str, where: str = "") -> float:
    try:
        return total(scrape(url), name, lambda labels: where in labels)
    except OSError:
        return 0.0


def changed_fields(before: dict[str, dict[str, Any]], after: list[dict[str, Any]]) -> dict[str, int]:
    """How many deployments' status changed across the restart, per top-level status field."""
    counts: dict[str, int] = {}
    for item in after:
        old, new = before.get(item["metadata"]["name"], {}), item.get("status") or {}
        for field in sorted(set(old) | set(new)):
            if old.get(field) != new.get(field):
                counts[field] = counts.get(field, 0) + 1
    return counts


def run(n: int, m: int, workdir: Path) -> dict[str, Any]:
    with (
        LocalPlane(workdir / "plane", BENCH_PLANE) as plane,
        PrometheusServer(workdir / "prometheus") as prometheus,
    ):
        kc = plane.kubeconfig
        kubectl(kc, "apply", "--server-side", "-f", str(REPO / "crds"))
        kubectl(kc, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(kc, "create", "namespace", NAMESPACE)
        kubectl(kc, "create", "namespace", "modelledger-system")
        began = time.monotonic()
        apply_in_chunks(kc, versions(m))
        docs = [
            model_deployment(f"model-{i:05d}", f"fraud-detector-v{i:05d}", "5s", "2s", 1) for i in range(n)
        ]
        apply_in_chunks(kc, docs)
        result: dict[str, Any] = {"create_s": time.monotonic() - began}
        client = kubernetes.config.new_client_from_config(config_file=str(kc))
        objects = kubernetes.client.CustomObjectsApi(client)

        def current() -> int:
            return len(
                [
                    item
                    for item in listed(objects)
                    if (item.get("status") or {}).get("observedGeneration") == item["metadata"]["generation"]
                ]
            )

        metrics_port = free_port()
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        operator = start_operator(workdir, plane.access.env(), prometheus.url, metrics_port)
        rss = RssSampler(operator.pid)
        rss.start()
        started = time.monotonic()
        try:
            wait("every status current", lambda: current() == n, 1800, 1)
            result["first_current_s"] = time.monotonic() - started
            wait(
                "every deployment Healthy",
                lambda: sum(1 for s in statuses(objects) if s.get("phase") == "Healthy") == n,
                1800,
                1,
            )
            result["first_healthy_s"] = time.monotonic() - started
            result["first_rss_peak_mib"] = rss.peak()
            # Stop only once every deployment's rules are recorded (NoData: no exporter serves their
            # series here, so no bake completes either) and nothing waits, so a restart has nothing
            # to write.
            wait(
                "every deployment's rules recorded",
                lambda: sum(1 for s in statuses(objects) if len(s.get("rules") or []) == 3) == n,
                1800,
                1,
            )
            wait("the operator idle", lambda: quiet(url), 600, 1)
            result["first_idle_s"] = time.monotonic() - started
        finally:
            rss.stop()
            operator.terminate()
            operator.wait(timeout=60)

        stopped = {item["metadata"]["name"]: item.get("status") or {} for item in listed(objects)}
        time.sleep(20)  # the Lease expires; the restarted operator takes it at once either way (released)
        operator = start_operator(workdir, plane.access.env(), prometheus.url, metrics_port)
        rss = RssSampler(operator.pid)
        rss.start()
        started = time.monotonic()
        try:
            wait(
                "a pass for every deployment",
                lambda: metric(url, "modelledger_phase_seconds_count", "phase=pass") >= n,
                1800,
                0.5,
            )
            result["restart_passes_s"] = time.monotonic() - started
            wait(
                "every rule evaluated",
                lambda: metric(url, "modelledger_rule_tick_rules") >= 3 * n,
                1800,
                0.5,
            )
            result["restart_rules_s"] = time.monotonic() - started
            time.sleep(10)
            result["restart_status_writes"] = metric(
                url, "modelledger_phase_seconds_count", "phase=status_write"
            )
            result["restart_changed_fields"] = changed_fields(stopped, listed(objects))
            result["restart_rss_mib"] = rss.peak()
        finally:
            rss.stop()
            operator.terminate()
            operator.wait(timeout=60)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="modelledger-cold-") as tmp:
        r = run(args.deployments, args.versions, Path(tmp))
    print()
    print(
        f"cold start: {args.deployments} ModelDeployments (3 rules, interval 5 s), "
        f"{args.versions} ModelVersions"
    )
    print(f"{'what':<58} {'figure':>10}")
    rows = [
        ("objects created before the operator starts (s)", r["create_s"]),
        ("first start: every status current (s)", r["first_current_s"]),
        ("first start: every deployment Healthy (s)", r["first_healthy_s"]),
        ("first start: rules recorded everywhere, nothing queued (s)", r["first_idle_s"]),
        ("first start: RSS peak (MiB)", r["first_rss_peak_mib"]),
        ("restart: a pass for every deployment (s)", r["restart_passes_s"]),
        ("restart: every rule evaluated (s)", r["restart_rules_s"]),
        ("restart: status writes in the first ~10 s after that", r["restart_status_writes"]),
        ("restart: RSS peak (MiB)", r["restart_rss_mib"]),
    ]
    for what, figure in rows:
        print(f"{what:<58} {figure:>10.1f}")
    fields = ", ".join(f"{k} {v}" for k, v in r["restart_changed_fields"].items()) or "none"
    print(f"restart: status fields that changed, by deployments: {fields}")


if __name__ == "__main__":
    main()
