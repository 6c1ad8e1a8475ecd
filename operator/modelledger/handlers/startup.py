"""Kopf settings: its bookkeeping lives in status, never in annotations, so GitOps diffs stay clean."""

from __future__ import annotations

from typing import Any

import kopf

# Ours, put on ModelVersions and taken off by handlers/versions.py on the bookkeeping lane.
FINALIZER = "modelledger.io/finalizer"
# Kopf's: no handler needs one now. A name of its own, so Kopf never takes ours off an object.
KOPF_FINALIZER = "kopf.modelledger.io/finalizer"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field="status.kopf.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(
        field="status.kopf.lastHandledConfiguration"
    )
    settings.persistence.finalizer = KOPF_FINALIZER
    # Our decisions post their own catalogued Events; Kopf's log lines stay in the log.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod: its service account; elsewhere: $KUBECONFIG (as kubectl)."""
    info: kopf.ConnectionInfo | None = kopf.login_with_service_account(
        **kwargs
    ) or kopf.login_with_kubeconfig(**kwargs)
    return info
