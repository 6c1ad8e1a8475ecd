"""`modelledger lint`: every malformed manifest the models and the apiserver reject is caught offline,
naming its field and line; rule queries are parsed with the real PromQL parser; the examples pass; it is
fast and imports no kubernetes client."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.cli import lint
from modelledger.cli.main import main
from tests.malformed_cases import (
    EXAMPLES,
    MALFORMED,
    MODEL_DEPLOYMENT,
    MODEL_VERSION,
    PRUNED,
    Malformed,
    changed,
    names_field,
)

RULE = "spec.rollback.rules[0]"


def lint_documents(*documents: Any, file: str = "m.yaml") -> list[lint.Problem]:
    result = lint.Result()
    lint.lint_text(file, yaml.safe_dump_all(documents, sort_keys=False), result)
    lint.check_across(result)
    return sorted(set(result.problems))


def errors_of(*documents: Any) -> list[lint.Problem]:
    return [p for p in lint_documents(*documents) if p.severity == "error"]


def with_query(query: str) -> dict[str, Any]:
    return changed(MODEL_DEPLOYMENT, **{"spec__rollback__rules[0]__query": query})


# --- what the models and the apiserver reject --------------------------------------------------------


@pytest.mark.parametrize("case", MALFORMED, ids=lambda case: case.id)
def test_every_malformed_manifest_is_caught_naming_its_field(case: Malformed) -> None:
    problems = errors_of(case.manifest)
    assert any(names_field(p.path, case.field) for p in problems), (
        f"expected an error naming {case.field}, got {[str(p) for p in problems]}"
    )


def test_the_malformed_table_is_large() -> None:
    assert len(MALFORMED) >= 30


@pytest.mark.parametrize("case", PRUNED, ids=lambda case: case.id)
def test_unknown_fields_are_errors_naming_each(case: Any) -> None:
    """kubectl's default --validate=strict makes the apiserver refuse them; a typo would otherwise vanish."""
    problems = errors_of(case.manifest)
    assert sorted(p.path for p in problems) == sorted(case.unknown)
    assert all("unknown field" in p.message for p in problems)


# --- what only lint checks: queries, metadata, YAML, the set of files --------------------------------

LINT_ONLY: list[tuple[str, dict[str, Any], str, str]] = [
    ("query-unbalanced", with_query('sum(rate(x{namespace="{{namespace}}"}[1m])'), f"{RULE}.query", "PromQL"),
    ("query-garbage", with_query("this is not promql"), f"{RULE}.query", "PromQL"),
    ("query-two-expressions", with_query('up{namespace="{{namespace}}"} up'), f"{RULE}.query", "PromQL"),
    ("query-bad-function", with_query('rat(x{namespace="{{namespace}}"}[1m])'), f"{RULE}.query", "PromQL"),
    ("query-range-vector", with_query('x{namespace="{{namespace}}"}[5m]'), f"{RULE}.query", "range vector"),
    ("query-string", with_query('"{{namespace}}"'), f"{RULE}.query", "string"),
    (
        "placeholder-bare",
        with_query("x{namespace={{namespace}}}"),
        f"{RULE}.query",
        "outside a quoted string",
    ),
    (
        "placeholder-unknown",
        with_query('x{namespace="{{namespace}}",v="{{versoin}}"}'),
        f"{RULE}.query",
        "unknown placeholder",
    ),
    (
        "placeholder-raw-string",
        with_query("x{namespace=`{{namespace}}`}"),
        f"{RULE}.query",
        "raw",
    ),
    (
        "placeholder-in-comment",
        with_query('x{namespace="{{namespace}}"} # {{deployment}}'),
        f"{RULE}.query",
        "comment",
    ),
    (
        "rule-unknown-field",
        changed(MODEL_DEPLOYMENT, **{f"{RULE}__onNoDta".replace(".", "__"): "Pass"}),
        f"{RULE}.onNoDta",
        "unknown field",
    ),
    ("spec-unknown-field", changed(MODEL_DEPLOYMENT, spec__replica=3), "spec.replica", "unknown field"),
    ("mv-unknown-field", changed(MODEL_VERSION, spec__metric={"auc": 0.9}), "spec.metric", "unknown field"),
    ("no-metadata", changed(MODEL_VERSION, metadata=None), "metadata", "required"),
    ("no-name", changed(MODEL_VERSION, metadata={"namespace": "ml"}), "metadata.name", "required"),
    ("bad-name", changed(MODEL_VERSION, metadata__name="Fraud_1"), "metadata.name", "object name"),
    (
        "bad-namespace",
        changed(MODEL_VERSION, metadata__namespace="ML Prod"),
        "metadata.namespace",
        "namespace",
    ),
    (
        "label-not-a-string",
        changed(MODEL_VERSION, metadata__labels={"version": 1.4}),
        "metadata.labels.version",
        "quote it",
    ),
    (
        "annotation-not-a-string",
        changed(MODEL_VERSION, metadata__annotations={"replicas": 2}),
        "metadata.annotations.replicas",
        "string",
    ),
    ("metadata-unknown-field", changed(MODEL_VERSION, metadata__nmae="x"), "metadata.nmae", "unknown"),
    ("api-version-v1", changed(MODEL_VERSION, apiVersion="modelledger.io/v1"), "apiVersion", "v1alpha1"),
    ("kind-misspelt", changed(MODEL_VERSION, kind="ModelVerison"), "kind", "no kind"),
    ("no-api-version", changed(MODEL_VERSION, apiVersion=None), "apiVersion", "required"),
    (
        "request-rollback-without-reason",
        {
            "apiVersion": "modelledger.io/v1alpha1",
            "kind": "ModelDeploymentRequest",
            "metadata": {"generateName": "fraud-rollback-"},
            "spec": {"deployment": "fraud-detector", "action": "Rollback"},
        },
        "spec",
        "reason is required",
    ),
    (
        "request-unknown-action",
        {
            "apiVersion": "modelledger.io/v1alpha1",
            "kind": "ModelDeploymentRequest",
            "metadata": {"name": "r1"},
            "spec": {"deployment": "fraud-detector", "action": "Undo", "reason": "x"},
        },
        "spec.action",
        "Rollback",
    ),
]


