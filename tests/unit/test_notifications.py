"""Notifications, the pure part: triggers, routing, the notices of a plan, payloads and back-off."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from modelledger.api import Comparator, Evidence, HistoryEntry, RevisionCause, RuleState, RuleStatus
from modelledger.core.decision import Decision
from modelledger.core.notifications import (
    ANNOTATION,
    DEFAULT_TRIGGERS,
    Notice,
    Receiver,
    Routing,
    Trigger,
    backoff,
    check_unique,
    headline,
    notices,
    requested,
    retryable,
    route,
    slack_escape,
    slack_payload,
    trigger_of,
    webhook_payload,
)

AT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
QUERY = 'max(model_errors{namespace="ml-prod",deployment="fraud"})'


def receiver(name: str, **fields: object) -> Receiver:
    return Receiver.model_validate({"name": name, "type": "webhook", "urlFile": f"/urls/{name}", **fields})


def entry(revision: int, version: str, cause: RevisionCause, **fields: object) -> HistoryEntry:
    return HistoryEntry.model_validate(
        {
            "revision": revision,
            "version": version,
            "cause": cause.value,
            "at": AT.isoformat(),
            "actor": "alice",
            "hash": "sha256:" + "0" * 64,
            **fields,
        }
    )


EVIDENCE = Evidence(query=QUERY, value=0.12, threshold=0.05, comparator=Comparator.GT)
HISTORY = [
    entry(
        3,
        "fraud-1-3-2",
        RevisionCause.AUTOMATIC_ROLLBACK,
        actor="modelledger/rule:error-rate",
        rule="error-rate",
        evidence=EVIDENCE.model_dump(by_alias=True, mode="json"),
    ),
    entry(2, "fraud-1-4-0", RevisionCause.DEPLOY),
    entry(1, "fraud-1-3-2", RevisionCause.DEPLOY),
]
ROLLBACK = Decision(
    "RolledBack",
    "revision 3: rule error-rate breached",
    warning=True,
    actor="modelledger/rule:error-rate",
    revision=3,
    version="fraud-1-3-2",
    cause=RevisionCause.AUTOMATIC_ROLLBACK,
    evidence=EVIDENCE,
)


def rollback_notice() -> list[Notice]:
    return list(
        notices(
            "ml-prod",
            "fraud",
            "uid-1",
            [ROLLBACK, Decision("RuleStateChanged", "rule error-rate: Pending -> Breached")],
            HISTORY,
            at=AT,
            serving_before="fraud-1-4-0",
            serving="fraud-1-3-2",
            desired="fraud-1-4-0",
        )
    )


@pytest.mark.parametrize(
    ("decision", "trigger"),
    [
        (ROLLBACK, Trigger.ROLLED_BACK),
        (Decision("RolledBack", "m", cause=RevisionCause.MANUAL_ROLLBACK), Trigger.ROLLED_BACK),
        (Decision("NoStableRevision", "m"), Trigger.DEGRADED),
        (Decision("VersionRevoked", "m", cause=RevisionCause.REVOCATION), Trigger.REVOKED),
        (Decision("VersionRevoked", "m"), Trigger.REVOKED),
        (Decision("HistoryTampered", "m"), Trigger.HISTORY_TAMPERED),
        (Decision("MarkedStable", "m"), Trigger.MARKED_STABLE),
        (Decision("VersionNotFound", "m"), Trigger.FAILED),
        (Decision("InvalidSpec", "m"), Trigger.FAILED),
        (Decision("PipelineMismatch", "m"), Trigger.FAILED),
        (Decision("PipelineMismatch", "m", request="req-1"), None),  # a refused request, not a hold
        (Decision("Deployed", "m", cause=RevisionCause.DEPLOY), None),
        (Decision("RuleStateChanged", "m"), None),
        (Decision("RolloutComplete", "m"), None),
    ],
)
def test_decisions_map_onto_triggers(decision: Decision, trigger: Trigger | None) -> None:
    assert trigger_of(decision) is trigger


def test_marked_stable_is_off_by_default() -> None:
    assert Trigger.MARKED_STABLE not in DEFAULT_TRIGGERS
    assert receiver("a").triggers == DEFAULT_TRIGGERS
    assert Trigger.MARKED_STABLE in receiver("b", triggers=["MarkedStable"]).triggers


def test_a_rollback_notice_carries_the_evidence_versions_and_actor() -> None:
    [notice] = rollback_notice()
    payload = webhook_payload(notice)
    assert payload["trigger"] == "RolledBack"
    assert payload["cause"] == "AutomaticRollback"
    assert payload["deployment"] == {"namespace": "ml-prod", "name": "fraud", "uid": "uid-1"}
    assert payload["versions"] == {
        "from": "fraud-1-4-0",
        "to": "fraud-1-3-2",
        "serving": "fraud-1-3-2",
        "desired": "fraud-1-4-0",
    }
    assert payload["rule"] == "error-rate"
    assert payload["evidence"] == {"query": QUERY, "value": 0.12, "comparator": ">", "threshold": 0.05}
    assert payload["actor"] == "modelledger/rule:error-rate"
    assert payload["revision"] == 3
    assert payload["at"] == AT.isoformat()
    assert "modelledger history fraud -n ml-prod" in payload["commands"]
    assert any(c.startswith("kubectl describe modeldeployment fraud -n ml-prod") for c in payload["commands"])
    assert None not in payload.values()
    json.dumps(payload)  # serialisable as it is


def test_the_id_is_stable_and_distinguishes_decisions() -> None:
    [a] = rollback_notice()
    [b] = rollback_notice()
    assert a.id == b.id
    other = notices(
        "ml-prod", "fraud", "uid-1", [Decision("NoStableRevision", "m")], HISTORY,
        at=AT, serving_before=None, serving=None, desired=None,
    )  # fmt: skip
    assert other[0].id != a.id


def test_from_version_falls_back_to_what_served_before_when_the_predecessor_was_pruned() -> None:
    [notice] = notices(
        "ml-prod", "fraud", "uid-1", [ROLLBACK], HISTORY[:1],
        at=AT, serving_before="fraud-1-4-0", serving="fraud-1-3-2", desired="fraud-1-4-0",
    )  # fmt: skip
    assert (notice.from_version, notice.to_version) == ("fraud-1-4-0", "fraud-1-3-2")


def test_degraded_names_the_breached_rules() -> None:
    rules = [
        RuleStatus(name="error-rate", state=RuleState.BREACHED, value=0.9, since=AT),
        RuleStatus(name="latency", state=RuleState.PASS, value=0.1),
    ]
    [notice] = notices(
        "ml-prod", "fraud", "uid-1", [Decision("NoStableRevision", "nothing stable", warning=True)], HISTORY,
        at=AT, serving_before="fraud-1-4-0", serving="fraud-1-4-0", desired="fraud-1-4-0", rules=rules,
    )  # fmt: skip
    payload = webhook_payload(notice)
    assert payload["trigger"] == "Degraded"
    assert payload["breachedRules"] == [{"name": "error-rate", "value": 0.9, "since": AT.isoformat()}]
    assert "from" not in payload["versions"]
    assert payload["versions"]["serving"] == "fraud-1-4-0"


def test_slack_text_carries_every_fact_and_cannot_mention_or_link() -> None:
    [notice] = rollback_notice()
    sneaky = Decision(
        "RolledBack", "by <!channel> & <https://evil|click>", cause=RevisionCause.MANUAL_ROLLBACK, revision=3
    )
    body = slack_payload(notice)
    text = body["text"]
    for fact in (
        "ml-prod/fraud",
        "fraud-1-4-0 -&gt; fraud-1-3-2",
        "error-rate",
        "0.12 &gt; 0.05",
        "modelledger/rule:error-rate",
    ):
        assert fact in text
    assert slack_escape(QUERY) in text
    assert "$ modelledger history fraud -n ml-prod" in text
    assert [b["type"] for b in body["blocks"]][:2] == ["header", "section"]
    [manual] = notices(
        "ml-prod", "fraud", "u", [sneaky], HISTORY, at=AT, serving_before=None, serving=None, desired=None
    )
    rendered = json.dumps(slack_payload(manual))
    assert "<!channel>" not in rendered
    assert "<https://evil" not in rendered
    assert "&lt;!channel&gt;" in rendered


def test_headline() -> None:
    [notice] = rollback_notice()
    assert headline(notice) == "RolledBack: ml-prod/fraud fraud-1-4-0 -> fraud-1-3-2 (revision 3)"


# --- routing -------------------------------------------------------------------------------------------

RECEIVERS = [
    receiver("platform", routing="always"),
    receiver("oncall"),  # default
    receiver("team-a", routing="named", namespaces=["team-a-*"]),
    receiver("audit", routing="named", triggers=["MarkedStable", "RolledBack"]),
]


def names(annotation: str | None, namespace: str = "team-a-prod") -> tuple[list[str], list[str]]:
    found = route(RECEIVERS, namespace, annotation)
    return [r.name for r in found.receivers], list(found.ignored)


def test_without_the_annotation_the_default_and_always_receivers() -> None:
    assert names(None) == (["platform", "oncall"], [])


def test_none_opts_out_of_all_but_the_always_receivers() -> None:
    assert names("none") == (["platform"], [])
    assert names(" none ") == (["platform"], [])


def test_named_receivers_replace_the_defaults() -> None:
    assert names("team-a, audit") == (["platform", "team-a", "audit"], [])
    assert names("oncall") == (["platform", "oncall"], [])


def test_unknown_names_and_receivers_of_other_namespaces_are_ignored_and_reported() -> None:
    assert names("team-a,nosuch,https://evil.example/hook", namespace="team-b") == (
        ["platform"],
        ["team-a", "nosuch", "https://evil.example/hook"],
    )


def test_triggers_filter_per_receiver() -> None:
    found = route(RECEIVERS, "x", "audit,oncall")
    assert [r.name for r in found.for_trigger(Trigger.MARKED_STABLE)] == ["audit"]
    assert [r.name for r in found.for_trigger(Trigger.DEGRADED)] == ["platform", "oncall"]


@given(st.text(max_size=80))
def test_any_annotation_routes_only_to_admin_receivers(annotation: str) -> None:
    found = route(RECEIVERS, "team-a-prod", annotation)
    admin = {r.name for r in RECEIVERS}
    assert {r.name for r in found.receivers} <= admin
    assert "platform" in {r.name for r in found.receivers}  # `always` cannot be opted out of
    assert set(found.ignored).isdisjoint({r.name for r in found.receivers})
    assert requested(annotation) is not None


def test_annotation_key() -> None:
    assert ANNOTATION == "modelledger.io/notify"


# --- the receivers file's entries ------------------------------------------------------------------------


def test_receiver_validation() -> None:
    r = receiver("oncall", type="slack", timeout=2, retryBudget=60, maxBackoff=5)
    assert (r.timeout, r.retry_budget, r.max_backoff, r.routing) == (2, 60, 5, Routing.DEFAULT)
    with pytest.raises(ValidationError):
        receiver("Bad_Name")
    with pytest.raises(ValidationError):
        receiver("a", url="https://hooks.example")  # a URL only through a file
    with pytest.raises(ValidationError):
        receiver("a", triggers=[])
    with pytest.raises(ValidationError):
        receiver("a", triggers=["Deployed"])
    with pytest.raises(ValueError, match="unique: a"):
        check_unique([receiver("a"), receiver("a")])
    with pytest.raises(ValueError, match="none"):
        check_unique([receiver("none")])


# --- delivery timing -------------------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    assert [backoff(n, 30, 1.0) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert backoff(3, 30, 0.0) == 4.0
    assert backoff(10_000, 5, 0.5) == pytest.approx(3.75)


@given(st.integers(min_value=0, max_value=10_000), st.floats(0.1, 3600), st.floats(0, 1))
def test_backoff_is_bounded(attempt: int, cap: float, jitter: float) -> None:
    assert 0 < backoff(attempt, cap, jitter) <= cap


@pytest.mark.parametrize(
    ("status", "again"),
    [(500, True), (503, True), (429, True), (408, True), (400, False), (404, False), (301, False)],
)
def test_retryable(status: int, again: bool) -> None:
    assert retryable(status) is again
