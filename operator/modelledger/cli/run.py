"""`modelledger run`: the operator (Kopf), with leader election, health endpoints and /metrics.

With `--leader-elect` (the default) every replica runs Kopf standalone and watches; the one holding the
Lease `--leader-elect-resource-name` in `--operator-namespace` decides and writes, the others stand by
and take over when it stops renewing (or at once when it releases the lease on a graceful stop).
"""

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
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=_env_flag("MODELLEDGER_LEADER_ELECT") is not False,
        help="elect one active replica on a coordination.k8s.io Lease in --operator-namespace; the "
        "others stand by with warm caches (default: on; env MODELLEDGER_LEADER_ELECT)",
    )
    parser.add_argument(
        "--leader-elect-resource-name",
        default=os.environ.get("MODELLEDGER_LEADER_ELECT_LEASE", "modelledger"),
        metavar="NAME",
        help="the Lease's name (default: %(default)s; env MODELLEDGER_LEADER_ELECT_LEASE)",
    )
    parser.add_argument(
        "--leader-elect-lease-duration",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long a standby waits for a silent leader before taking over (default: %(default)s)",
    )
    parser.add_argument(
        "--leader-elect-renew-deadline",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long the leader keeps acting without a successful renewal (default: %(default)s)",
    )
    parser.add_argument(
        "--leader-elect-retry-period",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="how often the lease is renewed or tried (default: %(default)s)",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help="Kopf peering name, only with --no-leader-elect (several replicas, the highest priority "
        "active; equal priorities pause all); ignored with the lease, where Kopf runs standalone",
    )
    parser.add_argument(
        "--liveness",
        default="http://0.0.0.0:8080/healthz",
        help="liveness endpoint (default: %(default)s): fails while leading if a deployment loop made no "
        "progress for --stall-timeout; /readyz on the same port answers once the process serves",
    )
    parser.add_argument(
        "--stall-timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="a deployment loop without progress for max(this, 3 x its interval) fails liveness "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=32,
        metavar="N",
        help="deployment passes run at once, each deployment in one at a time (default: %(default)s)",
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
    parser.add_argument(
        "--pod-monitors",
        action=argparse.BooleanOptionalAction,
        default=bool(_env_flag("MODELLEDGER_POD_MONITORS")),
        help="make a PodMonitor (Prometheus Operator) for each ModelDeployment annotated "
        "modelledger.io/pod-monitor=true, mapping its pods' labels to deployment, model, version "
        "and namespace; skipped, logged once, where the CRD is missing (env MODELLEDGER_POD_MONITORS)",
    )
    parser.add_argument(
        "--argocd-namespaces",
        default=os.environ.get("MODELLEDGER_ARGOCD_NAMESPACES", "argocd"),
        metavar="NS[,NS...]",
        help="where ArgoCD Applications are read for the GitOps lineage of Deploy entries, and believed; "
        "the first is ArgoCD's own namespace (docs/gitops.md#lineage; default: %(default)s; "
        "env MODELLEDGER_ARGOCD_NAMESPACES)",
    )
    parser.add_argument(
        "--notification-receivers",
        type=Path,
        default=os.environ.get("MODELLEDGER_NOTIFICATION_RECEIVERS") or None,
        metavar="FILE",
        help="YAML list of admin-defined notification receivers {name, type: webhook|slack, urlFile, "
        "triggers, routing: default|always|named, namespaces, timeout, retryBudget, maxBackoff} "
        "(docs/notifications.md; env MODELLEDGER_NOTIFICATION_RECEIVERS)",
    )
    parser.add_argument("--audit-log", type=Path, help="also append every audit record to this JSONL file")
    parser.add_argument(
        "--audit-failure",
        choices=("block", "continue"),
        default=os.environ.get("MODELLEDGER_AUDIT_FAILURE", "block"),
        help="while the --audit-log file cannot be written (disk full, read-only, I/O errors), people's "
        "decisions (deploys, requests) wait (block) or go ahead with their records queued (continue); "
        "automatic rollbacks always go ahead (default: %(default)s; env MODELLEDGER_AUDIT_FAILURE)",
    )
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

    from modelledger import diagnostics, logs
    from modelledger.adapters import audit, keys, kube, lease, notifier, prometheus
    from modelledger.adapters.argocd import ArgoApplications
    from modelledger.adapters.podmonitors import PodMonitors
    from modelledger.cli.common import fail
    from modelledger.core.leadership import LeaseTiming
    from modelledger.core.promql import Tenancy
    from modelledger.handlers import kopf_startup
    from modelledger.handlers import operator as handlers
    from modelledger.handlers.context import OperatorConfig
    from modelledger.handlers.leadership import Gate

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
    receivers = []
    if args.notification_receivers is not None:
        try:
            receivers = notifier.load_receivers(args.notification_receivers)
        except ValueError as error:
            fail(escape(f"--notification-receivers: {error}"))
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
    election = None
    if args.leader_elect:
        try:
            timing = LeaseTiming(
                args.leader_elect_lease_duration,
                args.leader_elect_renew_deadline,
                args.leader_elect_retry_period,
            )
        except ValueError as error:
            fail(escape(f"--leader-elect-*: {error}"))
        election = lease.election(
            kube.client(), args.operator_namespace, args.leader_elect_resource_name, timing
        )

        def started() -> None:
            # Before the gate opens: continue the chain where the previous leader left the shared file.
            audit.TRAIL.reopen()
            handlers.METRICS.set_leader(True)

        election.on_started = started
        election.on_stopped = lambda: handlers.METRICS.set_leader(False)
        if args.peering:
            log.warning("--peering ignored: the lease elects the leader and Kopf runs standalone")
    handlers.METRICS.set_leader(election is None)
    if args.audit_log:
        if election is None:
            audit.write_to(args.audit_log)
        else:
            audit.TRAIL.use_file(args.audit_log)  # the tip is read on taking the lease
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
        gate=Gate(election),
        stall_floor=args.stall_timeout,
        health_endpoint=args.liveness or None,
        pod_monitors=PodMonitors(enabled=args.pod_monitors),
        argocd=ArgoApplications(
            namespaces=tuple(n.strip() for n in args.argocd_namespaces.split(",") if n.strip())
        ),
        workers=args.workers,
        audit_failure=args.audit_failure,
        notifier=notifier.Notifier(receivers, handlers.METRICS),
    )
    if receivers:
        log.info("notifications", receivers=notifier.describe(receivers))
    log.info(
        "prometheus",
        default=bool(args.prometheus_url) or any(source.name == "default" for source in sources),
        sources={source.name: source.tenancy.value for source in sources},
        raw_urls="allowed (no credentials)" if allow_raw else "refused",
    )
    if args.metrics_address:
        host, _, port = args.metrics_address.rpartition(":")
        handlers.serve_metrics(host or "0.0.0.0", int(port))
    peering = args.peering if election is None else None
    diagnostics.from_environment()
    kopf_startup.install()
    if election is not None:
        election.start()
    try:
        kopf.run(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=peering is None,
            peering_name=peering,
            liveness_endpoint=None,  # served by handlers/leadership.py: it knows the loops' progress
            memo=kopf.Memo(config=config),
        )
    finally:
        if election is not None:
            election.stop(release=True)  # the loops have stopped: a standby may take over at once
    return 0
