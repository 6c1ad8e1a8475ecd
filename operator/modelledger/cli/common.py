"""What the user-facing commands share: reaching the cluster like kubectl does, tables, errors."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, cast

import kubernetes
from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.table import Table

from modelledger.api import ModelDeployment
from modelledger.api.common import GROUP, VERSION
from modelledger.api.duration import parse_duration

# Piped output (CI logs, `| less`) gets room for the tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
errors = Console(stderr=True)

# Exit codes, the same for every command (docs/audit.md, DESIGN.md):
EXIT_OK = 0
EXIT_FAILED = 1  # verification failed, a gate not met, a request Rejected or Expired
EXIT_USAGE = 2  # bad arguments, an unreadable input file
EXIT_NOT_FOUND = 3  # no such object (deployment, request, published key)
EXIT_FORBIDDEN = 3  # RBAC said no (401/403): the same code as not found
EXIT_UNREACHABLE = 4  # no cluster (or Prometheus), or it did not answer
EXIT_UNSIGNED = 5  # `audit verify` only: consistent, but unsigned entries (never reported as verified)


def add_cluster_args(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    group.add_argument("--context", help="kubeconfig context to use")
    if namespace:
        group.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    errors.print(f"[bold red]error:[/] {message}", highlight=False)
    sys.exit(code)


@dataclass(frozen=True)
class UserInfo:
    username: str
    uid: str
    groups: tuple[str, ...]


class Cluster:
    """A kubernetes client configured from --kubeconfig/--context, and the namespace to act in."""

    def __init__(self, args: argparse.Namespace) -> None:
        try:
            self.client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=args.kubeconfig, context=args.context
            )
            every, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=args.kubeconfig
            )
        except (kubernetes.config.ConfigException, FileNotFoundError) as error:
            fail(f"no usable kubeconfig: {error}", EXIT_UNREACHABLE)
        # As kubectl: the namespace of the context chosen with --context, not of the current one.
        chosen = next((c for c in every or [] if c.get("name") == args.context), None)
        contexts = dict(chosen or active or {})
        default_ns = contexts.get("context", {}).get("namespace") or "default"
        self.namespace: str = getattr(args, "namespace", None) or default_ns
        self.objects = kubernetes.client.CustomObjectsApi(self.client)

    def get_deployment(self, name: str) -> dict[str, Any]:
        try:
            return cast(
                dict[str, Any],
                self.objects.get_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "modeldeployments", name
                ),
            )
        except ApiException as error:
            api_error(error, f"ModelDeployment {name} in namespace {self.namespace}")

    def get_object(self, plural: str, name: str, kind: str) -> dict[str, Any]:
        try:
            return cast(
                dict[str, Any],
                self.objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name),
            )
        except ApiException as error:
            api_error(error, f"{kind} {name} in namespace {self.namespace}")

    def user_info(self) -> UserInfo | None:
        """The authenticated identity (SelfSubjectReview), as the apiserver sees these credentials."""
        try:
            review = kubernetes.client.AuthenticationV1Api(self.client).create_self_subject_review(
                cast(Any, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})
            )
        except ApiException:
            return None
        info = review.status.user_info if review.status else None
        if info is None or not info.username:
            return None
        return UserInfo(info.username, info.uid or "", tuple(info.groups or ()))

    def whoami(self) -> str:
        """The authenticated user name, for `generatedBy` in reports (`unknown` when it cannot be asked)."""
        info = self.user_info()
        return info.username if info else "unknown"


UNAVAILABLE = (502, 503, 504)  # a proxy or the apiserver itself could not answer


def api_error(error: ApiException, what: str) -> NoReturn:
    if error.status == 404:
        fail(f"{what} not found", EXIT_NOT_FOUND)
    if error.status in (401, 403):
        fail(f"not allowed: {what}: {error.reason}", EXIT_FORBIDDEN)
    if not error.status or error.status in UNAVAILABLE:
        fail(f"cluster unreachable: {what}: {error.status or ''} {error.reason}".strip(), EXIT_UNREACHABLE)
    fail(f"{what}: {error.status} {error.reason}", EXIT_FAILED)


def unreachable(error: Exception, what: str = "the cluster") -> NoReturn:
    """A connection error (refused, DNS, TLS, timeout) raised by the client outside ApiException."""
    fail(f"{what} unreachable: {_first_line(error)}", EXIT_UNREACHABLE)


def _first_line(error: Exception) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]


def parse_deployment(raw: dict[str, Any]) -> ModelDeployment:
    return ModelDeployment.model_validate(raw)


def table(title: str, columns: list[str]) -> Table:
    result = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        result.add_column(column)
    return result


def list_objects(cluster: Cluster, plural: str) -> list[dict[str, Any]]:
    """Every object of one of our kinds in the cluster's namespace (ModelDeployments, ModelVersions)."""
    try:
        listed = cluster.objects.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural)
    except ApiException as error:
        api_error(error, f"{plural} in namespace {cluster.namespace}")
    return list(cast(dict[str, Any], listed).get("items") or [])


def list_events(cluster: Cluster) -> list[dict[str, Any]]:
    """The namespace's core/v1 Events about our kinds (they expire: a report never depends on them)."""
    try:
        listed = kubernetes.client.CoreV1Api(cluster.client).list_namespaced_event(cluster.namespace)
    except ApiException as error:
        if error.status == 403:
            return []  # reading Events is optional evidence; the history is the record
        api_error(error, f"events in namespace {cluster.namespace}")
    events = cluster.client.sanitize_for_serialization(listed.items)
    return [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("kind") in ("ModelDeployment", "ModelVersion")
    ]


REPORT_LOOKBACK = timedelta(days=100 * 365)  # `--since 17520h`: reports look back further than specs


def parse_time(text: str, now: datetime) -> datetime:
    """RFC 3339 (`2026-11-27T10:00:00Z`), or a duration before now (`24h`) as `kubectl logs --since`."""
    try:
        return now - parse_duration(text, maximum=REPORT_LOOKBACK)
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"not a time: {text!r} (use RFC 3339 like 2026-11-27T10:00:00Z, or a duration like 24h)")
    return value if value.tzinfo else value.replace(tzinfo=UTC)
