"""Run the operator in the benchmarks as it runs in production: with its runtime dependencies only.

The development venv also holds pytest-kind's `pykube-ng` and the `bench` extra's `kubernetes_asyncio`,
and Kopf imports both when they are present (`kopf._cogs.helpers.thirdparty`): 44 MiB more resident
memory than the chart's image has, before the first object. So the benchmarks start `modelledger run`
from a venv with `[project].dependencies` alone, at the versions the development venv has, cached
outside the repo by those versions; the code itself comes from this checkout (PYTHONPATH).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from modelledger.testing.binaries import cache_dir

REPO = Path(__file__).resolve().parents[1]


def _pinned() -> list[str]:
    """The runtime requirements, each pinned to the version installed here."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = []
    for requirement in project["dependencies"]:
        name = requirement.split(";")[0].split("[")[0]
        for separator in "<>=!~ ":
            name = name.split(separator)[0]
        pins.append(f"{name}=={metadata.version(name)}")
    return sorted(pins)


def python() -> Path:
    """The runtime venv's interpreter; made on first use (about 30 s from pip's cache)."""
    pins = _pinned()
    key = hashlib.sha256("\n".join([sys.version, *pins]).encode()).hexdigest()[:16]
    venv = cache_dir() / "bench-runtime" / key
    interpreter = venv / "bin" / "python"
    done = venv / ".complete"
    if not done.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run(
            [str(interpreter), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
            check=True,
        )
        done.touch()
    return interpreter


def command(*args: str) -> list[str]:
    """`modelledger <args>` from the runtime venv; pass `env()` to the process."""
    return [str(python()), "-m", "modelledger.cli.main", *args]


def env(base: dict[str, str]) -> dict[str, str]:
    return {**base, "PYTHONPATH": str(REPO / "operator")}
