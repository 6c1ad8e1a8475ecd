"""Notifications, decided purely: which decisions notify (triggers), which admin-defined receivers get
them (routing), what the message says (generic JSON and Slack payloads), and how long to wait between
attempts (back-off). Delivery is adapters/notifier.py; the hook is handlers/notifications.py.

A receiver's URL never appears here: the admin's receivers file names a file holding it (a mounted
Secret key), and only the adapter reads that file, at each attempt.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from modelledger.api import HistoryEntry, RuleStatus
from modelledger.core.decision import Decision

ANNOTATION = "modelledger.io/notify"
NONE = "none"
SCHEMA = "modelledger.io/notification/v1"
SLACK_TEXT_LIMIT = 2900  # Slack refuses a section text over 3000 characters


class Trigger(StrEnum):
    """What a receiver subscribes to; each maps onto the Event reasons of docs/events.md."""

    ROLLED_BACK = "RolledBack"
    DEGRADED = "Degraded"
    FAILED = "Failed"
    REVOKED = "Revoked"
    HISTORY_TAMPERED = "HistoryTampered"
    MARKED_STABLE = "MarkedStable"


# Event reason -> trigger. PipelineMismatch notifies only as a hold (not when it refuses a request:
# the requester sees that in the request's status).
REASON_TRIGGERS: Mapping[str, Trigger] = {
    "RolledBack": Trigger.ROLLED_BACK,  # causes AutomaticRollback and ManualRollback
    "NoStableRevision": Trigger.DEGRADED,
    "VersionRevoked": Trigger.REVOKED,  # the Revocation rollback, or spec.version names a revoked version
    "HistoryTampered": Trigger.HISTORY_TAMPERED,
    "MarkedStable": Trigger.MARKED_STABLE,  # by the bake time or a person's mark-stable
    "VersionNotFound": Trigger.FAILED,
    "ModelMismatch": Trigger.FAILED,
    "InvalidSpec": Trigger.FAILED,
    "HistoryUnsigned": Trigger.FAILED,
    "PipelineMismatch": Trigger.FAILED,
}
DEFAULT_TRIGGERS = frozenset(Trigger) - {Trigger.MARKED_STABLE}


class ReceiverType(StrEnum):
    WEBHOOK = "webhook"  # a generic JSON POST (payload below)
    SLACK = "slack"  # a Slack-compatible incoming webhook (Slack, Mattermost, Rocket.Chat: `text` + blocks)


class Routing(StrEnum):
    """Which deployments a receiver hears from."""

    DEFAULT = "default"  # every deployment without the annotation, and those whose annotation names it
    ALWAYS = "always"  # every deployment, whatever its annotation says (a tenant cannot opt out)
    NAMED = "named"  # only deployments whose annotation names it


class Receiver(BaseModel):
    """One entry of the admins' receivers file (`modelledger run --notification-receivers`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    type: ReceiverType
    url_file: Annotated[str, Field(alias="urlFile", min_length=1)]
    """A file holding the URL (a mounted Secret key), read at each attempt, so rotation needs no restart."""
    triggers: frozenset[Trigger] = DEFAULT_TRIGGERS
    routing: Routing = Routing.DEFAULT
    namespaces: tuple[str, ...] = ()
    """Globs of the namespaces whose deployments may use it; empty: every namespace."""
    timeout: Annotated[float, Field(gt=0, le=60)] = 5.0
    """Seconds per POST, connection included."""
    retry_budget: Annotated[float, Field(alias="retryBudget", ge=0, le=86400)] = 300.0
    """Seconds from the decision during which failed attempts are retried; then the message is lost."""
    max_backoff: Annotated[float, Field(alias="maxBackoff", gt=0, le=3600)] = 30.0
    """The longest wait between two attempts (the waits double from one second up to this)."""

    @field_validator("triggers", mode="before")
    @classmethod
    def _triggers(cls, value: Any) -> Any:
        if isinstance(value, list | tuple) and not value:
            raise ValueError("at least one trigger (or leave it out for the default)")
        return value

    def serves(self, namespace: str) -> bool:
        return not self.namespaces or any(fnmatch.fnmatchcase(namespace, glob) for glob in self.namespaces)


