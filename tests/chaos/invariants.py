"""After a run: the invariants of issue 12, and the fault table's row.

- no lost or duplicate revision: each history is revisions n..1, n as the script says;
- no rollback the rules and requests did not call for: as many rollbacks of each cause as the script's
  breaches, requests and revocations, and each where the fault-free run has it;
- one audit record per decision: every history entry has exactly one record carrying it (matched by the
  entry's hash, as core/audit_recovery.py does), every stable mark exactly one `MarkedStable` record, and
  no record carries an entry that no history holds;
- `modelledger audit verify` passes for the namespace's histories and for the file;
- the final state equals the fault-free run's.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.chaos.cluster import history
from tests.chaos.script import CAUSE, DEPLOYMENTS, Script

ROLLBACK_CAUSES = ("AutomaticRollback", "ManualRollback", "Revocation")


def records(path: Path) -> list[dict[str, Any]]:
    found = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


@dataclass
class AuditCount:
    lost: int = 0
    duplicated: int = 0
    phantom: int = 0  # records of entries no history holds
    recovered: int = 0
    problems: list[str] = field(default_factory=list)


def audit_per_decision(namespace: str, deployments: dict[str, dict[str, Any]], log: Path) -> AuditCount:
    """Match every history entry and stable mark of the namespace with its records in the file."""
    count = AuditCount()
    mine = [r for r in records(log) if r.get("namespace") == namespace]
    by_hash = Counter((r["deployment"], r["entry"]["hash"]) for r in mine if isinstance(r.get("entry"), dict))
    known: set[tuple[str, str]] = set()
    for name, item in deployments.items():
        for entry in history(item):
            key = (name, entry["hash"])
            known.add(key)
            n = by_hash[key]
            if n != 1:
                count.problems.append(f"{name} revision {entry['revision']}: {n} records")
            count.lost += n == 0
            count.duplicated += max(0, n - 1)
            mark = entry.get("stableMark")
            if entry.get("stable") and mark:
                since = datetime.fromisoformat(entry["at"].replace("Z", "+00:00"))
                marks = [
                    r for r in mine
                    if r.get("action") == "MarkedStable" and r.get("deployment") == name
                    and r.get("revision") == entry["revision"]
                    and datetime.fromisoformat(r["ts"]) >= since
                ]  # fmt: skip
                if len(marks) != 1:
                    count.problems.append(f"{name} revision {entry['revision']}: {len(marks)} stable marks")
                count.lost += not marks
                count.duplicated += max(0, len(marks) - 1)
    phantoms = [key for key in by_hash if key not in known]
    count.phantom = len(phantoms)
    count.problems += [f"record of no history entry: {key}" for key in phantoms]
    count.recovered = sum(1 for r in mine if r.get("recovered"))
    return count


@dataclass
class Revisions:
    lost: int = 0
    duplicated: int = 0
    wrong_rollbacks: int = 0
    problems: list[str] = field(default_factory=list)


def revisions(
    script: Script, deployments: dict[str, dict[str, Any]], baseline: dict[str, Any] | None
) -> Revisions:
    """Histories against the script (how many revisions, which causes) and the fault-free run."""
    found = Revisions()
    for name in DEPLOYMENTS:
        steps = [s for s in script.steps if s.deployment == name]
        entries = list(reversed(history(deployments.get(name, {}))))  # oldest first
        numbers = [e["revision"] for e in entries]
        expected = len(steps)
        if numbers != list(range(1, len(numbers) + 1)):
            found.problems.append(f"{name}: revisions {numbers}")
        found.lost += max(0, expected - len(set(numbers)))
        found.duplicated += max(0, len(numbers) - expected)
        want = [CAUSE[s.action].value for s in steps]
        got = [e["cause"] for e in entries]
        wrong = [
            i
            for i, cause in enumerate(got)
            if cause in ROLLBACK_CAUSES and (i >= len(want) or want[i] != cause)
        ]
        if baseline is not None and name in baseline:
            reference = [(v, c) for _r, v, c, _s in baseline[name]["history"]]
            wrong += [
                i for i, e in enumerate(entries)
                if e["cause"] in ROLLBACK_CAUSES and i not in wrong
                and (i >= len(reference) or reference[i] != (e["version"], e["cause"]))
            ]  # fmt: skip
        if wrong:
            found.problems.append(f"{name}: rollbacks not called for at {wrong}: {got}")
        found.wrong_rollbacks += len(wrong)
    return found


@dataclass
class Row:
    fault: str
    injections: str
    max_recovery: str
    lost: str
    duplicated: str
    wrong_rollbacks: int
    chains: str
    same_final_state: str
    seconds: float
    rounds: str = ""  # each round's seconds

    HEADER = (
        "fault",
        "injections",
        "max recovery (s) from the fault",
        "lost (revisions / records)",
        "duplicated (revisions / records)",
        "wrong rollbacks",
        "chains verified",
        "final state = fault-free",
        "run (s)",
        "rounds (s)",
    )

    def cells(self) -> tuple[str, ...]:
        return (
            self.fault,
            self.injections,
            self.max_recovery,
            self.lost,
            self.duplicated,
            str(self.wrong_rollbacks),
            self.chains,
            self.same_final_state,
            f"{self.seconds:.0f}",
            self.rounds,
        )


def table(rows: list[Row], seed: int, form: str) -> str:
    lines = [
        f"Fault suite, {form} form, seed {seed} (replay: CHAOS_SEED={seed})",
        "",
        "| " + " | ".join(Row.HEADER) + " |",
        "|" + "---|" * len(Row.HEADER),
    ]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"
