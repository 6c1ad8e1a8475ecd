"""What the operator keeps of a watched object: everything a decision reads, without the bookkeeping
of other clients. `metadata.managedFields` and kubectl's last-applied annotation (a second copy of the
spec) are often most of a small object; across 10,000 ModelVersions they are most of the memory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    kept = dict(body)
    metadata = dict(kept.get("metadata") or {})
    metadata.pop("managedFields", None)
    annotations = metadata.get("annotations")
    if annotations and LAST_APPLIED in annotations:
        metadata["annotations"] = {k: v for k, v in annotations.items() if k != LAST_APPLIED}
    kept["metadata"] = metadata
    return kept
