"""`modelledger run`: the operator (Kopf), with its liveness endpoint and /metrics."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any


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
        help="Prometheus for rules without spec.rollback.prometheus (env MODELLEDGER_PROMETHEUS_URL)",
    )
    parser.add_argument("--prometheus-timeout", type=float, default=5.0, help="seconds per query")
    parser.add_argument("--prometheus-token-file", type=Path, help="bearer token for Prometheus")
    parser.add_argument("--prometheus-ca-file", type=Path, help="CA bundle for an https Prometheus")
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

    from modelledger import logs
    from modelledger.adapters import audit, keys, kube
    from modelledger.handlers import operator as handlers
    from modelledger.handlers.context import OperatorConfig

    logs.configure(args.log_level)
    log = structlog.get_logger("modelledger.run")
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
    token = args.prometheus_token_file.read_text().strip() if args.prometheus_token_file else None
    config = OperatorConfig(
        prometheus_url=args.prometheus_url,
        prometheus_timeout=args.prometheus_timeout,
        prometheus_token=token,
        prometheus_ca=str(args.prometheus_ca_file) if args.prometheus_ca_file else None,
        signing_key=setup.key,
        keyring=setup.keyring,
        adopt_unsigned=args.adopt_unsigned_history,
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
