"""The modelledger demo on the local control plane: deploy, bake, upgrade, breach, automatic rollback,
then the evidence (history, audit verification, report). Everything is started here and torn down at
the end (also on Ctrl-C)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from modelledger.testing.plane import LocalPlane
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NS = "ml-prod"


def say(text: str) -> None:
    sys.stdout.write(f"\n\033[1m== {text}\033[0m\n")
    sys.stdout.flush()


def sh(env: dict[str, str], *argv: str, stdin: str | None = None, show: bool = True) -> str:
    if show:
        sys.stdout.write(f"$ {' '.join(argv)}\n")
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=env, timeout=300)
    if show:
        sys.stdout.write(result.stdout + result.stderr)
    sys.stdout.flush()
    return result.stdout


def wait(what: str, probe: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.5)
    raise SystemExit(f"demo failed: {what} did not happen within {timeout:.0f} s")


def apply(env: dict[str, str], manifest: dict[str, Any]) -> None:
    document = yaml.safe_dump(manifest)
    # Admission policies on a kind take a moment after its CRD appears before they can type-check it.
    wait(
        f"{manifest['kind']} accepted (server dry run)",
        lambda: subprocess.run(
            ["kubectl", "apply", "--dry-run=server", "-n", NS, "-f", "-"],
            input=document, capture_output=True, text=True, env=env, timeout=60,
        ).returncode == 0,
        timeout=60,
    )  # fmt: skip
    sh(env, "kubectl", "apply", "-n", NS, "-f", "-", stdin=document)


def identity_guards() -> str:
    """The chart's requester and version-setter policies (the status policy needs the chart's
    ServiceAccount, and this demo runs the operator with the admin's credentials)."""
    from modelledger.testing.binaries import Binaries

    rendered = subprocess.run(
        [
            str(Binaries.locate().helm), "template", "modelledger", str(REPO / "charts" / "modelledger"),
            "--show-only", "templates/admission-policies.yaml",
            "--api-versions", "admissionregistration.k8s.io/v1beta1/MutatingAdmissionPolicy",
        ],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    guards = ("modelledger-requester", "modelledger-version-setter")
    documents = [d for d in yaml.safe_load_all(rendered) if d and d["metadata"]["name"] in guards]
    return yaml.safe_dump_all(documents)


def deployment(version: str, bake: str) -> dict[str, Any]:
    manifest: dict[str, Any] = yaml.safe_load(
        (REPO / "examples" / "fraud-detector-deployment.yaml").read_text()
    )
    manifest["spec"]["version"] = version
    manifest["spec"]["stability"]["bakeTime"] = bake
    rollback = manifest["spec"]["rollback"]
    rollback.pop("prometheus")  # the operator's --prometheus-url: the demo's own Prometheus
    rollback["interval"] = "1s"
    rollback["rules"] = [
        {
            "name": "error-rate",
            "query": 'max(model_error_ratio{namespace="{{namespace}}",deployment="{{deployment}}"})',
            "comparator": ">",
            "threshold": 0.05,
            "for": "3s",
        }
    ]
    return manifest


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="modelledger-demo-") as tmp:
        work = Path(tmp)
        say(
            "starting a real control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) "
            "and Prometheus"
        )
        with LocalPlane(work / "plane") as plane, PrometheusServer(work / "prometheus") as prometheus:
            print(f"ready in {plane.timings['total']:.1f} s; Prometheus at {prometheus.url}")
            env = {**plane.access.env(), "COLUMNS": "160", "PATH": f"{BIN}:{os.environ['PATH']}"}
            registry = CollectorRegistry()
            errors = Gauge(
                "model_error_ratio",
                "errors per request of the model server",
                ("namespace", "deployment"),
                registry=registry,
            )
            errors.labels(NS, "fraud-detector").set(0.01)
            port = free_port()
            server, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
            prometheus.add_target("fraud-detector", f"127.0.0.1:{port}")
            sh(env, "kubectl", "get", "nodes")

            say("installing the CRDs and starting the operator")
            sh(env, "kubectl", "apply", "--server-side", "-f", str(REPO / "crds"))
            sh(env, "kubectl", "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
            say("installing the chart's identity guards: admission stamps who asks and who deploys")
            sh(env, "kubectl", "apply", "--server-side", "-f", "-", stdin=identity_guards(), show=False)
            sh(env, "kubectl", "get", "validatingadmissionpolicies,mutatingadmissionpolicies")
            sh(env, "kubectl", "create", "namespace", NS)
            audit_log = work / "audit.jsonl"
            with (work / "operator.log").open("wb") as log:
                operator = subprocess.Popen(
                    [
                        str(BIN / "modelledger"),
                        "run",
                        "-n",
                        NS,
                        "--prometheus-url",
                        prometheus.url,
                        "--audit-log",
                        str(audit_log),
                        "--liveness",
                        f"http://127.0.0.1:{free_port()}/healthz",
                        "--metrics-address",
                        f"127.0.0.1:{free_port()}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
            try:
                run_story(env, errors, audit_log)
            finally:
                operator.terminate()
                operator.wait(timeout=30)
                server.shutdown()
        say("torn down: no process left behind")
    return 0


def run_story(env: dict[str, str], errors: Gauge, audit_log: Path) -> None:
    def status_field(field: str) -> str:
        return sh(
            env,
            "kubectl",
            "get",
            "-n",
            NS,
            "mdep",
            "fraud-detector",
            "-o",
            f"jsonpath={{.status.{field}}}",
            show=False,
        )

    say("a data scientist registers two versions of the model")
    for version in ("fraud-detector-1-3-2", "fraud-detector-1-4-0"):
        sh(env, "kubectl", "apply", "-n", NS, "-f", str(REPO / "examples" / f"{version}.yaml"))
    sh(env, "kubectl", "get", "-n", NS, "mv")

    say("Git names 1.3.2; it rolls out and is marked stable after its bake time (5 s here)")
    apply(env, deployment("fraud-detector-1-3-2", "5s"))
    wait("1.3.2 stable", lambda: status_field("stableRevision") == "1")
    sh(env, "kubectl", "get", "-n", NS, "mdep,deploy,pods")

    say("a release manager changes spec.version to 1.4.0 in Git; ArgoCD syncs it")
    apply(env, deployment("fraud-detector-1-4-0", "1h"))
    wait(
        "1.4.0 healthy",
        lambda: (
            status_field("servingVersion") == "fraud-detector-1-4-0" and status_field("phase") == "Healthy"
        ),
    )
    sh(env, "kubectl", "get", "-n", NS, "mdep")

    say("1.4.0 misbehaves in production: its error ratio climbs to 12% (rule: > 5% for 3 s)")
    errors.labels(NS, "fraud-detector").set(0.12)
    began = time.monotonic()
    wait("the automatic rollback", lambda: status_field("phase") == "RolledBack")
    print(f"rolled back {time.monotonic() - began:.1f} s after the breach was exported")
    sh(env, "kubectl", "get", "-n", NS, "mdep,deploy")
    sh(env, "kubectl", "get", "-n", NS, "events", "--field-selector", "reason=RolledBack")

    say("an ArgoCD re-sync of the same manifest does not redeploy the quarantined version")
    apply(env, deployment("fraud-detector-1-4-0", "1h"))
    time.sleep(3)
    print(f"serving: {status_field('servingVersion')}, quarantined: {status_field('quarantined')}")

    say("the evidence a compliance officer asks for")
    sh(env, "modelledger", "history", "fraud-detector", "-n", NS)
    sh(env, "modelledger", "audit", "verify", "fraud-detector", "-n", NS)
    sh(env, "modelledger", "audit", "verify", "--file", str(audit_log))
    sh(env, "modelledger", "report", "-n", NS, "--format", "markdown", "--audit-log", str(audit_log))

    say("an examiner verifies the exported report offline, with the operator's public key only")
    work = audit_log.parent
    (work / "key.pem").write_text(sh(env, "modelledger", "audit", "public-key", show=False))
    (work / "report.json").write_text(sh(env, "modelledger", "report", "-n", NS, show=False))
    offline = {**env, "KUBECONFIG": str(work / "no-cluster")}
    sh(offline, "modelledger", "audit", "verify", "--report", str(work / "report.json"),
       "--public-key", str(work / "key.pem"))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
