"""Jinja2 environments and the filters the Markdown and HTML templates share."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jinja2


def timestamp(value: datetime | None) -> str:
    """UTC, to the second: what an examiner compares with other systems' logs."""
    if value is None:
        return "—"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def short_digest(value: str | None) -> str:
    if not value:
        return "—"
    return value.removeprefix("sha256:")[:12]


def evidence(value: dict[str, Any] | None) -> str:
    if not value:
        return ""
    measured = "no data" if value.get("value") is None else f"{value['value']:g}"
    return f"{measured} {value.get('comparator', '')} {value.get('threshold', '')} — {value.get('query', '')}"


def markdown_cell(value: Any) -> str:
    """A table cell: pipes escaped and line breaks flattened, so one value never splits a row."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def environment(*, html: bool) -> jinja2.Environment:
    env = jinja2.Environment(
        autoescape=html,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(ts=timestamp, short=short_digest, evidence=evidence, cell=markdown_cell)
    return env
