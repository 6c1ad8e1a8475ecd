"""`modelledger status MDEP [--watch] [--stable] [--timeout DURATION]`: whether a deployment serves its
desired version, Healthy, as a gate for a CD pipeline (after an ArgoCD sync, say).

Exit 0 when the operator has seen the latest spec and the deployment is Healthy on `spec.version` (with
`--stable`: and that revision is marked stable, i.e. it served its bakeTime with every rule passing).
Exit 1 on RolledBack, Degraded or Failed, at the timeout, or (without --watch) while still Progressing;
exit 4 when the apiserver does not answer (within the timeout).
`--watch` polls until one of those happens, printing each change."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from typing import Any, cast

from rich.markup import escape

from modelledger.api.common import GROUP, VERSION
from modelledger.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    Cluster,
    add_cluster_args,
    add_output_arg,
    api_error,
    deadline,
    fail,
    format_seconds,
    one_namespace,
    write_document,
)

POLL_SECONDS = 1.0
REQUEST_SECONDS = 30.0  # one GET at most; with --timeout, never past it (common.bound_requests)
FAILED_PHASES = frozenset({"RolledBack", "Degraded", "Failed"})
# Status fields left out of `-o json|yaml`: `history` has a command of its own; the rest is bookkeeping.
OMITTED = frozenset({"history", "handledRequests", "seal", "historyWatermark", "kopf"})


@dataclass(frozen=True)
class Gate:
    """What the deployment's status means for a pipeline waiting on it."""

    state: str
    """Healthy, Progressing, RolledBack, Degraded, Failed, or Pending (no status yet)."""
    done: bool
    """Nothing more to wait for: `healthy` says which way it ended."""
    healthy: bool
    message: str


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "status",
        help="whether a deployment is Healthy on its desired version (exit 0), e.g. as a CD gate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("deployment")
    parser.add_argument(
        "-w", "--watch", action="store_true", help="wait until Healthy (exit 0) or failed (exit 1)"
    )
    parser.add_argument(
        "--stable",
        action="store_true",
        help="also require the serving revision to be marked stable (bakeTime with every rule passing)",
    )
    add_output_arg(parser)
    add_cluster_args(
        parser,
        timeout_help="with --watch: stop waiting (exit 1) after this long; an apiserver that does not "
        "answer in that time is exit 4: 30s, 10m, or seconds (default: 0, no limit)",
    )
    parser.set_defaults(handler=run)


def judge(raw: dict[str, Any], *, stable: bool = False) -> Gate:
    """The gate's verdict on one ModelDeployment as the apiserver returned it."""
    spec = raw.get("spec") or {}
    desired = str(spec.get("version", ""))
    generation = (raw.get("metadata") or {}).get("generation")
    status = raw.get("status") or {}
    phase = status.get("phase")
    ready: dict[str, Any] = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {})
    message = str(ready.get("message") or "")
    if not phase:
        return Gate("Pending", False, False, "the operator has not reported on it yet")
    observed = status.get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return Gate(
            "Progressing",
            False,
            False,
            f"the operator has not yet seen generation {generation} (observed {observed or '-'})",
        )
    if phase in FAILED_PHASES:
        return Gate(phase, True, False, message or phase)
    serving = status.get("servingVersion")
    if phase == "Healthy" and serving == desired and status.get("desiredVersion") == desired:
        if stable and not _serving_is_stable(status):
            return Gate("Healthy", False, False, f"{desired} serves; waiting for it to be marked stable")
        return Gate("Healthy", True, True, message or f"{desired} is served as desired")
    return Gate("Progressing", False, False, message or f"serving {serving or '-'}, desired {desired or '-'}")


def _serving_is_stable(status: dict[str, Any]) -> bool:
    current = status.get("currentRevision")
    return any(
        entry.get("revision") == current and entry.get("stable") is True
        for entry in status.get("history") or []
    )


def document(raw: dict[str, Any], gate: Gate) -> dict[str, Any]:
    """`-o json|yaml`: the gate's verdict and the status it was read from (history left out)."""
    metadata = raw.get("metadata") or {}
    status = raw.get("status") or {}
    return {
        "namespace": metadata.get("namespace"),
        "name": metadata.get("name"),
        "generation": metadata.get("generation"),
        "desiredVersion": (raw.get("spec") or {}).get("version"),
        "result": {
            "status": gate.state,
            "done": gate.done,
            "healthy": gate.healthy,
            "message": gate.message,
        },
        "status": {key: value for key, value in status.items() if key not in OMITTED},
    }


