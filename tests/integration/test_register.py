"""`modelledger register` against a REAL MLflow tracking server (issue 15): the `mlflow` package from
PyPI (the dev extra), a SQLite backend and a local artifact store, started by a fixture on a free port.

A real pyfunc model is logged twice with params, metrics and git tags, and registered as versions 1
and 2 of "Fraud Detector". Both are registered on the plane with `--apply`; version 1 deploys, version
2 upgrades it, a breach rolls it back, and the report shows both versions with their runs, params,
metrics and commits. The artifact digests are recomputed independently: the model downloaded again
and hashed with the coreutils recipe of docs/lineage.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Gauge

from modelledger.api import ModelVersion
from modelledger.testing.access import ClusterAccess
from modelledger.testing.processes import ProcessGroup, free_port, wait_until
from tests.helpers import eventually
from tests.operator_process import OperatorProcess
from tests.scenario import cli, get, status, wait_phase, wait_served, with_rules

pytest.importorskip("mlflow", reason="the MLflow server comes with the dev extra: pip install -e '.[dev]'")
import mlflow  # after the skip: without the dev extra the module is skipped, not broken
from mlflow.pyfunc.model import PythonModel

IMAGE = "ghcr.io/acme/fraud-server@sha256:add1e7228a047c5fa24cdad76270df2b574357099e8bb4fb572da8d63aa39e56"
MODEL = "Fraud Detector"
REPOSITORY = "https://git.example.com/fraud"
COMMITS = ("262724ad61c53d445389d5b46eb4825efd6ba05d", "9c2f1d0b8e7a6c5d4e3f2a1b0c9d8e7f6a5b4c3d")
RECIPE = "find . -type f -print0 | LC_ALL=C sort -z | xargs -0r sha256sum | sed 's|  \\./|  |' | sha256sum"
V1, V2 = "fraud-detector-1", "fraud-detector-2"


class ThresholdModel(PythonModel):
    """A real MLflow pyfunc model: flags an amount above its threshold."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def predict(self, context: Any, model_input: list[float], params: Any = None) -> list[bool]:
        return [amount > self.threshold for amount in model_input]


@dataclass(frozen=True)
class Server:
    url: str
    runs: tuple[str, str]
    """The run behind version 1 and the one behind version 2."""


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`mlflow server` on SQLite and a local artifact store (proxied: clients download through the
    server), with versions 1 and 2 of MODEL logged and registered, and the alias `champion` on 2."""
    work = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    group = ProcessGroup(work)
    argv = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", f"sqlite:///{work / 'mlflow.db'}",
        "--artifacts-destination", str(work / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    child = group.start("mlflow", argv, env={**os.environ, "MLFLOW_TRACKING_URI": ""})
    try:
        wait_until("the MLflow tracking server", lambda: _healthy(url), 180, watch=child, interval=0.5)
        yield Server(url, _log_and_register(url))
    finally:
        # The server runs its web workers as children: stop the whole process group.
        if child.running():
            os.killpg(child.pid, signal.SIGTERM)
        group.stop()


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
        return bool(answer.status == 200)


def _model_path(path: str) -> dict[str, str]:
    """MLflow 3 names a logged model (`name`); MLflow 2 put it at an artifact path of the run."""
    return {"name": path} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": path}


def _log_and_register(url: str) -> tuple[str, str]:
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("fraud")
    runs: list[str] = []
    for number, (threshold, commit) in enumerate(zip((0.7, 0.8), COMMITS, strict=True), start=1):
        with mlflow.start_run() as run:
            mlflow.log_params(
                {"threshold": str(threshold), "max_depth": "6", "n_estimators": str(100 * number)}
            )
            mlflow.log_metrics({"auc": 0.93 + number / 100, "accuracy": 0.968})
            # What MLflow records by itself when the training script runs in a Git checkout.
            mlflow.set_tags(
                {"mlflow.source.git.commit": commit, "mlflow.source.git.repoURL": REPOSITORY, "team": "risk"}
            )
            mlflow.pyfunc.log_model(
                **_model_path("model"),
                python_model=ThresholdModel(threshold),
                pip_requirements=["mlflow"],  # no requirement inference: it would load the model
                registered_model_name=MODEL,
            )
            runs.append(run.info.run_id)
    mlflow.MlflowClient(url).set_registered_model_alias(MODEL, "champion", "2")
    return runs[0], runs[1]


def register(
    server: Server, *args: str, plane: ClusterAccess | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`modelledger register` with the server's URI in MLFLOW_TRACKING_URI, as a user would have it (and
    the plane's kubeconfig, for `--apply`)."""
    return subprocess.run(
        [sys.executable, "-m", "modelledger.cli.main", "register", "--image", IMAGE, *args],
        capture_output=True,
        text=True,
        env={
            **(plane.env() if plane else os.environ),
            "MLFLOW_TRACKING_URI": server.url,
            "COLUMNS": "200",
            **(env or {}),
        },
        timeout=180,
    )


