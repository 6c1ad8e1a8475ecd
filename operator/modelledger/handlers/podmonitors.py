"""A ModelDeployment's PodMonitor, from its deployment loop: made when both opt-ins say so.

`modelledger run --pod-monitors` turns the feature on for the operator; the annotation
`modelledger.io/pod-monitor: "true"` on a ModelDeployment asks for its PodMonitor (core/podmonitor.py
builds it, adapters/podmonitors.py applies it). Withdrawing the annotation deletes the PodMonitor the
operator made; deleting the ModelDeployment deletes it through its owner reference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelledger.core import podmonitor
from modelledger.core.workload import Owner
from modelledger.handlers.context import OperatorConfig


async def ensure_pod_monitor(
    namespace: str, name: str, meta: Mapping[str, Any], config: OperatorConfig
) -> bool | None:
    """Apply or remove the deployment's PodMonitor as its annotations say; None when the feature is off.

    True: the PodMonitor is in place; False: wanted but not made (no PodMonitor API, or no RBAC: logged
    once), or not wanted. Cheap when nothing changed: no API call (see `PodMonitors`).
    """
    monitors = config.pod_monitors
    if not monitors.enabled:
        return None
    uid = str(meta.get("uid") or "")
    if not podmonitor.opted_in(meta.get("annotations")):
        await monitors.remove(namespace, name, uid)
        return False
    return await monitors.ensure(podmonitor.manifest(Owner(name, namespace, uid)))
