"""ModelDeployment handlers: passes that gather, decide (core) and apply (adapters), run by a pool of
workers from one work queue (handlers/workers.py).

Every entry point funnels into `reconcile_once`: a watch event queues the deployment's key (its spec or
status, its Deployment, a ModelVersion, a request), and each pass schedules the next one for when its
rules or bake time are due. The queue gives a key to one worker at a time, so no two decisions race on
one object.

Only the leader decides (`config.gate`, handlers/leadership.py): a standby's workers wait for the lease
while its indices and queue stay warm, and a pass that loses the lease midway writes nothing more. Each
pass reports its progress for liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import kopf
import structlog
from pydantic import ValidationError

from modelledger.adapters import audit, kube, kube_async
from modelledger.api import ModelDeploymentSpec, ModelDeploymentStatus, ModelVersion, RevisionCause
from modelledger.api.common import API_VERSION, GROUP, VERSION
from modelledger.api.duration import parse_duration
from modelledger.core import actors, history, pacing, trust
from modelledger.core.bodies import slim
from modelledger.core.decision import Decision, Plan, Situation
from modelledger.core.health import stall_bound
from modelledger.core.reconcile import reconcile, reject_spec
from modelledger.core.workload import ANNOTATION_HASH, MANAGED_BY, Owner, WorkloadState, manifests
from modelledger.handlers import audit_sink, lineage, notifications
from modelledger.handlers import requests as request_handlers
from modelledger.handlers import rules as rule_loop
from modelledger.handlers.bookkeeping import Lane
from modelledger.handlers.context import OperatorConfig, now
from modelledger.handlers.engine import RuleEngine
from modelledger.handlers.podmonitors import ensure_pod_monitor
from modelledger.handlers.startup import FINALIZER

log = structlog.get_logger("modelledger.deployments")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
RETRY_AFTER_CONFLICT = 0.0  # after a 409 the body is re-read: decide again at once


# --- indices: in-memory views Kopf keeps current from its watches ---------------------------------


@kopf.index(GROUP, VERSION, "modelversions")
def version_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
    return {(namespace, name): slim(body)}


@kopf.index("apps", "v1", "deployments", labels=MANAGED)
def workload_bodies(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], Any]:
    """Only what the decisions read (not managedFields or the pod spec): a thousand of them stay small."""
    template = body.get("spec", {}).get("template", {}).get("metadata", {})
    slim = {
        "metadata": {
            "generation": body.metadata.get("generation", 0),
            "annotations": {ANNOTATION_HASH: body.metadata.annotations.get(ANNOTATION_HASH, "")},
        },
        "spec": {
            "replicas": body.get("spec", {}).get("replicas", 1),
            "template": {"metadata": {"labels": dict(template.get("labels") or {})}},
        },
        "status": dict(body.get("status") or {}),
    }
    return {(namespace, name): slim}


@kopf.index("", "v1", "services", labels=MANAGED)
def service_hashes(namespace: str, name: str, meta: kopf.Meta, **_: Any) -> dict[tuple[str, str], str]:
    return {(namespace, name): meta.get("annotations", {}).get(ANNOTATION_HASH, "")}


def _one(index: kopf.Index[Any, Any], key: Any) -> Any:
    store = index.get(key)
    return next(iter(store), None) if store else None


# --- watch events queue passes (async: they run on the event loop, with the queue) --------------------


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def deployment_changed(
    namespace: str, name: str, body: kopf.Body, event: kopf.RawEvent, memo: kopf.Memo, **_: Any
) -> None:
    config: OperatorConfig | None = memo.get("config")
    if config is None:
        return  # not `modelledger run`
    key = (namespace, name)
    if event.get("type") == "DELETED":
        config.work.deleted(key)
        passes = memo.get("passes")
        if isinstance(passes, Passes):
            passes.forget(key)
        return
    config.work.observed(key, body)
    if FINALIZER in (body.metadata.get("finalizers") or []):
        await _drop_legacy_finalizer(namespace, name, body)


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
async def workload_changed(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    if (config := memo.get("config")) is not None:
        config.work.wake(namespace, name)  # the workload has its ModelDeployment's name


@kopf.index(GROUP, VERSION, "modeldeployments")
def version_wanted(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], str]:
    """(namespace, version) → the deployment whose spec asks for it."""
    version = spec.get("version")
    return {(namespace, version): name} if isinstance(version, str) else {}


@kopf.on.event(GROUP, VERSION, "modelversions")
async def version_changed(
    type: str,
    namespace: str,
    name: str,
    meta: kopf.Meta,
    version_users: kopf.Index[Any, Any],
    version_wanted: kopf.Index[Any, Any],
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """A version created, changed or deleted: a pass for the deployments that ask for it or whose history
    names it. Not for a change of its status or finalizers, which our own bookkeeping makes and no
    decision reads: ten thousand of those at a first start would each wake a whole namespace."""
    if (config := memo.get("config")) is None:
        return
    generations: dict[tuple[str, str], Any] = memo.setdefault("version_generations", {})
    key = (namespace, name)
    if type == "DELETED":
        generations.pop(key, None)
    elif generations.get(key) == (seen := meta.get("generation")):
        return
    else:
        generations[key] = seen
    for user in sorted(set(version_users.get(key, [])) | set(version_wanted.get(key, []))):
        config.work.wake(namespace, user)


async def _drop_legacy_finalizer(namespace: str, name: str, body: kopf.Body) -> None:
    """Operators before the work queue ran a Kopf daemon per ModelDeployment, which put a finalizer on
    it; nothing needs it now, and left alone it would keep a deleted ModelDeployment forever."""
    try:
        await kube_async.client().drop_finalizer(kube.DEPLOYMENTS, namespace, name, FINALIZER, body.metadata)
        log.info("legacy finalizer removed", namespace=namespace, deployment=name)
    except (kube.ApiException, kube.Conflict) as error:  # the next watch event tries again
        log.warning("legacy finalizer not removed", namespace=namespace, deployment=name, error=str(error))


# --- the passes --------------------------------------------------------------------------------------


class Passes:
    """What the workers run for a deployment key: one pass (`reconcile_once`), with the per-deployment
    rule state and the progress that liveness watches."""

    def __init__(self, config: OperatorConfig, indices: Indices) -> None:
        self.config = config
        self.indices = indices
        self.engine = RuleEngine(
            config,
            wake=lambda key, urgent: config.work.wake(*key, urgent=urgent),
            leading=config.gate.leading,
        )

    def forget(self, key: tuple[str, str]) -> None:
        self.engine.forget(key)
        self.config.progress.forget(key)
        rule_loop.METRICS.forget_deployment(*key)

    async def run(self, key: tuple[str, str], body: Mapping[str, Any]) -> float | None:
        namespace, name = key
        config = self.config
        bound = stall_bound(_interval(body), config.stall_floor)
        config.progress.begin(key, time.monotonic(), bound)
        with timed("pass"):
            delay = await reconcile_once(namespace, name, body, config, self.engine, self.indices)
        config.progress.end(key, time.monotonic(), delay, bound)
        rule_loop.METRICS.record_pass(time.time())
        return delay


@kopf.on.startup()
async def start_workers(
    memo: kopf.Memo,
    version_bodies: kopf.Index[Any, Any],
    workload_bodies: kopf.Index[Any, Any],
    service_hashes: kopf.Index[Any, Any],
    request_bodies: kopf.Index[Any, Any],
    **_: Any,
) -> None:
    """Start the worker pool (`--workers`); the first watch events queue every deployment."""
    if "config" not in memo:
        return  # not `modelledger run`
    config: OperatorConfig = memo["config"]
    passes = Passes(config, Indices(version_bodies, workload_bodies, service_hashes, request_bodies))
    memo["passes"] = passes
    config.work.start(passes.run, config.gate, config.workers, rule_loop.METRICS)
    config.bookkeeping.behind = lambda: len(config.work.queue) > 0  # decisions first
    config.bookkeeping.start()
    rule_loop.METRICS.bookkeeping_pending.set_function(lambda: float(config.bookkeeping.pending()))


@kopf.on.cleanup()
async def stop_workers(memo: kopf.Memo, **_: Any) -> None:
    if (config := memo.get("config")) is not None:
        await config.work.stop()
        await config.bookkeeping.stop()
        await kube_async.close()
    if isinstance(passes := memo.get("passes"), Passes):
        await passes.engine.stop()


@contextlib.contextmanager
def timed(phase: str) -> Iterator[None]:
    """Observe the block's duration in modelledger_phase_seconds{phase}."""
    start = time.perf_counter()
    try:
        yield
    finally:
        rule_loop.METRICS.observe_phase(phase, time.perf_counter() - start)