def check_unique(receivers: Sequence[Receiver]) -> None:
    names = [r.name for r in receivers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"receiver names must be unique: {', '.join(duplicates)}")
    if NONE in names:
        raise ValueError(f"`{NONE}` cannot name a receiver: the annotation uses it to opt out")


# --- routing -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """The receivers one deployment's notices go to, and the annotation's names that were ignored."""

    receivers: tuple[Receiver, ...]
    ignored: tuple[str, ...] = ()  # unknown, or not allowed in the deployment's namespace

    def for_trigger(self, trigger: Trigger) -> tuple[Receiver, ...]:
        return tuple(r for r in self.receivers if trigger in r.triggers)


def requested(annotation: str | None) -> tuple[str, ...] | None:
    """The receiver names the annotation asks for (in order, once each); None without the annotation."""
    if annotation is None:
        return None
    names = [part.strip() for part in annotation.split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def route(receivers: Sequence[Receiver], namespace: str, annotation: str | None) -> Route:
    """Apply the deployment's `modelledger.io/notify` annotation to the admins' receivers.

    Absent: the `default` and `always` receivers. `none`: the `always` ones only. A list of names: those
    (of any routing) plus the `always` ones. A name the admins did not define, or defined for other
    namespaces, is ignored and reported; a tenant can only pick among the admins' receivers.
    """
    allowed = [r for r in receivers if r.serves(namespace)]
    chosen = {r.name for r in allowed if r.routing is Routing.ALWAYS}
    names = requested(annotation)
    ignored: list[str] = []
    if names is None:
        chosen |= {r.name for r in allowed if r.routing is Routing.DEFAULT}
    elif names != (NONE,):
        by_name = {r.name for r in allowed}
        for name in names:
            if name in by_name:
                chosen.add(name)
            else:
                ignored.append(name)
    return Route(tuple(r for r in allowed if r.name in chosen), tuple(ignored))


# --- notices -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notice:
    """What a receiver is told about one decision."""

    trigger: Trigger
    reason: str  # the Event reason (docs/events.md)
    namespace: str
    deployment: str
    uid: str
    at: datetime
    message: str  # the Event's message
    actor: str
    warning: bool = True
    cause: str | None = None  # the history entry's cause, for a decision that changed what serves
    revision: int | None = None
    from_version: str | None = None  # served before a rollback or revocation
    to_version: str | None = None  # served after it
    serving_version: str | None = None
    desired_version: str | None = None
    rule: str | None = None
    query: str | None = None  # the PromQL as it ran
    value: float | None = None
    comparator: str | None = None
    threshold: float | None = None
    request: str | None = None  # the ModelDeploymentRequest a person's decision came from
    approvers: tuple[str, ...] = ()
    breached: tuple[RuleStatus, ...] = ()  # Degraded: the rules that wanted a rollback
    commands: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        """Stable across retries and restarts: receivers can drop a duplicate delivery."""
        parts = (self.uid, self.reason, self.revision, self.at.isoformat(), self.namespace, self.deployment)
        key = "/".join(str(part) for part in parts)
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def trigger_of(decision: Decision) -> Trigger | None:
    if decision.reason == "PipelineMismatch" and decision.request is not None:
        return None  # a refused request, not a hold
    return REASON_TRIGGERS.get(decision.reason)


def _before(history: Sequence[HistoryEntry], revision: int) -> HistoryEntry | None:
    """The entry that served before `revision` (the history is newest first)."""
    older = [e for e in history if e.revision < revision]
    return max(older, key=lambda e: e.revision) if older else None


def inspect_commands(namespace: str, name: str, trigger: Trigger) -> tuple[str, ...]:
    commands = [
        f"modelledger status {name} -n {namespace}",
        f"modelledger history {name} -n {namespace}",
        f"kubectl describe modeldeployment {name} -n {namespace}",
        f"kubectl get events -n {namespace} --field-selector "
        f"involvedObject.kind=ModelDeployment,involvedObject.name={name}",
    ]
    if trigger in (Trigger.HISTORY_TAMPERED, Trigger.FAILED):
        commands.append(f"modelledger audit verify {name} -n {namespace}")
    return tuple(commands)


def notices(
    namespace: str,
    name: str,
    uid: str,
    decisions: Iterable[Decision],
    history: Sequence[HistoryEntry],
    *,
    at: datetime,
    serving_before: str | None,
    serving: str | None,
    desired: str | None,
    rules: Sequence[RuleStatus] = (),
) -> list[Notice]:
    """The notices of one recorded plan: one per decision that maps onto a trigger.

    `history` is the status as written (newest first), `serving_before` what served before the plan.
    """
    found: list[Notice] = []
    for decision in decisions:
        trigger = trigger_of(decision)
        if trigger is None:
            continue
        entry = (
            next((e for e in history if e.revision == decision.revision), None) if decision.cause else None
        )
        before = _before(history, entry.revision) if entry is not None else None
        evidence = decision.evidence or (entry.evidence if entry is not None else None)
        found.append(
            Notice(
                trigger=trigger,
                reason=decision.reason,
                namespace=namespace,
                deployment=name,
                uid=uid,
                at=entry.at if entry is not None else at,
                message=decision.message,
                actor=entry.actor if entry is not None else decision.actor,
                warning=decision.warning,
                cause=decision.cause.value if decision.cause else None,
                revision=decision.revision,
                from_version=(before.version if before else serving_before) if entry is not None else None,
                to_version=entry.version if entry is not None else None,
                serving_version=serving,
                desired_version=desired,
                rule=decision.rule or (entry.rule if entry is not None else None),
                query=evidence.query if evidence else None,
                value=evidence.value if evidence else None,
                comparator=evidence.comparator.value if evidence else None,
                threshold=evidence.threshold if evidence else None,
                request=decision.request,
                approvers=tuple(entry.approvers) if entry is not None else (),
                breached=tuple(r for r in rules if r.state.value == "Breached")
                if trigger is Trigger.DEGRADED
                else (),
                commands=inspect_commands(namespace, name, trigger),
            )
        )
    return found


# --- payloads ----------------------------------------------------------------------------------------


def webhook_payload(notice: Notice) -> dict[str, Any]:
    """The generic JSON body (docs/notifications.md): absent facts are left out, never null."""
    versions = {
        "from": notice.from_version,
        "to": notice.to_version,
        "serving": notice.serving_version,
        "desired": notice.desired_version,
    }
    evidence = (
        {
            "query": notice.query,
            "value": notice.value,
            "comparator": notice.comparator,
            "threshold": notice.threshold,
        }
        if notice.query is not None
        else None
    )
    body: dict[str, Any] = {
        "schema": SCHEMA,
        "id": notice.id,
        "trigger": notice.trigger.value,
        "reason": notice.reason,
        "severity": "warning" if notice.warning else "info",
        "at": notice.at.isoformat(),
        "deployment": {"namespace": notice.namespace, "name": notice.deployment, "uid": notice.uid},
        "cause": notice.cause,
        "revision": notice.revision,
        "versions": {k: v for k, v in versions.items() if v is not None},
        "rule": notice.rule,
        "evidence": evidence,
        "breachedRules": [{"name": r.name, "value": r.value, "since": _iso(r.since)} for r in notice.breached]
        or None,
        "actor": notice.actor,
        "request": notice.request,
        "approvers": list(notice.approvers) or None,
        "message": notice.message,
        "commands": list(notice.commands),
    }
    return {k: v for k, v in body.items() if v is not None}


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at else None


_SLACK_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def slack_escape(text: str) -> str:
    """Slack's three control characters: a tenant's text cannot make links or `<!channel>` mentions."""
    return re.sub(r"[&<>]", lambda m: _SLACK_ESCAPES[m.group(0)], text)


def _code(text: str) -> str:
    return "```" + slack_escape(text.replace("```", "'''")) + "```"


def headline(notice: Notice) -> str:
    where = f"{notice.namespace}/{notice.deployment}"
    if notice.from_version and notice.to_version:
        what = f"{notice.reason}: {where} {notice.from_version} -> {notice.to_version}"
    else:
        what = f"{notice.reason}: {where}"
    return what + (f" (revision {notice.revision})" if notice.revision is not None else "")


def slack_payload(notice: Notice) -> dict[str, Any]:
    """A Slack incoming-webhook body: `text` (shown by every Slack-compatible server and in alerts) with
    every fact, and blocks for Slack itself."""
    facts: list[tuple[str, str]] = [("Deployment", f"{notice.namespace}/{notice.deployment}")]
    if notice.from_version or notice.to_version:
        facts.append(("Versions", f"{notice.from_version or '?'} -> {notice.to_version or '?'}"))
    elif notice.serving_version or notice.desired_version:
        facts.append(
            (
                "Versions",
                f"serving {notice.serving_version or 'nothing'}, desired {notice.desired_version or '?'}",
            )
        )
    if notice.rule:
        facts.append(("Rule", notice.rule))
    if notice.query is not None:
        facts.append(("Value", f"{notice.value} {notice.comparator} {notice.threshold} (threshold)"))
    for rule in notice.breached:
        facts.append(("Breached", f"{rule.name} = {rule.value}"))
    facts.append(
        (
            "Actor",
            notice.actor + (f" (approved by {', '.join(notice.approvers)})" if notice.approvers else ""),
        )
    )
    facts.append(("At", notice.at.isoformat()))
    title = headline(notice)
    lines = [f"{k}: {v}" for k, v in facts]
    if notice.query is not None:
        lines.append(f"Query: {notice.query}")
    lines.append(notice.message)
    lines += [f"$ {c}" for c in notice.commands]
    text = slack_escape(title + "\n" + "\n".join(lines))[:SLACK_TEXT_LIMIT]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{slack_escape(v)}"[:2000]} for k, v in facts[:10]],
        },
    ]
    if notice.query is not None:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": ("*Query*\n" + _code(notice.query))[:SLACK_TEXT_LIMIT]},
            }
        )
    blocks.append(
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": slack_escape(notice.message)[:SLACK_TEXT_LIMIT]},
        }
    )
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": _code("\n".join(notice.commands))[:SLACK_TEXT_LIMIT]}],
        }
    )
    return {"text": text, "blocks": blocks}


def payload(receiver: Receiver, notice: Notice) -> dict[str, Any]:
    if receiver.type is ReceiverType.SLACK:
        return slack_payload(notice)
    return webhook_payload(notice)


# --- delivery timing ---------------------------------------------------------------------------------

FIRST_BACKOFF = 1.0


def backoff(attempt: int, cap: float, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (0-based): 1, 2, 4, ... up to `cap`, each
    scaled by 0.5 to 1 (`jitter` in [0, 1)), so receivers back from an outage are not hit in step."""
    base = min(cap, FIRST_BACKOFF * float(2 ** min(attempt, 30)))
    return base * (0.5 + 0.5 * min(max(jitter, 0.0), 1.0))


RETRYABLE_STATUSES = frozenset({408, 425, 429})


def retryable(status: int) -> bool:
    """An answer worth another attempt: the receiver is busy or down, not refusing this message."""
    return status in RETRYABLE_STATUSES or status >= 500
