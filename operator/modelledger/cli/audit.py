"""`modelledger audit verify [MDEP | -A] [--file PATH] [--report FILE]`: recompute the hash chains, check
every signature, and name the first entry that was altered, removed, reordered or not signed by the
operator.

- a deployment's status history (chain, signatures, stable marks, pruning watermark, the status seal);
- the audit JSONL file (chain and signatures), and each history against the entries the file recorded;
- with `--report FILE --public-key KEY`, an exported JSON report, offline: the signed history it embeds,
  and every fact it derives from that history. No cluster is contacted.

Public keys come from the operator's ConfigMap (`--operator-namespace`) and from `--public-key` files.

Exit codes: 0 verified and signed; 1 verification failed; 2 usage; 3 not found or forbidden; 4 cluster
unreachable; 5 consistent but with unsigned entries (never reported as verified).

`modelledger audit public-key`: print the operator's current public key (PEM), for examiners.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError
from rich.table import Table

from modelledger.adapters import keys
from modelledger.api import ModelDeployment, ModelDeploymentStatus
from modelledger.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNSIGNED,
    Cluster,
    add_cluster_args,
    all_namespaces,
    api_error,
    console,
    errors,
    fail,
    list_objects,
    one_namespace,
    parse_deployment,
    table,
)
from modelledger.core import audit_chain, trust
from modelledger.core.history import GENESIS
from modelledger.core.signing import Keyring, load_public_pem
from modelledger.report import verify as report_verify
from modelledger.report.schema import REPORT_SCHEMA, Report

VERIFIED, UNSIGNED, BROKEN = "verified", "unsigned", "broken"


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    audit = subparsers.add_parser("audit", help="check the audit trail and its signatures")
    commands = audit.add_subparsers(dest="audit_command", required=True, metavar="COMMAND")
    verify = commands.add_parser(
        "verify",
        help="verify the hash chains and signatures of histories, the audit log, or a report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "deployment", nargs="?", help="the ModelDeployment (default: all in the namespace, unless --file)"
    )
    verify.add_argument(
        "--file", type=Path, help="an audit JSONL file written by `modelledger run --audit-log`"
    )
    verify.add_argument(
        "--anchor",
        default=GENESIS,
        help="the hash the file's first line links to (the previous file's last hash, after rotation)",
    )
    verify.add_argument(
        "--report",
        type=Path,
        help="a JSON report (`modelledger report`) to verify offline; needs --public-key, no cluster",
    )
    verify.add_argument(
        "--public-key",
        type=Path,
        action="append",
        default=[],
        dest="public_keys",
        metavar="FILE",
        help="a trusted Ed25519 public key (PEM); repeat for retired keys",
    )
    add_operator_namespace(verify)
    add_cluster_args(verify)
    verify.set_defaults(handler=run)

    public = commands.add_parser(
        "public-key",
        help="print the operator's current public key (PEM)",
        description="Print the public half of the audit signing key, as published in the ConfigMap "
        f"{keys.CONFIGMAP}. Exit 3 when none is published.",
    )
    add_operator_namespace(public)
    add_cluster_args(public)
    public.set_defaults(handler=run_public_key)


def add_operator_namespace(parser: argparse.ArgumentParser) -> None:
    """`--operator-namespace`: where the operator publishes its public keys (as `modelledger run`)."""
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("MODELLEDGER_OPERATOR_NAMESPACE", keys.DEFAULT_NAMESPACE),
        help="where the operator publishes its public keys "
        "(default: $MODELLEDGER_OPERATOR_NAMESPACE or %(default)s)",
    )


def read_log(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8", errors="replace") as source:
            return list(source)
    except OSError as error:
        fail(f"cannot read the audit log: {error}")


def read_public_keys(paths: list[Path]) -> Keyring:
    """The keys given with --public-key; a missing or malformed file is a usage error."""
    found = Keyring()
    for path in paths:
        try:
            found = Keyring({**found.keys, **Keyring.of(load_public_pem(path.read_bytes())).keys})
        except OSError as error:
            fail(f"cannot read the public key: {error}")
        except ValueError as error:
            fail(f"{path}: {error}")
    return found


def published_keyring(cluster: Cluster, namespace: str, *, required: bool) -> Keyring | None:
    """The operator's published keys (current and retired); empty when it published none, None when
    RBAC forbids reading them and they are not `required` (the caller says what that means)."""
    try:
        return keys.read_keyring(kubernetes.client.CoreV1Api(cluster.client), namespace)
    except ApiException as error:
        if required or error.status not in (401, 403):
            api_error(error, f"the published keys (ConfigMap {namespace}/{keys.CONFIGMAP})")
        errors.print(
            f"[yellow]warning:[/] cannot read ConfigMap {namespace}/{keys.CONFIGMAP}: "
            f"{error.status} {error.reason}",
            highlight=False,
        )
        return None


class Outcome:
    """The rows printed and the worst result seen, which decides the exit code."""

    def __init__(self, title: str) -> None:
        self.rows: Table = table(title, ["SUBJECT", "RESULT", "DETAIL"])
        self.broken = False
        self.unsigned = False

    def add(self, subject: str, result: str, detail: str) -> None:
        self.broken |= result == BROKEN
        self.unsigned |= result == UNSIGNED
        label = {
            VERIFIED: "[green]verified[/]",
            UNSIGNED: "[yellow]UNSIGNED[/]",
            BROKEN: "[bold red]BROKEN[/]",
        }[result]
        self.rows.add_row(subject, label, detail)

    def finish(self) -> int:
        console.print(self.rows)
        if self.broken:
            return EXIT_FAILED
        return EXIT_UNSIGNED if self.unsigned else EXIT_OK


def run(args: argparse.Namespace) -> int:
    if args.report is not None:
        if args.deployment is not None or args.file is not None:
            fail("--report verifies a report on its own: leave out the deployment and --file")
        if not args.public_keys:
            fail("--report needs the operator's public key: --public-key FILE (repeatable)")
        return run_report(args.report, read_public_keys(args.public_keys))
    if args.deployment is not None:
        one_namespace(args, "a ModelDeployment")
    given = read_public_keys(args.public_keys)
    needs_cluster = args.deployment is not None or args.file is None or not args.public_keys
    cluster = Cluster(args) if needs_cluster else None
    keyring = given
    if cluster is not None:
        published = published_keyring(cluster, args.operator_namespace, required=not args.public_keys)
        keyring = Keyring({**(published.keys if published else {}), **given.keys})
    if not keyring.keys:
        errors.print(
            f"[yellow]warning:[/] no public keys (ConfigMap {args.operator_namespace}/{keys.CONFIGMAP} "
            "is missing or empty, and no --public-key): no signature can be verified",
            highlight=False,
        )
    outcome = Outcome("Audit verification")
    records: list[tuple[int, dict[str, Any]]] = []
    if args.file is not None:
        lines = read_log(args.file)
        _verify_log(args.file, lines, args.anchor, keyring, outcome)
        records = [(n, r) for n, r, _ in audit_chain.parse_lines(lines) if r is not None]
    if cluster is not None and (args.deployment is not None or args.file is None):
        every = all_namespaces(args)
        raw = (
            [cluster.get_deployment(args.deployment)]
            if args.deployment
            else list_objects(cluster, "modeldeployments", every_namespace=every)
        )
        for item in raw:
            namespace = (item.get("metadata") or {}).get("namespace") or cluster.namespace
            _verify_deployment(namespace, item, keyring, records if args.file else None, outcome)
        if not raw:
            where = "any namespace" if every else f"namespace {cluster.namespace}"
            outcome.rows.add_row(where, "-", "no ModelDeployment")
    return outcome.finish()


def _verify_log(path: Path, lines: list[str], anchor: str, keyring: Keyring, outcome: Outcome) -> None:
    result = audit_chain.verify_lines(lines, anchor=anchor, keyring=keyring)
    last = result.tip.hash.removeprefix("sha256:")[:12] or "-"
    if result.broken is not None:
        outcome.add(f"audit log {path}", BROKEN, result.broken.describe())
    elif result.unsigned:
        detail = f"{result.unsigned} unsigned of {result.records} records (chain intact), last hash {last}"
        outcome.add(f"audit log {path}", UNSIGNED, detail)
    else:
        outcome.add(
            f"audit log {path}", VERIFIED, f"{result.records} records, every one signed, last hash {last}"
        )


def _verify_deployment(
    namespace: str,
    raw: dict[str, Any],
    keyring: Keyring,
    records: list[tuple[int, dict[str, Any]]] | None,
    outcome: Outcome,
) -> None:
    name = raw.get("metadata", {}).get("name", "?")
    try:
        md: ModelDeployment = parse_deployment(raw)
    except ValidationError as error:
        outcome.add(f"{namespace}/{name} history", BROKEN, f"unreadable: {error.errors()[0]['msg']}")
        return
    status = md.status or ModelDeploymentStatus()
    subject = trust.Subject(namespace, name, str(md.metadata.get("uid") or ""))
    check = trust.check_status(status, keyring, subject, limit=md.spec.revision_history_limit)
    result = {trust.Verdict.SIGNED: VERIFIED, trust.Verdict.UNSIGNED: UNSIGNED}.get(check.verdict, BROKEN)
    detail = check.describe() if status.history else "no revisions yet"
    outcome.add(f"{namespace}/{name} history", result, detail)
    if records is not None:
        mismatch = audit_chain.cross_check(namespace, name, status.history, records)
        if mismatch is None:
            outcome.add(f"{namespace}/{name} vs audit log", VERIFIED, "every logged revision matches")
        else:
            outcome.add(
                f"{namespace}/{name} vs audit log",
                BROKEN,
                f"revision {mismatch.revision}: {mismatch.problem}",
            )


def run_report(path: Path, keyring: Keyring) -> int:
    """Offline: nothing but the file and the keys given."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        fail(f"cannot read the report: {error}")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        fail(f"{path} is not a JSON report (make it with `modelledger report --format json`): {error}")
    outcome = Outcome(f"Report {path}")
    schema = document.get("schema") if isinstance(document, dict) else None
    if schema != REPORT_SCHEMA:
        why = f"schema {schema!r} is not {REPORT_SCHEMA!r}"
        if schema == "modelledger.report/v1":
            why += ": a v1 report embeds no signed history; make the report again with this version"
        outcome.add(f"report {path}", BROKEN, why)
        return outcome.finish()
    try:
        report = Report.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        outcome.add(f"report {path}", BROKEN, f"not a valid report at {where}: {first['msg']}")
        return outcome.finish()
    for result in report_verify.verify(report, keyring):
        verdict = {"Signed": VERIFIED, "Unsigned": UNSIGNED}.get(result.check.verdict, BROKEN)
        outcome.add(f"{result.namespace}/{result.name}", verdict, result.describe())
    if not report.deployments:
        outcome.rows.add_row(f"report {path}", "-", "no deployment in the report")
    if report.audit_log is not None:
        errors.print(
            "note: the report's audit log figures cannot be checked offline; verify the log itself with "
            "`modelledger audit verify --file`",
            highlight=False,
            style="dim",
        )
    return outcome.finish()


def run_public_key(args: argparse.Namespace) -> int:
    cluster = Cluster(args)
    namespace = args.operator_namespace
    try:
        found = keys.current_public_key(kubernetes.client.CoreV1Api(cluster.client), namespace)
    except ApiException as error:
        api_error(error, f"ConfigMap {namespace}/{keys.CONFIGMAP}")
    if found is None:
        fail(f"no public key published in ConfigMap {namespace}/{keys.CONFIGMAP}", EXIT_NOT_FOUND)
    key_id, pem = found
    sys.stdout.write(pem if pem.endswith("\n") else pem + "\n")
    errors.print(f"key id {key_id}", highlight=False, style="dim")
    return EXIT_OK