def _interval(body: Mapping[str, Any]) -> float:
    """spec.rollback.interval in seconds (the default when unset or unreadable): sizes the stall bound."""
    try:
        text = (body.get("spec") or {}).get("rollback", {}).get("interval")
        return parse_duration(str(text)).total_seconds() if text else 15.0
    except (ValueError, AttributeError):
        return 15.0


def _versions(namespace: str, names: set[str], index: kopf.Index[Any, Any]) -> dict[str, ModelVersion]:
    found: dict[str, ModelVersion] = {}
    for version_name in names:
        raw = _one(index, (namespace, version_name))
        if raw is None:
            continue
        try:
            found[version_name] = ModelVersion.model_validate(raw)
        except ValidationError as error:
            log.error(
                "invalid ModelVersion ignored", namespace=namespace, version=version_name, error=str(error)
            )
    return found


def _our_status(raw: Mapping[str, Any]) -> dict[str, Any]:
    fields = {field.alias or key for key, field in ModelDeploymentStatus.model_fields.items()}
    return {key: value for key, value in raw.items() if key in fields}


@dataclass(frozen=True)
class Indices:
    """Kopf's in-memory views a decision reads (no API call on the way to a decision)."""

    versions: kopf.Index[Any, Any]
    workloads: kopf.Index[Any, Any]
    services: kopf.Index[Any, Any]
    requests: kopf.Index[Any, Any]


