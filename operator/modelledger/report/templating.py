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


SIGNATURE_STATES = {
    "valid": "signed",
    "invalid": "INVALID signature",
    "unknownKey": "unknown key",
    "unsigned": "unsigned",
    "notChecked": "signed, not checked",
}


def signature_state(value: str) -> str:
    """One signature as a reader says it."""
    return SIGNATURE_STATES.get(value, value)


def verified(value: bool | None) -> str:
    """Whether the actor was authenticated: `yes`, `no`, or `—` for entries from before identities."""
    return "—" if value is None else ("yes" if value else "no")


def verdict(check: Any) -> str:
    """A history's verification verdict as a sentence (`check` is a report HistoryCheck)."""
    total = check.signed + check.unsigned
    if check.verdict == "Tampered":
        where = f"at revision {check.revision}: " if check.revision is not None else ": "
        return f"TAMPERED {where}{check.problem}"
    if check.verdict == "Unsigned":
        return f"chain intact, {check.unsigned} of {total} revisions UNSIGNED"
    if check.verdict == "NotChecked":
        return f"chain intact; the signatures of {check.signed} revisions not checked (no public keys)"
    return f"every one of {total} revisions signed and verified"


def gitops(value: Any) -> str:
    """A change's GitOps lineage (a report GitOpsRecord): the commit first, then where it came from."""
    if value is None:
        return "—"
    if not value.trusted:
        return f"unavailable: {value.reason or 'unknown'}"
    by = f"by {value.initiated_by}" if value.initiated_by else ("automated sync" if value.automated else "")
    where = ", ".join(part for part in (value.application, by) if part)
    return f"{(value.revision or '?')[:12]} ({where})"


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
    env.filters.update(
        ts=timestamp,
        short=short_digest,
        evidence=evidence,
        gitops=gitops,
        cell=markdown_cell,
        signature=signature_state,
        verified=verified,
        verdict=verdict,
    )
    return env