def recomputed_digest(server: Server, version: str, work: Path) -> str:
    """The version's model downloaded again and hashed by the documented recipe (docs/lineage.md)."""
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{MODEL}/{version}", dst_path=str(work / version), tracking_uri=server.url
        )
    )
    (local / "registered_model_meta").unlink(missing_ok=True)  # the client's own note, not the model's
    hexdigest = subprocess.run(
        ["bash", "-c", RECIPE], cwd=local, capture_output=True, text=True, check=True
    ).stdout.split()[0]
    return f"sha256:{hexdigest}"


def test_registered_versions_deploy_upgrade_roll_back_and_report_their_lineage(
    plane: ClusterAccess,
    namespace: str,
    operator: OperatorProcess,
    error_rate: Gauge,
    mlflow_server: Server,
    tmp_path: Path,
) -> None:
    for uri in (f"models:/{MODEL}/1", f"models:/{MODEL}@champion", f"models:/{MODEL}/1"):
        applied = register(
            mlflow_server, "--from-mlflow", uri, "--apply", "-n", namespace, "--timeout", "2m", plane=plane
        )
        assert applied.returncode == 0, applied.stdout + applied.stderr  # the third: unchanged, still 0
    assert applied.stdout.split("\n")[1].split()[1:4] == [V1, "fraud-detector", "1"], applied.stdout
    v2 = get(plane, namespace, "mv", V2)
    assert v2["metadata"]["annotations"]["modelledger.io/registered-from"] == f"models:/{MODEL}@champion"
    assert v2["spec"]["artifact"]["uri"] == f"models:/{MODEL}/2", "the alias resolved to the version"

    operator.start()
    rule = {"for": "1s"}
    plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(with_rules(V1, bake="2s", **rule))
    )
    eventually(lambda: status(plane, namespace).stable_revision == 1, 60, f"{V1} baked stable")
    plane.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(with_rules(V2, bake="1h", **rule))
    )
    wait_served(plane, namespace, V2, 2, timeout=60)
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.9)
    wait_served(plane, namespace, V1, 3, timeout=60)
    error_rate.labels(namespace=namespace, deployment="fraud-detector").set(0.0)
    wait_phase(plane, namespace, "RolledBack")

    reported = cli(plane, "report", "fraud-detector", "-n", namespace, "--format", "json")
    assert reported.returncode == 0, reported.stdout + reported.stderr
    [deployment] = json.loads(reported.stdout)["deployments"]
    assert [(c["revision"], c["version"], c["cause"]) for c in deployment["changes"]] == [
        (1, V1, "Deploy"),
        (2, V2, "Deploy"),
        (3, V1, "AutomaticRollback"),
    ]
    versions = {v["name"]: v for v in deployment["versions"]}
    assert set(versions) == {V1, V2}
    for number, name in enumerate((V1, V2), start=1):
        version, run_id = versions[name], mlflow_server.runs[number - 1]
        assert version["trainingRun"] == f"runs:/{run_id}/model"
        assert version["trainingRunUrl"].endswith(f"/runs/{run_id}")
        assert version["trainingRunUrl"].startswith(f"{mlflow_server.url}/#/experiments/")
        assert (version["modelName"], version["version"]) == ("fraud-detector", str(number))
        assert version["hyperparameters"] == {
            "max_depth": "6",
            "n_estimators": str(100 * number),
            "threshold": ("0.7", "0.8")[number - 1],
        }
        assert version["metrics"] == {"accuracy": 0.968, "auc": pytest.approx(0.93 + number / 100)}
        assert (version["codeRepository"], version["codeCommit"]) == (REPOSITORY, COMMITS[number - 1])
        assert version["tags"] == ["team=risk"]
        assert version["artifactFormat"] == "mlflow/python_function"
        assert version["artifactDigest"] == recomputed_digest(mlflow_server, str(number), tmp_path)
    assert versions[V1]["artifactDigest"] != versions[V2]["artifactDigest"], "two models, two digests"

    # The same lineage as OpenLineage events (docs/lineage.md): both training runs, three served intervals.
    lineage = cli(plane, "report", "fraud-detector", "-n", namespace, "--format", "openlineage")
    assert lineage.returncode == 0, lineage.stderr
    events = [json.loads(line) for line in lineage.stdout.splitlines()]
    assert sorted(
        e["run"]["facets"]["modelledger_training"]["trainingRun"]
        for e in events
        if "train/" in e["job"]["name"]
    ) == sorted(f"runs:/{run}/model" for run in mlflow_server.runs)
    assert [e["eventType"] for e in events if e["job"]["name"] == "serve/fraud-detector"] == [
        "COMPLETE",
        "COMPLETE",
        "RUNNING",
    ]


