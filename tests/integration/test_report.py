"""The compliance report and the kubectl plugin on the real plane (issue 6): a scripted scenario
(deploy, upgrade, mark stable, automatic rollback, manual rollback, revocation) reported as JSON with
"what served at T" answered, as HTML rendered by headless Chromium, and the plugin through kubectl."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from prometheus_client import Gauge

from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import (
    V132,
    V140,
    apply,
    cli,
    revoke,
    status,
    versions,
    wait_phase,
    wait_served,
    with_rules,
)

FOR_1S = {"for": "1s"}
VENV_BIN = Path(__file__).resolve().parents[2] / ".venv" / "bin"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def report(plane: ClusterAccess, namespace: str, *args: str) -> dict[str, Any]:
    result = cli(plane, "report", "fraud-detector", "-n", namespace, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def plugin(plane: ClusterAccess, *args: str) -> subprocess.CompletedProcess[str]:
    """`kubectl modelledger ...`: kubectl finds the plugin on PATH, as a user's shell would."""
    env = {**plane.env(), "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}", "COLUMNS": "200"}
    return subprocess.run(
        ["kubectl", "modelledger", *args], capture_output=True, text=True, env=env, timeout=120
    )


def scripted_scenario(plane: ClusterAccess, namespace: str, error_rate: Gauge) -> None:
    """r1 deploy 1.3.2 (baked stable), r2 upgrade to 1.4.0 (marked stable by hand), r3 automatic
    rollback to 1.3.2, r4 manual rollback to revision 2 (1.4.0), r5 revocation of 1.4.0."""
    versions(plane, namespace)
    apply(plane, namespace, with_rules(V132, bake="2s", **FOR_1S))
    eventually(lambda: status(plane, namespace).stable_revision == 1, 40, "1.3.2 baked stable")
    apply(plane, namespace, with_rules(V140, bake="1h", **FOR_1S))
    wait_served(plane, namespace, V140, 2)
    marked = cli(plane, "mark-stable", "fraud-detector", "-n", namespace, "--reason", "validated offline")
    assert marked.returncode == 0, marked.stdout + marked.stderr

    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    wait_served(plane, namespace, V132, 3, timeout=40)
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.0)
    wait_phase(plane, namespace, "RolledBack")

    rolled = cli(
        plane, "rollback", "fraud-detector", "-n", namespace, "--to-revision", "2", "--reason", "false alarm"
    )
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    wait_served(plane, namespace, V140, 4)

    revoke(plane, namespace, V140, "failed the fairness audit")
    wait_served(plane, namespace, V132, 5)


def midpoint(a: str, b: str) -> str:
    start, end = datetime.fromisoformat(a), datetime.fromisoformat(b)
    return (start + (end - start) / 2).isoformat()


