"""Notifications in the operator: the senders start and stop with it, each recorded plan hands its
notices to them (`decided`, called where the audit records are written: leader only, after the status
write), and a deployment whose `modelledger.io/notify` annotation names receivers the admins did not
define (for its namespace) gets a Warning Event naming them, once per annotation value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import kopf
import structlog

from modelledger.adapters import kube, kube_async
from modelledger.api.common import API_VERSION, GROUP, VERSION
from modelledger.core import notifications
from modelledger.core.decision import Plan
from modelledger.handlers.context import now
from modelledger.handlers.rules import METRICS

if TYPE_CHECKING:
    from modelledger.adapters.notifier import Notifier
    from modelledger.handlers.context import OperatorConfig

log = structlog.get_logger("modelledger.notifications")
IGNORED_REASON = "NotificationReceiversIgnored"


def _notifier(memo: Mapping[str, Any]) -> Notifier | None:
    config: OperatorConfig | None = memo.get("config")
    return config.notifier if config is not None else None


@kopf.on.startup()
async def start_notifier(memo: kopf.Memo, **_: Any) -> None:
    if (notifier := _notifier(memo)) is not None:
        notifier.start(METRICS)


@kopf.on.cleanup()
async def stop_notifier(memo: kopf.Memo, **_: Any) -> None:
    if (notifier := _notifier(memo)) is not None:
        await notifier.stop()


def _annotation(meta: Mapping[str, Any]) -> str | None:
    value = (meta.get("annotations") or {}).get(notifications.ANNOTATION)
    return None if value is None else str(value)


def decided(
    namespace: str,
    name: str,
    raw: Mapping[str, Any],
    old_status: Mapping[str, Any],
    plan: Plan,
    config: OperatorConfig,
) -> None:
    """Queue the notices of a plan whose status and audit records were just written. Never waits."""
    notifier = config.notifier
    if notifier is None or not notifier.receivers or not plan.decisions:
        return
    meta = raw.get("metadata") or {}
    st = plan.status
    found = notifications.notices(
        namespace,
        name,
        str(meta.get("uid", "")),
        plan.decisions,
        st.history,
        at=now(),
        serving_before=old_status.get("servingVersion"),
        serving=st.serving_version,
        desired=st.desired_version,
        rules=st.rules,
    )
    if not found:
        return
    route = notifications.route(notifier.receivers, namespace, _annotation(meta))
    if route.ignored:
        log.warning(
            "notification receivers ignored",
            namespace=namespace,
            deployment=name,
            ignored=list(route.ignored),
        )
    for notice in found:
        for receiver in route.for_trigger(notice.trigger):
            notifier.submit(receiver, notice)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def routing_checked(
    namespace: str, name: str, body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any
) -> None:
    """Say once (per annotation value) when a deployment routes its notices to receivers that do not
    exist for it; the leader says it, so a standby does not repeat it."""
    config: OperatorConfig | None = memo.get("config")
    notifier = config.notifier if config is not None else None
    if config is None or notifier is None:
        return
    key = (namespace, name)
    annotation = _annotation(body.metadata)
    if event.get("type") == "DELETED" or annotation is None:
        notifier.warned.pop(key, None)
        return
    if notifier.warned.get(key) == annotation or not config.gate.leading():
        return
    ignored = notifications.route(notifier.receivers, namespace, annotation).ignored
    if not ignored:
        notifier.warned.pop(key, None)
        return
    notifier.warned[key] = annotation
    message = (
        f"{notifications.ANNOTATION} names receivers that are not defined for namespace {namespace}: "
        f"{', '.join(ignored)}; they are ignored (receivers are defined by the operator's admins, "
        "docs/notifications.md)"
    )
    log.warning("notification receivers ignored", namespace=namespace, deployment=name, ignored=list(ignored))
    ref = kube.ObjectRef(API_VERSION, "ModelDeployment", namespace, name, str(body.metadata.get("uid", "")))
    try:
        await kube_async.client().post_event(ref, IGNORED_REASON, message, warning=True)
    except kube.ApiException as error:
        log.warning("event not posted", reason=IGNORED_REASON, error=str(error))