async def reconcile_once(
    namespace: str,
    name: str,
    body: kopf.Body,
    config: OperatorConfig,
    engine: RuleEngine,
    indices: Indices,
) -> float:
    """Decide and apply once; returns how long to wait before the next unprompted run."""
    await _stall_point(name)
    raw = dict(body)  # a snapshot: the live body changes under us as watch events arrive
    meta = raw.get("metadata", {})
    old_status = _our_status(raw.get("status") or {})
    at = now()
    try:
        status = ModelDeploymentStatus.model_validate(old_status)
    except ValidationError as error:
        # Never overwrite a recorded history we cannot read: report and wait for a person.
        log.error(
            "status unreadable; nothing changed", namespace=namespace, deployment=name, error=str(error)
        )
        return 60.0
    try:
        spec = ModelDeploymentSpec.model_validate(raw.get("spec") or {})
    except ValidationError as error:
        plan = reject_spec(status, error, at, meta.get("generation", 0))
        if await _write_and_report(namespace, name, raw, old_status, plan, config):
            post_events(_ref(namespace, name, raw), plan, config.bookkeeping)
        return 60.0

    subject = trust.Subject(namespace, name, str(meta.get("uid", "")))
    check = trust.check_status(status, config.keyring, subject, limit=spec.revision_history_limit)
    sink = audit_sink.before_decision(namespace, name, status.history, check.ok, config, at)
    guarded = await kube.call(config.guards.guarded, namespace)
    referenced = {spec.version} | {entry.version for entry in status.history}
    versions = _versions(namespace, referenced, indices.versions)
    workload_raw = _one(indices.workloads, (namespace, name))
    workload = WorkloadState.from_deployment(workload_raw) if workload_raw else None
    request_raw = config.answered.undecided(namespace, name, indices.requests.get((namespace, name), []))
    with timed("evaluation"):
        evaluation = (
            engine.sync((namespace, name), str(meta.get("uid", "")), spec, status, versions)
            if check.ok
            else None
        )
    gitops = await lineage.for_deploy(
        namespace, name, meta, spec, status, config.argocd, requests=bool(request_raw)
    )
    situation = Situation(
        namespace=namespace,
        name=name,
        generation=meta.get("generation", 0),
        spec=spec,
        status=status,
        versions=versions,
        workload=workload,
        now=at,
        spec_actor=actors.version_setter(meta.get("annotations"), spec.version, guarded),
        rules=evaluation.statuses if evaluation else None,
        query_errors=evaluation.query_errors if evaluation else None,
        queries=evaluation.queries if evaluation else None,
        requests=request_handlers.parse(request_raw.values(), guarded),
        trust=check,
        signing=config.signing_key is not None,
        adopt_unsigned=config.adopt_unsigned,
        audit_sink=sink,
        lineage=gitops,
    )
    plan = reconcile(situation)
    if plan.hold == "SigningKeyUnavailable":
        # Writing would break the seal this operator cannot renew: say so in the log, change nothing.
        log.error("signed history, but no signing key: nothing changed", namespace=namespace, deployment=name)
        return 60.0
    if plan.sealable and config.signing_key is not None:
        plan.status = trust.sign(plan.status, status, config.signing_key, subject, adopt=plan.adopted)
    if not await _write_and_report(namespace, name, raw, old_status, plan, config):
        return RETRY_AFTER_CONFLICT
    _crash_point("after-status-write", plan)
    if not config.gate.leading():
        # The lease ran out during the write: the decision is recorded; the next leader applies it.
        log.warning("leadership lost after the status write", namespace=namespace, deployment=name)
        return RETRY_AFTER_CONFLICT
    await request_handlers.answer(namespace, name, request_raw, plan.outcomes, at, config.answered)
    # The decision is recorded: its Events go on the bookkeeping lane now, so a workload apply that
    # fails (a quota, a full service IP range) retries the apply without losing them.
    post_events(_ref(namespace, name, raw), plan, config.bookkeeping)
    if plan.hold is None:
        with timed("workload_apply"):
            await _apply_workload(
                namespace,
                name,
                meta.get("uid", ""),
                spec,
                plan,
                versions,
                workload_raw,
                _one(indices.services, (namespace, name)),
            )
        await ensure_pod_monitor(namespace, name, meta, config)
    _crash_point("after-workload-patch", plan)
    return pacing.next_pass(situation, plan).total_seconds()  # watch events and rule changes wake us sooner


