"""The kubectl-grade command line: flags on every command, output formats, durations, `status` as a CD
gate, `list`, `version`, `completion`, and the exit code table (0 to 5) through the entry point."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from modelledger.adapters import keys
from modelledger.cli import audit as audit_cli
from modelledger.cli import common, completion, listing, report
from modelledger.cli import history as history_cli
from modelledger.cli import status as status_cli
from modelledger.cli import version as version_cli
from modelledger.cli.main import build_parser, hoist_global_flags, main
from modelledger.core.signing import Keyring, SigningKey
from tests.unit import signed_histories as sh

READ_COMMANDS = ("list", "history", "status", "report")
WAITING_COMMANDS = ("rollback", "mark-stable", "retry", "approve", "status")
OFFLINE_COMMANDS = ("crds", "lint", "completion", "run")  # `run` has its own -n/-A (many namespaces)


def subcommands(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                path = f"{prefix} {name}".strip()
                nested = list(subcommands(sub, path))
                yield from nested or [(path, sub)]


def option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


# --- flags on every command ---------------------------------------------------------------------------


def test_every_cluster_command_takes_kubectls_flags() -> None:
    checked = []
    for path, parser in subcommands(build_parser()):
        if path in OFFLINE_COMMANDS:
            continue
        for flag in ("-n", "--namespace", "-A", "--all-namespaces", "--context", "--kubeconfig"):
            assert option(parser, flag) is not None, f"{path} lacks {flag}"
        checked.append(path)
    assert {"list", "status", "history", "report", "audit verify", "version", "approve"} <= set(checked)


@pytest.mark.parametrize("command", READ_COMMANDS)
@pytest.mark.parametrize("output", ["table", "wide", "json", "yaml"])
def test_every_read_command_takes_o(command: str, output: str) -> None:
    argv = [command, *(["x"] if command in ("history", "status") else []), "-o", output]
    assert build_parser().parse_args(argv).output == output


@pytest.mark.parametrize("command", READ_COMMANDS)
def test_an_unknown_output_format_is_a_usage_error(command: str) -> None:
    argv = [command, *(["x"] if command in ("history", "status") else []), "-o", "xml"]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == common.EXIT_USAGE


def resolved(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(["report", *argv])
    report.resolve_format(args)
    return args


def test_report_o_is_an_alias_of_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert resolved("-o", "markdown").format == "markdown"
    assert resolved("--format", "html").format == "html"
    assert resolved("--format", "yaml", "-o", "yaml").format == "yaml"
    assert (resolved().format, resolved().output_file) == ("json", None)
    assert resolved("--output-file", "r.json").output_file == Path("r.json")
    assert capsys.readouterr().err == ""
    for argv in (["--format", "json", "-o", "html"], ["--format", "r.json"]):
        with pytest.raises(SystemExit) as exited:
            resolved(*argv)
        assert exited.value.code == common.EXIT_USAGE
    with pytest.raises(SystemExit) as exited:
        main(["report", "-o", "report"])
    assert exited.value.code == common.EXIT_USAGE
    assert "to write a file: --output-file FILE" in capsys.readouterr().err


def test_report_o_file_as_before_is_still_written_with_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    args = resolved("--format", "html", "-o", "out/report.html")
    assert (args.format, args.output_file) == ("html", Path("out/report.html"))
    warning = capsys.readouterr().err
    assert "-o out/report.html is read as --output-file out/report.html" in warning
    assert len(warning.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("2m", 120),
        ("1h30m", 5400),
        ("90", 90),
        ("2.5", 2.5),
        ("0", 0),
        ("0s", 0),
        ("500ms", 0.5),
    ],
)
def test_timeouts_are_durations_or_seconds(text: str, seconds: float) -> None:
    assert common.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5", "1d", "5 m", "8d"])
def test_a_bad_timeout_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        common.duration_seconds(text)


@pytest.mark.parametrize("command", WAITING_COMMANDS)
def test_every_waiting_command_takes_a_duration(command: str) -> None:
    extra = ["--reason", "r"] if command == "rollback" else []
    args = build_parser().parse_args([command, "x", *extra, "--timeout", "2m"])
    assert args.timeout == 120
    with pytest.raises(SystemExit) as exited:
        main([command, "x", *extra, "--timeout", "soon"])
    assert exited.value.code == common.EXIT_USAGE


def test_a_and_n_move_behind_the_command_like_kubectls_global_flags() -> None:
    assert hoist_global_flags(["-A", "list"]) == ["list", "-A"]
    assert hoist_global_flags(["--context", "c", "-A", "list", "-o", "json"]) == [
        "list", "-o", "json", "--context", "c", "-A",
    ]  # fmt: skip
    args = build_parser().parse_args(hoist_global_flags(["-A", "list"]))
    assert args.all_namespaces is True


@pytest.mark.parametrize(
    "argv",
    [
        ["history", "x", "-A"],
        ["status", "x", "-A"],
        ["rollback", "x", "--reason", "r", "-A"],
        ["audit", "verify", "x", "-A"],
        ["report", "-A"],
        ["list", "-A", "-n", "ml"],
    ],
)
def test_a_is_refused_where_one_namespace_is_meant_before_any_cluster_call(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent")  # a cluster call would exit 4, not 2
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == common.EXIT_USAGE
    assert "-A" in capsys.readouterr().err


# --- a fake cluster -----------------------------------------------------------------------------------


def deployment(
    phase: str | None = "Healthy",
    *,
    name: str = "fraud",
    namespace: str = "ml",
    serving: str = "m-2",
    desired: str = "m-2",
    generation: int = 2,
    observed: int = 2,
    stable: bool = False,
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": "uid-1",
            "generation": generation,
            "creationTimestamp": "2026-11-27T10:00:00Z",
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"modelName": "fraud", "version": desired, "replicas": 2},
    }
    if phase is not None:
        raw["status"] = {
            "observedGeneration": observed,
            "phase": phase,
            "desiredVersion": desired,
            "servingVersion": serving,
            "currentRevision": 2,
            "stableRevision": 2 if stable else 1,
            "history": [
                {"revision": 2, "version": serving, "stable": stable},
                {"revision": 1, "version": "m-1", "stable": True},
            ],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if phase == "Healthy" else "False",
                    "reason": phase,
                    "message": f"{phase} [{desired}]",
                    "lastTransitionTime": "2026-11-27T10:00:00Z",
                }
            ],
            "rules": [{"name": "error-rate", "state": "Pass", "value": 0.01}],
        }
    return raw


class FakeObjects:
    """CustomObjectsApi over a few objects; a deployment may be a list of states, read in turn."""

    def __init__(self) -> None:
        self.deployments: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.error: ApiException | None = None

    def add(self, *states: dict[str, Any]) -> None:
        meta = states[0]["metadata"]
        self.deployments[(meta["namespace"], meta["name"])] = list(states)

    def get_namespaced_custom_object(self, *args: Any, **_kw: Any) -> dict[str, Any]:
        _group, _version, namespace, _plural, name = args
        if self.error is not None:
            raise self.error
        states = self.deployments.get((namespace, name))
        if not states:
            raise ApiException(status=404, reason="Not Found")
        return states.pop(0) if len(states) > 1 else states[0]

    def list_namespaced_custom_object(self, _g: str, _v: str, namespace: str, plural: str) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        items = [s[0] for (ns, _), s in self.deployments.items() if ns == namespace]
        return {"items": items if plural == "modeldeployments" else []}

    def list_cluster_custom_object(self, _g: str, _v: str, plural: str) -> dict[str, Any]:
        items = [s[0] for s in self.deployments.values()]
        return {"items": items if plural == "modeldeployments" else []}


OBJECTS = FakeObjects()


class FakeCluster(common.Cluster):
    def __init__(self, args: argparse.Namespace) -> None:
        self.client = None
        self.namespace = getattr(args, "namespace", None) or "ml"
        self.objects = cast(Any, OBJECTS)

    def whoami(self) -> str:
        return "tester"


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeObjects:
    global OBJECTS
    OBJECTS = FakeObjects()
    for module in (listing, status_cli, history_cli, audit_cli, report, version_cli):
        monkeypatch.setattr(module, "Cluster", FakeCluster)
    monkeypatch.setattr(status_cli, "POLL_SECONDS", 0.0)
    return OBJECTS


# --- status: the gate ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "state", "done", "healthy"),
    [
        (deployment(None), "Pending", False, False),
        (deployment("Healthy"), "Healthy", True, True),
        (deployment("RolledBack", serving="m-1"), "RolledBack", True, False),
        (deployment("Degraded"), "Degraded", True, False),
        (deployment("Failed"), "Failed", True, False),
        (deployment("Progressing", serving="m-1"), "Progressing", False, False),
        (deployment("RolledBack", generation=3, observed=2), "Progressing", False, False),
        (deployment("Healthy", serving="m-1"), "Progressing", False, False),
    ],
    ids=["no-status", "healthy", "rolled-back", "degraded", "failed", "progressing", "stale", "old-version"],
)
def test_the_gate(raw: dict[str, Any], state: str, done: bool, healthy: bool) -> None:
    gate = status_cli.judge(raw)
    assert (gate.state, gate.done, gate.healthy) == (state, done, healthy)


def test_the_gate_with_stable_waits_for_the_mark() -> None:
    assert not status_cli.judge(deployment("Healthy"), stable=True).done
    assert status_cli.judge(deployment("Healthy", stable=True), stable=True).healthy


@pytest.mark.parametrize(
    ("phase", "code"), [("Healthy", 0), ("RolledBack", 1), ("Degraded", 1), ("Failed", 1), ("Progressing", 1)]
)
def test_status_exit_codes(
    phase: str, code: int, cluster: FakeObjects, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster.add(deployment(phase))
    assert main(["status", "fraud", "-n", "ml"]) == code
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == status_cli.HEADERS
    assert phase in out


def test_status_watch_ends_healthy_printing_each_change_once(
    cluster: FakeObjects, capsys: pytest.CaptureFixture[str]
) -> None:
    progressing = deployment("Progressing", serving="m-1")
    cluster.add(deployment(None), progressing, progressing, progressing, deployment("Healthy"))
    assert main(["status", "fraud", "--watch", "--timeout", "10s"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines] == ["STATUS", "Pending", "Progressing", "Healthy"]


def test_status_watch_fails_on_a_rollback(cluster: FakeObjects, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.add(deployment("Healthy"), deployment("RolledBack", serving="m-1"))
    assert main(["status", "fraud", "--watch", "--stable", "--timeout", "10s", "-o", "wide"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == status_cli.WIDE_HEADERS
    assert "RolledBack" in lines[-1]
    assert "error-rate=Pass(0.01)" in lines[-1]


def test_status_watch_times_out_with_exit_1(cluster: FakeObjects, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.add(deployment("Progressing", serving="m-1"))
    with pytest.raises(SystemExit) as exited:
        main(["status", "fraud", "--watch", "--timeout", "0.3"])
    assert exited.value.code == common.EXIT_FAILED
    error = capsys.readouterr().err
    assert "timed out after 0.3s waiting for ModelDeployment ml/fraud" in error
    assert "(last: Progressing: Progressing [m-2])" in error
    assert len(error.strip().splitlines()) == 1


def test_status_json_and_yaml_documents(cluster: FakeObjects, capsys: pytest.CaptureFixture[str]) -> None:
    states = [deployment("Progressing", serving="m-1"), deployment("Healthy")]
    cluster.add(*states)
    assert main(["status", "fraud", "-w", "-o", "json"]) == 0
    text = capsys.readouterr().out
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text.strip()):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
        at += 1
    assert [d["result"]["status"] for d in documents] == ["Progressing", "Healthy"]
    assert documents[-1]["result"] == {
        "status": "Healthy", "done": True, "healthy": True, "message": "Healthy [m-2]",
    }  # fmt: skip
    expected = {k: v for k, v in states[1]["status"].items() if k != "history"}
    assert documents[-1]["status"] == expected
    cluster.add(*states)
    assert main(["status", "fraud", "-w", "-o", "yaml"]) == 0
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == documents


# --- list -------------------------------------------------------------------------------------------


def test_list_table_wide_and_all_namespaces(cluster: FakeObjects, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.add(deployment("Healthy"))
    cluster.add(deployment("RolledBack", name="churn", namespace="other", serving="m-1"))
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "MODEL", "DESIRED", "SERVING", "PHASE", "REVISION", "STABLE", "AGE"]
    assert lines[1].split()[:5] == ["fraud", "fraud", "m-2", "m-2", "Healthy"]
    assert len(lines) == 2
    assert main(["-A", "list", "-o", "wide"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[0] == "NAMESPACE"
    assert [line.split()[:2] for line in lines[1:]] == [["ml", "fraud"], ["other", "churn"]]
    assert main(["list", "-n", "empty"]) == 0
    assert "No ModelDeployments found in namespace empty." in capsys.readouterr().err


def test_list_json_yaml_and_name_round_trip(cluster: FakeObjects, capsys: pytest.CaptureFixture[str]) -> None:
    raw = deployment("Healthy")
    cluster.add(raw)
    assert main(["list", "-o", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert (listed["apiVersion"], listed["kind"]) == ("v1", "List")
    without = {**raw, "metadata": {k: v for k, v in raw["metadata"].items() if k != "managedFields"}}
    assert listed["items"] == [without]
    assert main(["list", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == listed
    assert main(["list", "-o", "name"]) == 0
    assert capsys.readouterr().out == "modeldeployment.modelledger.io/fraud\n"


def test_age_reads_like_kubectls() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert listing.age("2026-11-27T11:59:15Z", now) == "45s"
    assert listing.age("2026-11-27T11:30:00Z", now) == "30m"
    assert listing.age("2026-11-27T07:00:00Z", now) == "5h"
    assert listing.age("2026-11-20T12:00:00Z", now) == "7d"
    assert listing.age("", now) == "<unknown>"


# --- history ----------------------------------------------------------------------------------------


@pytest.fixture
def signed(cluster: FakeObjects, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    key = SigningKey.generate()
    monkeypatch.setattr(keys, "read_keyring", lambda _core, _ns: Keyring.of(key.public))
    status = sh.signed_status(3, key, stable=(2,))
    raw = {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": sh.SUBJECT.name, "namespace": sh.SUBJECT.namespace, "uid": sh.SUBJECT.uid},
        "spec": {"modelName": "fraud", "version": "m-3"},
        "status": status.to_wire(),
    }
    cluster.add(raw)
    return raw


def test_history_json_and_yaml_round_trip(signed: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["history", "fraud", "-n", "ml", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["history"] == signed["status"]["history"]
    assert (document["namespace"], document["name"], document["uid"]) == ("ml", "fraud", sh.SUBJECT.uid)
    assert document["currentRevision"] == 3
    assert document["verification"]["result"] == "verified"
    assert main(["history", "fraud", "-n", "ml", "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == document


def test_history_wide_and_a_tampered_history_exits_1(
    signed: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["history", "fraud", "-n", "ml", "-o", "wide"]) == 0
    out = capsys.readouterr().out
    assert "HASH" in out
    assert signed["status"]["history"][0]["hash"].removeprefix("sha256:")[:12] in out
    signed["status"]["history"][0]["actor"] = "mallory"
    assert main(["history", "fraud", "-n", "ml", "-o", "json"]) == common.EXIT_FAILED
    assert json.loads(capsys.readouterr().out)["verification"]["result"] == "broken"


# --- report -----------------------------------------------------------------------------------------


def test_report_yaml_table_and_output_file(
    signed: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(report, "list_events", lambda _cluster: [])
    until = ["--until", "2026-11-28T00:00:00Z"]
    assert main(["report", "-n", "ml", *until]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert main(["report", "-n", "ml", *until, "-o", "yaml"]) == 0
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    for document in (as_json, as_yaml):
        document.pop("generatedAt")
    assert as_yaml == as_json
    assert main(["report", "-n", "ml", "-o", "table"]) == 0
    out = capsys.readouterr().out
    assert "ModelDeployment ml/fraud" in out
    assert "history verified" in out
    target = tmp_path / "out" / "report.md"
    assert main(["report", "-n", "ml", "--format", "markdown", "--output-file", str(target)]) == 0
    assert capsys.readouterr().out == ""
    assert target.read_text().startswith("#")
    summary = tmp_path / "summary.txt"
    assert main(["report", "-n", "ml", "-o", "wide", "--output-file", str(summary)]) == 0
    text = summary.read_text()
    assert "ModelDeployment ml/fraud" in text
    assert "ARTIFACT" in text
    assert "\x1b[" not in text


# --- version and completion -------------------------------------------------------------------------


def test_version_client_only(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version", "--client"]) == 0
    assert capsys.readouterr().out.startswith("Client version: ")
    assert main(["version", "--client", "-o", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["clientVersion"]["version"] == version_cli.client_version()
    assert "operatorVersion" not in document


def test_version_names_the_operator_from_its_deployment_or_says_why_not(
    cluster: FakeObjects, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from types import SimpleNamespace

    import kubernetes

    class Apps:
        deployments: ClassVar[list[Any]] = []
        error: ClassVar[ApiException | None] = None

        def __init__(self, _client: Any) -> None:
            pass

        def list_namespaced_deployment(self, namespace: str, label_selector: str) -> Any:
            assert (namespace, label_selector) == ("ops", "app.kubernetes.io/name=modelledger")
            if self.error:
                raise self.error
            return SimpleNamespace(items=self.deployments)

    class Versions:
        def __init__(self, _client: Any) -> None:
            pass

        def get_code(self) -> Any:
            return SimpleNamespace(git_version="v1.34.1")

    monkeypatch.setattr(kubernetes.client, "AppsV1Api", Apps)
    monkeypatch.setattr(kubernetes.client, "VersionApi", Versions)
    meta = SimpleNamespace(name="modelledger", labels={"app.kubernetes.io/version": "0.2.0"})
    Apps.deployments = [SimpleNamespace(metadata=meta)]
    assert main(["version", "--operator-namespace", "ops", "-o", "yaml"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    assert document["kubernetesVersion"] == "v1.34.1"
    assert document["operatorVersion"] == {"version": "0.2.0", "source": "Deployment ops/modelledger"}
    Apps.error = ApiException(status=403, reason="Forbidden")
    assert main(["version", "--operator-namespace", "ops"]) == 0
    out = capsys.readouterr().out
    assert "Operator version: unknown (not allowed to read Deployments in ops" in out


def bash_complete(line: str, path: str | None = None) -> list[str]:
    script = completion.bash_script(completion.collect(build_parser()))
    words = line.split(" ")
    program = (
        script
        + "COMP_WORDS=(" + " ".join(f"'{w}'" for w in words) + f"); COMP_CWORD={len(words) - 1}\n"
        + '_modelledger; printf "%s\\n" "${COMPREPLY[@]}"\n'
    )  # fmt: skip
    env = {**os.environ, **({"PATH": path} if path else {})}
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    return [word for word in done.stdout.splitlines() if word]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion(tmp_path: Path) -> None:
    assert bash_complete("modelledger hist") == ["history"]
    assert bash_complete("modelledger audit ") == ["verify", "public-key"]
    assert bash_complete("modelledger status x -o ") == ["table", "wide", "json", "yaml"]
    assert "markdown" in bash_complete("modelledger report --format ")
    assert bash_complete("modelledger completion ") == ["bash", "zsh"]
    assert bash_complete("modelledger list --all") == ["--all-namespaces"]
    assert bash_complete("modelledger -n ml --context c status --wa") == ["--watch"]
    # deployment names come from `modelledger list -o name`, with the cluster flags already typed
    fake = tmp_path / "modelledger"
    fake.write_text(
        '#!/bin/sh\necho "$@" > "$(dirname "$0")/args"\n'
        "echo modeldeployment.modelledger.io/fraud-detector\necho modeldeployment.modelledger.io/churn\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    path = f"{tmp_path}:{os.environ['PATH']}"
    assert bash_complete("modelledger -n ml history fr", path) == ["fraud-detector"]
    assert (tmp_path / "args").read_text().split() == ["list", "-o", "name", "-n", "ml"]


def test_zsh_completion_goes_through_bashcompinit(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef modelledger kubectl-modelledger")
    assert "bashcompinit" in script
    assert "complete -o default -F _modelledger modelledger kubectl-modelledger" in script
    if shutil.which("zsh"):
        assert subprocess.run(["zsh", "-n", "-c", script], timeout=30).returncode == 0


# --- the exit code table ------------------------------------------------------------------------------


def test_exit_0_1_3_4_from_the_apiserver(cluster: FakeObjects, capsys: pytest.CaptureFixture[str]) -> None:
    cluster.add(deployment("Healthy"))
    assert main(["status", "fraud"]) == 0
    for status, code in [(404, 3), (403, 3), (401, 3), (503, 4), (500, 1)]:
        cluster.error = ApiException(status=status, reason="Boom [x]")
        with pytest.raises(SystemExit) as exited:
            main(["list"])
        assert exited.value.code == code, status
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
    cluster.error = None
    with pytest.raises(SystemExit) as exited:
        main(["history", "nothere"])
    assert exited.value.code == common.EXIT_NOT_FOUND
    assert "ModelDeployment nothere in namespace ml not found" in capsys.readouterr().err


def test_exit_5_unsigned_entries(cluster: FakeObjects, monkeypatch: pytest.MonkeyPatch) -> None:
    key = SigningKey.generate()
    monkeypatch.setattr(keys, "read_keyring", lambda _core, _ns: Keyring.of(key.public))
    raw = deployment("Healthy")
    raw["status"] = sh.signed_status(2, None).to_wire()
    raw["metadata"]["name"] = "fraud"
    cluster.add(raw)
    assert main(["audit", "verify", "fraud", "-n", "ml"]) == common.EXIT_UNSIGNED


def test_an_interrupt_exits_130_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(_args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(listing, "run", interrupted)
    assert main(["list"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.fixture
def closed_port_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kubeconfig whose server is a local port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": f"https://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
                "current-context": "c",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


EVERY_CLUSTER_COMMAND = [
    ["list"],
    ["list", "-A"],
    ["status", "fraud"],
    ["status", "fraud", "--watch", "--timeout", "30s"],
    ["history", "fraud"],
    ["report"],
    ["report", "fraud", "-o", "table"],
    ["audit", "verify"],
    ["audit", "verify", "-A"],
    ["audit", "verify", "fraud"],
    ["audit", "public-key"],
    ["rollback", "fraud", "--reason", "r"],
    ["mark-stable", "fraud"],
    ["retry", "fraud"],
    ["approve", "fraud-rollback-x"],
    ["version"],
]


@pytest.mark.parametrize("argv", EVERY_CLUSTER_COMMAND, ids=" ".join)
def test_an_unreachable_cluster_is_one_line_and_exit_4(
    argv: list[str], closed_port_kubeconfig: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(argv)
    except SystemExit as exited:
        code = int(exited.code or 0)
    assert code == common.EXIT_UNREACHABLE
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith("error: cannot reach the cluster at https://127.0.0.1:")
    assert error.rstrip().endswith("Connection refused")


def test_no_kubeconfig_is_exit_4(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    with pytest.raises(SystemExit) as exited:
        main(["list"])
    assert exited.value.code == common.EXIT_UNREACHABLE
    assert capsys.readouterr().err.startswith("error: no usable kubeconfig")
