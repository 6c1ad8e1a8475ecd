"""The command line against the real plane and the operator as a process: `list`, `history` and `status`
round-trip as JSON and YAML, `status --watch` gates a CD pipeline (0 on a healthy deployment, 1 within
its timeout on a rollback), and the exit codes for not found, forbidden and an unreachable cluster."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import Gauge

from modelledger.api import HistoryEntry
from modelledger.testing.access import ClusterAccess
from modelledger.testing.processes import free_port
from tests.helpers import eventually
from tests.identities import service_account_kubeconfig
from tests.operator_process import OperatorProcess
from tests.scenario import V132, V140, cli, get, rolled_back, stable_then_upgraded, wait_phase

MDEP = "fraud-detector"


def parsed(plane: ClusterAccess, *args: str, expect: int = 0) -> Any:
    """The command's output as a document (`-o json` or `-o yaml` among `args`), its exit code checked."""
    done = cli(plane, *args)
    assert done.returncode == expect, (args, done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return json.loads(done.stdout) if "json" in args else yaml.safe_load(done.stdout)


def both(plane: ClusterAccess, *args: str, expect: int = 0) -> tuple[Any, Any]:
    return parsed(plane, *args, "-o", "json", expect=expect), parsed(
        plane, *args, "-o", "yaml", expect=expect
    )


def same_object(listed: dict[str, Any], raw: dict[str, Any]) -> None:
    """The CLI printed the object as the apiserver has it (exactly, when nothing was written between)."""
    assert "managedFields" not in listed["metadata"]
    if listed["metadata"]["resourceVersion"] == raw["metadata"]["resourceVersion"]:
        raw_metadata = {k: v for k, v in raw["metadata"].items() if k != "managedFields"}
        assert listed == {**raw, "metadata": raw_metadata}
    assert listed["spec"] == raw["spec"]
    assert listed["status"]["history"] == raw["status"]["history"]


def watch(plane: ClusterAccess, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "modelledger.cli.main", "status", MDEP, "--watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**plane.env(), "COLUMNS": "200"},
    )


def test_round_trips_and_status_as_a_cd_gate_through_a_rollback(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess, error_rate: Gauge
) -> None:
    operator.start()
    stable_then_upgraded(plane, namespace)
    wait_phase(plane, namespace, "Healthy")
    ns = ("-n", namespace)

    # list: a kubectl List of the objects, JSON and YAML alike
    as_json, as_yaml = both(plane, "list", *ns)
    raw = get(plane, namespace, "mdep", MDEP)
    assert (as_json["kind"], len(as_json["items"])) == ("List", 1)
    same_object(as_json["items"][0], raw)
    same_object(as_yaml["items"][0], raw)
    table = cli(plane, "list", "-A")
    assert table.returncode == 0
    row = next(line.split() for line in table.stdout.splitlines() if line.startswith(namespace))
    assert row[1:7] == [MDEP, "fraud-detector", V140, V140, "Healthy", "2"]

    # history: the status's entries verbatim, verified against the published keys
    as_json, as_yaml = both(plane, "history", MDEP, *ns)
    assert as_yaml == as_json
    raw = get(plane, namespace, "mdep", MDEP)
    assert as_json["history"] == raw["status"]["history"]
    assert [HistoryEntry.model_validate(e).version for e in as_json["history"]] == [V140, V132]
    assert as_json["verification"]["result"] == "verified", as_json["verification"]
    assert (as_json["servingVersion"], as_json["currentRevision"], as_json["stableRevision"]) == (V140, 2, 1)

    # status: Healthy on the desired version is exit 0, with and without --watch
    as_json, as_yaml = both(plane, "status", MDEP, *ns)
    assert as_yaml == as_json
    assert as_json["result"]["status"] == "Healthy"
    assert as_json["result"]["healthy"] is True
    assert as_json["desiredVersion"] == V140
    assert as_json["status"]["servingVersion"] == V140
    assert "history" not in as_json["status"]
    started = time.monotonic()
    healthy = cli(plane, "status", MDEP, *ns, "--watch", "--timeout", "30s")
    assert healthy.returncode == 0, healthy.stderr
    assert time.monotonic() - started < 15
    assert "Healthy" in healthy.stdout.splitlines()[-1]

    # --stable waits for the bake (1h here): the timeout ends it, exit 1, on time
    started = time.monotonic()
    baking = cli(plane, "status", MDEP, *ns, "--watch", "--stable", "--timeout", "3s")
    elapsed = time.monotonic() - started
    assert baking.returncode == 1
    assert "timed out after 3s" in baking.stderr
    assert elapsed < 15, f"the 3 s timeout took {elapsed:.1f} s"

    # a pipeline waiting on the bake sees the rollback: exit 1 well within its timeout
    gate = watch(plane, *ns, "--stable", "--timeout", "90s")
    time.sleep(1.0)
    assert gate.poll() is None, "the gate returned before the bake or a rollback"
    error_rate.labels(namespace=namespace, deployment=MDEP).set(0.9)
    started = time.monotonic()
    out, err = gate.communicate(timeout=90)
    assert gate.returncode == 1, (out, err)
    assert time.monotonic() - started < 60
    assert "RolledBack" in out.splitlines()[-1], out
    assert "timed out" not in err
    eventually(lambda: rolled_back(plane, namespace), 30, "rolled back to 1.3.2")

    # once rolled back, the gate fails at once, whatever its timeout
    started = time.monotonic()
    failed = cli(plane, "status", MDEP, *ns, "--watch", "--timeout", "2m")
    assert failed.returncode == 1
    assert time.monotonic() - started < 15
    as_json, as_yaml = both(plane, "status", MDEP, *ns, expect=1)
    assert as_json["result"]["status"] == "RolledBack"
    assert as_json["result"]["done"] is True
    assert as_json["status"]["quarantined"] == [V140]
    assert as_yaml["result"] == as_json["result"]
    history = parsed(plane, "history", MDEP, *ns, "-o", "json")
    assert history["history"][0]["cause"] == "AutomaticRollback"
    assert history["history"] == get(plane, namespace, "mdep", MDEP)["status"]["history"]


def test_not_found_forbidden_and_unreachable_exit_codes(
    plane: ClusterAccess, namespace: str, installed_crds: object, tmp_path: Path
) -> None:
    missing = cli(plane, "status", "nothere", "-n", namespace)
    assert missing.returncode == 3
    assert missing.stderr.strip() == f"error: ModelDeployment nothere in namespace {namespace} not found"

    plane.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    nobody = service_account_kubeconfig(plane, namespace, "nobody", tmp_path / "nobody.kubeconfig")
    for argv in (["list", "-n", namespace], ["status", MDEP, "-n", namespace], ["list", "-A"]):
        forbidden = cli(nobody, *argv)
        assert forbidden.returncode == 3, (argv, forbidden.stderr)
        assert forbidden.stderr.startswith("error: not allowed:"), forbidden.stderr
        assert len(forbidden.stderr.strip().splitlines()) == 1

    config = yaml.safe_load(plane.kubeconfig.read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    closed = tmp_path / "closed.kubeconfig"
    closed.write_text(yaml.safe_dump(config))
    unreachable = ClusterAccess(closed)
    for argv in (
        ["list", "-A"],
        ["status", MDEP, "-n", namespace, "--watch", "--timeout", "30s"],
        ["history", MDEP, "-n", namespace, "-o", "json"],
        ["report", "-n", namespace],
        ["rollback", MDEP, "-n", namespace, "--reason", "r"],
        ["version"],
    ):
        started = time.monotonic()
        done = cli(unreachable, *argv)
        assert done.returncode == 4, (argv, done.stderr)
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("error: cannot reach the cluster at https://127.0.0.1:"), done.stderr
        assert last.endswith("Connection refused")
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert time.monotonic() - started < 20

    version = parsed(plane, "version", "-o", "json")
    assert version["kubernetesVersion"].startswith("v1.")
    assert version["operatorVersion"]["version"] == "unknown"
    assert "app.kubernetes.io/name=modelledger" in version["operatorVersion"]["reason"]
