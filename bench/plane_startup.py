"""Warm start of the local control plane: time to a ready apiserver, to Ready nodes, and its memory.

.venv/bin/python bench/plane_startup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from modelledger.testing.plane import LocalPlane, PlaneOptions


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds idle before reading memory")
    args = parser.parse_args()
    rows = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            began = time.monotonic()
            with LocalPlane(Path(tmp), PlaneOptions(nodes=2)) as plane:
                ready = time.monotonic() - began
                time.sleep(args.settle)
                memory = {child.name: rss_mib(child.pid) for child in plane.processes.children}
            rows.append((run, plane.timings["apiserver"], ready, memory))

    names = list(rows[0][3])
    header = f"{'run':>3}  {'apiserver ready s':>17}  {'nodes ready s':>13}  {'RSS MiB':>8}  " + "  ".join(
        f"{n:>23}" for n in names
    )
    print(header)
    for run, apiserver, ready, memory in rows:
        cells = "  ".join(f"{memory[n]:>23.0f}" for n in names)
        print(f"{run:>3}  {apiserver:>17.2f}  {ready:>13.2f}  {sum(memory.values()):>8.0f}  {cells}")
    print(
        f"median: apiserver ready {statistics.median(r[1] for r in rows):.2f} s, "
        f"all ready {statistics.median(r[2] for r in rows):.2f} s, "
        f"RSS {statistics.median(sum(r[3].values()) for r in rows):.0f} MiB"
    )


if __name__ == "__main__":
    main()
