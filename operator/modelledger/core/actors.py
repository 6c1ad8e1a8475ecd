"""Who changed a field: read from `metadata.managedFields`, which the apiserver keeps per field manager."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _owns(fields: dict[str, Any], path: Sequence[str]) -> bool:
    node: Any = fields
    for step in path:
        if not isinstance(node, dict) or f"f:{step}" not in node:
            return False
        node = node[f"f:{step}"]
    return True


def last_writer(managed_fields: Sequence[dict[str, Any]] | None, path: Sequence[str]) -> str | None:
    """The manager (e.g. `argocd-controller`, `kubectl-client-side-apply`) that last set `path`."""
    owners = [
        entry
        for entry in managed_fields or []
        if entry.get("subresource", "") == "" and _owns(entry.get("fieldsV1") or {}, path)
    ]
    if not owners:
        return None
    newest = max(owners, key=lambda entry: str(entry.get("time", "")))
    manager = newest.get("manager")
    return str(manager) if manager else None
