"""GitOps lineage on Deploy entries (issue 15, item 3), with ArgoCD's real Application CRD on the plane.

No ArgoCD runs here: its Application CRD is fetched from the Go module proxy (the module
github.com/argoproj/argo-cd/v3, verified against the Go checksum database by `go mod download`), cached
under ~/.cache/modelledger and installed. Applications are written as ArgoCD's controller writes them
after a sync (`status.resources`, `status.sync`, `status.operationState` with `initiatedBy` and the
sync result); the CRD has no status subresource, so they are created with their status, as ArgoCD
updates them. The operator runs as the chart's ServiceAccount with the chart's RBAC: with
`gitops.argocd.enabled` it may read Applications in the ArgoCD namespace, without it it may not.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.api import GitOpsLineage, HistoryEntry
from modelledger.core import gitops
from modelledger.testing.access import ClusterAccess
from modelledger.testing.binaries import cache_dir
from modelledger.testing.prometheus import PrometheusServer
from tests.helpers import eventually
from tests.identities import service_account_kubeconfig
from tests.integration.test_chart import CHART, RELEASE, SandboxedOperator, helm, render, set_args
from tests.integration.test_chart_values import operator_container, parse_run_args
from tests.scenario import V132, V140, apply, cli, get, model_deployment, versions

ARGO_CD = "github.com/argoproj/argo-cd/v3"
ARGO_CD_VERSION = "v3.5.7"  # the newest release whose go.mod the local Go toolchain accepts
CRD_IN_MODULE = "manifests/crds/application-crd.yaml"
CRD_NAME = "applications.argoproj.io"
COMMIT_1 = "3f5c2a9d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"
COMMIT_2 = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b"
REPO = "https://git.example.com/ml/fraud-deploy.git"


def application_crd_file() -> Path:
    """The Application CRD of the pinned ArgoCD release, from the cache or the Go proxy."""
    cached = cache_dir() / "argo-cd" / ARGO_CD_VERSION / Path(CRD_IN_MODULE).name
    if cached.exists():
        return cached
    go = shutil.which("go") or "/usr/local/go/bin/go"
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    env.setdefault("GOPROXY", "https://proxy.golang.org")
    with tempfile.TemporaryDirectory() as work:
        subprocess.run(
            [go, "mod", "init", "modelledger.local/crds"], cwd=work, env=env, check=True, capture_output=True
        )
        downloaded = subprocess.run(
            [go, "mod", "download", "-json", f"{ARGO_CD}@{ARGO_CD_VERSION}"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
    source = Path(json.loads(downloaded.stdout)["Dir"]) / CRD_IN_MODULE
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(".tmp")
    partial.write_bytes(source.read_bytes())
    partial.rename(cached)  # atomic: a concurrent run never reads half a file
    return cached


@pytest.fixture(scope="module")
def application_crd(plane: ClusterAccess) -> Path:
    """ArgoCD's real Application CRD, installed and served."""
    crd = application_crd_file()
    document = yaml.safe_load(crd.read_text())
    assert document["metadata"]["name"] == CRD_NAME
    # What the trust rule rests on: ArgoCD writes status with the object (no status subresource).
    assert all(not v.get("subresources") for v in document["spec"]["versions"])
    plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--field-manager=modelledger-tests", "-f", str(crd)
    )
    plane.wait_established(CRD_NAME)
    eventually(
        lambda: plane.kubectl("get", CRD_NAME, "-A", check=False).returncode == 0, 30, "Applications served"
    )
    return crd


@pytest.fixture
def argocd_namespace(plane: ClusterAccess) -> Iterator[str]:
    """ArgoCD's own namespace for one test (where its Applications live)."""
    name = f"argocd-{uuid.uuid4().hex[:6]}"
    plane.kubectl("create", "namespace", name)
    yield name
    plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def application(
    argocd: str, name: str, namespace: str, listed: list[str], *, revision: str, initiated: dict[str, Any]
) -> dict[str, Any]:
    """An Application as ArgoCD's controller writes it once a sync of `revision` has run."""
    resources: list[dict[str, Any]] = [
        {"version": "v1", "kind": "Service", "namespace": namespace, "name": "unrelated", "status": "Synced"}
    ]
    resources += [
        {
            "group": "modelledger.io",
            "version": "v1alpha1",
            "kind": "ModelDeployment",
            "namespace": namespace,
            "name": deployment,
            "status": "Synced",
            "health": {"status": "Healthy"},
        }
        for deployment in listed
    ]
    source = {"repoURL": REPO, "path": "deploy/prod", "targetRevision": "main"}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": argocd},
        "spec": {
            "project": "default",
            "source": source,
            "destination": {"server": "https://kubernetes.default.svc", "namespace": namespace},
            "syncPolicy": {"automated": {"prune": True}},
        },
        "status": {
            "resources": resources,
            "sync": {
                "status": "Synced",
                "revision": revision,
                "comparedTo": {"source": source, "destination": {"namespace": namespace}},
            },
            "health": {"status": "Healthy"},
            "operationState": {
                "operation": {"sync": {"revision": revision}, "initiatedBy": initiated, "retry": {}},
                "phase": "Succeeded",
                "message": "successfully synced (all tasks run)",
                "startedAt": "2026-11-27T09:59:58Z",
                "finishedAt": "2026-11-27T10:00:01Z",
                "syncResult": {"revision": revision, "source": source, "resources": []},
            },
        },
    }