@pytest.mark.parametrize(
    ("manifest", "field", "words"),
    [case[1:] for case in LINT_ONLY],
    ids=[case[0] for case in LINT_ONLY],
)
def test_lint_only_problems_name_their_field(manifest: dict[str, Any], field: str, words: str) -> None:
    manifest = {k: v for k, v in manifest.items() if v is not None}
    if isinstance(manifest.get("metadata"), dict):
        manifest["metadata"] = {k: v for k, v in manifest["metadata"].items() if v is not None}
    problems = errors_of(manifest)
    assert any(names_field(p.path, field) and words in p.message for p in problems), [
        str(p) for p in problems
    ]


def test_the_bad_manifests_caught_number_well_over_thirty() -> None:
    assert len(MALFORMED) + len(PRUNED) + len(LINT_ONLY) >= 130


def test_a_query_without_the_namespace_is_a_warning_and_strict_fails_on_it(tmp_path: Path) -> None:
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(with_query("sum(rate(model_errors_total[1m]))")))
    problems = lint_documents(yaml.safe_load(path.read_text()))
    assert [(p.severity, p.path) for p in problems] == [
        ("note", f"{RULE}.query"),
        ("warning", f"{RULE}.query"),
    ]
    assert main(["lint", str(path)]) == 0
    assert main(["lint", "--strict", str(path)]) == 1


def test_duplicate_keys_are_errors_with_their_line(tmp_path: Path) -> None:
    text = (EXAMPLES / "fraud-detector-deployment.yaml").read_text()
    text = text.replace("  replicas: 2\n", "  replicas: 2\n  replicas: 3\n")
    result = lint.Result()
    lint.lint_text("md.yaml", text, result)
    [problem] = result.problems
    assert (problem.path, problem.line) == ("spec.replicas", text.splitlines().index("  replicas: 3") + 1)
    assert "duplicate key" in problem.message


def test_across_files_a_version_of_another_model_and_a_twice_defined_object() -> None:
    other = changed(MODEL_VERSION, spec__modelName="churn")
    problems = errors_of(other, MODEL_DEPLOYMENT)
    assert [p.path for p in problems] == ["spec.version"]
    assert "'churn', not of 'fraud-detector'" in problems[0].message
    twice = errors_of(MODEL_VERSION, copy.deepcopy(MODEL_VERSION))
    assert [p.path for p in twice] == ["metadata.name"]
    assert "also defined at m.yaml:1" in twice[0].message
    elsewhere = changed(MODEL_VERSION, metadata__namespace="other")
    assert errors_of(MODEL_VERSION, elsewhere) == []


# --- output, files, exit codes ------------------------------------------------------------------------


def test_examples_pass(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "--strict", str(EXAMPLES)]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "3 file(s), 3 manifest(s): 0 error(s), 0 warning(s)" in captured.err


def test_one_multi_document_file_of_all_malformed_cases_names_each_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "all.yaml"
    documents = [changed(case.manifest, metadata__name=f"case-{i}") for i, case in enumerate(MALFORMED)]
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    assert main(["lint", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    starts = [n + 1 for n, line in enumerate(path.read_text().splitlines()) if line.startswith("apiVersion")]
    for start, end, case in zip(starts, [*starts[1:], 10**9], MALFORMED, strict=True):
        mine = [line for line in lines if start <= int(line.split(":")[1]) < end]
        fields = [line.split(": ")[1] for line in mine]
        assert any(names_field(f, case.field) for f in fields), (case.id, mine)
        assert all(line.startswith(f"{path}:") for line in mine)


def test_a_kind_list_json_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [MODEL_VERSION, changed(MODEL_DEPLOYMENT, spec__replicas=-1)],
    }
    path = tmp_path / "list.json"
    path.write_text(json.dumps(listed, indent=2))
    result = lint.Result()
    lint.lint_text(str(path), path.read_text(), result)
    [problem] = result.problems
    assert problem.path == "spec.replicas"
    assert '"replicas": -1' in path.read_text().splitlines()[problem.line - 1]
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO(yaml.safe_dump(MODEL_VERSION)))
    assert main(["lint", "-"]) == 0


