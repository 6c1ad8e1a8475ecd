"""The audit trail's log side: one structlog JSON line with `audit=true` per decision."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from modelledger.api import HistoryEntry
from modelledger.core.reconcile import Decision

log = structlog.get_logger("modelledger.audit")
_FILE: list[Path] = []  # set by `modelledger run --audit-log`


def write_to(path: Path) -> None:
    """Also append every audit record to `path` (JSON Lines), for shipping to WORM storage or a SIEM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _FILE[:] = [path]


def _append(fields: dict[str, Any]) -> None:
    # Append-only, flushed and fsynced per line: a record is on disk before the next decision.
    with _FILE[0].open("a", encoding="utf-8") as out:
        out.write(json.dumps(fields, sort_keys=True, default=str) + "\n")
        out.flush()
        os.fsync(out.fileno())


def record(kind: str, namespace: str, name: str, decision: Decision, entry: HistoryEntry | None) -> None:
    fields: dict[str, Any] = {
        "audit": True,
        "action": decision.reason,
        "actor": decision.actor,
        "kind": kind,
        "namespace": namespace,
        "deployment" if kind == "ModelDeployment" else "object": name,
        "revision": decision.revision,
        "version": decision.version,
        "cause": decision.cause.value if decision.cause else None,
        "evidence": decision.evidence.to_wire() if decision.evidence else None,
        "message": decision.message,
    }
    if entry is not None:
        fields["digests"] = entry.pipeline.to_wire() if entry.pipeline else None
        fields["prev_hash"] = entry.prev_hash
        fields["hash"] = entry.hash
    if _FILE:
        _append({"ts": datetime.now(UTC).isoformat(), **fields})
    log.warning(decision.reason, **fields) if decision.warning else log.info(decision.reason, **fields)
