"""The operator as a real process (`modelledger run`) against the test cluster, scoped to one namespace."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelledger.testing.access import ClusterAccess
from modelledger.testing.processes import free_port
from tests.helpers import eventually


class OperatorProcess:
    def __init__(
        self, plane: ClusterAccess, namespace: str, workdir: Path, prometheus_url: str | None = None
    ):
        self.plane = plane
        self.namespace = namespace
        self.workdir = workdir
        self.prometheus_url = prometheus_url
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.metrics_port = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"operator-{self.starts}.log"

    def start(self, **env: str) -> OperatorProcess:
        self.starts += 1
        liveness = free_port()
        self.metrics_port = free_port()
        argv = [
            sys.executable,
            "-m",
            "modelledger.cli.main",
            "run",
            "-n",
            self.namespace,
            "--liveness",
            f"http://127.0.0.1:{liveness}/healthz",
            "--metrics-address",
            f"127.0.0.1:{self.metrics_port}",
            "--audit-log",
            str(self.workdir / "audit.jsonl"),
        ]
        if self.prometheus_url:
            argv += ["--prometheus-url", self.prometheus_url]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env={**self.plane.env(), **env}
            )

        def live() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(
                    f"operator exited {self.process.returncode}:\n{self.log.read_text()[-3000:]}"
                )
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{liveness}/healthz", timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        eventually(live, 30, "operator liveness")
        return self

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
            path = self.workdir / f"operator-{start}.log"
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
