"""Memory diagnostics for benchmarks: where the operator's memory goes, by the line that allocated it.

`MODELLEDGER_TRACEMALLOC=<path>` starts `tracemalloc` at start-up (it slows allocation, so never in
production); each SIGUSR2 then writes a report to `<path>`: the traced total and peak, and the top
allocation sites grouped by line. `bench/rollback_latency.py --tracemalloc` sends it at the peak.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

import structlog

log = structlog.get_logger("modelledger.diagnostics")
FRAMES = 1
TOP = 30


def from_environment() -> None:
    target = os.environ.get("MODELLEDGER_TRACEMALLOC")
    if not target:
        return
    tracemalloc.start(FRAMES)
    path = Path(target)

    def report(_signum: int, _frame: FrameType | None) -> None:
        path.write_text(snapshot_report())
        log.info("tracemalloc report written", path=str(path))

    signal.signal(signal.SIGUSR2, report)
    log.warning("tracemalloc on (benchmarks only: it slows the operator)", report=str(path))


def snapshot_report() -> str:
    current, peak = tracemalloc.get_traced_memory()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        (tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen *>"))
    )
    by_file = snapshot.statistics("filename")
    by_line = snapshot.statistics("lineno")
    lines = [f"traced_mib {current / 2**20:.1f}", f"traced_peak_mib {peak / 2**20:.1f}", "", "top files:"]
    lines += [
        f"{s.size / 2**20:8.2f} MiB {s.count:>9} blocks  {s.traceback[0].filename}" for s in by_file[:TOP]
    ]
    lines += ["", "top lines:"]
    lines += [
        f"{s.size / 2**20:8.2f} MiB {s.count:>9} blocks  {s.traceback[0].filename}:{s.traceback[0].lineno}"
        for s in by_line[:TOP]
    ]
    return "\n".join(lines) + "\n"
