"""The command line as kubectl's plugin: global flags before the command, times as kubectl takes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelledger.cli.common import parse_time
from modelledger.cli.main import build_parser, hoist_global_flags, program_name


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-n", "ml", "history", "x"], ["history", "x", "-n", "ml"]),
        (["history", "x", "-n", "ml"], ["history", "x", "-n", "ml"]),
        (
            ["--namespace=ml", "--context", "prod", "audit", "verify", "x"],
            ["audit", "verify", "x", "--namespace=ml", "--context", "prod"],
        ),
        (["-nml", "report"], ["report", "-nml"]),
        (
            ["--kubeconfig", "/k", "rollback", "x", "--reason", "r"],
            ["rollback", "x", "--reason", "r", "--kubeconfig", "/k"],
        ),
        (["--help"], ["--help"]),
    ],
)
def test_kubectl_global_flags_move_behind_the_command(argv: list[str], expected: list[str]) -> None:
    assert hoist_global_flags(argv) == expected


def test_both_placements_parse_the_same() -> None:
    parser = build_parser()
    before = parser.parse_args(hoist_global_flags(["-n", "ml", "--context", "c", "audit", "verify", "x"]))
    after = parser.parse_args(hoist_global_flags(["audit", "verify", "x", "-n", "ml", "--context", "c"]))
    assert vars(before) == vars(after)
    assert (before.namespace, before.context, before.deployment) == ("ml", "c", "x")


def test_the_plugin_names_itself_as_kubectl_does() -> None:
    assert program_name("/usr/local/bin/kubectl-modelledger") == "kubectl modelledger"
    assert program_name("modelledger") == "modelledger"


def test_times_are_rfc3339_or_a_duration_before_now() -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_time("2h", now) == now - timedelta(hours=2)
    assert parse_time("2026-11-27T10:00:00Z", now) == datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
    assert parse_time("2026-11-27T10:00:00", now).tzinfo is UTC, "no zone given: UTC"
    with pytest.raises(SystemExit):
        parse_time("yesterday", now)
