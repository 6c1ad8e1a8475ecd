"""`modelledger report [MDEP]`: the compliance report of a namespace or one deployment over a time
range, as JSON (schema `modelledger.report/v2`), Markdown or one self-contained HTML file.

The JSON embeds each deployment's signed history verbatim, so anyone holding the operator's public key
can check it offline: `modelledger audit verify --report FILE --public-key KEY`.

`--format` (alias `-o`, as kubectl) picks json (the default), yaml, markdown, html, openlineage (the
lineage as OpenLineage run events, one per line: docs/lineage.md), or `table`/`wide` (a terminal
summary of what served when); `--output-file FILE` writes the report there instead of
standard output."""

from __future__ import annotations

import argparse
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import ValidationError
from rich.console import Console

from modelledger.api import ModelDeployment, ModelVersion
from modelledger.cli.audit import add_operator_namespace, published_keyring, read_log
from modelledger.cli.common import (
    EXIT_FAILED,
    Cluster,
    add_cluster_args,
    console,
    errors,
    fail,
    list_events,
    list_objects,
    parse_time,
    render_document,
    table,
)
from modelledger.core import audit_chain
from modelledger.core.signing import Keyring
from modelledger.report import model, render_html, render_json, render_markdown, render_openlineage
from modelledger.report.schema import AuditLogCheck, EventRecord, Report

Parsed = TypeVar("Parsed", ModelDeployment, ModelVersion)
RENDERERS = {
    "json": render_json.render,
    "markdown": render_markdown.render,
    "html": render_html.render,
    "openlineage": render_openlineage.render,
}
FORMATS = ("json", "yaml", "markdown", "html", "openlineage", "table", "wide")


class LegacyFile(str):
    """`-o FILE` as written before `-o` became the format: still honoured, with a warning."""


