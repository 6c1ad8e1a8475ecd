"""`modelledger register` before it reaches MLflow: the arguments it refuses (exit 2, naming the flag),
and the core install, which neither imports mlflow nor needs it until `--from-mlflow` is used."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

IMAGE = "ghcr.io/acme/fraud-server@sha256:" + "a" * 64
RUN = """
import json, sys
{setup}
from modelledger.cli.main import main
try:
    code = main({argv!r})
except SystemExit as done:
    code = done.code
print(json.dumps({{"code": code, "mlflow_imported": "mlflow" in sys.modules}}))
"""


def register(*args: str, setup: str = "", env: dict[str, str] | None = None) -> tuple[int, bool, str]:
    """Run `modelledger register ARGS` in a fresh interpreter: (exit code, mlflow imported, stderr)."""
    done = subprocess.run(
        [sys.executable, "-c", RUN.format(setup=setup, argv=["register", *args])],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **(env or {})},
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], result["mlflow_imported"], done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from-mlflow", "models:/fraud/1", "--image", "ghcr.io/acme/fraud:1.4"], "--image 'ghcr.io/acme/fraud:1.4' is not pinned by digest"),  # noqa: E501
        (["--from-mlflow", "models:/fraud/latest", "--image", IMAGE], "--from-mlflow 'models:/fraud/latest'"),
        (["--from-mlflow", "runs:/8d1f/model", "--image", IMAGE], "pass --model-name and --version"),
        (["--from-mlflow", "models:/fraud/1", "--image", IMAGE, "--from-dvc", "/nonexistent/dvc.lock"], "--from-dvc /nonexistent/dvc.lock: no such file"),  # noqa: E501
        (["--from-mlflow", "models:/fraud/1", "--image", IMAGE, "--port", "0"], "--port 0"),
        (["--from-mlflow", "models:/fraud/1", "--image", IMAGE, "-A"], "-n NAMESPACE"),
    ],
)  # fmt: skip
def test_bad_arguments_exit_2_naming_the_flag_before_mlflow_is_imported(
    args: list[str], message: str
) -> None:
    code, imported, stderr = register(*args, env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert (code, imported) == (2, False), stderr
    assert message in stderr


def test_without_a_tracking_server_it_says_how_to_name_one() -> None:
    code, _, stderr = register("--from-mlflow", "models:/fraud/1", "--image", IMAGE)
    assert code == 2
    assert "pass --tracking-uri URI or set MLFLOW_TRACKING_URI" in stderr


def test_without_the_mlflow_extra_it_says_which_extra_to_install() -> None:
    code, _, stderr = register(
        "--from-mlflow",
        "models:/fraud/1",
        "--image",
        IMAGE,
        "--tracking-uri",
        "http://127.0.0.1:9",
        setup="sys.modules['mlflow'] = None  # as if the extra were not installed",
    )
    assert code == 2
    assert "pip install 'modelledger[mlflow]'" in stderr
    assert "Traceback" not in stderr


def test_the_command_line_and_its_help_do_not_import_mlflow() -> None:
    probe = (
        "import sys; from modelledger.cli.main import build_parser; build_parser(); "
        "import modelledger.cli.register, modelledger.core.registration, modelledger.adapters.dvc_lock; "
        "print('mlflow' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
