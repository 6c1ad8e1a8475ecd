"""The operator as a real process (`modelledger run`) against the test cluster, scoped to one namespace."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelledger.testing.access import ClusterAccess
from modelledger.testing.processes import free_port
from tests.helpers import eventually


def lease_name(namespace: str) -> str:
    """Each test's operators elect their leader on a Lease of their own (in the default operator
    namespace), so a test that kills its leader never makes the next test wait for the lease."""
    # A namespace may be a glob (`tenants-*`): a Lease name must be a DNS subdomain.
    return f"modelledger-{hashlib.sha256(namespace.encode()).hexdigest()[:16]}"


class OperatorProcess:
    """One `modelledger run`. Its holder identity stays the same across restarts, as a pod's name does
    when its container restarts, so a restarted single operator takes its own lease back at once."""

    def __init__(
        self,
        plane: ClusterAccess,
        namespace: str,
        workdir: Path,
        prometheus_url: str | None = None,
        name: str = "operator",
        extra: list[str] | None = None,
    ):
        self.plane = plane
        self.namespace = namespace
        self.workdir = workdir
        self.prometheus_url = prometheus_url
        self.name = name
        self.extra = list(extra or [])
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_port = 0
        self.health_port = 0

    @property
    def identity(self) -> str:
        return f"{self.name}.{self.namespace}"

    @property
    def log(self) -> Path:
        return self.workdir / f"{self.name}-{self.starts}.log"

    def start(self, **env: str) -> OperatorProcess:
        self.starts += 1
        self.health_port = free_port()
        self.metrics_port = free_port()
        argv = [
            sys.executable,
            "-m",
            "modelledger.cli.main",
            "run",
            "-n",
            self.namespace,
            "--liveness",
            f"http://127.0.0.1:{self.health_port}/healthz",
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
            "--audit-log",
            str(self.workdir / "audit.jsonl"),
            "--leader-elect-resource-name",
            lease_name(self.namespace),
            *self.extra,
        ]
        if self.prometheus_url:
            argv += ["--prometheus-url", self.prometheus_url]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.plane.env(), "POD_NAME": self.identity, **env},
            )

        def live() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"operator exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            return self.healthz()[0] == 200

        eventually(live, 30, "operator liveness")
        return self

    def healthz(self, path: str = "/healthz") -> tuple[int, dict[str, Any]]:
        """The status and JSON body of /healthz (or /readyz); 0 when nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=2) as response:
                return int(response.status), json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            return int(error.code), json.loads(error.read() or b"{}")
        except OSError:
            return 0, {}

    def leading(self) -> bool:
        """Does this process's /metrics say it leads (modelledger_leader 1)?"""
        try:
            return "\nmodelledger_leader 1.0" in "\n" + self.metrics()
        except OSError:
            return False

    def kill(self) -> None:
        """kill -9, and reap it."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def wait_killed(self, timeout: float = 60) -> int:
        """Wait for the process to end by itself (a test crash point) and return its exit code."""
        assert self.process is not None
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=2) as response:
            return str(response.read().decode())

    def audit_lines(self) -> list[dict[str, Any]]:
        lines: list[dict[str, Any]] = []
        for start in range(1, self.starts + 1):
            path = self.workdir / f"{self.name}-{start}.log"
            for line in path.read_text().splitlines():
                if line.startswith("{") and '"audit": true' in line:
                    lines.append(json.loads(line))
        return lines


def operator_process(
    plane: ClusterAccess, namespace: str, workdir: Path, prometheus_url: str | None = None
) -> Iterator[OperatorProcess]:
    operator = OperatorProcess(plane, namespace, workdir, prometheus_url)
    try:
        yield operator
    finally:
        operator.stop()
        if os.environ.get("MODELLEDGER_TEST_SHOW_LOGS"):
            sys.stderr.write(operator.log.read_text()[-5000:])
