"""High availability on the real plane (issue 12): two `modelledger run` processes share a namespace, an
audit file and a Lease. kill -9 of the leader in the middle of a rollback storm hands over to the
standby with no rollback done twice and every chain verifying; SIGTERM hands over at once; a loop
stalled on purpose fails liveness within its bound.

The measured times are printed (run with `-s` to see them) and reported in docs/reliability.md.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.testing.access import ClusterAccess
from modelledger.testing.prometheus import PrometheusServer
from tests.conftest import Exporter
from tests.helpers import eventually
from tests.operator_process import OperatorProcess, lease_name
from tests.scenario import QUERY, V132, V140, apply, cli, model_deployment, versions

DEPLOYMENTS = 6
LEASE_DURATION = 15.0  # the operator's default, as client-go's
STORM_TIMEOUT = 120.0


def storm_deployment(name: str, version: str, *, bake: str, hold: int) -> dict[str, Any]:
    """A deployment whose rule breaches `hold` seconds after its error rate goes up."""
    document = model_deployment(version, bake=bake)
    document["metadata"]["name"] = name
    document["spec"]["rollback"] = {
        "interval": "1s",
        "cooldown": "5m",
        "rules": [
            {"name": "error-rate", "query": QUERY, "comparator": ">", "threshold": 0.5, "for": f"{hold}s"}
        ],
    }
    return document


def deployments(plane: ClusterAccess, namespace: str) -> dict[str, dict[str, Any]]:
    listed = json.loads(plane.kubectl("get", "mdep", "-n", namespace, "-o", "json").stdout)["items"]
    return {item["metadata"]["name"]: item for item in listed}


def workloads(plane: ClusterAccess, namespace: str) -> dict[str, tuple[str, str]]:
    """name → (version, revision) of each serving Deployment whose rollout is complete."""
    listed = json.loads(plane.kubectl("get", "deployments", "-n", namespace, "-o", "json").stdout)["items"]
    done: dict[str, tuple[str, str]] = {}
    for item in listed:
        s, spec = item.get("status", {}), item["spec"]
        if (
            s.get("observedGeneration", 0) >= item["metadata"]["generation"]
            and s.get("updatedReplicas")
            == s.get("availableReplicas")
            == s.get("replicas")
            == spec["replicas"]
        ):
            labels = spec["template"]["metadata"]["labels"]
            done[item["metadata"]["name"]] = (
                labels["modelledger.io/version"],
                labels["modelledger.io/revision"],
            )
    return done


def causes(item: dict[str, Any]) -> list[str]:
    return [entry["cause"] for entry in (item.get("status") or {}).get("history") or []]


def lease_holder(plane: ClusterAccess, namespace: str) -> str:
    lease = json.loads(
        plane.kubectl("get", "lease", lease_name(namespace), "-n", "modelledger-system", "-o", "json").stdout
    )
    return str(lease["spec"].get("holderIdentity") or "")


def timed(probe: Any, timeout: float, what: str, interval: float = 0.05) -> float:
    """Seconds until `probe()` is true (polled every `interval`), or fail."""
    began = time.monotonic()
    eventually(probe, timeout, what, interval=interval)
    return time.monotonic() - began


@pytest.fixture
def pair(
    plane: ClusterAccess,
    namespace: str,
    installed_crds: object,
    identity_guards: None,
    tmp_path: Path,
    prometheus: PrometheusServer,
) -> Iterator[tuple[OperatorProcess, OperatorProcess]]:
    """Two operators for the same namespace, audit file and Lease (started by the test)."""
    a = OperatorProcess(plane, namespace, tmp_path, prometheus.url, name="a")
    b = OperatorProcess(plane, namespace, tmp_path, prometheus.url, name="b")
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()


KILLS = {
    # The test sends SIGKILL as soon as it sees the first rollback in the cluster.
    "kill-9": None,
    # The leader SIGKILLs itself right after writing its first rollback (status and audit record),
    # before it applies the workload: the successor must apply it without deciding it again.
    "kill-9-after-status-write": "after-status-write:AutomaticRollback",
}


@pytest.mark.parametrize("crash_point", KILLS.values(), ids=KILLS.keys())
def test_kill_9_of_the_leader_mid_storm_hands_over_without_a_double_rollback(
    plane: ClusterAccess,
    namespace: str,
    pair: tuple[OperatorProcess, OperatorProcess],
    exporter: Exporter,
    prometheus: PrometheusServer,
    tmp_path: Path,
    crash_point: str | None,
) -> None:
    a, b = pair
    names = [f"model-{i}" for i in range(DEPLOYMENTS)]
    errors = exporter.gauge("test_error_rate", "errors per request", ("namespace", "deployment"))
    for name in names:
        errors.labels(namespace, name).set(0.0)
    prometheus.wait_for_target(exporter.name)

    a.start(**({"MODELLEDGER_TEST_CRASH": crash_point} if crash_point else {}))
    eventually(a.leading, 30, "a leads")
    b.start()
    assert not b.leading(), "b stands by"
    assert b.healthz()[0] == 200, "a standby is alive"
    assert b.healthz("/readyz")[0] == 200, "a standby is ready: it serves"
    assert lease_holder(plane, namespace) == a.identity

    # Six deployments: 1.3.2 stable, then 1.4.0 serving (revision 2). Their rules breach 2, 4, ... 12 s
    # after the error rate goes up, so the rollbacks come one after the other: a storm with a middle.
    versions(plane, namespace)
    apply(
        plane, namespace, *[storm_deployment(n, V132, bake="2s", hold=2 + 2 * i) for i, n in enumerate(names)]
    )

    def all_stable() -> bool:
        found = deployments(plane, namespace)
        return len(found) == DEPLOYMENTS and all(
            (item.get("status") or {}).get("stableRevision") == 1 for item in found.values()
        )

    eventually(all_stable, 90, "every deployment stable at revision 1")
    apply(
        plane, namespace, *[storm_deployment(n, V140, bake="1h", hold=2 + 2 * i) for i, n in enumerate(names)]
    )
    eventually(
        lambda: all(workloads(plane, namespace).get(n) == (V140, "2") for n in names), 90, "1.4.0 serving"
    )

    # The storm: every error rate up at once; kill -9 the leader as soon as the first rollback is written.
    for name in names:
        errors.labels(namespace, name).set(0.9)

    def first_rollback() -> bool:
        return any("AutomaticRollback" in causes(item) for item in deployments(plane, namespace).values())

    if crash_point is None:
        eventually(first_rollback, 60, "the first automatic rollback", interval=0.05)
        a.kill()
    else:
        assert a.process is not None
        eventually(lambda: a.process.poll() is not None, 60, "a kills itself at its first rollback", 0.05)
        assert a.process.returncode == -signal.SIGKILL
    killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
    done_before = sum("AutomaticRollback" in causes(i) for i in deployments(plane, namespace).values())
    takeover = timed(b.leading, 60, "b takes over after kill -9 of a")

    def all_rolled_back() -> bool:
        found = deployments(plane, namespace).values()
        return all("AutomaticRollback" in causes(item) for item in found)

    eventually(all_rolled_back, STORM_TIMEOUT, "every deployment rolled back")
    rolled_back_after = time.monotonic() - killed_at
    eventually(
        lambda: all(workloads(plane, namespace).get(n) == (V132, "3") for n in names),
        60,
        "1.3.2 serving again",
    )
    found = deployments(plane, namespace)
    for name, item in found.items():
        history = item["status"]["history"]
        assert causes(item).count("AutomaticRollback") == 1, (
            f"{name}: one breach, one rollback: {causes(item)}"
        )
        assert [e["revision"] for e in history] == [3, 2, 1], f"{name}: no lost or duplicate revision"
        assert item["status"]["phase"] == "RolledBack"
    first_decision_by_b = min(
        (
            datetime.fromisoformat(entry["at"].replace("Z", "+00:00")) - killed_wall
            for item in found.values()
            for entry in item["status"]["history"]
            if entry["cause"] == "AutomaticRollback"
            and datetime.fromisoformat(entry["at"].replace("Z", "+00:00")) > killed_wall
        ),
        default=None,
    )

    # One chain: the histories, and the audit file both processes appended to.
    audit_file = tmp_path / "audit.jsonl"
    verified = cli(plane, "audit", "verify", "-n", namespace)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    verified = cli(plane, "audit", "verify", "--file", str(audit_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    records = [json.loads(line) for line in audit_file.read_text().splitlines() if line.strip()]
    per_deployment = {
        n: sum(1 for r in records if r["action"] == "RolledBack" and r["object"] == n) for n in names
    }
    assert all(count <= 1 for count in per_deployment.values()), (
        f"a rollback recorded twice: {per_deployment}"
    )
    lost = [n for n, count in per_deployment.items() if count == 0]

    # A graceful stop hands over at once: a comes back as the standby, then b gets SIGTERM.
    a.start()
    assert not a.leading()
    assert b.process is not None
    b.process.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    stopped = handover = None
    while (stopped is None or handover is None) and time.monotonic() - stopping < 30:
        if stopped is None and b.process.poll() is not None:
            stopped = time.monotonic() - stopping  # b has released the Lease on its way out
        if handover is None and a.leading():
            handover = time.monotonic() - stopping
        time.sleep(0.05)
    assert stopped is not None, "b stops within 30 s of SIGTERM"
    assert handover is not None, "a takes over within 30 s of b's SIGTERM"
    assert lease_holder(plane, namespace) == a.identity
    # ... and the new leader decides: a deployment created now is served.
    late = storm_deployment("late", V132, bake="1h", hold=2)
    apply(plane, namespace, late)
    errors.labels(namespace, "late").set(0.0)
    eventually(lambda: workloads(plane, namespace).get("late") == (V132, "1"), 60, "the new leader deploys")
    verified = cli(plane, "audit", "verify", "--file", str(audit_file))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    report = {
        "kill": "at the crash point " + crash_point if crash_point else "SIGKILL from the test",
        "deployments": DEPLOYMENTS,
        "rolled back before the kill": done_before,
        "takeover after kill -9 (s)": round(takeover, 2),
        "first rollback by the new leader after the kill (s)": (
            round(first_decision_by_b.total_seconds(), 2) if first_decision_by_b else None
        ),
        "every deployment rolled back after the kill (s)": round(rolled_back_after, 2),
        "audit records lost at the kill (issue 12 item 4)": lost,
        "handover after SIGTERM (s)": round(handover, 2),
        "SIGTERM to exit (s)": round(stopped, 2),
    }
    print("\nHA measurements: " + json.dumps(report, indent=2))
    assert takeover < LEASE_DURATION + 10, "takeover within the lease duration (with slack)"
    assert handover < 10, "a released lease is taken at the next attempt"


def test_a_stalled_loop_fails_liveness_and_a_standby_stays_alive(
    plane: ClusterAccess, namespace: str, pair: tuple[OperatorProcess, OperatorProcess]
) -> None:
    a, b = pair
    bound = 5.0  # --stall-timeout; the deployments' interval is 1 s, so the bound is max(5, 3 x 1)
    for operator in (a, b):
        operator.extra = ["--stall-timeout", str(bound)]
    a.start(MODELLEDGER_TEST_STALL="stuck")
    eventually(a.leading, 30, "a leads")
    b.start(MODELLEDGER_TEST_STALL="stuck")
    versions(plane, namespace)
    fine = model_deployment(V132, bake="1h")
    apply(plane, namespace, fine)
    eventually(lambda: workloads(plane, namespace).get("fraud-detector") == (V132, "1"), 60, "a works")
    assert a.healthz()[0] == 200

    stuck = model_deployment(V132, bake="1h")
    stuck["metadata"]["name"] = "stuck"
    apply(plane, namespace, stuck)
    detected = timed(lambda: a.healthz()[0] == 500, 60, "liveness fails", interval=0.2)
    code, body = a.healthz()
    assert code == 500
    assert [s["deployment"] for s in body["stalled"]] == ["stuck"], body
    assert b.healthz()[0] == 200, "the standby's loops are not expected to move: alive"
    assert a.healthz("/readyz")[0] == 200, "readiness is about serving, not progress"
    print(f"\nliveness failed {detected:.1f} s after the stalled deployment was created (bound {bound} s)")
    assert detected < bound + 10
    print(yaml.safe_dump({"healthz": body}))
