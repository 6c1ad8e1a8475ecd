"""The operator's JSON logs: Kopf's lines about an object carry its namespace and name (structlog's
ExtraAdder), as our own lines do; Kopf's other extras stay out."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import kopf
import pytest
import structlog
from kopf._core.actions.loggers import ObjectLogger

from modelledger import logs


@pytest.fixture
def lines(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    logs.configure("INFO")
    try:
        yield stream
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_kopfs_object_context_reaches_the_json(lines: io.StringIO) -> None:
    body = {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud-detector", "namespace": "ml-prod", "uid": "u-1"},
    }
    ObjectLogger(body=body, settings=kopf.OperatorSettings()).info("Handler 'reconcile' succeeded.")
    [record] = records(lines)
    assert record["event"] == "Handler 'reconcile' succeeded."
    assert (record["namespace"], record["name"], record["kind"], record["uid"]) == (
        "ml-prod", "fraud-detector", "ModelDeployment", "u-1",
    )  # fmt: skip
    assert record["deployment"] == "fraud-detector", "the key our own lines use"
    assert record["logger"] == "kopf.objects"
    assert not {"k8s_ref", "k8s_skip", "settings"} & set(record)


def test_a_version_is_named_without_a_deployment_key(lines: io.StringIO) -> None:
    body = {"apiVersion": "modelledger.io/v1alpha1", "kind": "ModelVersion", "metadata": {"name": "m-1"}}
    ObjectLogger(body=body, settings=kopf.OperatorSettings()).warning("x", extra={"cause": "x"})
    logging.getLogger("kopf.activities").info("no object")
    structlog.get_logger("modelledger.test").info("ours", namespace="a", deployment="b")
    version, plain, ours = records(lines)
    assert (version["kind"], version["name"]) == ("ModelVersion", "m-1")
    assert "namespace" not in version
    assert "deployment" not in version
    assert "name" not in plain
    assert (ours["namespace"], ours["deployment"]) == ("a", "b")
