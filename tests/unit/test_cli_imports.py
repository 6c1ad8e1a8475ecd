"""What each entry point imports: `modelledger-plane` (the local control plane) starts with the runtime
dependencies alone, as `pip install modelledger` installs them, without the dev extra."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib import metadata

import pytest


def _name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert found is not None, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def runtime_closure(distribution: str) -> set[str]:
    """The distribution and everything it requires, transitively, leaving out extras."""
    closure: set[str] = set()
    pending = [distribution]
    while pending:
        name = pending.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        pending += [_name(r) for r in requirements if "extra ==" not in r and "extra==" not in r]
    return closure


PROBE = """
import json, sys
from importlib import metadata
before = set(sys.modules)
import {modules}
owners = metadata.packages_distributions()
used = sorted({{d for m in set(sys.modules) - before for d in owners.get(m.split(".")[0], [])}})
print(json.dumps(used))
"""


@pytest.mark.parametrize(
    "modules",
    [
        "modelledger.testing.launcher",
        "modelledger.testing.plane, modelledger.testing.prometheus, modelledger.testing.pki",
        "modelledger.testing.access, modelledger.testing.binaries, modelledger.testing.processes",
    ],
)
def test_the_plane_imports_only_runtime_dependencies(modules: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(modules=modules)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    used = {_name(d) for d in json.loads(done.stdout)}
    allowed = runtime_closure("modelledger")
    assert "cryptography" in allowed, "signing made it a runtime dependency"
    assert used - allowed == set(), f"{modules} needs what `pip install modelledger` does not install"


def test_the_plane_launcher_answers_help() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "modelledger.testing.launcher", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "usage" in done.stdout.lower()
