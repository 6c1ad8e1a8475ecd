"""Go-style durations (`30s`, `1m`, `1h30m`, `500ms`) as `timedelta`, written back canonically.

The wire format is what Kubernetes users already write in other CRDs (and what CEL's `duration()`
accepts), restricted to whole numbers of ms/s/m/h so the apiserver's regular expression and this
parser accept exactly the same strings. Every duration is at most a year (`8760h`): the apiserver checks
it with a CEL rule, this parser before it builds a `timedelta`, so `99999999999h` is a validation error
naming the field on both sides instead of an `OverflowError` in the operator, `report` or `audit verify`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from functools import lru_cache, partial
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

MAX_DURATION = timedelta(hours=8760)
"""The longest duration any field accepts: a year (365 days)."""
MAX_DURATION_TEXT = "8760h"

# The CEL rules. CEL's `duration()` (Go's time.ParseDuration) fails on anything past ~292 years, and a
# failing rule is an "error evaluating rule" rather than a validation message. So each rule first
# matches a pattern that bounds every component's digits by the largest value a year allows in its
# unit (8760h = 525600m = 31536000s = 31536000000ms: 4, 6, 8 and 11 digits, leading zeros aside):
# `&&` stops at a false left side, so `duration()` only ever sees text it parses. Within the 32
# characters such components sum to far less than Go's limit, and a duration of at most a year
# always matches, so the rule accepts exactly what `parse_duration` accepts.
_BOUNDED = r"^(0*[0-9]{1,4}h|0*[0-9]{1,6}m|0*[0-9]{1,8}s|0*[0-9]{1,11}ms)+$"
MAX_DURATION_RULE = {
    "rule": f"self.matches('{_BOUNDED}') && duration(self) <= duration('{MAX_DURATION_TEXT}')",
    "message": f"must be at most {MAX_DURATION_TEXT} (a year)",
}


@lru_cache(maxsize=4096)  # every pass validates its spec: the same few texts, thousands of times
def parse_duration(text: str, maximum: timedelta = MAX_DURATION) -> timedelta:
    """Parse `1h30m`-style text; raise ValueError unless it is a positive whole-millisecond duration
    of at most `maximum` (a year unless told otherwise). Never raises OverflowError."""
    if len(text) > DURATION_MAX_LENGTH or not _WELL_FORMED.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a positive duration such as 30s, 1m, 10m or 1h30m (units: ms, s, m, h)"
        )
    # Summed as Python integers first: `timedelta` overflows past 999999999 days.
    total_ms = sum(int(number) * _UNIT_MS[unit] for number, unit in _COMPONENT.findall(text))
    if total_ms > _whole_milliseconds(maximum):
        raise ValueError(f"{text!r} is longer than the maximum, {format_duration(maximum)}")
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


def _validate(minimum: timedelta | None, value: Any) -> timedelta:
    # Strings come from manifests; timedelta from Python callers. Numbers are rejected as the
    # apiserver rejects them (`type: string`), so both sides agree on what is valid.
    if isinstance(value, str):
        parsed = parse_duration(value)
    elif isinstance(value, timedelta):
        format_duration(value)  # raises for zero, negative or sub-millisecond values
        if value > MAX_DURATION:
            raise ValueError(f"{format_duration(value)} is longer than the maximum, {MAX_DURATION_TEXT}")
        parsed = value
    else:
        raise ValueError(f"a duration must be a string such as 30s, 1m or 1h30m, not {type(value).__name__}")
    if minimum is not None and parsed < minimum:
        raise ValueError(f"must be at least {format_duration(minimum)}")
    return parsed


def _json_schema(minimum: timedelta | None) -> WithJsonSchema:
    rules: list[dict[str, str]] = [MAX_DURATION_RULE]
    if minimum is not None:
        text = format_duration(minimum)
        # Guarded like the maximum rule (which reports text past the guard).
        rules.append(
            {
                "rule": f"!self.matches('{_BOUNDED}') || duration(self) >= duration('{text}')",
                "message": f"must be at least {text}",
            }
        )
    return WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "maxLength": DURATION_MAX_LENGTH,
            "description": "A positive duration such as 30s, 1m, 10m or 1h30m (units: ms, s, m, h).",
            "x-kubernetes-validations": rules,
        }
    )


_SERIALIZER = PlainSerializer(format_duration, return_type=str)
MIN_INTERVAL = timedelta(seconds=1)

Duration = Annotated[timedelta, BeforeValidator(partial(_validate, None)), _SERIALIZER, _json_schema(None)]
"""A positive Go-style duration of at most a year; the python value is a `timedelta`."""

Interval = Annotated[
    timedelta, BeforeValidator(partial(_validate, MIN_INTERVAL)), _SERIALIZER, _json_schema(MIN_INTERVAL)
]
"""A Duration of at least a second: how often something polls (`1ms` would be a busy loop)."""