def tracked(version: str, name: str, app: str, namespace: str) -> dict[str, Any]:
    """A ModelDeployment carrying ArgoCD's tracking annotation (as ArgoCD's annotation tracking sets)."""
    document = model_deployment(version, replicas=1)
    document["metadata"] = {
        "name": name,
        "annotations": {gitops.TRACKING_ID: f"{app}:modelledger.io/ModelDeployment:{namespace}/{name}"},
    }
    return document


def deploy_entries(plane: ClusterAccess, namespace: str, name: str) -> list[HistoryEntry]:
    raw = (get(plane, namespace, "mdep", name).get("status") or {}).get("history") or []
    return [HistoryEntry.model_validate(e) for e in raw if e.get("cause") == "Deploy"]


def lineage_of(plane: ClusterAccess, namespace: str, name: str, revision: int) -> GitOpsLineage:
    def recorded() -> GitOpsLineage | None:
        entry = next((e for e in deploy_entries(plane, namespace, name) if e.revision == revision), None)
        return entry.gitops if entry is not None else None

    found: GitOpsLineage = eventually(recorded, 60, f"{name}: Deploy revision {revision} with its lineage")
    return found


@contextmanager
def chart_operator(
    plane: ClusterAccess,
    namespace: str,
    argocd: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
    *,
    read_applications: bool,
) -> Iterator[tuple[str, SandboxedOperator]]:
    """The chart installed (no pod) and `modelledger run` as its ServiceAccount, with its arguments."""
    release = f"modelledger-{uuid.uuid4().hex[:6]}"
    values = {
        "replicaCount": "0",
        "watchNamespaces[0]": namespace,
        "prometheus.url": prometheus.url,
        "admission.enabled": "false",  # cluster-scoped, installed once by the session's fixtures
        "gitops.argocd.enabled": str(read_applications).lower(),
        "gitops.argocd.namespaces[0]": argocd,
    }
    helm(plane, "install", RELEASE, str(CHART), "-n", release, "--create-namespace", *set_args(values))
    operator = None
    try:
        access = service_account_kubeconfig(plane, release, RELEASE, tmp_path / f"{release}.kubeconfig")
        operator = SandboxedOperator(
            access,
            namespace,
            prometheus.url,
            tmp_path / f"{release}.log",
            extra=[f"--operator-namespace={release}", f"--argocd-namespaces={argocd}"],  # as the chart's pod
        )
        yield release, operator
    except BaseException:
        if operator is not None:
            sys.stderr.write(operator.text()[-8000:])
        raise
    finally:
        if operator is not None:
            operator.stop()
        helm(plane, "uninstall", RELEASE, "-n", release, "--wait", "--timeout=60s", check=False)
        plane.kubectl("delete", "namespace", release, "--wait=false", check=False)


