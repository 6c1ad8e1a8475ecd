"""The fault suite's settings, shared fixtures and its table.

Settings come from the environment (pytest options would only be seen when tests/chaos is named on the
command line): `CHAOS_FULL=1` is the full form (`make chaos`), else the short form runs (`make test`);
`CHAOS_SEED` replays a run (default: a new seed, printed); `CHAOS_KILLS` and `CHAOS_ROUNDS` override
the number of kill -9 and of the script's rounds.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import kubernetes
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from modelledger.testing.plane import LocalPlane
from modelledger.testing.processes import free_port
from modelledger.testing.prometheus import PrometheusServer
from tests.chaos.invariants import Row, table
from tests.chaos.script import Script, draw
from tests.conftest import LOCAL_PLANE

REPO_ROOT = Path(__file__).resolve().parents[2]
TABLE = REPO_ROOT / ".chaos" / "last-table.md"


@dataclass(frozen=True)
class Settings:
    full: bool
    seed: int
    kills: int
    rounds: int  # of the script (3: up to the storm; 4: and a deploy after it; more are drawn)
    windows: int  # how many times each windowed fault strikes in a run

    @property
    def form(self) -> str:
        return "full" if self.full else "short"

    @staticmethod
    def from_environment() -> Settings:
        full = os.environ.get("CHAOS_FULL", "") not in ("", "0")
        seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(1, 10**6))
        return Settings(
            full=full,
            seed=seed,
            kills=int(os.environ.get("CHAOS_KILLS") or (50 if full else 5)),
            rounds=int(os.environ.get("CHAOS_ROUNDS") or (9 if full else 3)),
            windows=3 if full else 1,
        )


SETTINGS = Settings.from_environment()
ROWS = pytest.StashKey[list[Row]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROWS] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "chaos" in item.path.parts:
            item.add_marker(pytest.mark.integration)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    rows = config.stash.get(ROWS, [])
    if not rows:
        return
    text = table(rows, SETTINGS.seed, SETTINGS.form)
    TABLE.parent.mkdir(exist_ok=True)
    TABLE.write_text(text)
    terminalreporter.write_sep("=", "fault suite (tests/chaos)")
    terminalreporter.write(text + f"(also in {TABLE.relative_to(REPO_ROOT)})\n")


@pytest.fixture(scope="session")
def settings() -> Settings:
    print(f"\nfault suite: {SETTINGS} (replay with CHAOS_SEED={SETTINGS.seed})")
    return SETTINGS


@pytest.fixture(scope="session")
def script(settings: Settings) -> Script:
    return draw(settings.seed, settings.rounds)


@pytest.fixture(scope="session")
def fault_rows(request: pytest.FixtureRequest) -> list[Row]:
    return request.config.stash[ROWS]


@pytest.fixture(scope="session")
def local_plane(request: pytest.FixtureRequest, plane: object) -> LocalPlane:
    found = request.config.stash.get(LOCAL_PLANE, None)
    if found is None:
        pytest.skip("restarts parts of the local plane: not on kind or a --kubeconfig cluster")
    return found


@pytest.fixture(scope="session")
def error_rates(prometheus: PrometheusServer) -> Iterator[Gauge]:
    """`test_error_rate{namespace, deployment}` from an exporter Prometheus scrapes, for every run."""
    registry = CollectorRegistry()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    name = f"chaos-{uuid.uuid4().hex[:8]}"
    gauge = Gauge("test_error_rate", "errors per request", ("namespace", "deployment"), registry=registry)
    prometheus.add_target(name, f"127.0.0.1:{port}")
    prometheus.wait_for_target(name)
    try:
        yield gauge
    finally:
        prometheus.remove_target(name)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def spawner() -> Executor:
    """One thread that starts the plane's and Prometheus's processes again after a fault. It lives as long
    as the session: those children get SIGKILL when the thread that started them ends (PR_SET_PDEATHSIG).
    Not shut down here for that reason; the interpreter joins it at exit, after the plane has stopped."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-spawner")


class Namespaces:
    """Namespaces for runs (a test may need several), deleted at the end."""

    def __init__(self, api: kubernetes.client.ApiClient) -> None:
        self.core = kubernetes.client.CoreV1Api(api)
        self.made: list[str] = []

    def new(self, stem: str) -> str:
        name = f"chaos-{stem}-{uuid.uuid4().hex[:6]}"
        labels = {"modelledger.io/test": "true"}
        deadline = time.monotonic() + 60
        while True:
            try:
                self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
                break
            except kubernetes.client.ApiException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        self.made.append(name)
        return name

    def delete(self) -> None:
        for name in self.made:
            with contextlib.suppress(kubernetes.client.ApiException):
                self.core.delete_namespace(name)


@pytest.fixture
def namespaces(api_client: kubernetes.client.ApiClient) -> Iterator[Namespaces]:
    made = Namespaces(api_client)
    yield made
    made.delete()
