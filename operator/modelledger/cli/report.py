"""`modelledger report [MDEP]`: the compliance report of a namespace or one deployment over a time
range, as JSON (schema `modelledger.report/v2`), Markdown or one self-contained HTML file.

The JSON embeds each deployment's signed history verbatim, so anyone holding the operator's public key
can check it offline: `modelledger audit verify --report FILE --public-key KEY`."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from modelledger.api import ModelDeployment, ModelVersion
from modelledger.cli.audit import add_operator_namespace, published_keyring, read_log
from modelledger.cli.common import (
    EXIT_FAILED,
    Cluster,
    add_cluster_args,
    errors,
    list_events,
    list_objects,
    parse_time,
)
from modelledger.core import audit_chain
from modelledger.core.signing import Keyring
from modelledger.report import model, render_html, render_json, render_markdown
from modelledger.report.schema import AuditLogCheck, EventRecord

Parsed = TypeVar("Parsed", ModelDeployment, ModelVersion)
RENDERERS = {"json": render_json.render, "markdown": render_markdown.render, "html": render_html.render}


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "report", help="compliance report: what served when, who changed it, evidence"
    )
    parser.description = __doc__
    parser.add_argument("deployment", nargs="?", help="one ModelDeployment (default: all in the namespace)")
    parser.add_argument("--since", help="start: RFC 3339 time, or a duration before now (24h)")
    parser.add_argument("--until", help="end: RFC 3339 time, or a duration before now (default: now)")
    parser.add_argument("--at", help="answer what served at this instant (RFC 3339 or a duration before now)")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="json", help="default: json")
    parser.add_argument("-o", "--output", type=Path, help="write to this file (default: standard output)")
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
    _write(RENDERERS[args.format](report), args.output)
    if not report.ok:
        errors.print(
            "[bold red]verification failed[/]: see the report's verification fields", highlight=False
        )
        return EXIT_FAILED
    return 0


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
