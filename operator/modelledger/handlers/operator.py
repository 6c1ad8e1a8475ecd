"""Importing this module registers every Kopf handler of the operator."""

from __future__ import annotations

from modelledger.handlers import deployments, leadership, notifications, requests, startup, versions
from modelledger.handlers.rules import METRICS

__all__ = [
    "METRICS",
    "deployments",
    "leadership",
    "notifications",
    "requests",
    "serve_metrics",
    "startup",
    "versions",
]


def serve_metrics(host: str, port: int) -> None:
    """/metrics with the operator's own registry, on a background thread."""
    METRICS.serve(port, host)
