"""The PodMonitor of a ModelDeployment: what it selects and relabels, the opt-in, and the operator's memory
of what it applied (so a loop running every second makes no API call while nothing changed)."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes
import pytest

from modelledger.adapters import podmonitors
from modelledger.adapters.podmonitors import PodMonitors
from modelledger.api import ModelDeployment, ModelVersion
from modelledger.core import podmonitor
from modelledger.core.workload import Owner, manifests
from modelledger.handlers.context import OperatorConfig
from modelledger.handlers.podmonitors import ensure_pod_monitor
from tests.malformed_cases import MODEL_DEPLOYMENT, MODEL_VERSION

OWNER = Owner("fraud-detector", "ml-prod", "uid-1")


def test_selects_the_serving_pods_and_maps_their_labels_with_the_namespace_from_discovery() -> None:
    body = podmonitor.manifest(OWNER)
    assert (body["apiVersion"], body["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert (body["metadata"]["name"], body["metadata"]["namespace"]) == ("fraud-detector", "ml-prod")
    owner = body["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "ModelDeployment",
        "fraud-detector",
        "uid-1",
        True,
    )
    spec = ModelDeployment.model_validate(MODEL_DEPLOYMENT).spec
    deployment, _ = manifests(OWNER, spec, 1, ModelVersion.model_validate(MODEL_VERSION))
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selected = body["spec"]["selector"]["matchLabels"]
    assert selected.items() <= pod_labels.items(), "the PodMonitor selects the serving pods"
    assert body["spec"]["namespaceSelector"] == {"matchNames": ["ml-prod"]}
    (endpoint,) = body["spec"]["podMetricsEndpoints"]
    assert endpoint["honorLabels"] is False
    assert endpoint["port"] == deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["name"]
    mapping = {step["targetLabel"]: step["sourceLabels"] for step in endpoint["relabelings"]}
    assert mapping == {
        "deployment": ["__meta_kubernetes_pod_label_deployment"],
        "model": ["__meta_kubernetes_pod_label_model"],
        "version": ["__meta_kubernetes_pod_label_version"],
        "namespace": ["__meta_kubernetes_namespace"],
    }
    for target in ("deployment", "model", "version"):
        assert target in pod_labels, f"the pods carry the label {target} the PodMonitor reads"


def test_the_hash_follows_spec_and_owner() -> None:
    first = podmonitor.manifest(OWNER)["metadata"]["annotations"][podmonitor.ANNOTATION_HASH]
    again = podmonitor.manifest(OWNER)["metadata"]["annotations"][podmonitor.ANNOTATION_HASH]
    other = podmonitor.manifest(Owner("fraud-detector", "ml-prod", "uid-2"))
    assert first == again
    assert other["metadata"]["annotations"][podmonitor.ANNOTATION_HASH] != first


@pytest.mark.parametrize(
    ("annotations", "wanted"),
    [
        ({podmonitor.ANNOTATION_OPT_IN: "true"}, True),
        ({podmonitor.ANNOTATION_OPT_IN: " True "}, True),
        ({podmonitor.ANNOTATION_OPT_IN: "false"}, False),
        ({podmonitor.ANNOTATION_OPT_IN: ""}, False),
        ({}, False),
        (None, False),
    ],
)
def test_opt_in_annotation(annotations: dict[str, str] | None, wanted: bool) -> None:
    assert podmonitor.opted_in(annotations) is wanted


def test_the_scrape_config_mirrors_the_endpoint_in_prometheus_spelling() -> None:
    config = podmonitor.scrape_config("pm", podmonitor.manifest(OWNER))
    assert config["honor_labels"] is False
    assert config["metrics_path"] == "/metrics"
    assert {
        "source_labels": ["__meta_kubernetes_namespace"],
        "target_label": "namespace",
        "action": "replace",
    } in (config["relabel_configs"])
    assert len(config["relabel_configs"]) == 4


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _monitors(monkeypatch: pytest.MonkeyPatch, answers: list[int | None]) -> tuple[PodMonitors, list[str]]:
    """PodMonitors whose API calls are recorded; each apply answers the next status (None: created)."""
    calls: list[str] = []

    def apply(manifest: dict[str, Any]) -> None:
        calls.append("apply")
        status = answers.pop(0) if answers else None
        if status is not None:
            raise kubernetes.client.ApiException(status=status)

    def delete_owned(namespace: str, name: str, uid: str) -> bool:
        calls.append("delete")
        return True

    monkeypatch.setattr(podmonitors, "apply", apply)
    monkeypatch.setattr(podmonitors, "delete_owned", delete_owned)
    return PodMonitors(enabled=True, clock=FakeClock()), calls


def _ensure(config: OperatorConfig, annotations: dict[str, str]) -> bool | None:
    meta = {"uid": "uid-1", "annotations": annotations}
    return asyncio.run(ensure_pod_monitor("ml-prod", "fraud-detector", meta, config))


ON = {podmonitor.ANNOTATION_OPT_IN: "true"}


def test_applied_once_until_it_changes_or_is_due_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monitors, calls = _monitors(monkeypatch, [])
    config = OperatorConfig(pod_monitors=monitors)
    assert [_ensure(config, ON) for _ in range(5)] == [True] * 5
    assert calls == ["apply"]
    assert isinstance(monitors.clock, FakeClock)
    monitors.clock.now += monitors.reapply_after
    assert _ensure(config, ON) is True
    assert calls == ["apply", "apply"], "applied again after reapply_after (a deleted one comes back)"
    assert _ensure(config, {}) is False
    assert _ensure(config, {}) is False
    assert calls == ["apply", "apply", "delete"], "withdrawn: deleted once"
    assert _ensure(config, ON) is True
    assert calls[-1] == "apply"


def test_off_by_default_makes_no_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monitors, calls = _monitors(monkeypatch, [])
    monitors.enabled = False
    assert _ensure(OperatorConfig(pod_monitors=monitors), ON) is None
    assert calls == []


def test_a_missing_crd_is_waited_out_then_picked_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monitors, calls = _monitors(monkeypatch, [404])
    config = OperatorConfig(pod_monitors=monitors)
    assert _ensure(config, ON) is False
    assert [_ensure(config, ON) for _ in range(3)] == [False] * 3
    assert calls == ["apply"], "no API call while the CRD is known to be missing"
    assert isinstance(monitors.clock, FakeClock)
    monitors.clock.now += monitors.recheck_after
    assert _ensure(config, ON) is True
    assert calls == ["apply", "apply"]


def test_other_api_errors_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monitors, _ = _monitors(monkeypatch, [500])
    with pytest.raises(kubernetes.client.ApiException):
        _ensure(OperatorConfig(pod_monitors=monitors), ON)
