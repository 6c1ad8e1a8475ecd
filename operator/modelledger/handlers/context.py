"""What the handlers share: the operator's settings and the answers written to requests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from modelledger.adapters import kube
from modelledger.adapters.admission import GuardCheck
from modelledger.adapters.argocd import ArgoApplications
from modelledger.adapters.podmonitors import PodMonitors
from modelledger.core.health import DEFAULT_FLOOR, Progress
from modelledger.core.promql import Tenancy
from modelledger.core.signing import Keyring, SigningKey
from modelledger.handlers.bookkeeping import Lane
from modelledger.handlers.leadership import Gate
from modelledger.handlers.workers import Work

if TYPE_CHECKING:
    from modelledger.adapters.notifier import Notifier
    from modelledger.adapters.prometheus import PrometheusSource
    from modelledger.handlers.rules import PrometheusClients


@dataclass
class Answered:
    """Requests whose final answer this process has written, per deployment, until the index sees it.

    Kopf's index learns of an answer only when the watch event arrives; until then the request still
    looks undecided, and deciding from that stale view would answer it again from a stale
    resourceVersion. Kept only for requests the index still lists, so it stays as small as the lag.
    """

    uids: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def add(self, namespace: str, deployment: str, uid: str) -> None:
        self.uids.setdefault((namespace, deployment), set()).add(uid)

    def undecided(
        self, namespace: str, deployment: str, listed: Iterable[Mapping[str, Any]]
    ) -> dict[str, Mapping[str, Any]]:
        """The listed requests not answered yet, by name; forgets answers the index has caught up with."""
        bodies = {str(b.get("metadata", {}).get("uid", "")): b for b in listed}
        key = (namespace, deployment)
        answered = self.uids.get(key, set()) & bodies.keys()
        if answered:
            self.uids[key] = answered
        else:
            self.uids.pop(key, None)
        return {
            str(body.get("metadata", {}).get("name")): body
            for uid, body in bodies.items()
            if uid not in answered
        }


@dataclass
class OperatorConfig:
    """Settings from `modelledger run`, kept in Kopf's memo."""

    prometheus_url: str | None = None  # the default Prometheus (the source `default`), if any
    prometheus_timeout: float = 5.0
    prometheus_token: str | None = None
    prometheus_ca: str | None = None
    prometheus_token_file: str | None = None  # read at each request (rotated tokens work)
    prometheus_tenancy: Tenancy = Tenancy.SHARED  # of the default from prometheus_url
    prometheus_sources: tuple[PrometheusSource, ...] = ()  # the admins' sources (--prometheus-sources)
    allow_raw_prometheus_urls: bool = True  # honour spec.rollback.prometheus.url (without credentials)
    max_raw_prometheus_clients: int = 16  # clients kept for tenant-written URLs (least recently used go)
    prometheus_clients: PrometheusClients | None = field(default=None, repr=False, compare=False)
    """Created by the first rule loop (`handlers.rules.clients_for`): one client per source."""
    signing_key: SigningKey | None = None  # None: entries are written unsigned (said loudly at start)
    keyring: Keyring = field(default_factory=Keyring)  # every published public key, current and retired
    adopt_unsigned: bool = False  # --adopt-unsigned-history: take pre-signing histories as they are
    guards: GuardCheck = field(default_factory=lambda: GuardCheck(kube.client))  # identity guards in force?
    gate: Gate = field(default_factory=Gate)  # leads (decides and writes) now? Always, without an election
    progress: Progress = field(default_factory=Progress)  # the deployment loops' progress, for liveness
    stall_floor: float = DEFAULT_FLOOR  # a loop is stalled after max(this, 3 x its interval) without progress
    health_endpoint: str | None = None  # --liveness: /healthz there, /readyz beside it
    workers: int = 32  # --workers: deployment passes at once
    work: Work = field(default_factory=Work)  # the deployments' queue and bodies (handlers/workers.py)
    bookkeeping: Lane = field(default_factory=Lane)  # Events and usedBy, behind the decisions
    answered: Answered = field(default_factory=Answered)  # answers written, until the index sees them
    pod_monitors: PodMonitors = field(default_factory=PodMonitors)  # --pod-monitors (.enabled) and its state
    argocd: ArgoApplications = field(default_factory=ArgoApplications)  # --argocd-namespaces: lineage reads
    audit_failure: str = "block"  # --audit-failure: block (people's decisions wait) or continue
    notifier: Notifier | None = None  # --notification-receivers: the admins' receivers and their senders


def now() -> datetime:
    """The one place the operator reads the clock; the core always gets time injected."""
    return datetime.now(UTC)
