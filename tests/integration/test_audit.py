"""`audit verify` on the real plane: a history edited through the status subresource, and a line of the
audit JSONL edited or removed, are detected and named (issue 6)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from modelledger.testing.access import ClusterAccess
from tests.operator_process import OperatorProcess
from tests.scenario import cli, healthy_stable_then_upgraded


def verify(plane: ClusterAccess, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(plane, "audit", "verify", *args)


def test_verify_names_an_edited_history_entry_and_an_edited_log_line(
    plane: ClusterAccess, namespace: str, operator: OperatorProcess
) -> None:
    operator.start()
    healthy_stable_then_upgraded(plane, namespace)
    operator.stop()  # nothing changes under the checks below
    log = operator.workdir / "audit.jsonl"
    clean = verify(plane, "fraud-detector", "-n", namespace, "--file", str(log))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "BROKEN" not in clean.stdout
    lines = log.read_text().splitlines(keepends=True)
    assert [json.loads(line)["seq"] for line in lines] == list(range(1, len(lines) + 1))

    # A line of the log edited: named by its line number and the record it was.
    second = json.loads(lines[1])
    tampered = [lines[0], json.dumps({**second, "actor": "mallory"}) + "\n", *lines[2:]]
    edited = operator.workdir / "edited.jsonl"
    edited.write_text("".join(tampered))
    result = verify(plane, "--file", str(edited))
    assert result.returncode == 1, result.stdout
    assert "line 2 (seq 2" in result.stdout
    assert "altered" in result.stdout

    removed = operator.workdir / "removed.jsonl"
    removed.write_text("".join([lines[0], *lines[2:]]))
    result = verify(plane, "--file", str(removed))
    assert result.returncode == 1, result.stdout
    assert "line 2 (seq 3" in result.stdout
    assert "removed" in result.stdout

    # A history entry edited through the status subresource (revision 1 is index 1, newest first).
    plane.kubectl(
        "patch",
        "-n",
        namespace,
        "mdep",
        "fraud-detector",
        "--subresource=status",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": "/status/history/1/actor", "value": "mallory"}]),
    )
    result = verify(plane, "fraud-detector", "-n", namespace)
    assert result.returncode == 1, result.stdout
    assert "revision 1: content does not match its hash" in result.stdout
    # Against the untouched log, the edited entry is named too.
    result = verify(plane, "fraud-detector", "-n", namespace, "--file", str(log))
    assert result.returncode == 1
    assert "revision 1: differs from the entry the audit log recorded" in result.stdout


def test_verify_reports_unknown_deployments_and_missing_files(
    plane: ClusterAccess, namespace: str, installed_crds: object, tmp_path: Path
) -> None:
    missing = verify(plane, "nope", "-n", namespace)
    assert missing.returncode == 3, "not found"
    assert f"ModelDeployment nope in namespace {namespace} not found" in missing.stderr
    no_file = verify(plane, "--file", str(tmp_path / "absent.jsonl"))
    assert no_file.returncode == 2
    assert "cannot read the audit log" in no_file.stderr
