"""`modelledger lint FILE|DIR...`: check ModelVersion, ModelDeployment and ModelDeploymentRequest
manifests offline, as the apiserver and the operator would, before they reach a cluster.

Each document (multi-document YAML or JSON; `kind: List` too) of group `modelledger.io` is checked:

- against the same API models the CRDs are generated from, whose rules mirror the CRDs' CEL rules
  (digests, durations, unique rule names, the pod template's allowlist...);
- for fields the CRD does not know (kubectl's default `--validate=strict` makes the apiserver refuse
  them; a misspelt `onNoData` would otherwise be dropped silently) and duplicate keys;
- `metadata`: a name, label and annotation values that are strings;
- every rule query: its placeholders (known names, only inside quoted strings), then the query with
  sample values parsed by the real PromQL parser, and its type (an instant vector or a scalar);
- across the files: a ModelDeployment naming a ModelVersion of another model, the same object twice.

Prints `FILE:LINE: FIELD: MESSAGE` per problem and exits 1 on any error (2: a path cannot be read).
Directories are searched for *.yaml, *.yml and *.json files that mention `modelledger.io`; other
documents are skipped. No cluster is contacted."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from modelledger.api import ModelDeployment, ModelDeploymentRequest, ModelVersion
from modelledger.api.common import GROUP, OBJECT_NAME_PATTERN, VERSION
from modelledger.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from modelledger.core import fleet, promql

MODELS: dict[str, type[BaseModel]] = {
    "ModelVersion": ModelVersion,
    "ModelDeployment": ModelDeployment,
    "ModelDeploymentRequest": ModelDeploymentRequest,
}
SUFFIXES = (".yaml", ".yml", ".json")
OBJECT_META = frozenset(
    {
        "name", "generateName", "namespace", "labels", "annotations", "finalizers", "ownerReferences",
        "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
        "deletionGracePeriodSeconds", "managedFields", "selfLink",
    }
)  # fmt: skip
NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
OBJECT_NAME = re.compile(OBJECT_NAME_PATTERN)
try:  # libyaml when present: several times faster
    Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    Loader = yaml.SafeLoader


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " + (f"{self.path}: " if self.path else "")
        return where + ("" if self.severity == "error" else f"{self.severity}: ") + self.message

    def github(self) -> str:
        """A GitHub Actions workflow command: the problem as an annotation on the pull request."""
        text = (f"{self.path}: " if self.path else "") + self.message
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        command = "notice" if self.severity == "note" else self.severity
        return f"::{command} file={self.file},line={self.line}::{text}"


@dataclass
class Manifest:
    """One object of ours, where it came from and the line of each of its fields."""

    file: str
    data: dict[str, Any]
    lines: dict[str, int]
    base: str = ""
    """The object's path inside its document: empty, or `items[N]` inside a `kind: List`."""

    @property
    def kind(self) -> str:
        return str(self.data.get("kind"))

    @property
    def name(self) -> str:
        return str((self.data.get("metadata") or {}).get("name") or "")

    @property
    def namespace(self) -> str | None:
        namespace = (self.data.get("metadata") or {}).get("namespace")
        return str(namespace) if namespace else None

    def line(self, path: str) -> int:
        """The line of `path` (inside this object), or of the nearest enclosing field present."""
        full = _join(self.base, path)
        while full not in self.lines and full:
            full = _parent(full)
        return self.lines.get(full, 1)

    def problem(self, path: str, message: str, severity: str = "error") -> Problem:
        return Problem(self.file, self.line(path), path, message, severity)


