"""A real Prometheus (Debian's package) on loopback, scraping targets that tests add at run time.

Beside the default job `tests`, a test may give jobs of its own (e.g. the scrape config a PodMonitor
stands for, `core.podmonitor.scrape_config`): each reads its targets from files `add_target(job=...)`
writes, and target labels named `__meta_*` play Kubernetes service discovery for its relabelings. A test
may also load alerting and recording rules (`rules`: the groups of a rule file).
"""

from __future__ import annotations

import json
import shutil
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from modelledger.testing.processes import Child, ProcessGroup, free_port, wait_until


class PrometheusServer:
    """Scrapes every second; targets are file_sd entries that `add_target` writes and Prometheus watches."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_interval: str = "1s",
        binary: str | None = None,
        jobs: Sequence[dict[str, Any]] = (),
        rules: dict[str, Any] | None = None,
    ) -> None:
        self.workdir = workdir
        self.scrape_interval = scrape_interval
        self.jobs = [dict(job) for job in jobs]
        self.rules = rules
        self.binary = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
        self.port = 0
        self.processes = ProcessGroup(workdir / "logs")
        self._targets = workdir / "targets"
        self._child: Child | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        if not Path(self.binary).exists():
            raise FileNotFoundError(f"prometheus not found at {self.binary}: apt-get install prometheus")
        self._targets.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "evaluation_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "tests",
                    "file_sd_configs": [{"files": [str(self._targets / "*.json")], "refresh_interval": "1s"}],
                }
            ],
        }
        for job in self.jobs:
            folder = self._targets / job["job_name"]
            folder.mkdir(parents=True, exist_ok=True)
            files = [{"files": [str(folder / "*.json")], "refresh_interval": "1s"}]
            config["scrape_configs"].append({**job, "file_sd_configs": files})
        if self.rules is not None:
            rule_file = self.workdir / "rules.yml"
            rule_file.write_text(yaml.safe_dump(self.rules))
            config["rule_files"] = [str(rule_file)]
        config_file = self.workdir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        self.port = self.port or free_port()  # started again after `stop`: the same address
        self._child = self.processes.start(
            "prometheus",
            [
                self.binary,
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
        )
        wait_until(
            "prometheus /-/ready",
            lambda: self._get("/-/ready").startswith("Prometheus"),
            timeout,
            watch=self._child,
        )

    def stop(self) -> None:
        self.processes.stop()

    def add_target(
        self, name: str, address: str, labels: dict[str, str] | None = None, *, job: str | None = None
    ) -> None:
        """Scrape `address` (host:port) as target `name` (of `job`, default `tests`); visible to queries
        once it has been scraped. Labels named `__*` are seen by the job's relabelings only."""
        folder = self._job_folder(job)
        entry = [{"targets": [address], "labels": {"target": name, **(labels or {})}}]
        tmp = folder / f".{name}.tmp"
        tmp.write_text(json.dumps(entry))
        tmp.rename(folder / f"{name}.json")  # atomic, so Prometheus never reads half a file

    def remove_target(self, name: str, *, job: str | None = None) -> None:
        (self._job_folder(job) / f"{name}.json").unlink(missing_ok=True)

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector `expression` answers now (raises on an error or another result type)."""
        answer = json.loads(self._get("/api/v1/query?" + urllib.parse.urlencode({"query": expression})))
        if answer.get("status") != "success" or answer["data"]["resultType"] != "vector":
            raise ValueError(f"{expression}: {answer}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The alerts of the loaded rules, as /api/v1/alerts lists them."""
        alerts: list[dict[str, Any]] = json.loads(self._get("/api/v1/alerts"))["data"]["alerts"]
        return alerts

    def _job_folder(self, job: str | None) -> Path:
        if job is None or job == "tests":
            return self._targets
        if job not in {j["job_name"] for j in self.jobs}:
            raise KeyError(f"no scrape job {job!r} in this Prometheus")
        return self._targets / job

    def wait_for_target(self, name: str, timeout: float = 15.0) -> None:
        def up() -> bool:
            targets = json.loads(self._get("/api/v1/targets"))["data"]["activeTargets"]
            return any(t["labels"].get("target") == name and t["health"] == "up" for t in targets)

        wait_until(f"prometheus target {name} up", up, timeout, watch=self._child, interval=0.2)

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(self.url + path, timeout=2) as response:
            return str(response.read().decode())
