"""`modelledger run`: the operator (Kopf), with its liveness endpoint and /metrics."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    return None


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser("run", help="run the operator", description=__doc__)
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="watch this namespace (repeatable; globs like ml-* work)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch every namespace (the default when no --namespace is given)",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help="Kopf peering name for HA (several replicas, one active); standalone without it",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="Kopf's liveness endpoint (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-address",
        default="0.0.0.0:9090",
        help="host:port of the /metrics endpoint; empty to disable (default: %(default)s)",
    )
    parser.add_argument(
        "--prometheus-url",
        default=os.environ.get("MODELLEDGER_PROMETHEUS_URL"),
        help="the default Prometheus (the source `default`), for rules without spec.rollback.prometheus "
        "(env MODELLEDGER_PROMETHEUS_URL)",
    )
    parser.add_argument("--prometheus-timeout", type=float, default=5.0, help="seconds per query")
    parser.add_argument(
        "--prometheus-token-file",
        type=Path,
        help="bearer token for the default Prometheus (read per request)",
    )
    parser.add_argument("--prometheus-ca-file", type=Path, help="CA bundle for an https default Prometheus")
    parser.add_argument(
        "--prometheus-tenancy",
        choices=("shared", "enforced"),
        default="shared",
        help="tenancy of the default Prometheus: shared, or enforced (every selector restricted to the "
        "deployment's namespace) (default: %(default)s)",
    )
    parser.add_argument(
        "--prometheus-sources",
        type=Path,
        default=os.environ.get("MODELLEDGER_PROMETHEUS_SOURCES") or None,
        metavar="FILE",
        help="YAML list of admin-defined Prometheus sources {name, url, tenancy: shared|enforced, "
        "tokenFile, caFile, timeout} that ModelDeployments name in spec.rollback.prometheus.source "
        "(env MODELLEDGER_PROMETHEUS_SOURCES)",
    )
    parser.add_argument(
        "--allow-raw-prometheus-urls",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("MODELLEDGER_ALLOW_RAW_PROMETHEUS_URLS"),
        help="honour spec.rollback.prometheus.url (queried without the operator's credentials); "
        "default: allowed unless --prometheus-sources is given (env MODELLEDGER_ALLOW_RAW_PROMETHEUS_URLS)",
    )
    parser.add_argument("--audit-log", type=Path, help="also append every audit record to this JSONL file")
    parser.add_argument(
        "--operator-namespace",
        default=os.environ.get("MODELLEDGER_OPERATOR_NAMESPACE", "modelledger-system"),
        help="where the audit signing key (Secret) and the public keys (ConfigMap) live "
        "(default: %(default)s; created by a bare local run where the credentials allow)",
    )
    parser.add_argument(
        "--adopt-unsigned-history",
        action="store_true",
        help="take histories written before signing (no signatures, no seal) as they are and sign them "
        "from now on; for the one upgrade from an unsigned version (docs/upgrade.md)",
    )
    parser.add_argument("--log-level", default=os.environ.get("MODELLEDGER_LOG_LEVEL", "INFO"))
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import kopf
    import structlog
    from rich.markup import escape

    from modelledger import logs
    from modelledger.adapters import audit, keys, kube, prometheus
    from modelledger.cli.common import fail
    from modelledger.core.promql import Tenancy
    from modelledger.handlers import operator as handlers
    from modelledger.handlers.context import OperatorConfig

    logs.configure(args.log_level)
    log = structlog.get_logger("modelledger.run")
    sources = []
    if args.prometheus_sources is not None:
        try:
            sources = prometheus.load_sources(args.prometheus_sources)
        except ValueError as error:
            fail(escape(f"--prometheus-sources: {error}"))
    if args.prometheus_url and any(source.name == "default" for source in sources):
        fail("--prometheus-url and a source named `default` both define the default Prometheus; keep one")
    allow_raw = args.allow_raw_prometheus_urls
    if allow_raw is None:
        allow_raw = args.prometheus_sources is None  # a bare run keeps accepting urls, without credentials
    setup = keys.set_up(kube.client(), args.operator_namespace)
    if setup.key is None:
        log.error(
            "NO AUDIT SIGNING KEY: history entries and audit records are written UNSIGNED, and signed "
            "histories are left untouched; `audit verify` reports unsigned entries (exit 5)",
            problem=setup.problem,
        )
    else:
        log.info("audit signing key loaded", key_id=setup.key.key_id, namespace=args.operator_namespace)
    audit.TRAIL.use_key(setup.key)
    if args.audit_log:
        audit.write_to(args.audit_log)
    config = OperatorConfig(
        prometheus_url=args.prometheus_url,
        prometheus_timeout=args.prometheus_timeout,
        prometheus_token_file=str(args.prometheus_token_file) if args.prometheus_token_file else None,
        prometheus_ca=str(args.prometheus_ca_file) if args.prometheus_ca_file else None,
        prometheus_tenancy=Tenancy(args.prometheus_tenancy),
        prometheus_sources=tuple(sources),
        allow_raw_prometheus_urls=allow_raw,
        signing_key=setup.key,
        keyring=setup.keyring,
        adopt_unsigned=args.adopt_unsigned_history,
    )
    log.info(
        "prometheus",
        default=bool(args.prometheus_url) or any(source.name == "default" for source in sources),
        sources={source.name: source.tenancy.value for source in sources},
        raw_urls="allowed (no credentials)" if allow_raw else "refused",
    )
    if args.metrics_address:
        host, _, port = args.metrics_address.rpartition(":")
        handlers.serve_metrics(host or "0.0.0.0", int(port))
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=args.peering is None,
        peering_name=args.peering,
        liveness_endpoint=args.liveness or None,
        memo=kopf.Memo(config=config),
    )
    return 0
