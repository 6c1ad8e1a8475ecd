"""What the user-facing commands share: reaching the cluster like kubectl does, output formats, tables,
durations and errors.

The kubernetes client is imported only by what talks to a cluster, so offline commands (`lint`,
`completion`, `audit verify --report`) start fast."""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import ssl
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn, cast

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelledger.api import ModelDeployment
from modelledger.api.common import GROUP, VERSION
from modelledger.api.duration import parse_duration

if TYPE_CHECKING:
    from kubernetes.client.exceptions import ApiException

# Piped output (CI logs, `| less`) gets room for the tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 200)
# Messages on standard error are never wrapped: one error is one line, in a terminal as in a CI log.
errors = Console(stderr=True, soft_wrap=True)

# Exit codes, the same for every command (docs/audit.md, DESIGN.md):
EXIT_OK = 0
EXIT_FAILED = 1  # verification failed, a gate not met, a request Rejected or Expired
EXIT_USAGE = 2  # bad arguments, an unreadable input file
EXIT_NOT_FOUND = 3  # no such object (deployment, request, published key)
EXIT_FORBIDDEN = 3  # RBAC said no (401/403): the same code as not found
EXIT_UNREACHABLE = 4  # no cluster (or Prometheus), or it did not answer
EXIT_UNSIGNED = 5  # `audit verify` only: consistent, but unsigned entries (never reported as verified)

OUTPUT_FORMATS = ("table", "wide", "json", "yaml")
"""`-o` of every read command, as kubectl's: `table` (the default), `wide` (more columns), `json`, `yaml`."""


def add_cluster_args(parser: argparse.ArgumentParser, *, namespace: bool = True) -> None:
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    group.add_argument("--context", help="kubeconfig context to use")
    if namespace:
        group.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")
        group.add_argument(
            "-A",
            "--all-namespaces",
            action="store_true",
            help="every namespace (commands that name one object refuse it, as kubectl does)",
        )


def one_namespace(args: argparse.Namespace, what: str = "a resource") -> None:
    """kubectl's rule: an object named on the command line lives in one namespace, so `-A` is refused."""
    if getattr(args, "all_namespaces", False):
        fail(f"{what} cannot be retrieved by name across all namespaces (-A): use -n NAMESPACE")


def all_namespaces(args: argparse.Namespace) -> bool:
    """Whether `-A` was given (refusing it together with `-n`, as kubectl does)."""
    wanted = bool(getattr(args, "all_namespaces", False))
    if wanted and getattr(args, "namespace", None):
        fail("-n/--namespace and -A/--all-namespaces exclude each other")
    return wanted


def add_output_arg(
    parser: argparse.ArgumentParser, formats: Sequence[str] = OUTPUT_FORMATS, default: str = "table"
) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=formats,
        default=default,
        metavar="FORMAT",
        help=f"output format: {' | '.join(formats)} (default: {default})",
    )


def render_document(document: Any, output: str) -> str:
    """A JSON-ready document as `json` (indented, as kubectl) or `yaml` (block style, keys in order)."""
    if output == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    import yaml

    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1_000_000)


def write_document(document: Any, output: str) -> None:
    sys.stdout.write(render_document(document, output))
    sys.stdout.flush()