async def _write_and_report(
    namespace: str,
    name: str,
    raw: dict[str, Any],
    old_status: dict[str, Any],
    plan: Plan,
    config: OperatorConfig,
) -> bool:
    """Write the plan's status (if it changed) under the read resourceVersion, then record its decisions.

    The audit records are written here, before anything else happens; the Events follow later
    (`post_events`), off the path that applies the workload. Nothing is written unless this process
    leads at this instant.
    """
    new_status = plan.status.to_wire()
    if new_status == old_status:
        return True
    if not config.gate.leading():
        log.info("not leading: decision dropped", namespace=namespace, deployment=name)
        return False
    key = (namespace, name)
    await _conflict_point(namespace, name, plan)
    try:
        with timed("status_write"):
            written = await kube_async.client().write_status(
                kube.DEPLOYMENTS,
                namespace,
                name,
                old_status,
                new_status,
                raw["metadata"]["resourceVersion"],
            )
    except kube.Conflict:
        rule_loop.METRICS.conflicts.inc()
        log.info("status changed meanwhile; deciding again", namespace=namespace, deployment=name)
        with contextlib.suppress(kube.ApiException):  # not re-read: the watch brings the new body
            config.work.written(key, await kube_async.client().read(kube.DEPLOYMENTS, namespace, name))
        return False
    config.work.written(key, written)  # the next pass starts from this, whatever the watch has delivered
    rule_loop.record_serving(namespace, name, plan.status)
    _crash_point("after-status-write-before-audit", plan)
    for decision in plan.decisions:
        entry = history.current(plan.status.history, decision.revision) if decision.cause else None
        audit.record("ModelDeployment", namespace, name, decision, entry)  # queued if the file fails
        rule_loop.record_decision(namespace, name, decision)
    audit_sink.after_records(config)
    notifications.decided(namespace, name, raw, old_status, plan, config)  # queued: never waits
    return True


