"""GitOps lineage on Deploy entries: ArgoCD's tracking marks parsed as ArgoCD parses them, an Application
believed only when it lists the object, the lineage hashed and signed with the entry, reads bounded."""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes
from hypothesis import given
from hypothesis import strategies as st

from modelledger.adapters.argocd import ArgoApplications
from modelledger.api import (
    GitOpsLineage,
    LineageTracking,
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    RevisionCause,
)
from modelledger.core import gitops, history, trust
from modelledger.core.reconcile import reconcile
from modelledger.core.signing import Keyring, SigningKey
from modelledger.handlers import lineage as handler
from tests.unit.signed_histories import PIPELINE, T0
from tests.unit.test_reconcile import KEY, SUBJECT, World, healthy_and_stable, world

NS, NAME = "ml-prod", "fraud-detector"
COMMIT = "8d1f3b2a9c4e5f60718293a4b5c6d7e8f9012345"
OLD_COMMIT = "1111111111111111111111111111111111111111"
REPO = "https://git.example.com/ml/fraud-deploy.git"


def tracking_id(
    app: str = "fraud", namespace: str = NS, name: str = NAME, kind: str = "ModelDeployment"
) -> str:
    return f"{app}:modelledger.io/{kind}:{namespace}/{name}"


def annotated(value: str) -> dict[str, Any]:
    return {"annotations": {gitops.TRACKING_ID: value}}


def application(*, listed: bool = True, username: str | None = "alice@example.com") -> dict[str, Any]:
    """An Application as ArgoCD's controller writes it after an auto or manual sync."""
    resources: list[dict[str, Any]] = [
        {
            "group": "",
            "kind": "Service",
            "namespace": NS,
            "name": "other",
            "version": "v1",
            "status": "Synced",
        },
    ]
    if listed:
        resources.append(
            {
                "group": "modelledger.io",
                "version": "v1alpha1",
                "kind": "ModelDeployment",
                "namespace": NS,
                "name": NAME,
                "status": "Synced",
                "health": {"status": "Healthy"},
            }
        )
    initiated: dict[str, Any] = {"username": username} if username else {"automated": True}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "fraud", "namespace": "argocd"},
        "spec": {
            "project": "default",
            "source": {"repoURL": REPO, "path": "deploy/prod", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": NS},
        },
        "status": {
            "resources": resources,
            "sync": {"status": "Synced", "revision": COMMIT, "comparedTo": {"source": {"repoURL": REPO}}},
            "operationState": {
                "operation": {"sync": {"revision": COMMIT}, "initiatedBy": initiated},
                "phase": "Succeeded",
                "startedAt": "2026-11-27T09:59:58Z",
                "finishedAt": "2026-11-27T10:00:03Z",
                "syncResult": {"revision": COMMIT, "source": {"repoURL": REPO, "path": "deploy/prod"}},
            },
        },
    }


# --- tracking marks ----------------------------------------------------------------------------------


def test_the_annotation_names_the_application_in_argocds_namespace_or_its_own() -> None:
    track = gitops.tracking(annotated(tracking_id()), NS, NAME)
    assert track is not None
    assert (track.by, track.application, track.problem) == (LineageTracking.ANNOTATION, "argocd/fraud", None)
    # Apps in any namespace: `<app-namespace>_<app>` (argo-cd's ParseInstanceName).
    track = gitops.tracking(annotated(tracking_id("team-a_fraud")), NS, NAME, "gitops")
    assert track is not None
    assert track.application == "team-a/fraud"
    track = gitops.tracking(annotated(tracking_id()), NS, NAME, "gitops")
    assert track is not None
    assert track.application == "gitops/fraud"


def test_a_mark_copied_from_another_object_or_malformed_is_not_followed() -> None:
    for value in (tracking_id(name="other"), tracking_id(namespace="ml-dev"), tracking_id(kind="Deployment")):
        track = gitops.tracking(annotated(value), NS, NAME)
        assert (track.problem if track else None) == gitops.TRACKING_ID_MISMATCH, value
    for value in ("fraud", "fraud:ModelDeployment", ":modelledger.io/ModelDeployment:ml-prod/x", "a:b/c:d"):
        track = gitops.tracking(annotated(value), NS, NAME)
        assert (track.problem if track else None) == gitops.INVALID_TRACKING_ID, value


def test_the_legacy_label_is_followed_and_the_annotation_wins_over_it() -> None:
    track = gitops.tracking({"labels": {gitops.INSTANCE_LABEL: "fraud"}}, NS, NAME)
    assert track is not None
    assert (track.by, track.application) == (LineageTracking.LABEL, "argocd/fraud")
    both = {**annotated(tracking_id("x")), "labels": {gitops.INSTANCE_LABEL: "y"}}
    track = gitops.tracking(both, NS, NAME)
    assert track is not None
    assert track.application == "argocd/x"
    assert gitops.tracking({}, NS, NAME) is None
    assert gitops.tracking({"annotations": None, "labels": {"app": "fraud"}}, NS, NAME) is None


