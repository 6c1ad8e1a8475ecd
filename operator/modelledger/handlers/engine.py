"""The rule engine: every deployment's rules evaluated together, on a grid, one query per rule group.

Each pass tells the engine what its deployment serves and which rules it has (`sync`) and reads back
the states of the last evaluation for that serving revision. The engine evaluates on a fixed grid per
interval (multiples of the interval since the epoch) at an explicit evaluation time, so `for` is
measured on data timestamps. At each tick it groups the rules by (Prometheus source, query template,
aggregate, namespace) and sends:

- one fleet query per group whose template is fleet-safe (`core/fleet.py`, proven on the parsed
  expression), split by the deployments' labels; a group never spans namespaces, on any source, so
  one tenant's query never shares a request with another's;
- otherwise each deployment's own query, coalesced per namespace and source as before
  (`adapters/batching.py`).

Rule states live here, in memory; a deployment's pass is woken (urgently) only when a rule's state
changes, and its status records a state only when it changes. At start, or when a deployment first
registers, the states recorded in its status are a hint (a Pending rule keeps its breach start, as
Prometheus restores ALERTS_FOR_STATE); a rollback still needs a fresh evaluation by this engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from modelledger.adapters.prometheus import RejectedQuery, range_points, to_sample
from modelledger.api import ModelDeploymentSpec, ModelDeploymentStatus, ModelVersion, RollbackRule, RuleState
from modelledger.api.modeldeployment import RuleStatus
from modelledger.core import fleet, history, promql
from modelledger.core.health import stall_bound
from modelledger.core.rules import (
    QueryError,
    Sample,
    backdate,
    breach_onset,
    evaluate,
    invalid,
    still_passing,
    template_values,
)
from modelledger.handlers.context import OperatorConfig
from modelledger.handlers.rules import METRICS, RANGE_STEP, Evaluation, Target, _prepare, clients_for

log = structlog.get_logger("modelledger.engine")
BREACHING = (RuleState.PENDING, RuleState.BREACHED)
FLEET_REFUSED_FOR = 600.0  # a fleet query Prometheus refused: that group goes per deployment this long
Key = tuple[str, str]


@dataclass
class Member:
    """One deployment as the engine sees it: what serves, its rules, and their current states."""

    key: Key
    uid: str
    spec: ModelDeploymentSpec
    revision: int
    values: dict[str, str]
    states: dict[str, RuleStatus] = field(default_factory=dict)
    evaluation: Evaluation | None = None  # the last one, for `revision`
    prepared: dict[tuple[int, str | None], tuple[str | None, promql.Query | None]] = field(
        default_factory=dict
    )
    queries_changed: bool = True  # since `evaluation` was built: its query texts may be stale
    """Per (rule index, enforced namespace): why it cannot run, or its parsed query; kept until the spec
    or the placeholder values change, so a tick parses nothing it parsed before."""

    def prepare(
        self, index: int, rule: RollbackRule, enforce: str | None
    ) -> tuple[str | None, promql.Query | None]:
        found = self.prepared.get((index, enforce))
        if found is None:
            queries: dict[str, promql.Query] = {}
            problem = _prepare(rule, index, self.values, enforce, queries)
            found = self.prepared[(index, enforce)] = (problem, queries.get(rule.name))
        return found

    @property
    def interval(self) -> float:
        return self.spec.rollback.interval.total_seconds()


@dataclass(slots=True)
class _Asked:
    """One rule of one member in a tick, and what it got."""

    member: Member
    index: int
    rule: RollbackRule
    target: Target | None = None  # resolved once per member and tick
    query: promql.Query | None = None
    problem: str | None = None
    sample: Sample | None = None


@dataclass
class _Sent:
    """Queries one tick asked for (per-deployment ones before the batcher coalesces them)."""

    requests: int = 0


class RuleEngine:
    def __init__(
        self, config: OperatorConfig, wake: Callable[[Key, bool], None], leading: Callable[[], bool]
    ) -> None:
        self.clients = clients_for(config)
        self.progress = config.progress
        self.stall_floor = config.stall_floor
        self.wake = wake
        self.leading = leading
        self.members: dict[Key, Member] = {}
        self._tickers: dict[float, asyncio.Task[None]] = {}
        self._refused: dict[tuple[int, str], float] = {}  # (source, template) -> until (monotonic)
        self.queries_sent = 0  # fleet and per-deployment requests, for the benchmark
        self._backdating: set[asyncio.Future[None]] = set()

    # --- what passes call ---------------------------------------------------------------------------

    def sync(
        self,
        key: Key,
        uid: str,
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        versions: Mapping[str, ModelVersion],
    ) -> Evaluation | None:
        """Register the deployment as it is now; its last evaluation for what serves, if there is one."""
        METRICS.keep_rules(key[0], key[1], [rule.name for rule in spec.rollback.rules])
        serving = history.current(status.history, status.current_revision)
        if not spec.rollback.rules or serving is None:
            self.forget(key)
            return None
        values = template_values(
            key[0], key[1], spec.model_name, serving.version, versions.get(serving.version)
        )
        member = self.members.get(key)
        if member is None or member.uid != uid or member.revision != serving.revision:
            hint = {s.name: s for s in status.rules} if member is None or member.uid == uid else {}
            member = Member(key, uid, spec, serving.revision, values, states=hint)
            self.members[key] = member
        else:
            if member.spec != spec or member.values != values:
                member.prepared.clear()
                member.queries_changed = True
            member.spec, member.values = spec, values
        self._ticker(member.interval)
        return member.evaluation

    def forget(self, key: Key) -> None:
        self.members.pop(key, None)

    async def stop(self) -> None:
        tasks = list(self._tickers.values())
        self._tickers.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- the grid --------------------------------------------------------------------------------------

    def _ticker(self, interval: float) -> None:
        if interval not in self._tickers:
            self._tickers[interval] = asyncio.create_task(
                self._tick_every(interval), name=f"rules {interval}s"
            )

    async def _tick_every(self, interval: float) -> None:
        """Tick on the grid while members have this interval. Each tick is progress that liveness
        watches: a tick stuck (or a grid that stopped) for stall_bound(interval) fails /healthz."""
        progress_key = f"rule engine, interval {interval:g}s"
        bound = stall_bound(interval, self.stall_floor)
        while True:
            at = math.floor(time.time() / interval + 1) * interval  # the next grid point
            self.progress.end(progress_key, time.monotonic(), at - time.time(), bound)
            await asyncio.sleep(max(0.0, at - time.time()))
            members = [m for m in self.members.values() if m.interval == interval]
            if not members:
                self._tickers.pop(interval, None)
                self.progress.forget(progress_key)
                return
            if not self.leading():
                continue
            self.progress.begin(progress_key, time.monotonic(), bound)
            await _stall_point()
            try:
                sent = await self.tick(members, datetime.fromtimestamp(at, UTC))
                METRICS.record_tick(interval, sent, sum(len(m.spec.rollback.rules) for m in members))
            except Exception:  # one bad tick must not end the grid
                log.exception("rule evaluation tick failed", interval=interval)
            METRICS.record_pass(time.time())

    async def tick(self, members: list[Member], at: datetime) -> int:
        """Evaluate these members' rules at `at`: one query per group, then step every rule's state.
        Returns how many requests it sent to Prometheus."""
        per_member: list[tuple[Member, list[_Asked]]] = []
        for member in members:
            target = self.clients.resolve(member.spec.rollback.prometheus)
            mine: list[_Asked] = []
            enforce = (
                member.key[0]
                if isinstance(target, Target) and target.tenancy is promql.Tenancy.ENFORCED
                else None
            )
            for index, rule in enumerate(member.spec.rollback.rules):
                one = _Asked(member, index, rule)
                if not isinstance(target, Target):
                    one.problem = target
                else:
                    one.target = target
                    one.problem, one.query = member.prepare(index, rule, enforce)
                mine.append(one)
            per_member.append((member, mine))
        sent = _Sent()
        await self._sample([one for _member, mine in per_member for one in mine], at, sent)
        fresh: list[_Fresh] = []
        for member, mine in per_member:
            fresh += self._step(member, mine, at)
        self.queries_sent += sent.requests
        if fresh:
            task = asyncio.ensure_future(self._backdate_then_wake(fresh, at))
            self._backdating.add(task)
            task.add_done_callback(self._backdating.discard)
        return sent.requests

    async def _sample(self, asked: list[_Asked], at: datetime, sent: _Sent) -> None:
        groups: dict[tuple[int, str, str, str], list[_Asked]] = {}
        alone: list[_Asked] = []
        now = time.monotonic()
        for one in asked:
            target = one.target
            if one.problem is not None or one.query is None or target is None:
                continue
            shape = fleet.fleet_template(one.rule.query)
            refused = bool(self._refused) and self._refused.get((id(target), one.rule.query), 0.0) > now
            if isinstance(shape, str) or refused:
                alone.append(one)
                continue
            # One namespace per group, on every source: a tenant's query never shares a request with
            # another tenant's, even where the proof of fleet-safety would allow it.
            tenant = one.member.key[0]
            groups.setdefault((id(target), one.rule.query, one.rule.aggregate.value, tenant), []).append(one)
        jobs = [self._fleet(group, at, sent) for group in groups.values()]
        jobs += [self._alone(one, sent) for one in alone]
        await asyncio.gather(*jobs)

    async def _fleet(self, group: list[_Asked], at: datetime, sent: _Sent) -> None:
        first = group[0]
        target = first.target
        assert target is not None
        shape = fleet.fleet_template(first.rule.query)
        assert not isinstance(shape, str)
        keys = {shape.key(one.member.values): one for one in group}
        try:
            text = shape.query(keys)
            if target.tenancy is promql.Tenancy.ENFORCED:
                text = promql.enforce_namespace(promql.parse(text), first.member.key[0]).text
        except ValueError as error:  # cannot happen for a fleet-safe template: per deployment then
            log.error("fleet query not built", template=first.rule.query[:200], error=str(error))
            await asyncio.gather(*(self._alone(one, sent) for one in group))
            return
        sent.requests += 1
        result = await target.adapter.fetch(text, at.timestamp())
        if isinstance(result, RejectedQuery):
            self._refused[(id(target), first.rule.query)] = time.monotonic() + FLEET_REFUSED_FOR
            await asyncio.gather(*(self._alone(one, sent) for one in group))
            return
        if isinstance(result, QueryError):
            for one in group:
                one.sample = result
            return
        split = fleet.split(result, shape.labels, keys)
        for member_key, one in keys.items():
            one.sample = to_sample(split[member_key], one.rule.aggregate)
        target.adapter.count(*(one.sample for one in keys.values() if one.sample is not None))

    async def _alone(self, one: _Asked, sent: _Sent) -> None:
        assert one.target is not None
        assert one.query is not None
        sent.requests += 1
        one.sample = await one.target.batcher.query(one.query, one.rule.aggregate, one.member.key[0])

    def _step(self, member: Member, asked: list[_Asked], at: datetime) -> list[_Fresh]:
        """Step the member's rule states; wakes its pass on a change, except for fresh breaches, which
        are returned: they wake it once backdated. Only a rule newly Breached may change a decision (a
        rollback): that wake is urgent; the rest (Pending, NoData, back to Pass) are recorded by a pass
        in the normal lane, so in a storm they never hold up a rollback."""
        statuses: list[RuleStatus] = []
        errors: dict[str, str] = {}
        changed = member.evaluation is None
        urgent = False
        fresh_breaches: list[_Fresh] = []
        namespace, name = member.key
        unchanged = 0
        for one in asked:
            old = member.states.get(one.rule.name)
            if old is not None and one.problem is None and one.sample is not None:
                value = still_passing(one.rule, old, one.sample)
                if value is not None and METRICS.record_rule_value(namespace, name, old.name, value):
                    statuses.append(old)  # what `evaluate` would give, without building it
                    unchanged += 1
                    continue
            if one.problem is not None or one.sample is None:
                new = invalid(one.rule, old, one.problem or "not evaluated", at)
            else:
                new = evaluate(one.rule, old, one.sample, at)
                if isinstance(one.sample, QueryError):
                    errors[one.rule.name] = one.sample.message
                fresh = new.state is RuleState.PENDING and (old is None or old.state not in BREACHING)
                if fresh and isinstance(one.sample, float) and one.query is not None:
                    fresh_breaches.append(_Fresh(one, new))
            METRICS.record_rule(namespace, name, new)
            kept = old if old is not None and old.state is new.state else new
            changed = changed or old is None or old.state is not new.state
            urgent = urgent or (
                new.state is RuleState.BREACHED and (old is None or old.state is not new.state)
            )
            statuses.append(kept)
            member.states[one.rule.name] = kept
        last = member.evaluation
        if (
            unchanged == len(asked)
            and last is not None
            and not last.query_errors
            and not member.queries_changed
        ):
            return fresh_breaches  # every rule as the last evaluation had it: that evaluation stands
        queries = {one.rule.name: one.query.text for one in asked if one.query is not None}
        member.evaluation = Evaluation(statuses, errors, queries)
        member.queries_changed = False
        if not fresh_breaches and changed:
            self.wake(member.key, urgent)
        return fresh_breaches

    async def _backdate_then_wake(self, fresh: list[_Fresh], at: datetime) -> None:
        """A breach first seen at `at` may have begun up to an interval before: ask Prometheus when, with
        one range query per fleet group (as the instant queries), then wake the passes of the members."""
        groups: dict[tuple[int, str, str, str], list[_Fresh]] = {}
        alone: list[_Fresh] = []
        for one in fresh:
            target, rule = one.asked.target, one.asked.rule
            if target is None:
                continue
            refused = self._refused.get((id(target), rule.query), 0.0) > time.monotonic()
            if isinstance(fleet.fleet_template(rule.query), str) or refused:
                alone.append(one)
            else:
                tenant = one.asked.member.key[0]
                groups.setdefault((id(target), rule.query, rule.aggregate.value, tenant), []).append(one)
        jobs = [self._backdate_group(group, at) for group in groups.values()]
        jobs += [self._backdate_alone(one, at) for one in alone]
        await asyncio.gather(*jobs)
        for member in {id(one.asked.member): one.asked.member for one in fresh}.values():
            if member.evaluation is not None:
                statuses = [member.states.get(s.name, s) for s in member.evaluation.statuses]
                member.evaluation = Evaluation(
                    statuses, member.evaluation.query_errors, member.evaluation.queries
                )
            breached = any(
                member.states.get(one.asked.rule.name, one.status).state is RuleState.BREACHED
                for one in fresh
                if one.asked.member is member
            )
            self.wake(member.key, breached)

    async def _backdate_group(self, group: list[_Fresh], at: datetime) -> None:
        first = group[0].asked
        target = first.target
        assert target is not None
        shape = fleet.fleet_template(first.rule.query)
        assert not isinstance(shape, str)
        keys = {shape.key(one.asked.member.values): one for one in group}
        try:
            text = shape.query(keys)
            if target.tenancy is promql.Tenancy.ENFORCED:
                text = promql.enforce_namespace(promql.parse(text), first.member.key[0]).text
        except ValueError:
            await asyncio.gather(*(self._backdate_alone(one, at) for one in group))
            return
        start, end = _lookback(first.member, at)
        series = await target.adapter.fetch_range(text, start, end, RANGE_STEP)
        if isinstance(series, QueryError):
            return  # not backdated: `for` counts from this evaluation, as without a range query
        split = fleet.split(series, shape.labels, keys)
        for key, one in keys.items():
            one.onset(range_points(split[key], one.asked.rule.aggregate), at)

    async def _backdate_alone(self, one: _Fresh, at: datetime) -> None:
        asked = one.asked
        assert asked.target is not None
        assert asked.query is not None
        start, end = _lookback(asked.member, at)
        points = await asked.target.adapter.recent_values(
            asked.query.text, start, end, RANGE_STEP, asked.rule.aggregate
        )
        if not isinstance(points, QueryError):
            one.onset(points, at)


async def _stall_point() -> None:
    """Test-only: MODELLEDGER_TEST_STALL=rule-engine hangs the engine's next tick, as a call without a
    timeout would; liveness must notice."""
    if os.environ.get("MODELLEDGER_TEST_STALL", "") == "rule-engine":
        log.warning("test stall point reached: the rule engine's tick hangs")
        await asyncio.Event().wait()


@dataclass
class _Fresh:
    """A breach first seen by this tick, to be dated back to its onset in Prometheus's data."""

    asked: _Asked
    status: RuleStatus

    def onset(self, points: list[tuple[datetime, float]], at: datetime) -> None:
        rule, member = self.asked.rule, self.asked.member
        onset = breach_onset(rule, points)
        if onset is not None and member.states.get(rule.name) is self.status:
            member.states[rule.name] = backdate(rule, self.status, onset, at)


def _lookback(member: Member, at: datetime) -> tuple[datetime, datetime]:
    return at - member.spec.rollback.interval - RANGE_STEP, at + RANGE_STEP
