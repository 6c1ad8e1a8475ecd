"""The audit trail's log side: one hash-chained record per decision, as a structlog JSON line with
`audit=true` and, with `--audit-log PATH`, appended to a JSON Lines file for WORM storage or a SIEM.

The record schema and the chain are in `core/audit_chain.py`; this module only stamps the time, keeps
the chain's tip, signs with the operator's key (`use_key`, at start) and writes. The file is
append-only and every line is flushed and fsynced before the next decision; a restarted operator
continues the chain from the file's last line, and so does a standby that takes the lease over
(`reopen`): replicas may share the file, since only the leader writes.

No record is lost (docs/audit.md, "When a record cannot be written"):

- a torn last line (a crash mid-write) is set aside in `<file>.torn` and cut off before anything is
  appended, so no record is ever glued onto it; a whole record that lacks only its newline is kept;
- when opening the file (start, takeover) its records are indexed (`core/audit_recovery.py`), and on
  each deployment's first pass after that, the history entries and stable marks the file lacks are
  appended as `recovered` records (`recover`): the crash between the status write and the record;
- a write or fsync that fails (ENOSPC, EACCES, EIO, EFBIG, ...) leaves the file as it was (the partial
  line is cut off), marks the sink unhealthy and queues the record in memory (bounded) and on stderr;
  queued records are written in order, before any new one, once the file can be written (`flush`).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import structlog

from modelledger.api import HistoryEntry
from modelledger.core import audit_chain, audit_recovery
from modelledger.core.audit_chain import ChainTip
from modelledger.core.audit_recovery import PendingQueue, RecordIndex, Tail
from modelledger.core.decision import Decision
from modelledger.core.signing import SigningKey

log = structlog.get_logger("modelledger.audit")
_TAIL_BLOCK = 64 * 1024
PENDING_LIMIT = 10_000  # records queued in memory while the file cannot be written


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
    """Does the file end without a newline (a write cut short)? Cheap: one byte read."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    with path.open("rb") as source:
        source.seek(-1, os.SEEK_END)
        return source.read(1) != b"\n"


