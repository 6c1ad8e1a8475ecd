"""What the user-facing commands share: reaching the cluster like kubectl does, output formats, tables,
durations and errors.

The kubernetes client is imported only by what talks to a cluster, so offline commands (`lint`,
`completion`, `audit verify --report`) start fast."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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


def add_cluster_args(
    parser: argparse.ArgumentParser,
    *,
    namespace: bool = True,
    timeout: float = 0.0,
    timeout_help: str | None = None,
) -> None:
    """kubectl's flags, and `--timeout`: a bound on the whole command (`timeout_help` says what it also
    means to a command that waits for something, whose default is `timeout`)."""
    group = parser.add_argument_group("cluster (as kubectl)")
    group.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    group.add_argument("--context", help="kubeconfig context to use")
    group.add_argument(
        "--timeout",
        type=duration_seconds,
        default=timeout,
        metavar="DURATION",
        help=timeout_help
        or "give up after this long, API requests included (exit 4): 30s, 2m, 1h, or seconds "
        "(default: 0, no limit)",
    )
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
        bound_requests(self.client)
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
    if isinstance(error, CommandTimeout):
        return error.describe(what)
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
    return isinstance(error, ConnectionError | TimeoutError | socket.gaierror | ssl.SSLError | CommandTimeout)


def _first_line(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text.splitlines()[0][:300]


# --- `--timeout`: a bound on the whole command ---------------------------------------------------------

WAIT_GRACE = 2.0
"""A command that waits (`status --watch`, a request) gives up at its `--timeout` itself (exit 1); its API
requests and the hard bound get this much longer, so an apiserver that answers is never cut off."""


class CommandTimeout(Exception):
    """`--timeout` ran out: raised by an API request with no time left, or by SIGALRM in the main thread.

    Neither an OSError nor a TimeoutError, which urllib3 would take for a failed attempt and retry."""

    def __init__(self, seconds: float, server: str = "") -> None:
        super().__init__(f"no answer within {format_seconds(seconds)} (--timeout)")
        self.seconds = seconds
        self.server = server
        """The apiserver a request was waiting for, if one was."""

    def describe(self, what: str = "the cluster") -> str:
        if self.server:
            return f"cannot reach {what} at {self.server}: {self}"
        return f"timed out after {format_seconds(self.seconds)} (--timeout)"


@dataclass
class Deadline:
    seconds: float
    """`--timeout` as given."""
    soft: float
    """`time.monotonic()` at which `--timeout` ends: a waiting command stops waiting then (exit 1)."""
    hard: float
    """When the command is cut off (exit 4): `soft`, plus WAIT_GRACE for a command that waits."""
    server: str = ""
    in_flight: int = 0
    answered: bool = False

    def left(self) -> float:
        return self.hard - time.monotonic()

    def expired(self) -> CommandTimeout:
        """The error: naming the apiserver while a request waits for it, or if it never answered."""
        waiting_for_it = self.in_flight > 0 or not self.answered
        return CommandTimeout(self.seconds, self.server if waiting_for_it else "")


_deadline: Deadline | None = None


def deadline() -> Deadline | None:
    """The running command's `--timeout`, if it has one."""
    return _deadline


@contextmanager
def command_timeout(args: argparse.Namespace) -> Iterator[Deadline | None]:
    """Arm `--timeout` for the command run inside: every API request of a `Cluster` is bounded by the
    time left (`bound_requests`), and in the main thread a SIGALRM at the end interrupts whatever still
    runs (a retried request, a DNS lookup, a credential plugin). `0` or no `--timeout`: no bound."""
    global _deadline
    seconds = float(getattr(args, "timeout", 0.0) or 0.0)
    if seconds <= 0:
        yield None
        return
    waits = bool(getattr(args, "waits", False) or getattr(args, "watch", False))
    now = time.monotonic()
    hard = seconds + (WAIT_GRACE if waits else 0.0)
    _deadline = Deadline(seconds, now + seconds, now + hard)
    restore: Callable[[], None] | None = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        restore = _arm_alarm(_deadline, hard)
    try:
        yield _deadline
    finally:
        if restore is not None:
            restore()
        _deadline = None


def _arm_alarm(armed: Deadline, seconds: float) -> Callable[[], None] | None:
    """SIGALRM after `seconds`, unless an earlier alarm is pending (pytest-timeout's, say); the returned
    function puts back the previous handler and what was left of the previous timer."""
    previous_delay, previous_interval = signal.getitimer(signal.ITIMER_REAL)
    if 0 < previous_delay <= seconds:
        return None

    def expire(_signum: int, _frame: object) -> None:
        raise armed.expired()

    started = time.monotonic()
    previous_handler = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)

    def restore() -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_handler)
        if previous_delay > 0:
            left = max(previous_delay - (time.monotonic() - started), 0.001)
            signal.setitimer(signal.ITIMER_REAL, left, previous_interval)

    return restore


def bound_requests(client: Any) -> None:
    """Every request of this ApiClient gets at most the time `--timeout` leaves (as its
    `_request_timeout`), and one that runs out of it raises CommandTimeout naming the server."""
    armed = _deadline
    if armed is None:
        return
    armed.server = str(getattr(client.configuration, "host", "") or "")
    call_api = client.call_api

    def bounded(*args: Any, _request_timeout: Any = None, **kwargs: Any) -> Any:
        left = armed.left()
        if left <= 0:
            raise CommandTimeout(armed.seconds, armed.server)
        armed.in_flight += 1
        try:
            answer = call_api(*args, _request_timeout=_shorter(_request_timeout, left), **kwargs)
            armed.answered = True
            return answer
        except Exception as error:
            if is_connection_error(error) and not isinstance(error, CommandTimeout) and armed.left() < 0.1:
                raise armed.expired() from error
            raise
        finally:
            armed.in_flight -= 1

    client.call_api = bounded


def _shorter(given: Any, left: float) -> Any:
    """The client's `_request_timeout` (none, seconds, or (connect, read)), at most `left` seconds."""
    if isinstance(given, tuple):
        return tuple(min(float(part), left) if part else left for part in given)
    if isinstance(given, int | float) and given > 0:
        return min(float(given), left)
    return left


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
