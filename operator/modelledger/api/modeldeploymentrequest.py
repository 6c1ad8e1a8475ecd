"""ModelDeploymentRequest: a person's request (rollback, mark-stable, retry, approve) as an object.

Like a CertificateSigningRequest, it carries the apiserver-authenticated requester: admission stamps or
verifies `spec.requester`, so the operator never acts on an identity the client merely claimed. The spec
is immutable; only the operator writes the status, and it handles each request exactly once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, model_validator

from modelledger.api.common import SHORT_TEXT, ApiModel, ObjectName, Timestamp

REASON_LENGTH = 1024
USERNAME_LENGTH = 1024
REQUEST_IMMUTABLE_MESSAGE = "a request's spec is immutable: create a new ModelDeploymentRequest instead"


class RequestAction(StrEnum):
    ROLLBACK = "Rollback"
    MARK_STABLE = "MarkStable"
    RETRY = "Retry"
    APPROVE = "Approve"


class RequestPhase(StrEnum):
    PENDING = "Pending"
    APPLIED = "Applied"
    REJECTED = "Rejected"
    EXPIRED = "Expired"


TERMINAL_PHASES = frozenset({RequestPhase.APPLIED, RequestPhase.REJECTED, RequestPhase.EXPIRED})


class Requester(ApiModel):
    """The authenticated identity, as the apiserver saw it (`request.userInfo`)."""

    username: Annotated[str, Field(min_length=1, max_length=USERNAME_LENGTH)]
    """The user name, e.g. `alice@example.com` or `system:serviceaccount:ci:deployer`."""
    uid: Annotated[str, Field(max_length=SHORT_TEXT)] = ""
    """The user's UID where the authenticator sets one (ServiceAccount tokens do; certificates do not)."""
    groups: Annotated[list[Annotated[str, Field(max_length=SHORT_TEXT)]], Field(max_length=128)] = Field(
        default_factory=list
    )
    """The user's groups."""


class ModelDeploymentRequestSpec(ApiModel):
    """What is asked, of which deployment, by whom (stamped at admission). Immutable."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": REQUEST_IMMUTABLE_MESSAGE},
                {
                    "rule": "self.action != 'Rollback' || (has(self.reason) && size(self.reason) > 0)",
                    "message": "reason is required for a Rollback",
                    "fieldPath": ".reason",
                },
                {
                    "rule": "(self.action == 'Approve') == has(self.approves)",
                    "message": "approves names the request an Approve approves, and only an Approve has it",
                    "fieldPath": ".approves",
                },
                {
                    "rule": "!has(self.revision) || self.action == 'Rollback' || self.action == 'MarkStable'",
                    "message": "revision is only valid for a Rollback or a MarkStable",
                    "fieldPath": ".revision",
                },
            ]
        }
    )

    deployment: ObjectName
    """The ModelDeployment (in this namespace) the request is for."""
    action: Annotated[RequestAction, Field(strict=False)]
    """`Rollback`, `MarkStable`, `Retry` or `Approve`."""
    revision: Annotated[int, Field(ge=1)] | None = None
    """Rollback: the revision to return to (default: the newest stable one). MarkStable: the revision
    to mark (default: the serving one)."""
    reason: Annotated[str, Field(max_length=REASON_LENGTH)] = ""
    """Why, in the person's words; required for a Rollback, recorded in the history."""
    approves: ObjectName | None = None
    """Approve: the name of the request this approves."""
    requester: Requester | None = None
    """Who asks: stamped by admission from the authenticated user; a different claim is refused."""

    @model_validator(mode="after")
    def _action_fields(self) -> ModelDeploymentRequestSpec:
        if self.action is RequestAction.ROLLBACK and not self.reason:
            raise ValueError("reason is required for a Rollback")
        if (self.action is RequestAction.APPROVE) != (self.approves is not None):
            raise ValueError("approves names the request an Approve approves, and only an Approve has it")
        if self.revision is not None and self.action not in (
            RequestAction.ROLLBACK,
            RequestAction.MARK_STABLE,
        ):
            raise ValueError("revision is only valid for a Rollback or a MarkStable")
        return self


class ModelDeploymentRequestStatus(ApiModel):
    """The operator's answer; written once the request is decided (and `Pending` while it waits)."""

    phase: Annotated[RequestPhase, Field(strict=False)] | None = None
    """`Pending` (e.g. awaiting approvals), `Applied`, `Rejected` or `Expired`."""
    message: Annotated[str, Field(max_length=REASON_LENGTH)] = ""
    """What happened, or what it waits for."""
    revision: Annotated[int, Field(ge=1)] | None = None
    """The revision the request created or marked, if any."""
    approvers: Annotated[list[Annotated[str, Field(max_length=USERNAME_LENGTH)]], Field(max_length=32)] = (
        Field(default_factory=list)
    )
    """The users whose approvals counted."""
    handled_at: Timestamp | None = None
    """When the operator decided it."""


class ModelDeploymentRequest(ApiModel):
    """A person's request on a ModelDeployment, carrying the apiserver-authenticated requester."""

    api_version: Literal["modelledger.io/v1alpha1"] = "modelledger.io/v1alpha1"
    """`modelledger.io/v1alpha1`."""
    kind: Literal["ModelDeploymentRequest"] = "ModelDeploymentRequest"
    """`ModelDeploymentRequest`."""
    metadata: dict[str, Any] = Field(default_factory=dict)
    """Standard object metadata."""
    spec: ModelDeploymentRequestSpec
    """The request; immutable."""
    status: ModelDeploymentRequestStatus | None = None
    """The outcome, written by the operator only."""

    @property
    def name(self) -> str:
        return str(self.metadata.get("name", ""))