def test_names_no_apiserver_could_hold_are_never_looked_up() -> None:
    for value in (tracking_id("a/b"), tracking_id("x" * 300), tracking_id("Bad_Name"), tracking_id("ns_")):
        track = gitops.tracking(annotated(value), NS, NAME)
        assert (track.problem if track else None) == gitops.INVALID_TRACKING_ID, value
        GitOpsLineage.model_validate(gitops.lineage(track, {}, NS, NAME, ("argocd",)).to_wire())
    track = gitops.tracking({"labels": {gitops.INSTANCE_LABEL: "../x"}}, NS, NAME)
    assert (track.problem if track else None) == gitops.INVALID_TRACKING_ID
    long_mismatch = gitops.tracking(annotated(tracking_id(name="n" * 5000)), NS, NAME)
    assert long_mismatch is not None
    assert len(gitops.lineage(long_mismatch, {}, NS, NAME, ("argocd",)).message or "") <= 1024


@given(st.text(max_size=80), st.text(max_size=40))
def test_any_mark_parses_without_raising(annotation: str, label: str) -> None:
    meta = {"annotations": {gitops.TRACKING_ID: annotation}, "labels": {gitops.INSTANCE_LABEL: label}}
    track = gitops.tracking(meta, NS, NAME)
    if annotation or label:
        assert track is not None
        # A lineage is judged from it whatever it says, and never trusts without an Application.
        assert gitops.lineage(track, {}, NS, NAME, ("argocd",)).trusted is False