def test_a_tracked_deploy_records_the_commit_and_initiator_and_a_false_claim_records_none(
    plane: ClusterAccess,
    namespace: str,
    installed_crds: object,
    application_crd: Path,
    argocd_namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    argocd = argocd_namespace
    alice = {"username": "alice@example.com"}
    apply(
        plane,
        argocd,
        application(argocd, "fraud", namespace, ["fraud-detector"], revision=COMMIT_1, initiated=alice),
    )
    # A tenant's own Application, listing its object, in a namespace the admins did not name.
    apply(
        plane,
        namespace,
        application(namespace, "mine", namespace, ["self-made"], revision=COMMIT_2, initiated=alice),
    )
    with chart_operator(plane, namespace, argocd, prometheus, tmp_path, read_applications=True) as (
        release,
        op,
    ):
        versions(plane, namespace)
        apply(plane, namespace, tracked(V132, "fraud-detector", "fraud", namespace))
        first = lineage_of(plane, namespace, "fraud-detector", 1)
        assert first.trusted, first
        assert (first.application, first.tracked_by.value) == (f"{argocd}/fraud", "annotation")
        assert (first.repository, first.revision) == (REPO, COMMIT_1)
        assert (first.initiated_by, first.automated) == ("alice@example.com", None)

        # The next commit, synced by ArgoCD's automated policy: the upgrade's entry records it.
        automated = {"automated": True}
        upgraded = application(
            argocd, "fraud", namespace, ["fraud-detector"], revision=COMMIT_2, initiated=automated
        )
        apply(plane, argocd, upgraded)
        apply(plane, namespace, tracked(V140, "fraud-detector", "fraud", namespace))
        second = lineage_of(plane, namespace, "fraud-detector", 2)
        assert (second.trusted, second.revision, second.initiated_by, second.automated) == (
            True, COMMIT_2, None, True,
        )  # fmt: skip

        # An object claiming ArgoCD's Application, which does not list it: deployed, claim not believed.
        apply(plane, namespace, tracked(V132, "impostor", "fraud", namespace))
        impostor = lineage_of(plane, namespace, "impostor", 1)
        assert (impostor.trusted, impostor.reason) == (False, gitops.NOT_LISTED)
        assert (impostor.repository, impostor.revision, impostor.initiated_by) == (None, None, None)
        # An Application the tenant wrote itself lists its object, but lives outside --argocd-namespaces.
        apply(plane, namespace, tracked(V132, "self-made", f"{namespace}_mine", namespace))
        self_made = lineage_of(plane, namespace, "self-made", 1)
        assert (self_made.trusted, self_made.reason) == (False, gitops.NAMESPACE_NOT_ALLOWED)
        assert self_made.revision is None

        # Signed with the rest of the entry: the history verifies, and the report shows the commit.
        verified = cli(plane, "audit", "verify", "-n", namespace, "--operator-namespace", release)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        report = cli(plane, "report", "fraud-detector", "-n", namespace, "--operator-namespace", release)
        assert report.returncode == 0, report.stderr
        changes = json.loads(report.stdout)["deployments"][0]["changes"]
        assert sorted((c["revision"], (c.get("gitops") or {}).get("revision")) for c in changes) == [
            (1, COMMIT_1),
            (2, COMMIT_2),
        ]
        markdown = cli(
            plane,
            "report",
            "fraud-detector",
            "-n",
            namespace,
            "--operator-namespace",
            release,
            "-o",
            "markdown",
        )
        assert f"| {COMMIT_1[:12]} ({argocd}/fraud, by alice@example.com) |" in markdown.stdout
    assert op.forbidden() == [], "the chart's RBAC with gitops.argocd.enabled misses a permission"


def test_without_the_rbac_the_deploy_goes_ahead_and_says_the_lineage_was_unavailable(
    plane: ClusterAccess,
    namespace: str,
    installed_crds: object,
    application_crd: Path,
    argocd_namespace: str,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    argocd = argocd_namespace
    initiated = {"username": "alice@example.com"}
    apply(
        plane,
        argocd,
        application(argocd, "fraud", namespace, ["fraud-detector"], revision=COMMIT_1, initiated=initiated),
    )
    with chart_operator(plane, namespace, argocd, prometheus, tmp_path, read_applications=False) as (
        release,
        op,
    ):
        sa = f"system:serviceaccount:{release}:{RELEASE}"
        denied = plane.kubectl("auth", "can-i", "get", CRD_NAME, "-n", argocd, f"--as={sa}", check=False)
        assert denied.stdout.strip() == "no", "the chart grants no Application reads unless asked"
        versions(plane, namespace)
        apply(plane, namespace, tracked(V132, "fraud-detector", "fraud", namespace))
        lineage = lineage_of(plane, namespace, "fraud-detector", 1)
        assert (lineage.trusted, lineage.reason, lineage.application) == (
            False,
            gitops.FORBIDDEN,
            f"{argocd}/fraud",
        )
        assert (lineage.repository, lineage.revision, lineage.initiated_by) == (None, None, None)

        # The deploy went ahead: revision 1 serves.
        def workload() -> dict[str, Any] | None:
            found = plane.kubectl(
                "get", "deployment", "fraud-detector", "-n", namespace, "-o", "json", check=False
            )
            return json.loads(found.stdout) if found.returncode == 0 else None

        labels = eventually(workload, 60, "the serving Deployment")["spec"]["template"]["metadata"]["labels"]
        assert (labels["modelledger.io/version"], labels["modelledger.io/revision"]) == (V132, "1")
        verified = cli(plane, "audit", "verify", "-n", namespace, "--operator-namespace", release)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "not allowed to read ArgoCD Applications" in op.text(), "the refusal is logged"


def test_the_chart_grants_application_reads_only_when_asked_and_only_where_argocd_is() -> None:
    def application_rules(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        return [
            (doc["metadata"].get("namespace", ""), rule)
            for doc in docs
            if doc["kind"] in ("ClusterRole", "Role")
            for rule in doc["rules"]
            if "argoproj.io" in rule.get("apiGroups", [])
        ]

    off = render()
    assert application_rules(off) == []
    assert parse_run_args(operator_container(off)).argocd_namespaces == "argocd"
    on = render(
        "--set", "gitops.argocd.enabled=true", "--set", "gitops.argocd.namespaces={argocd,team-gitops}"
    )
    rules = application_rules(on)
    assert [(ns, r["resources"], r["verbs"]) for ns, r in rules] == [
        ("argocd", ["applications"], ["get"]),
        ("team-gitops", ["applications"], ["get"]),
    ]
    bindings = [
        d for d in on if d["kind"] == "RoleBinding" and "argocd-applications" in d["metadata"]["name"]
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["argocd", "team-gitops"]
    assert parse_run_args(operator_container(on)).argocd_namespaces == "argocd,team-gitops"
