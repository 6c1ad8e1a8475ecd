"""The audit log in the deployment passes: recovering the records a crash kept out of the file, the
file's health as the decisions see it, and the retry that writes the queued records once it returns.

- `before_decision` runs in each pass before the decision: on a deployment's first pass after the file
  was opened (start, takeover), the history entries and stable marks the file lacks are appended as
  `recovered` records (adapters/audit.py `recover`; only for a verified history); then it returns the
  sink's state for the decision (`Situation.audit_sink`: the AuditSinkHealthy condition, and whether
  people's decisions wait, `--audit-failure`).
- while the file cannot be written, one task retries it every `RETRY_EVERY` seconds (while leading); it
  wakes every deployment when the sink fails (so each says so) and again when it returns (so what
  waited goes ahead and the condition clears).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog

from modelledger.adapters import audit
from modelledger.api import HistoryEntry
from modelledger.core.decision import AuditSink
from modelledger.handlers.rules import METRICS

if TYPE_CHECKING:
    from modelledger.handlers.context import OperatorConfig

log = structlog.get_logger("modelledger.audit")
RETRY_EVERY = 1.0
_RETRYING: set[asyncio.Future[None]] = set()
_WATCHED: set[int] = set()  # the trails whose health the metrics read (one per process)


def before_decision(
    namespace: str,
    name: str,
    entries: Sequence[HistoryEntry],
    verified: bool,
    config: OperatorConfig,
    at: datetime,
) -> AuditSink | None:
    """Recover the deployment's lost records (first pass after opening the file), and say what the
    decision must know of the sink; None without an audit file."""
    trail = audit.TRAIL
    _watch(trail, config)
    if trail.path is None:
        return None
    if verified and config.gate.leading():
        trail.recover(namespace, name, entries, at)
    after_records(config)
    return AuditSink(
        healthy=trail.healthy, problem=trail.problem or "", blocks=config.audit_failure != "continue"
    )


def after_records(config: OperatorConfig) -> None:
    """After records were emitted: retry in the background while any of them wait."""
    trail = audit.TRAIL
    if (not trail.healthy or trail.pending) and not _RETRYING:
        task = asyncio.ensure_future(_retry_until_written(trail, config))
        _RETRYING.add(task)
        task.add_done_callback(_RETRYING.discard)


def _watch(trail: audit.AuditTrail, config: OperatorConfig) -> None:
    if id(trail) in _WATCHED:
        return
    _WATCHED.add(id(trail))
    trail.writable = config.gate.leading  # queued records are written by the leader only
    METRICS.watch_audit_sink(lambda: trail.healthy, lambda: len(trail.pending))


def _wake_every_deployment(config: OperatorConfig) -> None:
    config.work.wake_all(list(config.work.bodies.bodies))


async def _retry_until_written(trail: audit.AuditTrail, config: OperatorConfig) -> None:
    if not trail.healthy:
        _wake_every_deployment(config)  # each one reports AuditSinkHealthy=False
    while True:
        await asyncio.sleep(RETRY_EVERY)
        if config.gate.leading() and trail.flush():
            break
    log.info("audit records written again; every deployment is decided again")
    _wake_every_deployment(config)
