"""Go-style durations (`30s`, `1m`, `1h30m`, `500ms`) as `timedelta`, written back canonically.

The wire format is what Kubernetes users already write in other CRDs (and what CEL's `duration()`
accepts), restricted to whole numbers of ms/s/m/h so the apiserver's regular expression and this
parser accept exactly the same strings.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema

_UNIT = r"(ms|s|m|h)"
# At least one component has a non-zero digit, so the pattern alone rejects `0s` / `0m0s`:
# a structural schema has no lookahead, and a zero interval or bake time makes no sense.
DURATION_PATTERN = rf"^([0-9]+{_UNIT})*[0-9]*[1-9][0-9]*{_UNIT}([0-9]+{_UNIT})*$"
DURATION_MAX_LENGTH = 32

_COMPONENT = re.compile(rf"([0-9]+){_UNIT}")
_WELL_FORMED = re.compile(DURATION_PATTERN)
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1_000, "ms": 1}


def parse_duration(text: str) -> timedelta:
    """Parse `1h30m`-style text; raise ValueError unless it is a positive whole-millisecond duration."""
    if len(text) > DURATION_MAX_LENGTH or not _WELL_FORMED.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a positive duration such as 30s, 1m, 10m or 1h30m (units: ms, s, m, h)"
        )
    total_ms = sum(int(number) * _UNIT_MS[unit] for number, unit in _COMPONENT.findall(text))
    return timedelta(milliseconds=total_ms)


def format_duration(value: timedelta) -> str:
    """The canonical text of a duration: largest units first, zero components left out (`1h30m`)."""
    total_ms = _whole_milliseconds(value)
    if total_ms <= 0:
        raise ValueError(f"{value!r} is not a positive duration")
    parts = []
    for unit in ("h", "m", "s", "ms"):
        amount, total_ms = divmod(total_ms, _UNIT_MS[unit])
        if amount:
            parts.append(f"{amount}{unit}")
    return "".join(parts)


def _whole_milliseconds(value: timedelta) -> int:
    if value.microseconds % 1000:
        raise ValueError(f"{value!r} is finer than a millisecond")
    return (value.days * 86_400 + value.seconds) * 1000 + value.microseconds // 1000


def _validate(value: Any) -> timedelta:
    # Strings come from manifests; timedelta from Python callers. Numbers are rejected as the
    # apiserver rejects them (`type: string`), so both sides agree on what is valid.
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, timedelta):
        format_duration(value)  # raises for zero, negative or sub-millisecond values
        return value
    raise ValueError(f"a duration must be a string such as 30s, 1m or 1h30m, not {type(value).__name__}")


Duration = Annotated[
    timedelta,
    BeforeValidator(_validate),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
            "description": "A positive duration such as 30s, 1m, 10m or 1h30m (units: ms, s, m, h).",
        }
    ),
]
"""A positive Go-style duration; the python value is a `timedelta`."""