def test_directories_skip_hidden_and_foreign_files_but_not_named_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "bad.yaml").write_text("apiVersion: modelledger.io/v1\nkind: ModelVersion\n")
    (tmp_path / "chart").mkdir()
    (tmp_path / "chart" / "template.yaml").write_text("{{ if .Values.x }}\nkind: Service\n{{ end }}\n")
    (tmp_path / "apps").mkdir()
    (tmp_path / "apps" / "mv.yml").write_text(yaml.safe_dump(MODEL_VERSION))
    (tmp_path / "notes.txt").write_text("apiVersion: modelledger.io/v1")
    assert main(["lint", str(tmp_path)]) == 0
    assert "1 file(s), 1 manifest(s)" in capsys.readouterr().err
    assert main(["lint", str(tmp_path / "chart" / "template.yaml")]) == 1
    assert "not valid YAML" in capsys.readouterr().out


def test_github_annotations(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "md.yaml"
    path.write_text(yaml.safe_dump(with_query("sum(rate(x[1m])")))
    assert main(["lint", "--format", "github", "-q", str(path)]) == 1
    captured = capsys.readouterr()
    assert captured.out.startswith(f"::error file={path},line=")
    assert f"::{RULE}.query: not valid PromQL" in captured.out
    assert captured.err == ""


def test_a_missing_path_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lint", "/no/such/dir"]) == 2
    assert "no such file or directory: /no/such/dir" in capsys.readouterr().err


def test_fast_and_without_the_kubernetes_client() -> None:
    """Fit for a pre-commit hook: one process, no kubernetes client, well under the budget."""
    probe = (
        "import sys, time; started = time.monotonic()\n"
        "from modelledger.cli.main import main\n"
        f"code = main(['lint', '-q', {str(EXAMPLES)!r}])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('kubernetes', 'kopf', 'urllib3'))\n"
        "print(code, time.monotonic() - started, heavy)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    code, inside, heavy = done.stdout.split(" ", 2)
    assert code == "0"
    assert heavy.strip() == "[]"
    assert elapsed < 5.0, f"lint took {elapsed:.2f} s ({float(inside):.2f} s inside the interpreter)"


def test_many_manifests_stay_fast(tmp_path: Path) -> None:
    documents = [changed(MODEL_DEPLOYMENT, metadata__name=f"d-{i}") for i in range(300)]
    (tmp_path / "many.yaml").write_text(yaml.safe_dump_all(documents))
    started = time.monotonic()
    result = lint.Result()
    lint.lint_text("many.yaml", (tmp_path / "many.yaml").read_text(), result)
    assert result.problems == []
    assert len(result.manifests) == 300
    assert time.monotonic() - started < 5.0


def test_placeholders_version_and_version_name_pass_and_the_version_label_against_a_name_warns() -> None:
    good = 'max(m{namespace="{{namespace}}", version="{{version}}", mv="{{ versionName }}"})'
    assert [p for p in lint_documents(with_query(good)) if p.severity != "note"] == []
    wrong = [
        p
        for p in lint_documents(with_query('max(m{namespace="{{namespace}}", version="{{versionName}}"})'))
        if p.severity != "note"
    ]
    assert [(p.severity, p.path) for p in wrong] == [("warning", f"{RULE}.query")]
    assert 'use version="{{version}}"' in wrong[0].message
    unknown = errors_of(with_query('max(m{namespace="{{namespace}}", version="{{semver}}"})'))
    assert [p.path for p in unknown] == [f"{RULE}.query"]


def test_a_template_that_is_not_fleet_safe_gets_a_note_that_never_fails_the_lint(tmp_path: Path) -> None:
    safe = 'sum(rate(errors_total{namespace="{{namespace}}", deployment="{{deployment}}"}[1m]))'
    assert lint_documents(with_query(safe)) == []
    path = tmp_path / "md.yaml"
    path.write_text(
        yaml.safe_dump(with_query('absent(up{namespace="{{namespace}}", deployment="{{deployment}}"})'))
    )
    [note] = lint_documents(yaml.safe_load(path.read_text()))
    assert (note.severity, note.path) == ("note", f"{RULE}.query")
    assert note.message.startswith("not fleet-safe (")
    assert str(note).startswith(f"m.yaml:{note.line}: {RULE}.query: note: not fleet-safe (absent()")
    assert note.github().startswith("::notice file=")
    assert main(["lint", "--strict", str(path)]) == 0, "a note is not a problem, even with --strict"
