"""The audit trail's log side: one hash-chained record per decision, as a structlog JSON line with
`audit=true` and, with `--audit-log PATH`, appended to a JSON Lines file for WORM storage or a SIEM.

The record schema and the chain are in `core/audit_chain.py`; this module only stamps the time, keeps
the chain's tip, signs with the operator's key (`use_key`, at start) and writes. The file is
append-only and every line is flushed and fsynced before the next decision; a restarted operator
continues the chain from the file's last line, and so does a standby that takes the lease over
(`reopen`): replicas may share the file, since only the leader writes.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from modelledger.api import HistoryEntry
from modelledger.core import audit_chain
from modelledger.core.audit_chain import ChainTip
from modelledger.core.decision import Decision
from modelledger.core.signing import SigningKey

log = structlog.get_logger("modelledger.audit")
_TAIL_BLOCK = 64 * 1024


def last_complete_line(path: Path) -> str | None:
    """The file's last newline-terminated line that is a JSON object, read from the end (logs grow)."""
    if not path.exists():
        return None
    with path.open("rb") as source:
        position = source.seek(0, os.SEEK_END)
        tail = b""
        while position > 0:
            start = max(0, position - _TAIL_BLOCK)
            source.seek(start)
            tail = source.read(position - start) + tail
            position = start
            lines = tail[: tail.rfind(b"\n") + 1].split(b"\n")
            # The first line may be cut at the block's start: trust it only at the file's start.
            for line in reversed(lines if position == 0 else lines[1:]):
                try:
                    if line.strip() and isinstance(json.loads(line), dict):
                        return line.decode()
                except ValueError:
                    continue
    return None


def _ends_torn(path: Path) -> bool:
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as source:
        source.seek(-1, os.SEEK_END)
        return source.read(1) != b"\n"


class AuditTrail:
    """The chain's tip, the signing key and the optional JSONL file; one per process, shared by every
    handler."""

    def __init__(self, key: SigningKey | None = None) -> None:
        self.path: Path | None = None
        self.tip = ChainTip()
        self.key = key
        self._lock = threading.Lock()
        self._opened = False  # the tip was read from `path` (see `use_file`)

    def use_key(self, key: SigningKey | None) -> None:
        """Sign every record from now on with `key` (None: records go unsigned)."""
        with self._lock:
            self.key = key
        if key is None:
            log.warning("audit records are not signed: no signing key")
        else:
            log.info("audit records signed", key_id=key.key_id)

    def write_to(self, path: Path) -> None:
        """Append to `path` from now on, continuing the chain it holds."""
        self.use_file(path)
        self.reopen()

    def use_file(self, path: Path) -> None:
        """Append to `path`, but read its tip only when the first record is due (or at `reopen`): a
        standby names the file it shares with the leader without touching it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self.path = path
            self._opened = False

    def reopen(self) -> None:
        """Re-read the chain's tip from the file: another process (the previous leader) may have
        appended since this one last wrote. Called when this process takes the lease over, before
        its first decision; a no-op without a file."""
        with self._lock:
            path = self.path
            if path is None:
                return
            self._open(path)
        log.info("audit log opened", path=str(path), seq=self.tip.seq, prev_hash=self.tip.hash)

    def _open(self, path: Path) -> None:
        if _ends_torn(path):
            # A crash mid-write: the next record starts on a line of its own, and
            # `audit verify` reports the torn one.
            with path.open("ab") as out:
                out.write(b"\n")
        self.tip = audit_chain.tip_of(last_complete_line(path))
        self._opened = True

    def emit(self, fields: Mapping[str, Any], *, warning: bool = False) -> dict[str, Any]:
        with self._lock:
            if self.path is not None and not self._opened:
                self._open(self.path)
            record = audit_chain.seal(
                {"ts": datetime.now(UTC).isoformat(), **fields},
                prev_hash=self.tip.hash,
                seq=self.tip.seq + 1,
                key=self.key,
            )
            if self.path is not None:
                with self.path.open("a", encoding="utf-8") as out:
                    out.write(audit_chain.to_line(record))
                    out.flush()
                    os.fsync(out.fileno())
            self.tip = ChainTip(record["hash"], record["seq"])
        logger = _audit_logger()
        event = str(record["action"])
        logger.warning(event, **record) if warning else logger.info(event, **record)
        return record


def _audit_logger() -> Any:
    """The configured logger minus its time stamper: the record's own `ts` is the one that was hashed."""
    config = structlog.get_config()
    processors = [p for p in config["processors"] if not isinstance(p, structlog.processors.TimeStamper)]
    return structlog.wrap_logger(
        config["logger_factory"]("modelledger.audit"),
        processors=processors,
        wrapper_class=config["wrapper_class"],
        context_class=config["context_class"],
    )


TRAIL = AuditTrail()


def write_to(path: Path) -> None:
    """Also append every audit record to `path` (JSON Lines), continuing the chain it holds."""
    TRAIL.write_to(path)


def use_key(key: SigningKey | None) -> None:
    """Sign every audit record with the operator's key (called once at start, after the key is loaded)."""
    TRAIL.use_key(key)


def record(
    kind: str, namespace: str, name: str, decision: Decision, entry: HistoryEntry | None
) -> dict[str, Any]:
    """One decision on a ModelDeployment (or ModelVersion); `entry` is the revision it created, carried
    verbatim (with its signature) so the log anchors the status history outside the object."""
    deployment = kind == "ModelDeployment"
    return TRAIL.emit(
        {
            "actor": decision.actor,
            "action": decision.reason,
            "kind": kind,
            "namespace": namespace,
            "deployment": name if deployment else None,
            "object": name,
            "revision": decision.revision,
            "version": decision.version,
            "cause": decision.cause.value if decision.cause else None,
            "rule": decision.rule or (entry.rule if entry else None),
            "reason": entry.reason if entry else None,
            "message": decision.message,
            "digests": entry.pipeline.to_wire() if entry and entry.pipeline else None,
            "evidence": decision.evidence.to_wire() if decision.evidence else None,
            "entry": entry.to_wire() if entry else None,
        },
        warning=decision.warning,
    )


def record_version_event(
    action: str,
    namespace: str,
    version: str,
    message: str,
    *,
    actor: str = "modelledger",
    warning: bool = False,
) -> dict[str, Any]:
    """A decision about a ModelVersion itself, e.g. DeletionBlocked or VersionDeleted."""
    return TRAIL.emit(
        {
            "actor": actor,
            "action": action,
            "kind": "ModelVersion",
            "namespace": namespace,
            "object": version,
            "version": version,
            "message": message,
        },
        warning=warning,
    )
