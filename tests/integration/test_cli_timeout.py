"""`--timeout` against the real plane: read commands answer within it as usual, and with the plane's own
kubeconfig pointed at a server that accepts connections and never answers (as a hung apiserver or a
black-holed load balancer would), a read command ends on time with one line and exit 4."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from modelledger.testing.access import ClusterAccess
from tests.scenario import cli

TIMEOUT = 2.0
STARTUP = 4.0  # the interpreter and the kubernetes client, before main() starts counting


@pytest.fixture
def silent(plane: ClusterAccess, tmp_path: Path) -> Iterator[tuple[ClusterAccess, str]]:
    """The plane's kubeconfig (its credentials, CA and contexts) with the server a port that accepts
    connections (the kernel's backlog) and never answers: not even the TLS handshake."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        server = f"https://127.0.0.1:{listener.getsockname()[1]}"
        config = yaml.safe_load(plane.kubeconfig.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = server
        path = tmp_path / "silent.kubeconfig"
        path.write_text(yaml.safe_dump(config))
        yield ClusterAccess(path), server


def test_read_commands_answer_within_their_timeout(
    plane: ClusterAccess, namespace: str, installed_crds: object
) -> None:
    for argv in (
        ["list", "-A", "--timeout", "30s"],
        ["--timeout", "30", "list", "-n", namespace, "-o", "json"],  # before the command, as kubectl's
        ["version", "--timeout", "30s"],
    ):
        done = cli(plane, *argv)
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
        assert "error" not in done.stderr, (argv, done.stderr)  # `No ModelDeployments found` may be there
    # an answer, even a 404, is no timeout
    missing = cli(plane, "status", "nothere", "-n", namespace, "--timeout", "30s")
    assert missing.returncode == 3
    assert missing.stderr == f"error: ModelDeployment nothere in namespace {namespace} not found\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["list", "-A"],
        ["history", "fraud-detector", "-n", "default", "-o", "json"],
        ["status", "fraud-detector", "-n", "default"],
        ["report", "-n", "default"],
        ["audit", "verify", "-A"],
        ["version"],
    ],
    ids=" ".join,
)
def test_a_read_command_against_a_silent_server_is_one_line_and_exit_4_on_time(
    silent: tuple[ClusterAccess, str], argv: list[str]
) -> None:
    access, server = silent
    started = time.monotonic()
    done = cli(access, *argv, "--timeout", f"{TIMEOUT:g}s")
    elapsed = time.monotonic() - started
    assert done.returncode == 4, (argv, done.returncode, done.stdout, done.stderr)
    assert done.stderr == f"error: cannot reach the cluster at {server}: no answer within 2s (--timeout)\n"
    assert TIMEOUT <= elapsed < TIMEOUT + STARTUP, f"{argv}: {elapsed:.1f} s for a {TIMEOUT:g} s timeout"
    if argv[0] == "version":  # the client's version, then the error
        assert done.stdout.startswith("Client version: ")
    else:
        assert done.stdout == ""