@pytest.mark.parametrize(
    ("uri", "named"),
    [
        ("models:/No Such Model/1", "registered model 'No Such Model' not found"),
        (f"models:/{MODEL}/9", f"version 9 of registered model '{MODEL}' not found"),
        (f"models:/{MODEL}@nonexistent", f"alias 'nonexistent' of registered model '{MODEL}' not found"),
        ("runs:/0123456789abcdef0123456789abcdef/model", "run 0123456789abcdef0123456789abcdef not found"),
    ],
)
def test_a_missing_model_version_alias_or_run_exits_3_naming_it(
    mlflow_server: Server, uri: str, named: str
) -> None:
    extra = ["--model-name", "fraud", "--version", "1"] if uri.startswith("runs:/") else []
    done = register(mlflow_server, "--from-mlflow", uri, *extra)
    assert done.returncode == 3, done.stdout + done.stderr
    assert named in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_a_missing_path_in_a_run_exits_3_and_an_unreachable_server_4(mlflow_server: Server) -> None:
    run_id = mlflow_server.runs[0]
    missing = register(
        mlflow_server, "--from-mlflow", f"runs:/{run_id}/nothere", "--model-name", "fraud", "--version", "1"
    )
    assert missing.returncode == 3, missing.stderr
    assert f"artifact path 'nothere' of run {run_id} not found" in missing.stderr
    down = register(
        mlflow_server, "--from-mlflow", "models:/x/1", "--tracking-uri", f"http://127.0.0.1:{free_port()}"
    )
    assert down.returncode == 4, down.stderr
    assert "cannot reach the MLflow tracking server" in down.stderr


def _dvc_repository(root: Path) -> tuple[Path, bytes]:
    """A DVC 3 repository as `dvc repro` leaves it: dvc.lock, and one of two inputs in the cache."""
    train = b"amount,label\n12.5,0\n99.0,1\n"
    digest = hashlib.md5(train).hexdigest()
    cached = root / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]
    cached.parent.mkdir(parents=True)
    cached.write_bytes(train)
    lock = {
        "schema": "2.0",
        "stages": {
            "train": {
                "cmd": "python train.py",
                "deps": [
                    {"path": "data/train.csv", "hash": "md5", "md5": digest, "size": len(train)},
                    {
                        "path": "data/holdout",
                        "hash": "md5",
                        "md5": "f" * 32 + ".dir",
                        "size": 10,
                        "nfiles": 2,
                    },
                ],
                "outs": [{"path": "model", "hash": "md5", "md5": "e" * 32 + ".dir"}],
            }
        },
    }
    (root / "dvc.lock").write_text(yaml.safe_dump(lock))
    return root / "dvc.lock", train


def test_a_run_with_a_dvc_lock_applies_with_sha256_and_md5_data_and_is_immutable(
    plane: ClusterAccess, namespace: str, installed_crds: object, mlflow_server: Server, tmp_path: Path
) -> None:
    lock, train = _dvc_repository(tmp_path)
    run_id = mlflow_server.runs[0]
    args = ["--from-mlflow", f"runs:/{run_id}/model", "--model-name", "fraud-detector", "--version", "1.0.0"]
    printed = register(mlflow_server, *args, "--from-dvc", str(lock))
    assert printed.returncode == 0, printed.stderr
    manifest = yaml.safe_load(printed.stdout)
    assert manifest["metadata"]["name"] == "fraud-detector-1-0-0"
    assert "data 'data/holdout': not in the DVC cache, DVC's md5 kept" in printed.stderr

    applied = register(mlflow_server, *args, "--from-dvc", str(lock), "--apply", "-n", namespace, plane=plane)
    assert applied.returncode == 0, applied.stderr
    stored = get(plane, namespace, "mv", "fraud-detector-1-0-0")["spec"]
    kept = ModelVersion.model_validate({"spec": stored}).spec
    assert kept == ModelVersion.model_validate(manifest).spec, (
        "the apiserver kept every field (defaults aside)"
    )
    assert stored["provenance"]["trainingRun"] == f"runs:/{run_id}/model"
    train_digest = f"sha256:{hashlib.sha256(train).hexdigest()}"
    assert stored["provenance"]["data"] == [
        {"name": "data-train-csv", "uri": "data/train.csv", "digest": train_digest},
        {"name": "data-holdout", "uri": "data/holdout", "digest": "md5:" + "f" * 32 + ".dir"},
    ]
    assert stored["provenance"]["code"] == {"repository": REPOSITORY, "commit": COMMITS[0]}

    # Another model under the same name: a ModelVersion is immutable, so the apiserver refuses it.
    other = ["--from-mlflow", f"runs:/{mlflow_server.runs[1]}/model", "--model-name", "fraud-detector"]
    refused = register(mlflow_server, *other, "--version", "1.0.0", "--apply", "-n", namespace, plane=plane)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "not applied" in refused.stderr
    assert "immutable" in refused.stderr
