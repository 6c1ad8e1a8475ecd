"""`--timeout` on every command that talks to the cluster: a duration or seconds, a usage error (exit 2)
naming the flag otherwise, and a bound on the whole command: against an apiserver that accepts and never
answers, one line and exit 4 within about the timeout (a waiting command: the timeout and its grace)."""

from __future__ import annotations

import argparse
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.cli import common
from modelledger.cli.main import build_parser, hoist_global_flags, main

CLUSTER_COMMANDS = {
    "list": [],
    "status": ["x"],
    "history": ["x"],
    "report": [],
    "audit verify": [],
    "audit public-key": [],
    "version": [],
    "rollback": ["x", "--reason", "r"],
    "mark-stable": ["x"],
    "retry": ["x"],
    "approve": ["x"],
}
READ_COMMANDS = ("list", "status", "history", "report", "audit verify", "audit public-key", "version")


def argv(command: str, *extra: str) -> list[str]:
    return [*command.split(), *CLUSTER_COMMANDS[command], *extra]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("2m", 120), ("1h", 3600), ("5", 5), ("0.5", 0.5), ("1h30m", 5400)]
)
@pytest.mark.parametrize("command", list(CLUSTER_COMMANDS))
def test_every_cluster_command_takes_a_duration_or_seconds(command: str, text: str, seconds: float) -> None:
    assert build_parser().parse_args(argv(command, "--timeout", text)).timeout == seconds


def test_timeout_is_a_global_flag_as_kubectls_request_timeout() -> None:
    assert hoist_global_flags(["--timeout", "30s", "list", "-A"]) == ["list", "-A", "--timeout", "30s"]
    assert hoist_global_flags(["--timeout=2m", "-n", "ml", "history", "x"]) == [
        "history", "x", "--timeout=2m", "-n", "ml",
    ]  # fmt: skip
    args = build_parser().parse_args(hoist_global_flags(["--timeout", "2m", "list"]))
    assert args.timeout == 120


@pytest.mark.parametrize("command", list(CLUSTER_COMMANDS))
def test_defaults_no_limit_for_reading_one_minute_for_a_request(command: str) -> None:
    expected = 0.0 if command in READ_COMMANDS else 60.0
    assert build_parser().parse_args(argv(command)).timeout == expected


def test_offline_commands_and_run_keep_their_flags() -> None:
    for command in (["run"], ["lint", "x.yaml"], ["crds"], ["completion", "bash"]):
        assert not hasattr(build_parser().parse_args(command), "timeout"), command


@pytest.mark.parametrize("value", ["soon", "-5", "5 m", "1d", "8d", "", "2x"])
@pytest.mark.parametrize("command", [*READ_COMMANDS, "retry"])
def test_a_bad_timeout_is_exit_2_naming_the_flag(
    command: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv(command, "--timeout", value))
    assert exited.value.code == common.EXIT_USAGE
    assert "argument --timeout:" in capsys.readouterr().err


def test_the_request_timeout_is_at_most_the_time_left() -> None:
    assert common._shorter(None, 2.0) == 2.0
    assert common._shorter(30, 2.0) == 2.0
    assert common._shorter(0.5, 2.0) == 0.5
    assert common._shorter((5, 30), 2.0) == (2.0, 2.0)
    assert common._shorter((1, None), 2.0) == (1.0, 2.0)


def test_the_message_names_the_server_when_a_request_was_waiting() -> None:
    waiting = common.CommandTimeout(2.0, "https://10.0.0.1:6443")
    assert common.describe_unreachable(waiting) == (
        "cannot reach the cluster at https://10.0.0.1:6443: no answer within 2s (--timeout)"
    )
    assert common.describe_unreachable(common.CommandTimeout(90)) == "timed out after 1m30s (--timeout)"
    assert common.is_connection_error(waiting)
    assert not isinstance(waiting, OSError | TimeoutError), "urllib3 would retry it"


def test_the_alarm_is_disarmed_and_an_outer_one_restored() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, _frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        with common.command_timeout(argparse.Namespace(timeout=0.2)) as armed:
            assert armed is not None
            assert common.deadline() is armed
            assert signal.getitimer(signal.ITIMER_REAL)[0] <= 0.2
        assert common.deadline() is None
        assert 99 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100
        with pytest.raises(common.CommandTimeout), common.command_timeout(argparse.Namespace(timeout=0.2)):
            time.sleep(5)
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_earlier_outer_alarm_is_left_alone() -> None:
    previous = signal.signal(signal.SIGALRM, lambda _signum, _frame: None)
    signal.setitimer(signal.ITIMER_REAL, 1.0)
    try:
        with common.command_timeout(argparse.Namespace(timeout=5)) as armed:
            assert armed is not None
            assert signal.getitimer(signal.ITIMER_REAL)[0] <= 1.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def outer_alarm() -> Iterator[list[int]]:
    """An alarm of someone else's (pytest-timeout's, say) pending in 100 s: it must survive the command."""
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, _frame: fired.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        yield fired
        assert 90 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100, "the outer alarm is back"
        assert not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_no_timeout_arms_nothing(outer_alarm: list[int]) -> None:
    for args in (argparse.Namespace(timeout=0.0), argparse.Namespace()):
        with common.command_timeout(args) as armed:
            assert armed is None
            assert common.deadline() is None
            assert 90 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100


@pytest.fixture
def silent_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A kubeconfig whose apiserver accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        server = f"https://127.0.0.1:{listener.getsockname()[1]}"
        config: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
            "current-context": "c",
        }
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(config))
        monkeypatch.setenv("KUBECONFIG", str(path))
        yield server


def run_main(arguments: list[str]) -> int:
    try:
        return main(arguments)
    except SystemExit as exited:
        return int(exited.code or 0)


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_a_read_command_against_a_silent_apiserver_is_exit_4_on_time(
    command: str, silent_kubeconfig: str, outer_alarm: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    started = time.monotonic()
    code = run_main(argv(command, "--timeout", "0.5"))
    elapsed = time.monotonic() - started
    assert code == common.EXIT_UNREACHABLE
    error = capsys.readouterr().err
    expected = f"error: cannot reach the cluster at {silent_kubeconfig}: no answer within 0.5s (--timeout)"
    assert error == expected + "\n"
    assert 0.4 <= elapsed < 1.5, elapsed
    assert common.deadline() is None


@pytest.mark.parametrize("command", ["status --watch", "retry"])
def test_a_waiting_command_against_a_silent_apiserver_is_exit_4_after_its_grace(
    command: str, silent_kubeconfig: str, capsys: pytest.CaptureFixture[str]
) -> None:
    words = command.split()
    started = time.monotonic()
    code = run_main([*argv(words[0]), *words[1:], "--timeout", "0.5"])
    elapsed = time.monotonic() - started
    assert code == common.EXIT_UNREACHABLE
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot reach the cluster at {silent_kubeconfig}: no answer within 0.5s")
    assert error.count("\n") == 1
    assert 0.5 + common.WAIT_GRACE - 0.1 <= elapsed < 0.5 + common.WAIT_GRACE + 1.0, elapsed
