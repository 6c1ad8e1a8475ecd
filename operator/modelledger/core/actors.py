"""Who did something. Identities are what admission stamped from the apiserver's authentication; a
field manager's name (`metadata.managedFields`) is a client's label, never presented as a person.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNVERIFIED = "unverified"
# Stamped on a ModelDeployment by the MutatingAdmissionPolicy `modelledger-version-setter` whenever
# spec.version changes, and guarded by the ValidatingAdmissionPolicy of the same name (charts/).
VERSION_SET_BY = "modelledger.io/version-set-by"
VERSION_SET_BY_UID = "modelledger.io/version-set-by-uid"
VERSION_SET_BY_GROUPS = "modelledger.io/version-set-by-groups"
VERSION_SET_FOR = "modelledger.io/version-set-for"


@dataclass(frozen=True)
class Identity:
    """Who did something: an apiserver-authenticated user, the operator itself, or an unverified claim."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    verified: bool = False
    approvers: tuple[str, ...] = ()  # for a retry: who approved it
    request: str | None = None  # for a retry: the request carried out

    @property
    def name(self) -> str:
        """What history records as the actor: never a claim presented as a person."""
        return self.username if self.verified else UNVERIFIED


OPERATOR = Identity("modelledger", verified=True)
NOBODY_VERIFIED = Identity(UNVERIFIED)


def version_setter(annotations: Mapping[str, str] | None, spec_version: str, guarded: bool) -> Identity:
    """Who set `spec.version`, from admission's stamp: verified only where the guard policies are
    installed (then nobody can write the stamp but admission) and the stamp is for this very version."""
    stamp = annotations or {}
    username = stamp.get(VERSION_SET_BY, "")
    if not guarded or not username or stamp.get(VERSION_SET_FOR) != spec_version:
        return NOBODY_VERIFIED
    groups = tuple(g for g in stamp.get(VERSION_SET_BY_GROUPS, "").split(",") if g)
    return Identity(username, stamp.get(VERSION_SET_BY_UID, ""), groups, verified=True)


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