@dataclass
class Result:
    problems: list[Problem] = field(default_factory=list)
    files: int = 0
    manifests: list[Manifest] = field(default_factory=list)
    skipped: int = 0
    """Documents that are not of group modelledger.io."""

    @property
    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for p in self.problems if p.severity == "warning")

    @property
    def notes(self) -> int:
        """Not problems: facts worth knowing (a template that is not fleet-safe)."""
        return sum(1 for p in self.problems if p.severity == "note")


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "lint",
        help="check manifests offline: API rules, unknown fields, rule queries (PromQL)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("paths", nargs="+", metavar="FILE|DIR", help="files, directories, or - (stdin)")
    parser.add_argument("--strict", action="store_true", help="warnings fail too (exit 1)")
    parser.add_argument(
        "--format",
        choices=("text", "github"),
        default="text",
        help="text: FILE:LINE: FIELD: MESSAGE (default); github: GitHub Actions annotations",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no summary line on standard error")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        files = list(find_files([Path(p) for p in args.paths]))
    except FileNotFoundError as error:
        sys.stderr.write(f"error: {error}\n")
        return EXIT_USAGE
    result = Result()
    for path, explicit in files:
        try:
            text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            sys.stderr.write(f"error: cannot read {path}: {error}\n")
            return EXIT_USAGE
        if not explicit and GROUP not in text:
            continue  # a directory's other YAML (charts, other apps): not ours
        lint_text("<stdin>" if str(path) == "-" else str(path), text, result)
    check_across(result)
    problems = sorted(set(result.problems))
    render = Problem.github if args.format == "github" else Problem.__str__
    sys.stdout.write("".join(render(p) + "\n" for p in problems))
    if not args.quiet:
        sys.stderr.write(
            f"lint: {result.files} file(s), {len(result.manifests)} manifest(s)"
            + (f" ({result.skipped} other document(s) skipped)" if result.skipped else "")
            + f": {result.errors} error(s), {result.warnings} warning(s), {result.notes} note(s)\n"
        )
    failed = result.errors or (args.strict and result.warnings)
    return EXIT_FAILED if failed else EXIT_OK


def find_files(paths: list[Path]) -> Iterator[tuple[Path, bool]]:
    """(file, given explicitly): directories are searched recursively, hidden ones left out."""
    for path in paths:
        if str(path) == "-" or path.is_file():
            yield path, True
        elif path.is_dir():
            for found in sorted(path.rglob("*")):
                relative = found.relative_to(path).parts
                if found.suffix in SUFFIXES and found.is_file() and not _hidden(relative):
                    yield found, False
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")


def _hidden(parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") for part in parts)


def lint_text(file: str, text: str, result: Result) -> None:
    """Every document of one file."""
    result.files += 1
    loader = Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            lines: dict[str, int] = {}
            duplicates: list[tuple[str, int]] = []
            _index(node, "", lines, duplicates)
            data = loader.construct_document(node)
            before = (len(result.manifests), len(result.problems))
            lint_document(file, data, lines, result)
            if (len(result.manifests), len(result.problems)) != before:  # a document of ours
                result.problems += [
                    Problem(file, line, path, "duplicate key: the apiserver refuses it (one value is lost)")
                    for path, line in duplicates
                ]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        result.problems.append(Problem(file, line, "", f"not valid YAML: {problem}"))
    finally:
        loader.dispose()


def _index(node: yaml.Node, path: str, lines: dict[str, int], duplicates: list[tuple[str, int]]) -> None:
    """The line of every field path (`spec.rollback.rules[0].for`), and the duplicate keys."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            name = str(key.value)
            child = _join(path, name)
            if name in seen:
                duplicates.append((child, key.start_mark.line + 1))
            seen.add(name)
            lines.setdefault(child, key.start_mark.line + 1)
            _index(value, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index(item, f"{path}[{index}]", lines, duplicates)


def _join(path: str, name: str) -> str:
    if not path:
        return name
    if not name:
        return path
    return f"{path}{name}" if name.startswith("[") else f"{path}.{name}"


def _parent(path: str) -> str:
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def lint_document(file: str, data: Any, lines: dict[str, int], result: Result, base: str = "") -> None:
    if data is None:
        return  # an empty document (a trailing `---`)
    here = Manifest(file, data if isinstance(data, dict) else {}, lines, base)
    if not isinstance(data, dict):
        result.problems.append(here.problem("", "not a Kubernetes object (a YAML mapping)"))
        return
    api_version, kind = data.get("apiVersion"), data.get("kind")
    if kind == "List" and isinstance(data.get("items"), list):
        for index, item in enumerate(data["items"]):
            lint_document(file, item, lines, result, _join(base, f"items[{index}]"))
        return
    group, _, version = str(api_version or "").rpartition("/")
    if group != GROUP:
        if str(kind) in MODELS and not api_version:
            result.problems.append(here.problem("apiVersion", f"required: {GROUP}/{VERSION}"))
        else:
            result.skipped += 1
        return
    if version != VERSION:
        result.problems.append(
            here.problem("apiVersion", f"{GROUP} serves {GROUP}/{VERSION}, not {api_version}")
        )
        return
    if kind not in MODELS:
        known = ", ".join(sorted(MODELS))
        message = f"required: one of {known}" if kind is None else f"{GROUP} has no kind {kind!r}: {known}"
        result.problems.append(here.problem("kind", message))
        return
    result.manifests.append(here)
    result.problems += lint_manifest(here)


def lint_manifest(manifest: Manifest) -> list[Problem]:
    data = {key: value for key, value in manifest.data.items() if key != "status"}  # the operator's
    problems = check_metadata(manifest)
    problems += [
        manifest.problem(path, "unknown field: the apiserver refuses it (kubectl's default "
                         "--validate=strict) or drops it")
        for path in unknown_fields(data, schema(manifest.kind), "")
    ]  # fmt: skip
    try:
        MODELS[manifest.kind].model_validate(data)
    except ValidationError as error:
        for detail in error.errors():
            path = error_path(data, detail["loc"])
            problems.append(manifest.problem(path, _message(detail)))
    if manifest.kind == "ModelDeployment":
        problems += check_queries(manifest)
    return problems


def _message(detail: Any) -> str:
    message = str(detail["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if detail["type"] == "missing":
        return "required"
    return message


def error_path(data: Any, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a field path (`spec.rules[0].for`), without the union and
    validator tags pydantic puts in it (`function-after[...]`, `int`)."""
    path, current = "", data
    for position, step in enumerate(loc):
        present = (isinstance(current, dict) and step in current) or (
            isinstance(current, list) and isinstance(step, int) and 0 <= step < len(current)
        )
        if present:
            current = current[step]
        elif not (isinstance(current, dict) and position == len(loc) - 1 and isinstance(step, str)):
            continue  # a tag, not a field (a missing field is named, though absent)
        path = _join(path, f"[{step}]" if isinstance(step, int) else str(step))
    return path


def check_metadata(manifest: Manifest) -> list[Problem]:
    metadata = manifest.data.get("metadata")
    if metadata is None:
        return [manifest.problem("metadata", "required: metadata.name names the object")]
    if not isinstance(metadata, dict):
        return [manifest.problem("metadata", "must be a mapping")]
    problems = [
        manifest.problem(f"metadata.{key}", "unknown field of metadata")
        for key in metadata
        if key not in OBJECT_META
    ]
    name = metadata.get("name")
    if name is None and not metadata.get("generateName"):
        problems.append(manifest.problem("metadata.name", "required"))
    elif name is not None and (
        not isinstance(name, str) or len(name) > 253 or not OBJECT_NAME.fullmatch(name)
    ):
        problems.append(
            manifest.problem(
                "metadata.name",
                f"{name!r} is not a Kubernetes object name (lower-case letters, digits, '-' and '.')",
            )
        )
    namespace = metadata.get("namespace")
    if namespace is not None and (
        not isinstance(namespace, str) or len(namespace) > 63 or not NAMESPACE.fullmatch(namespace)
    ):
        problems.append(manifest.problem("metadata.namespace", f"{namespace!r} is not a namespace name"))
    for map_name in ("labels", "annotations"):
        values = metadata.get(map_name)
        if values is None:
            continue
        if not isinstance(values, dict):
            problems.append(manifest.problem(f"metadata.{map_name}", "must be a mapping of strings"))
            continue
        for key, value in values.items():
            if not isinstance(value, str):
                problems.append(
                    manifest.problem(
                        f"metadata.{map_name}.{key}",
                        f"must be a string, not {type(value).__name__} {value!r}: quote it",
                    )
                )
    return problems


_SCHEMAS: dict[str, dict[str, Any]] = {}


def schema(kind: str) -> dict[str, Any]:
    """The kind's openAPIV3Schema, as `modelledger crds` generates it (the CRD the apiserver has)."""
    if kind not in _SCHEMAS:
        from modelledger.api import crdgen

        found = next(k for k in crdgen.KINDS if k.kind == kind)
        crd = crdgen.crd(found)
        _SCHEMAS[kind] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return _SCHEMAS[kind]


def unknown_fields(value: Any, node: dict[str, Any], path: str) -> Iterator[str]:
    """Paths of `value` the structural schema `node` has no place for (what the apiserver prunes)."""
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        for key, item in value.items():
            child = _join(path, str(key))
            if path == "" and key == "metadata":
                continue  # ObjectMeta: checked by check_metadata
            if properties is not None and key in properties:
                yield from unknown_fields(item, properties[key], child)
            elif isinstance(extra, dict):
                yield from unknown_fields(item, extra, child)
            elif properties is not None and extra is not True:
                yield child
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for index, item in enumerate(value):
            yield from unknown_fields(item, node["items"], f"{path}[{index}]")


def sample_values(manifest: Manifest) -> dict[str, str]:
    """What each placeholder stands for, as the operator would fill it in, for this manifest."""
    spec = manifest.data.get("spec") or {}
    known = {
        "namespace": manifest.namespace or "default",
        "deployment": manifest.name or "deployment",
        "model": str(spec.get("modelName") or "model") if isinstance(spec, dict) else "model",
        "version": "1.0.0",
        "versionName": str(spec.get("version") or "version") if isinstance(spec, dict) else "version",
    }
    return {name: known.get(name, "sample") for name in promql.PLACEHOLDERS}


def check_queries(manifest: Manifest) -> list[Problem]:
    spec = manifest.data.get("spec")
    rollback = spec.get("rollback") if isinstance(spec, dict) else None
    rules = rollback.get("rules") if isinstance(rollback, dict) else None
    if not isinstance(rules, list):
        return []
    problems: list[Problem] = []
    values = sample_values(manifest)
    for index, rule in enumerate(rules):
        query = rule.get("query") if isinstance(rule, dict) else None
        if not isinstance(query, str) or not query.strip():
            continue  # the model names what is wrong with it
        path = f"spec.rollback.rules[{index}].query"
        try:
            promql.check_template(query)
        except ValueError as error:
            problems.append(manifest.problem(path, f"placeholder: {error}"))
            continue
        try:
            parsed = promql.parse(promql.render(query, values))
        except ValueError as error:
            problems.append(manifest.problem(path, f"not valid PromQL: {error}"))
            continue
        if parsed.type in (promql.QueryType.MATRIX, promql.QueryType.STRING):
            returns = "a range vector" if parsed.type is promql.QueryType.MATRIX else "a string"
            problems.append(
                manifest.problem(
                    path,
                    f"the query returns {returns}; a rule needs an instant vector or a scalar "
                    "(e.g. wrap a range in rate(...) or max_over_time(...))",
                )
            )
        if _matches_version_name(query):
            problems.append(
                manifest.problem(
                    path,
                    "matches the label version against {{versionName}}: pods export the semantic version "
                    '(spec.version of the ModelVersion) in `version`; use version="{{version}}"',
                    "warning",
                )
            )
        shape = fleet.fleet_template(query)
        if isinstance(shape, str):
            problems.append(
                manifest.problem(
                    path,
                    f"not fleet-safe ({shape}): evaluated per deployment, one query each per interval; "
                    "fine for tens of deployments, costly for thousands (docs/rules.md, Scale)",
                    "note",
                )
            )
        if "namespace" not in promql.placeholders(query):
            problems.append(
                manifest.problem(
                    path,
                    "uses no {{namespace}}: on a shared Prometheus it may read other namespaces' series "
                    '(e.g. {namespace="{{namespace}}"})',
                    "warning",
                )
            )
    return problems


def _matches_version_name(query: str) -> bool:
    """Whether a (valid) template matches the pods' `version` label against the ModelVersion's name."""
    marker = "modelledger-lint-version-name"
    values = {name: marker if name == "versionName" else "x" for name in promql.PLACEHOLDERS}
    try:
        tree = promql.parse(promql.render(query, values)).tree
    except ValueError:
        return False
    return any(
        matcher.name == "version" and marker in matcher.value
        for selector in promql.selectors(tree)
        for matcher in selector.matchers.matchers
    )


def check_across(result: Result) -> None:
    """What only the set of files shows: a version of another model, an object defined twice."""
    seen: dict[tuple[str, str | None, str], Manifest] = {}
    versions: dict[tuple[str | None, str], Manifest] = {}
    for manifest in result.manifests:
        if not manifest.name:
            continue
        key = (manifest.kind, manifest.namespace, manifest.name)
        if key in seen:
            first = seen[key]
            result.problems.append(
                manifest.problem(
                    "metadata.name",
                    f"{manifest.kind} {manifest.name} is also defined at {first.file}:{first.line('')}",
                )
            )
        seen.setdefault(key, manifest)
        if manifest.kind == "ModelVersion":
            versions[(manifest.namespace, manifest.name)] = manifest
    for manifest in result.manifests:
        spec = manifest.data.get("spec")
        if manifest.kind != "ModelDeployment" or not isinstance(spec, dict):
            continue
        version = versions.get((manifest.namespace, str(spec.get("version"))))
        version_spec = version.data.get("spec") if version is not None else None
        if version is None or not isinstance(version_spec, dict):
            continue
        if version_spec.get("modelName") != spec.get("modelName"):
            result.problems.append(
                manifest.problem(
                    "spec.version",
                    f"ModelVersion {version.name} ({version.file}) is a version of "
                    f"{version_spec.get('modelName')!r}, not of {spec.get('modelName')!r}: the operator "
                    "would fail it (ModelMismatch)",
                )
            )
        if version_spec.get("revoked") is True:
            result.problems.append(
                manifest.problem(
                    "spec.version", f"ModelVersion {version.name} is revoked: it will not be served"
                )
            )