def plain_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """kubectl's table: upper-case headers, columns separated by three spaces, no borders."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]
    lines = [headers, *rows]
    return "".join(
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() + "\n"
        for line in lines
    )


_SECONDS = re.compile(r"^\d+(\.\d+)?$")
_ZERO = re.compile(r"^(0+(\.0+)?(ms|s|m|h)?)+$")
MAX_TIMEOUT = timedelta(days=7)


def duration_seconds(text: str) -> float:
    """`--timeout`: a duration (`30s`, `2m`, `1h30m`) or plain seconds (`90`, `2.5`); `0` means none."""
    text = text.strip()
    if _SECONDS.fullmatch(text):
        seconds = float(text)
        if seconds > MAX_TIMEOUT.total_seconds():
            raise argparse.ArgumentTypeError(f"{text} s is longer than {MAX_TIMEOUT.days} days")
        return seconds
    if _ZERO.fullmatch(text):
        return 0.0
    try:
        return parse_duration(text, maximum=MAX_TIMEOUT).total_seconds()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration (30s, 2m, 1h30m) nor a number of seconds"
        ) from None


def format_seconds(seconds: float) -> str:
    """A timeout as the user would write it back: `90s` → `1m30s`, `2.5` → `2.5s`."""
    if seconds <= 0:
        return "0s"
    if seconds != int(seconds) or seconds < 60:
        return f"{seconds:g}s"
    minutes, rest = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (rest, "s")) if n)


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
        import kubernetes

        # $KUBECONFIG as it is now (the client reads it once, at import), a list of files as kubectl's.
        config_file = args.kubeconfig or os.environ.get("KUBECONFIG") or None
        try:
            self.client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=config_file, context=args.context
            )
            every, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=config_file
            )
        except (kubernetes.config.ConfigException, FileNotFoundError) as error:
            fail(escape(f"no usable kubeconfig: {_first_line(error)}"), EXIT_UNREACHABLE)
        # As kubectl: the namespace of the context chosen with --context, not of the current one.
        chosen = next((c for c in every or [] if c.get("name") == args.context), None)
        contexts = dict(chosen or active or {})
        default_ns = contexts.get("context", {}).get("namespace") or "default"
        self.namespace: str = getattr(args, "namespace", None) or default_ns
        self.objects = kubernetes.client.CustomObjectsApi(self.client)

    def get_deployment(self, name: str) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

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
        from kubernetes.client.exceptions import ApiException

        try:
            return cast(
                dict[str, Any],
                self.objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name),
            )
        except ApiException as error:
            api_error(error, f"{kind} {name} in namespace {self.namespace}")

    def user_info(self) -> UserInfo | None:
        """The authenticated identity (SelfSubjectReview), as the apiserver sees these credentials."""
        import kubernetes
        from kubernetes.client.exceptions import ApiException

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
    what, reason = escape(what), escape(str(error.reason or ""))
    if error.status == 404:
        fail(f"{what} not found", EXIT_NOT_FOUND)
    if error.status in (401, 403):
        fail(f"not allowed: {what}: {reason}", EXIT_FORBIDDEN)
    if not error.status or error.status in UNAVAILABLE:
        fail(f"cluster unreachable: {what}: {error.status or ''} {reason}".strip(), EXIT_UNREACHABLE)
    fail(f"{what}: {error.status} {reason}", EXIT_FAILED)


def unreachable(error: BaseException, what: str = "the cluster") -> NoReturn:
    """A connection error (refused, DNS, TLS, timeout) raised by the client outside ApiException."""
    fail(escape(describe_unreachable(error, what)), EXIT_UNREACHABLE)


def describe_unreachable(error: BaseException, what: str = "the cluster") -> str:
    return f"cannot reach {what}{_server(error)}: {connection_problem(error)}"


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")]+)")


def connection_problem(error: BaseException) -> str:
    """What went wrong, briefly: `Connection refused`, `Name or service not known`, a TLS failure..."""
    reason = getattr(error, "reason", None) or error  # urllib3's MaxRetryError wraps the cause
    text = str(reason) or type(reason).__name__
    if found := _ERRNO.search(text):
        return found.group(1).strip()
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(reason, ssl.SSLError):
        return "TLS: " + _first_line(reason).split("] ", 1)[-1].rstrip("')\"")
    if "timed out" in text.lower():
        return "timed out"
    return _first_line(reason)


def _server(error: BaseException) -> str:
    pool = getattr(error, "pool", None)
    host, port = getattr(pool, "host", None), getattr(pool, "port", None)
    if not host:
        return ""
    scheme = getattr(pool, "scheme", "https")
    return f" at {scheme}://{host}" + (f":{port}" if port else "")


def is_connection_error(error: BaseException) -> bool:
    """Refused, DNS, TLS, timeout: what the client raises outside ApiException when no cluster answers."""
    urllib3_exceptions = sys.modules.get("urllib3.exceptions")
    if urllib3_exceptions is not None and isinstance(error, urllib3_exceptions.HTTPError):
        return True
    return isinstance(error, ConnectionError | TimeoutError | socket.gaierror | ssl.SSLError)


def _first_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]


def parse_deployment(raw: dict[str, Any]) -> ModelDeployment:
    return ModelDeployment.model_validate(raw)


def table(title: str, columns: list[str]) -> Table:
    result = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        result.add_column(column)
    return result


def list_objects(cluster: Cluster, plural: str, *, every_namespace: bool = False) -> list[dict[str, Any]]:
    """Every object of one of our kinds in the cluster's namespace, or in all of them (`-A`)."""
    from kubernetes.client.exceptions import ApiException

    where = "all namespaces" if every_namespace else f"namespace {cluster.namespace}"
    try:
        if every_namespace:
            listed = cluster.objects.list_cluster_custom_object(GROUP, VERSION, plural)
        else:
            listed = cluster.objects.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural)
    except ApiException as error:
        api_error(error, f"{plural} in {where}")
    return list(cast(dict[str, Any], listed).get("items") or [])


def list_events(cluster: Cluster) -> list[dict[str, Any]]:
    """The namespace's core/v1 Events about our kinds (they expire: a report never depends on them)."""
    import kubernetes
    from kubernetes.client.exceptions import ApiException

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
