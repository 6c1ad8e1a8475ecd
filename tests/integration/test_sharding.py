"""Sharding a fleet by namespace (docs/benchmarks.md, "Horizontal headroom"): two `modelledger run`
processes, each with `-n` its own namespace, its own leader Lease and its own audit file, side by side on
the real plane. Each decides only for its shard, a shard whose operator is down does not stop the other,
and each shard's chain verifies on its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from prometheus_client import Gauge

from modelledger.testing.access import ClusterAccess
from modelledger.testing.prometheus import PrometheusServer
from tests.helpers import eventually
from tests.operator_process import OperatorProcess, lease_name
from tests.scenario import V140, cli, rolled_back, served_revision, stable_then_upgraded


@pytest.fixture
def second_namespace(api_client: kubernetes.client.ApiClient) -> Iterator[str]:
    core = kubernetes.client.CoreV1Api(api_client)
    name = f"shard-b-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"modelledger.io/test": "true"}}})
    yield name
    core.delete_namespace(name)


def test_two_shards_decide_apart_and_keep_a_chain_each(
    plane: ClusterAccess,
    namespace: str,
    second_namespace: str,
    installed_crds: object,
    identity_guards: None,
    error_rate: Gauge,
    prometheus: PrometheusServer,
    tmp_path: Path,
) -> None:
    shard_a, shard_b = namespace, second_namespace
    error_rate.labels(namespace=shard_b, deployment="fraud-detector").set(0.0)
    operators = {
        shard: OperatorProcess(plane, shard, tmp_path / shard, prometheus.url, name=f"shard-{i}")
        for i, shard in enumerate((shard_a, shard_b))
    }
    for operator in operators.values():
        operator.workdir.mkdir()
        operator.start()
    try:
        for shard in (shard_a, shard_b):
            stable_then_upgraded(plane, shard)
        assert lease_name(shard_a) != lease_name(shard_b), "a Lease per shard"
        for shard, operator in operators.items():
            eventually(operator.leading, 30, f"the operator of {shard} leads its shard")

        operators[shard_a].kill()  # shard A has no operator now
        for shard in (shard_a, shard_b):
            error_rate.labels(namespace=shard, deployment="fraud-detector").set(0.9)
        eventually(lambda: rolled_back(plane, shard_b), 30, "shard B rolled back by its own operator")
        assert served_revision(plane, shard_a) == (V140, "2"), "nobody decides for shard A while it is down"

        operators[shard_a].start()
        eventually(lambda: rolled_back(plane, shard_a), 60, "shard A rolled back once its operator is back")
    finally:
        for operator in operators.values():
            operator.stop()

    for shard, operator in operators.items():
        records = [json.loads(line) for line in (operator.workdir / "audit.jsonl").read_text().splitlines()]
        assert records, f"{shard}: its operator kept an audit file"
        assert {r["namespace"] for r in records} == {shard}, (
            "a shard's audit file holds only its own namespace"
        )
        assert [r["revision"] for r in records if r["action"] == "RolledBack"] == [3]
        verified = cli(plane, "audit", "verify", "--file", str(operator.workdir / "audit.jsonl"))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        history = cli(plane, "audit", "verify", "fraud-detector", "-n", shard)
        assert history.returncode == 0, history.stdout + history.stderr