def test_report_of_a_scripted_scenario_with_html_and_the_kubectl_plugin(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    error_rate: Gauge,
    tmp_path: Path,
) -> None:
    operator.start()
    scripted_scenario(plane, namespace, error_rate)
    log = str(operator.workdir / "audit.jsonl")
    document = report(plane, namespace, "--audit-log", log)

    assert document["schema"] == "modelledger.report/v2"
    assert document["auditLog"]["ok"] is True
    assert (document["auditLog"]["unsigned"], document["auditLog"]["signaturesChecked"]) == (0, True)
    [d] = document["deployments"]
    changes = [(c["revision"], c["version"], c["cause"]) for c in d["changes"]]
    assert changes == [
        (1, V132, "Deploy"),
        (2, V140, "Deploy"),
        (3, V132, "AutomaticRollback"),
        (4, V140, "ManualRollback"),
        (5, V132, "Revocation"),
    ]
    actors = [c["actor"] for c in d["changes"]]
    # Deploys name who changed spec.version, as admission stamped it: never a field manager's name.
    assert actors == [
        "modelledger-admin",
        "modelledger-admin",
        "modelledger/rule:error-rate",
        "modelledger-admin",
        "modelledger/revocation",
    ]
    automatic = d["changes"][2]
    assert automatic["rule"] == "error-rate"
    assert automatic["previousVersion"] == V140
    assert automatic["evidence"]["value"] == pytest.approx(0.9)
    assert (automatic["evidence"]["threshold"], automatic["evidence"]["comparator"]) == (0.5, ">")
    assert f'namespace="{namespace}"' in automatic["evidence"]["query"]
    assert d["changes"][3]["reason"] == "false alarm"
    assert "fairness audit" in d["changes"][4]["reason"]
    assert all(c["digests"]["artifactDigest"].startswith("sha256:") for c in d["changes"])

    markings = {m["revision"]: (m["actor"], m["source"]) for m in d["stableMarkings"]}
    assert markings == {1: ("modelledger/bake", "status"), 2: ("modelledger-admin", "status")}, "signed marks"
    assert {m["signatureState"] for m in d["stableMarkings"]} == {"valid"}
    assert {c["signatureState"] for c in d["changes"]} == {"valid"}
    assert [e["revision"] for e in d["history"]] == [5, 4, 3, 2, 1], "the signed history, embedded"
    assert [(q["version"], q["revision"], q["cause"]) for q in d["quarantines"]] == [
        (V140, 3, "AutomaticRollback"),
        (V132, 4, "ManualRollback"),
        (V140, 5, "Revocation"),
    ]
    [revocation] = d["revocations"]
    assert (revocation["version"], revocation["rollbackRevision"]) == (V140, 5)
    assert revocation["reason"] == "failed the fairness audit"
    assert revocation["revokedBy"]
    provenance = {v["name"]: v for v in d["versions"]}[V140]
    assert provenance["codeCommit"] == "c4bfa8321576118796b4d09d6c1068da0198460d"
    assert provenance["trainingRun"].startswith("mlflow://")
    assert provenance["metrics"] == {"auc": 0.941, "accuracy": 0.973}
    assert [s["name"] for s in provenance["datasets"]] == ["transactions-2026q3"]
    assert d["verification"] == {
        "history": {
            "verdict": "Signed",
            "ok": True,
            "revision": None,
            "problem": None,
            "signed": 5,
            "unsigned": 0,
        },
        "auditLog": {"ok": True, "revision": None, "line": None, "problem": None},
    }
    the_report_verifies_offline(plane, document, tmp_path)
    assert {"Deployed", "RolledBack", "VersionRevoked"} <= {e["reason"] for e in d["events"]}

    # What served at T, for an instant between each pair of changes (and after the last one).
    times = [c["at"] for c in d["changes"]]
    instants = [midpoint(a, b) for a, b in itertools.pairwise(times)]
    instants.append(midpoint(times[-1], document["generatedAt"]))
    for expected, at in enumerate(instants, start=1):
        served = report(plane, namespace, "--at", at)["deployments"][0]["servedAt"]
        assert (served["known"], served["revision"]) == (True, expected), at

    html = tmp_path / "report.html"
    written = cli(
        plane, "report", "-n", namespace, "--format", "html", "--output-file", str(html), "--audit-log", log
    )
    assert written.returncode == 0, written.stderr
    screenshot_shows_the_timeline(html, tmp_path)
    markdown = cli(plane, "report", "fraud-detector", "-n", namespace, "--format", "markdown")
    assert markdown.returncode == 0, markdown.stderr
    assert "AutomaticRollback (error-rate)" in markdown.stdout

    the_plugin_works_through_kubectl(plane, namespace, log)