def _last_line_start(source: BinaryIO, size: int) -> int:
    """Where the file's last line starts (after its second-to-last newline), reading from the end."""
    position = size - 1  # the last byte may be the last line's own newline
    while position > 0:
        start = max(0, position - _TAIL_BLOCK)
        source.seek(start)
        found = source.read(position - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        position = start
    return 0


def torn_path(path: Path) -> Path:
    """Where torn tails are kept: `<file>.torn`, one JSON object per tail set aside."""
    return path.with_name(path.name + ".torn")


def repair_tail(path: Path) -> Tail:
    """Make the file end with a whole line before anything is appended: a whole record that lacks only
    its newline is terminated; a fragment (or a last line that is not a JSON object) is copied to
    `<file>.torn` (fsynced) and only then cut off. Raises OSError when that cannot be done (a full
    disk cannot take the copy): nothing is cut then, and nothing must be appended."""
    if not path.exists():
        return Tail.INTACT
    with path.open("rb") as source:
        size = source.seek(0, os.SEEK_END)
        if size == 0:
            return Tail.INTACT
        start = _last_line_start(source, size)
        source.seek(start)
        last = source.read(size - start)
    kind = audit_recovery.classify_tail(last)
    if kind is Tail.UNTERMINATED:
        with path.open("ab") as out:
            out.write(b"\n")
            out.flush()
            os.fsync(out.fileno())
        log.warning("audit log: a whole last record lacked its newline; terminated", path=str(path))
    elif kind is Tail.TORN:
        aside = {
            "torn_at": datetime.now(UTC).isoformat(),
            "file": str(path),
            "offset": start,
            "length": len(last),
            "sha256": hashlib.sha256(last).hexdigest(),
            "text": last.decode("utf-8", errors="replace"),
            "base64": base64.b64encode(last).decode(),
        }
        with torn_path(path).open("a", encoding="utf-8") as out:
            out.write(json.dumps(aside, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        with path.open("r+b") as out:
            out.truncate(start)
            out.flush()
            os.fsync(out.fileno())
        log.warning(
            "audit log: torn last line set aside and cut off; the chain continues from the line before",
            path=str(path),
            offset=start,
            length=len(last),
            kept_in=str(torn_path(path)),
        )
    return kind


@dataclass(frozen=True)
class Pending:
    """A record not written yet: its fields (time stamped when decided) and its log level."""

    fields: dict[str, Any]
    warning: bool


def _problem(path: Path, error: OSError) -> str:
    name = errno.errorcode.get(error.errno or 0, "")
    return f"{path}: {error.strerror or error}" + (f" ({name})" if name else "")


class AuditTrail:
    """The chain's tip, the signing key and the optional JSONL file; one per process, shared by every
    handler."""

    def __init__(self, key: SigningKey | None = None, *, pending_limit: int = PENDING_LIMIT) -> None:
        self.path: Path | None = None
        self.tip = ChainTip()
        self.key = key
        self._lock = threading.RLock()
        self._opened = False  # the tip was read from `path` (see `use_file`)
        self.index = RecordIndex()  # what the file holds, for recovery and against duplicates
        self._indexed: tuple[int, int, int] | None = None  # (device, inode, bytes indexed) of the file
        self.pending: PendingQueue[Pending] = PendingQueue(pending_limit)
        self.problem: str | None = None  # why the file cannot be written; None while it can
        self.epoch = 0  # counts openings (start, takeover): each one reconciles every deployment again
        self._reconciled: set[tuple[str, str]] = set()  # deployments reconciled in this epoch
        self.writable: Callable[[], bool] = lambda: True  # may queued records be written now (leading)?

    @property
    def healthy(self) -> bool:
        """The file (if any) takes records: the last write or flush succeeded."""
        return self.problem is None

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
        its first decision; a no-op without a file. Every deployment is reconciled again against the
        file on its next pass (`recover`)."""
        with self._lock:
            path = self.path
            if path is None:
                return
            try:
                self._open(path)
            except OSError as error:
                self._failed(error)
                return
        log.info(
            "audit log opened",
            path=str(path),
            seq=self.tip.seq,
            prev_hash=self.tip.hash,
            indexed=self.index.records,
        )

    def _open(self, path: Path) -> None:
        with open(path, "ab"):  # created if absent: an empty file's time is its recovery horizon
            pass
        repair_tail(path)
        self._index(path)
        self.tip = audit_chain.tip_of(last_complete_line(path))
        self._opened = True
        self._new_epoch()

    def _new_epoch(self) -> None:
        self.epoch += 1
        self._reconciled.clear()

    def _index(self, path: Path) -> None:
        """Index the file's records: from where the last indexing stopped if it is the same file and
        has only grown, else from its start."""
        stat = path.stat()
        start = 0
        held = self._indexed
        if held is not None and held[:2] == (stat.st_dev, stat.st_ino) and stat.st_size >= held[2]:
            start = held[2]
        else:
            self.index = RecordIndex()
        with path.open("rb") as source:
            source.seek(start)
            position = start
            for line in source:
                if not line.endswith(b"\n"):
                    break  # not whole (repaired above; another writer's line in progress)
                audit_recovery.index_lines([line], self.index)
                position += len(line)
        if self.index.horizon is None:
            self.index.horizon = datetime.fromtimestamp(stat.st_mtime, UTC)
        self._indexed = (stat.st_dev, stat.st_ino, position)

    def _append(self, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Seal the next record and write it, whole or not at all; raises OSError (the file unchanged)."""
        path = self.path
        assert path is not None
        if not self._opened:
            self._open(path)
        record = audit_chain.seal(fields, prev_hash=self.tip.hash, seq=self.tip.seq + 1, key=self.key)
        data = audit_chain.to_line(record).encode()
        if _ends_torn(path):  # never glue a record onto a torn line
            repair_tail(path)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            stat = os.fstat(fd)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):  # else the next append sets the fragment aside
                    os.ftruncate(fd, stat.st_size)
                raise
        finally:
            os.close(fd)
        self.tip = ChainTip(record["hash"], record["seq"])
        self.index.add(record)
        if self._indexed == (stat.st_dev, stat.st_ino, stat.st_size):
            self._indexed = (stat.st_dev, stat.st_ino, stat.st_size + len(data))
        return record

    def emit(self, fields: Mapping[str, Any], *, warning: bool = False) -> dict[str, Any]:
        """Record one decision: the sealed record, or (when the file cannot be written) the fields as
        queued, with their time, without `hash` yet."""
        with self._lock:
            return self._emit({"ts": datetime.now(UTC).isoformat(), **fields}, warning)

    def _emit(self, stamped: dict[str, Any], warning: bool) -> dict[str, Any]:
        if self.path is None:
            record = audit_chain.seal(stamped, prev_hash=self.tip.hash, seq=self.tip.seq + 1, key=self.key)
            self.tip = ChainTip(record["hash"], record["seq"])
            _log_record(record, warning)
            return record
        if self.pending or self.problem is not None:
            self._flush()  # in order: what waits goes first
        if not self.pending and self.problem is None:
            try:
                record = self._append(stamped)
            except OSError as error:
                self._failed(error)
            else:
                _log_record(record, warning)
                return record
        self._queue(Pending(stamped, warning))
        return stamped

    def _queue(self, item: Pending) -> None:
        fields = item.fields
        where = {"action": fields.get("action"), "namespace": fields.get("namespace")}
        if self.pending.push(item):
            log.error(
                "audit record pending: the audit log cannot be written; kept in memory and here",
                audit_pending=True,
                pending=len(self.pending),
                problem=self.problem,
                record=fields,
                **where,
            )
        else:
            log.critical(
                "audit record NOT queued (the queue is full): this log line is its only copy; entries "
                "and stable marks are recovered from the status once the file can be written",
                audit_pending=True,
                audit_overflow=True,
                limit=self.pending.limit,
                problem=self.problem,
                record=fields,
                **where,
            )

    def _failed(self, error: OSError) -> None:
        problem = _problem(self.path or Path("-"), error)
        if self.problem is None:
            log.error(
                "audit sink unhealthy: records are queued in memory (and logged here) until the file can "
                "be written again",
                problem=problem,
                pending=len(self.pending),
            )
        self.problem = problem

    def flush(self) -> bool:
        """Write the queued records, in order; True when none is left and the file takes records."""
        with self._lock:
            return self._flush()

    def _flush(self) -> bool:
        if self.path is None:
            self.problem = None
            return True
        if not self.writable():
            return False  # a standby never writes: the leader recovers what it needs from the status
        flushed = 0
        try:
            if not self._opened:
                self._open(self.path)
            while self.pending:
                item = self.pending.peek()
                if self._written_already(item.fields):
                    self.pending.pop()
                    log.info("queued audit record already in the file: not written twice")
                    continue
                record = self._append(item.fields)
                self.pending.pop()
                flushed += 1
                _log_record(record, item.warning)
        except OSError as error:
            self._failed(error)
            return False
        if self.problem is not None:
            log.warning(
                "audit sink healthy again: queued records written", flushed=flushed, path=str(self.path)
            )
        self.problem = None
        if self.pending.overflowed:
            # Records the queue could not hold: what the status kept of them is recovered again.
            log.error("audit records were dropped from a full queue", dropped=self.pending.overflowed)
            self.pending.overflowed = 0
            self._new_epoch()
        return True

    def _written_already(self, fields: Mapping[str, Any]) -> bool:
        """A queued record whose entry (or, recovered, whose mark) the file holds meanwhile: written by
        a recovery (this process after an overflow, or another leader)."""
        namespace, deployment = fields.get("namespace"), fields.get("deployment")
        if not isinstance(namespace, str) or not isinstance(deployment, str):
            return False
        entry = fields.get("entry")
        if isinstance(entry, Mapping) and entry.get("hash"):
            return self.index.has_entry(namespace, deployment, str(entry["hash"]))
        revision, at = fields.get("revision"), fields.get("ts")
        if fields.get("recovered") and fields.get("action") == audit_recovery.MARKED_STABLE:
            when = datetime.fromisoformat(str(at)) if at else None
            return (
                isinstance(revision, int)
                and when is not None
                and (self.index.has_mark(namespace, deployment, revision, when))
            )
        return False

    def recover(self, namespace: str, deployment: str, entries: Sequence[HistoryEntry], now: datetime) -> int:
        """On the deployment's first call since the file was opened (start, takeover): append a record
        marked `recovered` for each entry and stable mark of `entries` that neither the file nor the
        queue holds. Returns how many; 0 without a file. Only for a verified history: the records
        vouch for it."""
        with self._lock:
            key = (namespace, deployment)
            if self.path is None or key in self._reconciled:
                return 0
            if not self._opened:
                try:
                    self._open(self.path)
                except OSError as error:
                    self._failed(error)
                    return 0  # tried again on the next pass
            queued = audit_recovery.index_lines([])
            for item in self.pending:
                queued.add(item.fields)
            found = audit_recovery.missing(
                namespace, deployment, entries, [self.index, queued], recovered_at=now
            )
            for fields in found:
                self._emit(fields, warning=True)
            self._reconciled.add(key)
        if found:
            log.warning(
                "audit records recovered from status.history: the operator stopped (or the file could "
                "not be written) between the status write and the record",
                namespace=namespace,
                deployment=deployment,
                records=[f"revision {f['revision']} {f['action']}" for f in found],
            )
        return len(found)


def _log_record(record: Mapping[str, Any], warning: bool) -> None:
    logger = _audit_logger()
    event = str(record["action"])
    logger.warning(event, **record) if warning else logger.info(event, **record)


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
