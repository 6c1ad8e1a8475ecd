"""Logging: structlog JSON lines for our code and, through the standard library, for Kopf's.

Kopf logs about an object through a LoggerAdapter that puts the object's reference in the record's
`extra` (`k8s_ref`: apiVersion, kind, name, uid, namespace). `ExtraAdder` carries it into the event and
`object_fields` spreads it out, so Kopf's lines have `namespace`, `name` and `kind` as ours have (and
`deployment` for a ModelDeployment, the key our own lines use). Kopf's other extras (its settings
object, `k8s_skip`) are not copied."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

KOPF_REFERENCE = "k8s_ref"


def object_fields(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Kopf's object reference as top-level fields; what the line already has is kept."""
    reference = event.pop(KOPF_REFERENCE, None)
    if isinstance(reference, dict):
        for key in ("namespace", "name", "kind", "uid"):
            if reference.get(key) is not None:
                event.setdefault(key, reference[key])
        if reference.get("kind") == "ModelDeployment" and reference.get("name") is not None:
            event.setdefault("deployment", reference["name"])
    return event


_SHARED: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
]
# For records from the standard library (Kopf's): their object reference, from `extra`.
_FOREIGN: list[structlog.types.Processor] = [
    *_SHARED,
    structlog.stdlib.ExtraAdder(allow=(KOPF_REFERENCE,)),
    object_fields,
]


def configure(level: str = "INFO") -> None:
    """Every log line, ours and Kopf's, becomes one JSON object on stderr."""
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_FOREIGN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
