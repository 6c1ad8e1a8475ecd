"""The ArgoCD health checks (deploy/argocd/*.lua) on ModelDeployments and ModelVersions captured from real
runs of the operator (tests/fixtures/argocd/README.md), in Lua 5.1 as ArgoCD runs them."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from tests.fixtures.health import FIXTURES, SCRIPT_FOR_KIND, health, load

REPO = Path(__file__).resolve().parents[2]

CAPTURED = {
    "modeldeployment-healthy": ("Healthy", "serving fraud-detector-1-4-0"),
    "modeldeployment-progressing": ("Progressing", "rolling out revision 1"),
    "modeldeployment-rolledback": ("Degraded", "RolledBack: fraud-detector-1-4-0 is quarantined"),
    "modeldeployment-failed": ("Degraded", "Failed: ModelVersion fraud-detector-9-9-9 not found"),
    "modeldeployment-degraded": ("Degraded", "Degraded: fraud-detector-1-3-2 must be rolled back"),
    "modelversion-available": ("Healthy", "Available; in the history of fraud-detector"),
    "modelversion-revoked": ("Suspended", "Revoked: failed the fairness audit"),
}


@pytest.mark.parametrize(("fixture", "expected"), CAPTURED.items(), ids=CAPTURED.keys())
def test_captured_objects(fixture: str, expected: tuple[str, str]) -> None:
    obj = load(fixture)
    status, message = expected
    verdict = health(obj)
    assert verdict["status"] == status
    assert verdict["message"].startswith(message), verdict["message"]


def test_every_fixture_is_checked_and_is_in_the_phase_it_is_named_after() -> None:
    assert {p.stem for p in FIXTURES.glob("*.json")} == set(CAPTURED)
    for name in CAPTURED:
        kind, phase = name.split("-")
        obj = load(name)
        assert obj["kind"].lower() == kind
        assert obj["status"]["phase"].lower() == phase


def test_a_spec_change_the_operator_has_not_seen_is_progressing() -> None:
    obj = copy.deepcopy(load("modeldeployment-healthy"))
    obj["metadata"]["generation"] += 1  # as right after ArgoCD syncs a new spec.version
    verdict = health(obj)
    assert verdict == {
        "status": "Progressing",
        "message": f"Waiting for the operator to observe generation {obj['metadata']['generation']}",
    }


def test_a_failed_deployment_still_lagging_is_progressing_not_degraded() -> None:
    obj = copy.deepcopy(load("modeldeployment-failed"))
    obj["metadata"]["generation"] += 1  # Git fixed the version; the operator has not looked yet
    assert health(obj)["status"] == "Progressing"


@pytest.mark.parametrize("kind", ["ModelDeployment", "ModelVersion"])
def test_no_status_yet_is_progressing(kind: str) -> None:
    obj = {"kind": kind, "metadata": {"name": "x", "generation": 1}, "spec": {}}
    assert health(obj) == {"status": "Progressing", "message": "Waiting for the modelledger operator"}


def test_an_unknown_phase_is_unknown() -> None:
    obj = copy.deepcopy(load("modeldeployment-healthy"))
    obj["status"]["phase"] = "Exploded"
    assert health(obj) == {"status": "Unknown", "message": "Unknown phase Exploded"}


def test_the_argocd_cm_snippet_carries_the_scripts_verbatim() -> None:
    data = yaml.safe_load((REPO / "deploy" / "argocd" / "argocd-cm.yaml").read_text())["data"]
    for kind, script in SCRIPT_FOR_KIND.items():
        assert data[f"resource.customizations.health.modelledger.io_{kind}"] == script.read_text()


def test_the_gitops_guide_shows_the_same_snippet() -> None:
    guide = (REPO / "docs" / "gitops.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", guide, re.DOTALL)
    shown = next(b for b in blocks if "resource.customizations.health" in b)
    assert shown == (REPO / "deploy" / "argocd" / "argocd-cm.yaml").read_text()