@given(st.from_regex(r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?", fullmatch=True))
def test_argocds_own_format_round_trips(app: str) -> None:
    # BuildAppInstanceValue: fmt.Sprintf("%s:%s/%s:%s/%s", app, group, kind, namespace, name)
    track = gitops.tracking(annotated(f"{app}:modelledger.io/ModelDeployment:{NS}/{NAME}"), NS, NAME)
    assert track is not None
    assert (track.namespace, track.name, track.problem) == ("argocd", app, None)


# --- trust and the record ------------------------------------------------------------------------------


def _judge(
    app: dict[str, Any], value: str | None = None, allowed: tuple[str, ...] = ("argocd",)
) -> GitOpsLineage:
    track = gitops.tracking(annotated(value or tracking_id()), NS, NAME)
    assert track is not None
    return gitops.lineage(track, app, NS, NAME, allowed)


def test_a_listing_application_gives_repository_commit_and_initiator() -> None:
    record = _judge(application())
    assert record.trusted
    assert record.reason is None
    assert (record.application, record.repository, record.revision) == ("argocd/fraud", REPO, COMMIT)
    assert (record.initiated_by, record.automated) == ("alice@example.com", None)
    assert record.sync_started_at == datetime(2026, 11, 27, 9, 59, 58, tzinfo=UTC)
    automated = _judge(application(username=None))
    assert (automated.initiated_by, automated.automated) == (None, True)


def test_the_sync_result_is_preferred_to_the_last_comparison() -> None:
    # A newer commit compared but not synced (auto-sync off): what was applied is the sync's.
    app = application()
    app["status"]["sync"]["revision"] = OLD_COMMIT
    assert _judge(app).revision == COMMIT
    del app["status"]["operationState"]
    assert _judge(app).revision == OLD_COMMIT
    assert _judge(app).repository == REPO  # from spec.source


def test_a_multi_source_application_records_each_source() -> None:
    app = application()
    other = "https://charts.example.com"
    app["spec"] = {"sources": [{"repoURL": REPO}, {"repoURL": other, "chart": "server"}]}
    app["status"]["operationState"]["syncResult"] = {
        "revisions": [COMMIT, "1.2.0"],
        "sources": [{"repoURL": REPO}, {"repoURL": other}],
    }
    record = _judge(app)
    assert (record.repository, record.revision) == (REPO, COMMIT)
    assert record.sources is not None
    assert [(s.repository, s.revision) for s in record.sources] == [(REPO, COMMIT), (other, "1.2.0")]


def test_an_application_that_does_not_list_the_object_is_not_believed() -> None:
    record = _judge(application(listed=False))
    assert (record.trusted, record.reason) == (False, gitops.NOT_LISTED)
    claimed = {record.repository, record.revision, record.initiated_by, record.automated, record.sources}
    assert claimed == {None}, "no claimed value is recorded"
    # The same object listed under another namespace, name or kind does not count either.
    app = application()
    app["status"]["resources"][-1]["namespace"] = "ml-dev"
    assert _judge(app).reason == gitops.NOT_LISTED


def test_an_application_outside_the_admins_namespaces_is_not_believed() -> None:
    record = _judge(application(), tracking_id("team-a_fraud"))
    assert (record.trusted, record.reason, record.application) == (
        False,
        gitops.NAMESPACE_NOT_ALLOWED,
        "team-a/fraud",
    )
    assert _judge(application(), tracking_id("team-a_fraud"), ("argocd", "team-a")).trusted


garbage = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)


@given(garbage)
def test_a_malformed_application_never_raises(status: Any) -> None:
    app = application()
    app["status"] = status
    record = _judge(app)
    assert record.trusted is False or isinstance(status, dict)


@given(st.sampled_from(["status", "spec"]), garbage)
def test_malformed_fields_of_a_listing_application_are_left_out(where: str, junk: Any) -> None:
    app = application()
    for key in list(app[where]):
        if key != "resources":
            app[where][key] = copy.deepcopy(junk)
    record = _judge(app)
    assert record.trusted
    GitOpsLineage.model_validate(record.to_wire())  # what is recorded is valid against the CRD's model


# --- in the signed history -----------------------------------------------------------------------------


def _signed(gitops_record: GitOpsLineage | None) -> ModelDeploymentStatus:
    entries = history.append(
        [], version="m-1", cause=RevisionCause.DEPLOY, actor="alice", at=T0, pipeline=PIPELINE,
        gitops=gitops_record,
    )  # fmt: skip
    after = ModelDeploymentStatus(history=entries, current_revision=1)
    return trust.sign(after, ModelDeploymentStatus(), KEY, SUBJECT)


def test_the_lineage_is_hashed_and_signed_and_older_entries_still_verify() -> None:
    keyring = Keyring.of(KEY.public)
    signed = _signed(_judge(application()))
    assert trust.check_status(signed, keyring, SUBJECT, limit=10).ok
    assert "gitops" in history.hashed_fields(signed.history[0])
    # A commit rewritten after the fact breaks the entry's hash.
    entry = signed.history[0]
    forged_lineage = entry.gitops.model_copy(update={"revision": OLD_COMMIT}) if entry.gitops else None
    forged = signed.model_copy(update={"history": [entry.model_copy(update={"gitops": forged_lineage})]})
    assert history.verify(forged.history) is not None
    assert not trust.check_status(forged, keyring, SUBJECT, limit=10).ok
    # An entry without lineage hashes exactly as entries did before the field existed.
    plain = _signed(None)
    assert "gitops" not in history.hashed_fields(plain.history[0])
    assert trust.check_status(plain, keyring, SUBJECT, limit=10).ok


def test_another_key_cannot_sign_a_forged_lineage() -> None:
    signed = _signed(_judge(application()))
    other = SigningKey.generate()
    entry = signed.history[0]
    forged_lineage = entry.gitops.model_copy(update={"initiated_by": "mallory"}) if entry.gitops else None
    rewritten = entry.model_copy(update={"gitops": forged_lineage, "prev_hash": ""})
    rewritten = rewritten.model_copy(update={"hash": history.entry_hash(rewritten)})
    forged = trust.sign(
        ModelDeploymentStatus(history=[rewritten], current_revision=1),
        ModelDeploymentStatus(),
        other,
        SUBJECT,
    )
    assert not trust.check_status(forged, Keyring.of(KEY.public), SUBJECT, limit=10).ok


# --- in the decision ------------------------------------------------------------------------------------


class Lineaged(World):
    lineage: GitOpsLineage | None = None

    def situation(self, rules: Any = None) -> Any:
        from dataclasses import replace

        return replace(super().situation(rules), lineage=self.lineage)


def _lineaged() -> Lineaged:
    w = world()
    return Lineaged(spec=w.spec, versions=w.versions)


def test_only_deploy_entries_carry_the_lineage_and_it_changes_nothing_else() -> None:
    w = _lineaged()
    w.lineage = _judge(application())
    w.step()
    assert w.status.history[0].gitops == w.lineage
    healthy_and_stable(w)
    writes = w.writes
    w.lineage = _judge(application(listed=False))  # what the Application says later changes no entry
    w.step()
    assert w.writes == writes
    assert w.status.history[0].gitops is not None
    assert w.status.history[0].gitops.revision == COMMIT
    w.set_version("fraud-detector-1-4-0")
    w.step()
    assert w.status.history[0].gitops is not None
    assert w.status.history[0].gitops.reason == gitops.NOT_LISTED
    plan = reconcile(w.situation())
    assert plan.status == w.status or plan.status.history == w.status.history


# --- the handler's read: only when a Deploy is in view, bounded, coalesced --------------------------------


def _spec(version: str) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate({"modelName": "fraud-detector", "version": version})


def _serving(version: str, quarantined: list[str] | None = None) -> ModelDeploymentStatus:
    entries = history.append([], version=version, cause=RevisionCause.DEPLOY, actor="a", at=T0, pipeline=None)
    return ModelDeploymentStatus(history=entries, current_revision=1, quarantined=quarantined or [])


def test_a_deploy_is_pending_only_when_spec_version_does_not_serve() -> None:
    assert handler.deploy_pending(_spec("v2"), ModelDeploymentStatus(), requests=False)
    assert handler.deploy_pending(_spec("v2"), _serving("v1"), requests=False)
    assert not handler.deploy_pending(_spec("v1"), _serving("v1"), requests=True)
    assert not handler.deploy_pending(_spec("v2"), _serving("v1", ["v2"]), requests=False)
    assert handler.deploy_pending(_spec("v2"), _serving("v1", ["v2"]), requests=True)  # a retry may lift it


class Reader:
    def __init__(self, answer: dict[str, Any] | Exception, delay: float = 0.0) -> None:
        self.answer, self.delay, self.calls = answer, delay, 0
        self.lock = threading.Lock()

    def __call__(self, namespace: str, name: str, timeout: float) -> dict[str, Any]:
        with self.lock:
            self.calls += 1
        time.sleep(self.delay)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def _for_deploy(
    apps: ArgoApplications, meta: dict[str, Any], status: ModelDeploymentStatus | None = None
) -> Coroutine[Any, Any, GitOpsLineage | None]:
    return handler.for_deploy(NS, NAME, meta, _spec("v2"), status or _serving("v1"), apps)


def test_the_handler_reads_only_for_a_pending_deploy_and_records_refusals() -> None:
    reader = Reader(application())
    apps = ArgoApplications(reader=reader)
    record = asyncio.run(_for_deploy(apps, annotated(tracking_id())))
    assert record is not None
    assert record.trusted
    assert record.revision == COMMIT
    assert asyncio.run(_for_deploy(apps, annotated(tracking_id()), _serving("v2"))) is None
    assert asyncio.run(_for_deploy(apps, {})) is None
    outside = asyncio.run(_for_deploy(apps, annotated(tracking_id("team-a_fraud"))))
    assert outside is not None
    assert outside.reason == gitops.NAMESPACE_NOT_ALLOWED
    assert reader.calls == 1, "nothing is read outside the admins' namespaces or without a pending deploy"

    for status, reason in ((403, gitops.FORBIDDEN), (404, gitops.NOT_FOUND), (500, gitops.UNREACHABLE)):
        refused = ArgoApplications(reader=Reader(kubernetes.client.ApiException(status=status, reason="x")))
        record = asyncio.run(_for_deploy(refused, annotated(tracking_id())))
        assert record is not None
        assert (record.trusted, record.reason) == (False, reason)
        assert record.revision is None
        assert record.application == "argocd/fraud"


def test_a_slow_apiserver_delays_a_deploy_by_the_timeout_at_most() -> None:
    apps = ArgoApplications(reader=Reader(application(), delay=1.0), timeout=0.2)
    start = time.monotonic()
    record = asyncio.run(_for_deploy(apps, annotated(tracking_id())))
    assert time.monotonic() - start < 0.9
    assert record is not None
    assert (record.trusted, record.reason) == (False, gitops.UNREACHABLE)


def test_concurrent_deploys_share_one_read_and_a_refusal_is_remembered() -> None:
    reader = Reader(application(), delay=0.2)
    apps = ArgoApplications(reader=reader)

    async def many() -> list[GitOpsLineage | None]:
        return await asyncio.gather(*(_for_deploy(apps, annotated(tracking_id())) for _ in range(20)))

    records = asyncio.run(many())
    assert reader.calls == 1
    assert all(r is not None and r.revision == COMMIT for r in records)
    asyncio.run(_for_deploy(apps, annotated(tracking_id())))
    assert reader.calls == 2, "a finished read is not reused: it may predate the sync"

    clock = [0.0]
    refusing = Reader(kubernetes.client.ApiException(status=403, reason="Forbidden"))
    refused = ArgoApplications(reader=refusing, clock=lambda: clock[0])
    for _ in range(3):
        asyncio.run(_for_deploy(refused, annotated(tracking_id())))
    assert refusing.calls == 1
    clock[0] += refused.refused_for + 1
    asyncio.run(_for_deploy(refused, annotated(tracking_id())))
    assert refusing.calls == 2, "RBAC granted later is picked up"


def test_the_record_fits_the_crd_bounds_whatever_the_application_holds() -> None:
    app = application(username="u" * 5000)
    app["status"]["operationState"]["syncResult"] = {
        "revision": "r" * 5000,
        "source": {"repoURL": "h" * 9000},
    }
    record = _judge(app)
    GitOpsLineage.model_validate(record.to_wire())
    assert record.sync_started_at is not None
    assert record.sync_started_at - T0 < timedelta(hours=1)
