"""`modelledger report --format openlineage` (docs/lineage.md): the documented example is what the renderer
makes of the example report, and the events carry the lineage: training run, data, commit, model
artifact and digest, and each served interval, linked through the model artifact as one dataset."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from modelledger.report import render_openlineage
from modelledger.report.schema import Report

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
REPORT = EXAMPLES / "report-lineage.json"
EVENTS = EXAMPLES / "report-lineage.openlineage.jsonl"


def example_report() -> Report:
    return Report.model_validate(json.loads(REPORT.read_text()))


def rendered() -> list[dict[str, Any]]:
    return [json.loads(line) for line in render_openlineage.render(example_report()).splitlines()]


def test_the_documented_example_is_what_the_renderer_makes_of_the_example_report() -> None:
    producer = render_openlineage.PRODUCER
    published = EVENTS.read_text().replace(producer.rsplit("/v", 1)[0], "PRODUCER")
    current = render_openlineage.render(example_report()).replace(producer.rsplit("/v", 1)[0], "PRODUCER")
    assert current == published, f"{EVENTS} is stale: regenerate it from {REPORT}"


def test_training_events_carry_run_data_commit_and_the_model_digest() -> None:
    training = [e for e in rendered() if e["job"]["name"].startswith("train/")]
    assert [e["run"]["facets"]["modelledger_training"]["trainingRun"] for e in training] == [
        "runs:/ea17af78995f426ab153ad0ab33a4141/model",
        "runs:/c0ee4c4fa4af4221bb5d236a0626ec5e/model",
    ]
    first = training[0]
    assert first["eventType"] == "OTHER"
    assert (
        first["job"]["facets"]["sourceCodeLocation"]["version"] == "262724ad61c53d445389d5b46eb4825efd6ba05d"
    )
    assert [(d["name"], d["facets"]["version"]["datasetVersion"]) for d in first["inputs"]] == [
        ("data/train.csv", "sha256:26c0b80c9e43cd4fe38dc5ebe3814dcb30ef63fd43d021e5b4ab4c0305d96cb4"),
        ("data/holdout", "md5:" + "f" * 32 + ".dir"),
    ]
    [model] = first["outputs"]
    assert (model["namespace"], model["name"]) == ("models:", "models:/Fraud Detector/1")
    assert model["facets"]["version"]["datasetVersion"].startswith("sha256:629ce4ff8acb")
    assert first["run"]["facets"]["modelledger_training"]["hyperparameters"]["threshold"] == "0.7"


def test_serving_events_are_the_served_intervals_linked_to_the_trained_artifact() -> None:
    events = rendered()
    serving = [e for e in events if e["job"]["name"] == "serve/fraud-detector"]
    assert [
        (
            e["run"]["facets"]["modelledger_revision"]["revision"],
            e["eventType"],
            e["run"]["facets"]["nominalTime"]["nominalStartTime"],
            e["run"]["facets"]["nominalTime"].get("nominalEndTime"),
            e["run"]["facets"]["modelledger_revision"]["cause"],
        )
        for e in serving
    ] == [
        (1, "COMPLETE", "2026-11-27T09:00:00Z", "2026-11-27T10:00:00Z", "Deploy"),
        (2, "COMPLETE", "2026-11-27T10:00:00Z", "2026-11-27T10:07:30Z", "Deploy"),
        (3, "RUNNING", "2026-11-27T10:07:30Z", None, "AutomaticRollback"),
    ]
    outputs = {(d["namespace"], d["name"]) for e in events for d in e["outputs"]}
    for event in serving:
        [model] = event["inputs"]
        assert (model["namespace"], model["name"]) in outputs, "the serving input is a training output"
    run_ids = [e["run"]["runId"] for e in events]
    assert len(set(run_ids)) == len(run_ids)
    assert all(uuid.UUID(run_id).version == 5 for run_id in run_ids)
    assert all(e["schemaURL"].endswith("OpenLineage.json#/$defs/RunEvent") for e in events)
    assert rendered() == events, "the same report gives the same events"