def report_format(text: str) -> str:
    """`--format`/`-o`: one of FORMATS. Before 0.2 `-o` named the output file: a value that looks like a
    path (`r.json`, `out/report`) is still taken as one, with a warning; anything else is an error."""
    if text in FORMATS:
        return text
    if "." in text or "/" in text:
        return LegacyFile(text)
    raise argparse.ArgumentTypeError(
        f"invalid format {text!r} (choose from {', '.join(FORMATS)}); to write a file: --output-file FILE"
    )


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "report", help="compliance report: what served when, who changed it, evidence"
    )
    parser.description = __doc__
    parser.add_argument("deployment", nargs="?", help="one ModelDeployment (default: all in the namespace)")
    parser.add_argument("--since", help="start: RFC 3339 time, or a duration before now (24h)")
    parser.add_argument("--until", help="end: RFC 3339 time, or a duration before now (default: now)")
    parser.add_argument("--at", help="answer what served at this instant (RFC 3339 or a duration before now)")
    parser.add_argument(
        "--format",
        type=report_format,
        default=None,
        metavar="FORMAT",
        help=f"{' | '.join(FORMATS)} (default: json; table and wide: a summary for the terminal)",
    )
    parser.add_argument(
        "-o",
        "--output",
        dest="output",
        type=report_format,
        default=None,
        metavar="FORMAT",
        help="the same as --format, as kubectl's -o (before 0.2: the output file, see --output-file)",
    )
    parser.add_argument(
        "--output-file", type=Path, metavar="FILE", help="write the report to FILE (default: standard output)"
    )
    parser.add_argument(
        "--audit-log", type=Path, help="the operator's audit JSONL file: covers pruned revisions"
    )
    parser.add_argument("--json-schema", action="store_true", help="print the report's JSON Schema and exit")
    add_operator_namespace(parser)
    add_cluster_args(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.json_schema:
        sys.stdout.write(render_json.json_schema())
        return 0
    if args.all_namespaces:
        fail("a report covers one namespace (-n NAMESPACE), not all of them (-A): run it per namespace")
    resolve_format(args)
    now = datetime.now(UTC)
    query = model.Query(
        generated_at=now,
        generated_by="",
        deployment=args.deployment,
        since=parse_time(args.since, now) if args.since else None,
        until=parse_time(args.until, now) if args.until else None,
        at=parse_time(args.at, now) if args.at else None,
    )
    cluster = Cluster(args)
    keyring = published_keyring(cluster, args.operator_namespace, required=False)
    if keyring is None or not keyring.keys:
        errors.print(
            f"[yellow]warning:[/] no public keys read from {args.operator_namespace}: the report's "
            "signatures are not checked (verdict NotChecked)",
            highlight=False,
        )
        keyring = None
    deployments = (
        [cluster.get_deployment(args.deployment)]
        if args.deployment
        else list_objects(cluster, "modeldeployments")
    )
    sources = model.Sources(
        namespace=cluster.namespace,
        deployments=_parsed(ModelDeployment, deployments),
        versions={
            v.metadata["name"]: v for v in _parsed(ModelVersion, list_objects(cluster, "modelversions"))
        },
        events=[_event(e) for e in list_events(cluster)],
        keyring=keyring,
        **_audit_sources(args.audit_log, keyring),
    )
    report = model.build(sources, _with_user(query, cluster.whoami()))
    if args.format in ("table", "wide") and args.output_file is None:
        print_summary(report, wide=args.format == "wide")
    else:
        _write(render(report, args.format), args.output_file)
    if not report.ok:
        errors.print(
            "[bold red]verification failed[/]: see the report's verification fields", highlight=False
        )
        return EXIT_FAILED
    return 0


def resolve_format(args: argparse.Namespace) -> None:
    """One format from --format and -o; `-o FILE` (before 0.2) becomes --output-file, with a warning."""
    given = [value for value in (args.format, args.output) if value is not None]
    legacy = [value for value in given if isinstance(value, LegacyFile)]
    formats = {value for value in given if not isinstance(value, LegacyFile)}
    if isinstance(args.format, LegacyFile):
        fail(f"invalid format {args.format!r} for --format; to write a file: --output-file {args.format}")
    if len(formats) > 1:
        fail(f"--format {args.format} and -o {args.output} disagree: -o is an alias of --format")
    if legacy:
        if args.output_file is not None:
            fail(f"-o {legacy[0]} and --output-file {args.output_file}: name the file once, --output-file")
        args.output_file = Path(legacy[0])
        errors.print(
            f"[yellow]warning:[/] -o {legacy[0]} is read as --output-file {legacy[0]}, as before 0.2; "
            "-o now names the format (as in kubectl) and will stop taking a file: use --output-file",
            highlight=False,
        )
    args.format = formats.pop() if formats else "json"


def render(report: Report, output: str) -> str:
    if output in RENDERERS:
        return RENDERERS[output](report)
    if output == "yaml":
        return render_document(json.loads(render_json.render(report)), "yaml")
    return console_text(report, wide=output == "wide")


def print_summary(report: Report, *, wide: bool, out: Console = console) -> None:
    """What served when, per deployment, and whether its history verifies: for a terminal."""
    window = report.window
    since = window.since.strftime("%Y-%m-%d %H:%M:%S") if window.since else "the first revision"
    out.print(
        f"Report of namespace {report.namespace}, from {since} until "
        f"{window.until.strftime('%Y-%m-%d %H:%M:%S')} UTC",
        highlight=False,
    )
    for deployment in report.deployments:
        columns = ["REVISION", "VERSION", "FROM", "UNTIL", "CAUSE", "ACTOR", "STABLE"]
        if wide:
            columns += ["ARTIFACT", "IMAGE", "SOURCE"]
        rows = table(f"ModelDeployment {deployment.namespace}/{deployment.name}", columns)
        for interval in deployment.timeline:
            until = interval.end.strftime("%Y-%m-%d %H:%M:%S") if interval.end else ""
            if not interval.end_known:
                until = "unknown"
            cells = [
                str(interval.revision),
                interval.version,
                interval.start.strftime("%Y-%m-%d %H:%M:%S"),
                until or "(serving)",
                interval.cause,
                interval.actor,
                "yes" if interval.stable else "",
            ]
            if wide:
                digests = interval.digests
                cells += [
                    digests.artifact_digest.removeprefix("sha256:")[:12] if digests else "",
                    digests.image if digests else "",
                    interval.source,
                ]
            rows.add_row(*cells)
        out.print(rows)
        check = deployment.verification.history
        verdict = {"Signed": "verified", "Unsigned": "UNSIGNED", "Tampered": "BROKEN"}.get(
            check.verdict, check.verdict
        )
        detail = f" at revision {check.revision}: {check.problem}" if check.problem else ""
        out.print(
            f"phase {deployment.phase or '-'}, serving {deployment.serving_version}, "
            f"desired {deployment.desired_version}; history {verdict}{detail}",
            highlight=False,
        )
    if not report.deployments:
        out.print("no ModelDeployment in the report", highlight=False)


def console_text(report: Report, *, wide: bool) -> str:
    """The terminal summary as plain text, without colours (for --output-file with table or wide)."""
    plain = Console(file=io.StringIO(), width=200, color_system=None, force_terminal=False)
    print_summary(report, wide=wide, out=plain)
    return cast(io.StringIO, plain.file).getvalue()


def _with_user(query: model.Query, user: str) -> model.Query:
    return model.Query(query.generated_at, user, query.deployment, query.since, query.until, query.at)


def _parsed(kind: type[Parsed], items: list[dict[str, Any]]) -> list[Parsed]:
    parsed: list[Parsed] = []
    for item in items:
        try:
            parsed.append(kind.model_validate(item))
        except ValidationError as error:
            name = item.get("metadata", {}).get("name", "?")
            errors.print(f"[yellow]warning:[/] {kind.__name__} {name} skipped: {error.errors()[0]['msg']}")
    return parsed


def _audit_sources(path: Path | None, keyring: Keyring | None) -> dict[str, Any]:
    if path is None:
        return {}
    lines = read_log(path)
    result = audit_chain.verify_lines(lines, keyring=keyring)
    check = AuditLogCheck(
        path=str(path),
        records=result.records,
        ok=result.ok,
        line=result.broken.line if result.broken else None,
        problem=result.broken.describe() if result.broken else None,
        signed=result.signed,
        unsigned=result.unsigned,
        signatures_checked=result.checked,
    )
    records = [
        (n, r) for n, r, _ in audit_chain.parse_lines(lines) if r is not None and r.get("audit") is True
    ]
    return {"audit_records": records, "audit_log": check}


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def _event(raw: dict[str, Any]) -> EventRecord:
    involved = raw.get("involvedObject") or {}
    first = (
        raw.get("firstTimestamp") or raw.get("eventTime") or raw.get("metadata", {}).get("creationTimestamp")
    )
    return EventRecord(
        object_kind=str(involved.get("kind", "")),
        object_name=str(involved.get("name", "")),
        reason=str(raw.get("reason") or ""),
        type=str(raw.get("type") or "Normal"),
        message=str(raw.get("message") or ""),
        first_seen=_time(first),
        last_seen=_time(raw.get("lastTimestamp") or first),
        count=int(raw.get("count") or 1),
    )


def _write(text: str, output: Path | None) -> None:
    if output is None:
        sys.stdout.write(text)
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    errors.print(f"wrote {output}", highlight=False, style="dim")