def the_report_verifies_offline(plane: ClusterAccess, document: dict[str, Any], tmp_path: Path) -> None:
    """An examiner's check: the public key from `audit public-key`, then the report and the key alone."""
    public = cli(plane, "audit", "public-key")
    assert public.returncode == 0, public.stderr
    key = tmp_path / "modelledger.pem"
    key.write_text(public.stdout)
    exported = tmp_path / "report.json"
    exported.write_text(json.dumps(document))
    offline_argv = ["audit", "verify", "--report", str(exported), "--public-key", str(key)]
    offline = subprocess.run(  # no usable kubeconfig: the check must not need the cluster
        [sys.executable, "-m", "modelledger.cli.main", *offline_argv],
        capture_output=True,
        text=True,
        env={**plane.env(), "KUBECONFIG": str(tmp_path / "no-such-kubeconfig")},
        timeout=120,
    )
    assert offline.returncode == 0, offline.stdout + offline.stderr
    forged = json.loads(json.dumps(document))
    forged["deployments"][0]["changes"][1]["actor"] = "somebody-else"
    exported.write_text(json.dumps(forged))
    edited = cli(plane, "audit", "verify", "--report", str(exported), "--public-key", str(key))
    assert edited.returncode == 1, edited.stdout
    assert "revision 2: the report's change differs from the signed entry (actor)" in edited.stdout


def screenshot_shows_the_timeline(html: Path, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium missing: make system-deps installs it"
    png = tmp_path / "report.png"
    shot = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--screenshot={png}",
            "--window-size=1280,900",
            html.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert png.exists(), shot.stderr[-2000:]
    assert png.stat().st_size > 20_000, "a blank page compresses to almost nothing"
    with Image.open(png) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20) or []
    # The timeline's lanes: Okabe-Ito blue and orange, and the rollback red, each over many pixels.
    frequent = {rgb for count, rgb in colours if count > 200}
    for colour in [(0x00, 0x72, 0xB2), (0xE6, 0x9F, 0x00), (0xC0, 0x39, 0x2B)]:
        assert colour in frequent, f"{colour} not drawn"
    assert len(colours) > 50
    if keep := os.environ.get("MODELLEDGER_REPORT_SCREENSHOT"):
        shutil.copy(png, keep)  # to look at it: the picture must really show the timeline


def the_plugin_works_through_kubectl(plane: ClusterAccess, namespace: str, log: str) -> None:
    history = plugin(plane, "-n", namespace, "history", "fraud-detector")
    assert history.returncode == 0, history.stdout + history.stderr
    assert "Revocation" in history.stdout
    assert "chain: verified" in history.stdout
    after = plugin(plane, "history", "fraud-detector", "-n", namespace)
    assert after.stdout == history.stdout
    verified = plugin(plane, "audit", "verify", "fraud-detector", "-n", namespace, "--file", log)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    served = plugin(plane, "report", "fraud-detector", f"--namespace={namespace}", "--format", "json")
    assert served.returncode == 0, served.stderr
    assert json.loads(served.stdout)["deployments"][0]["currentRevision"] == 5
    stable = plugin(plane, "-n", namespace, "mark-stable", "fraud-detector", "--reason", "re-validated")
    assert stable.returncode == 0, stable.stdout + stable.stderr
    # The desired version is revoked: lifting its quarantine would serve a revoked model.
    retry = plugin(plane, "-n", namespace, "retry", "fraud-detector", "--reason", "after the audit")
    assert retry.returncode == 1, retry.stdout + retry.stderr
    assert "Rejected" in retry.stdout
    assert "revoked" in retry.stdout

    unknown = plugin(plane, "-n", namespace, "history", "nope")
    assert unknown.returncode == 3, "not found: exit code 3 (docs/cli.md)"
    assert "ModelDeployment nope" in unknown.stderr
    no_revision = plugin(
        plane, "-n", namespace, "rollback", "fraud-detector", "--to-revision", "99", "--reason", "x"
    )
    assert no_revision.returncode == 1
    assert "no revision 99" in no_revision.stdout + no_revision.stderr
    elsewhere = plugin(plane, "--context", "nope", "history", "fraud-detector")
    assert elsewhere.returncode == 4, "an unknown context is a kubeconfig problem"