def _ref(namespace: str, name: str, raw: dict[str, Any]) -> kube.ObjectRef:
    return kube.ObjectRef(API_VERSION, "ModelDeployment", namespace, name, raw["metadata"].get("uid", ""))


def post_events(ref: kube.ObjectRef, plan: Plan, lane: Lane) -> None:
    """Post the plan's Events on the bookkeeping lane: best effort, and never in the way of a rollback."""
    for decision in plan.decisions:

        async def post(decision: Decision = decision) -> None:
            start = time.perf_counter()
            try:
                await kube_async.client().post_event(
                    ref, decision.reason, decision.message, warning=decision.warning
                )
            except kube.ApiException as error:  # the history and the audit log are the record
                log.warning("event not posted", reason=decision.reason, error=str(error))
            rule_loop.METRICS.observe_phase("event_post", time.perf_counter() - start)

        key = ("Event", ref.namespace, ref.name, ref.uid, decision.reason, decision.message)
        lane.submit(key, post, first=True)


async def _apply_workload(
    namespace: str,
    name: str,
    uid: str,
    spec: ModelDeploymentSpec,
    plan: Plan,
    versions: Mapping[str, ModelVersion],
    workload_raw: dict[str, Any] | None,
    service_hash: str | None,
) -> None:
    serving = plan.serving
    if serving is None or serving.version not in versions:
        return  # nothing to serve yet, or Failed/Degraded: the workload is left as it is
    deployment, service = manifests(
        Owner(name, namespace, uid), spec, serving.revision, versions[serving.version]
    )
    observed = ((workload_raw or {}).get("metadata", {}).get("annotations") or {}).get(ANNOTATION_HASH)
    if observed != deployment["metadata"]["annotations"][ANNOTATION_HASH]:
        await kube_async.client().apply(deployment)
        log.info(
            "workload applied",
            namespace=namespace,
            deployment=name,
            revision=serving.revision,
            version=serving.version,
        )
    if service_hash != service["metadata"]["annotations"][ANNOTATION_HASH]:
        await kube_async.client().apply(service)


async def _stall_point(name: str) -> None:
    """Test-only: MODELLEDGER_TEST_STALL=<deployment>|* hangs the pass of that loop, as a call without
    a timeout would; liveness must notice."""
    wanted = os.environ.get("MODELLEDGER_TEST_STALL", "")
    if wanted and wanted in ("*", name):
        log.warning("test stall point reached: this pass hangs", deployment=name)
        await asyncio.Event().wait()


_CONFLICTED: set[str] = set()  # test-only: the causes whose decision met a forced 409 in this process


async def _conflict_point(namespace: str, name: str, plan: Plan) -> None:
    """Test-only: MODELLEDGER_TEST_CONFLICT=<cause> changes the object just before the first status write
    of a decision with that cause, so the apiserver refuses the write with a real 409."""
    cause = os.environ.get("MODELLEDGER_TEST_CONFLICT", "")
    if not cause or cause in _CONFLICTED or RevisionCause(cause) not in {d.cause for d in plan.decisions}:
        return
    _CONFLICTED.add(cause)
    log.warning("test conflict point reached: the object changes before the write", cause=cause)
    await kube.call(kube.touch, kube.DEPLOYMENTS, namespace, name)


def _crash_point(point: str, plan: Plan) -> None:
    """Test-only: MODELLEDGER_TEST_CRASH=<point>[:<cause>] kills the operator (SIGKILL) right here."""
    wanted = os.environ.get("MODELLEDGER_TEST_CRASH", "")
    where, _, cause = wanted.partition(":")
    if not where or where != point:
        return
    causes = {d.cause for d in plan.decisions if d.cause is not None}
    if causes and (not cause or RevisionCause(cause) in causes):
        log.warning("test crash point reached", point=point, causes=sorted(c.value for c in causes))
        os.kill(os.getpid(), signal.SIGKILL)