HEADERS = ["NAME", "STATUS", "DESIRED", "SERVING", "REVISION", "STABLE", "MESSAGE"]
WIDE_HEADERS = [*HEADERS[:-1], "GENERATION", "QUARANTINED", "RULES", HEADERS[-1]]


def row(raw: dict[str, Any], gate: Gate, *, wide: bool) -> list[str]:
    status = raw.get("status") or {}
    cells = [
        str((raw.get("metadata") or {}).get("name", "")),
        gate.state,
        str((raw.get("spec") or {}).get("version", "")),
        str(status.get("servingVersion") or "-"),
        str(status.get("currentRevision") or "-"),
        str(status.get("stableRevision") or "-"),
    ]
    if wide:
        rules = ", ".join(
            f"{r.get('name')}={r.get('state')}" + (f"({r['value']:g})" if r.get("value") is not None else "")
            for r in status.get("rules") or []
        )
        generation = (raw.get("metadata") or {}).get("generation")
        cells += [
            f"{status.get('observedGeneration', '-')}/{generation if generation is not None else '-'}",
            ",".join(status.get("quarantined") or []) or "-",
            rules or "-",
        ]
    return [*cells, gate.message]


class Printer:
    """Prints each new state once: a table row (the header first), or a JSON/YAML document."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.widths: list[int] | None = None
        self.last: Any = None

    def show(self, raw: dict[str, Any], gate: Gate) -> None:
        if self.output in ("json", "yaml"):
            current: Any = document(raw, gate)
            if current != self.last:
                if self.output == "yaml" and self.last is not None:
                    _write("---\n")
                self.last = current
                write_document(current, self.output)
            return
        headers = WIDE_HEADERS if self.output == "wide" else HEADERS
        cells = row(raw, gate, wide=self.output == "wide")
        if cells == self.last:
            return
        self.last = cells
        if self.widths is None:  # as `kubectl get -w`: the first row sets the columns
            self.widths = [max(len(h), len(c)) for h, c in zip(headers, cells, strict=True)]
            _write(_line(headers, self.widths))
        _write(_line(cells, self.widths))


def _line(cells: list[str], widths: list[int]) -> str:
    return "   ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip() + "\n"


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def run(args: argparse.Namespace) -> int:
    one_namespace(args, "a ModelDeployment's status")
    cluster = Cluster(args)
    printer = Printer(args.output)
    if not args.watch:
        raw = cluster.get_deployment(args.deployment)
        gate = judge(raw, stable=args.stable)
        printer.show(raw, gate)
        return EXIT_OK if gate.done and gate.healthy else EXIT_FAILED
    # --timeout counts from the command's start (main armed it); a GET it cuts off is exit 4
    armed = deadline()
    until = armed.soft if armed is not None else time.monotonic() + args.timeout if args.timeout > 0 else None
    gate = Gate("Pending", False, False, "not read yet")
    while until is None or time.monotonic() < until:
        found = _get(cluster, args.deployment)
        gate = judge(found, stable=args.stable)
        printer.show(found, gate)
        if gate.done:
            return EXIT_OK if gate.healthy else EXIT_FAILED
        pause = POLL_SECONDS if until is None else min(POLL_SECONDS, until - time.monotonic())
        if pause > 0:
            time.sleep(pause)
    fail(
        escape(
            f"timed out after {format_seconds(args.timeout)} waiting for ModelDeployment "
            f"{cluster.namespace}/{args.deployment} to be Healthy on its desired version "
            f"(last: {gate.state}: {gate.message})"
        ),
        EXIT_FAILED,
    )


def _get(cluster: Cluster, name: str) -> dict[str, Any]:
    """One GET, of at most REQUEST_SECONDS, and never past `--timeout` (and its grace)."""
    from kubernetes.client.exceptions import ApiException

    try:
        return cast(
            dict[str, Any],
            cluster.objects.get_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, "modeldeployments", name, _request_timeout=REQUEST_SECONDS
            ),
        )
    except ApiException as error:
        api_error(error, f"ModelDeployment {name} in namespace {cluster.namespace}")
