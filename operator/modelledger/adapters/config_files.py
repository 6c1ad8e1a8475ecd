"""The admins' YAML files (`--prometheus-sources`, `--notification-receivers`): a list, or a mapping with
one key holding it, validated by pydantic; every problem names the entry and field at fault."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError

T = TypeVar("T")


def load_list(path: Path, key: str, adapter: TypeAdapter[list[T]]) -> list[T]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    if raw is None:
        raw = []
    if isinstance(raw, Mapping) and set(raw) == {key}:
        raw = raw[key] or []
    try:
        return adapter.validate_python(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'the file'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ValueError(f"{path}: {problems}") from None
