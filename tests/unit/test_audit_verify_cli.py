"""`modelledger audit verify` and `audit public-key` through the CLI's entry point: an exported report
verified offline with a public key file, status histories, the audit log, and the exit code table."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import urllib3
from kubernetes.client.exceptions import ApiException

from modelledger.adapters import keys
from modelledger.api import HistoryEntry, ModelDeploymentStatus
from modelledger.cli import audit as audit_cli
from modelledger.cli import common
from modelledger.cli.main import main
from modelledger.core import audit_chain, trust
from modelledger.core.signing import Keyring, SigningKey
from modelledger.report import render_json
from modelledger.report.schema import Report
from tests.unit import signed_histories as sh
from tests.unit.test_report import KEY, SUBJECT, T0, build, scenario_history, signed_watermark


class NoCluster:
    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        raise AssertionError("the offline verification contacted the cluster")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_cli, "Cluster", NoCluster)
    monkeypatch.setattr(common, "Cluster", NoCluster)


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "modelledger.pem"
    path.write_text(KEY.public_pem())
    return path


def write(tmp_path: Path, document: dict[str, Any], name: str = "report.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2))
    return path


def report_document(**build_args: Any) -> dict[str, Any]:
    entries = build_args.pop("entries", None) or scenario_history()
    result: dict[str, Any] = json.loads(render_json.render(build(entries, **build_args)))
    return result


def verify_report(path: Path, *public_keys: Path) -> int:
    argv = ["audit", "verify", "--report", str(path)]
    for key in public_keys:
        argv += ["--public-key", str(key)]
    return main(argv)


def rehash_embedded(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Re-chain the report's embedded history as a forger without the key would (hash and prevHash)."""
    return [e.to_wire() for e in sh.rehash([HistoryEntry.model_validate(raw) for raw in history])]


# --- an exported report, offline ------------------------------------------------------------------


def test_a_signed_report_verifies_offline_with_the_public_key_file(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    document = report_document(with_log=True, at=T0 + timedelta(minutes=25))
    assert verify_report(write(tmp_path, document), key_file) == 0
    out = capsys.readouterr().out
    assert "verified" in out
    assert "7 revisions, every one signed" in out


def test_a_pruned_report_with_revisions_from_the_audit_log_verifies(
    tmp_path: Path, key_file: Path, offline: None
) -> None:
    from modelledger.core import history

    pruned = history.prune(scenario_history(), 2, 7)
    document = report_document(entries=pruned, limit=2, with_log=True, watermark=signed_watermark(6))
    assert [e["revision"] for e in document["deployments"][0]["auditLogHistory"]] == [5, 4, 3, 2]
    assert verify_report(write(tmp_path, document), key_file) == 0


def test_a_report_from_a_time_window_verifies(tmp_path: Path, key_file: Path, offline: None) -> None:
    document = report_document(since=T0 + timedelta(minutes=25), until=T0 + timedelta(minutes=45))
    assert verify_report(write(tmp_path, document), key_file) == 0


def test_an_edited_and_rehashed_entry_fails_and_is_named(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    document = report_document()
    deployment = document["deployments"][0]
    edited = [dict(e) for e in deployment["history"]]
    fourth = next(e for e in edited if e["revision"] == 4)
    fourth["actor"] = "mallory"
    deployment["history"] = rehash_embedded(edited)
    # ...and the derived tables edited to match, as a careful forger would.
    for change in deployment["changes"]:
        if change["revision"] == 4:
            change["actor"] = "mallory"
            change["hash"] = next(e["hash"] for e in deployment["history"] if e["revision"] == 4)
    assert verify_report(write(tmp_path, document), key_file) == 1
    out = capsys.readouterr().out
    assert "BROKEN" in out
    assert "revision 4: entry signature does not verify" in out


def test_an_edited_derived_fact_fails_even_with_the_history_untouched(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    document = report_document()
    deployment = document["deployments"][0]
    deployment["changes"][2]["actor"] = "somebody-else"
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 3: the report's change differs from the signed entry (actor)" in capsys.readouterr().out

    document = report_document()
    document["deployments"][0]["timeline"][4]["version"] = "fraud-detector-1-4-0"
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 5: the report's served interval differs" in capsys.readouterr().out

    document = report_document()
    del document["deployments"][0]["changes"][5]
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 6: the signed history's change is missing" in capsys.readouterr().out

    document = report_document()
    document["deployments"][0]["stableMarkings"][0]["actor"] = "mallory"
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 1: the report's stable marking differs" in capsys.readouterr().out

    document = report_document()
    deployment = document["deployments"][0]
    fake = {**deployment["stableMarkings"][0], "revision": 2, "version": "fraud-detector-1-4-0"}
    deployment["stableMarkings"].append({**fake, "source": "event", "signatureState": "unsigned"})
    deployment["timeline"][1]["stable"] = True
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 2: the report's" in capsys.readouterr().out, "a stable marking the signed history denies"

    document = report_document()
    document["deployments"][0]["quarantines"][0]["actor"] = "mallory"
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 3: the report's quarantine" in capsys.readouterr().out


def test_an_entry_signed_by_an_unknown_key_fails(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    stranger = SigningKey.generate()
    document = report_document()
    deployment = document["deployments"][0]
    for entry in deployment["history"]:
        if entry["revision"] == 5:
            entry["keyId"] = stranger.key_id
            entry["signature"] = stranger.sign(trust.entry_message(SUBJECT, entry["hash"]))
    for change in deployment["changes"]:
        if change["revision"] == 5:
            change["keyId"] = stranger.key_id
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 5: entry unknown key id" in capsys.readouterr().out
    stranger_file = tmp_path / "stranger.pem"
    stranger_file.write_text(stranger.public_pem())
    assert verify_report(write(tmp_path, document), key_file, stranger_file) == 0, "both keys trusted"


def test_a_flipped_stable_flag_or_a_removed_revision_fails(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    document = report_document()
    for entry in document["deployments"][0]["history"]:
        if entry["revision"] == 2:
            entry["stable"] = True
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 2: marked stable without a signed stable mark" in capsys.readouterr().out

    document = report_document()
    deployment = document["deployments"][0]
    deployment["history"] = [e for e in deployment["history"] if e["revision"] != 3]
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "revision 3: revision removed" in capsys.readouterr().out


def test_a_report_of_unsigned_entries_exits_5_and_is_not_called_verified(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    document = report_document(entries=scenario_history(key=None))
    assert verify_report(write(tmp_path, document), key_file) == common.EXIT_UNSIGNED
    out = capsys.readouterr().out
    assert "UNSIGNED" in out
    assert "verified" not in out


def test_usage_and_old_reports(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    document = report_document()
    path = write(tmp_path, document)
    with pytest.raises(SystemExit) as no_key:
        verify_report(path)
    assert no_key.value.code == common.EXIT_USAGE
    with pytest.raises(SystemExit) as with_deployment:
        main(["audit", "verify", "fraud", "--report", str(path), "--public-key", str(key_file)])
    assert with_deployment.value.code == common.EXIT_USAGE
    not_json = tmp_path / "report.html"
    not_json.write_text("<!DOCTYPE html>")
    with pytest.raises(SystemExit) as html:
        verify_report(not_json, key_file)
    assert html.value.code == common.EXIT_USAGE
    document["schema"] = "modelledger.report/v1"
    assert verify_report(write(tmp_path, document), key_file) == 1
    assert "embeds no signed history" in capsys.readouterr().out
    document = report_document()
    document["deployments"][0]["history"][0]["revision"] = "seven"
    assert verify_report(write(tmp_path, document), key_file) == 1


def test_the_embedded_history_is_the_status_history_verbatim() -> None:
    entries = scenario_history()
    report = Report.model_validate(report_document(entries=entries))
    assert report.deployments[0].history == [e.to_wire() for e in entries]


# --- status histories and the audit log, with a stand-in cluster ------------------------------------


class FakeCluster:
    """Enough of cli.common.Cluster for `audit verify` and `audit public-key`."""

    namespace = "ml"
    client = None
    deployments: ClassVar[dict[str, dict[str, Any]]] = {}
    key: ClassVar[SigningKey]

    def __init__(self, _args: Any) -> None:
        pass

    def get_deployment(self, name: str) -> dict[str, Any]:
        return self.deployments[name]


def raw_deployment(status: ModelDeploymentStatus, limit: int = 10) -> dict[str, Any]:
    return {
        "apiVersion": "modelledger.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": sh.SUBJECT.name, "namespace": sh.SUBJECT.namespace, "uid": sh.SUBJECT.uid},
        "spec": {"modelName": "fraud", "version": "m-1", "revisionHistoryLimit": limit},
        "status": status.to_wire(),
    }


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> type[FakeCluster]:
    operator_key = SigningKey.generate()
    FakeCluster.deployments = {}
    monkeypatch.setattr(audit_cli, "Cluster", FakeCluster)
    monkeypatch.setattr(keys, "read_keyring", lambda _core, _ns: Keyring.of(operator_key.public))
    monkeypatch.setattr(
        keys, "current_public_key", lambda _core, _ns: (operator_key.key_id, operator_key.public_pem())
    )
    FakeCluster.key = operator_key
    return FakeCluster


def verify_deployment(status: ModelDeploymentStatus, fake: type[FakeCluster]) -> int:
    fake.deployments = {sh.SUBJECT.name: raw_deployment(status)}
    return main(["audit", "verify", sh.SUBJECT.name, "-n", "ml"])


def test_status_histories_verify_signed_fail_tampered_and_exit_5_unsigned(
    cluster: type[FakeCluster], capsys: pytest.CaptureFixture[str]
) -> None:
    key = cluster.key
    status = sh.signed_status(4, key, stable=(2,))
    assert verify_deployment(status, cluster) == 0
    assert "4 revisions, every one signed" in capsys.readouterr().out

    flipped = [e.model_copy(update={"stable": False}) if e.revision == 2 else e for e in status.history]
    assert verify_deployment(status.model_copy(update={"history": flipped}), cluster) == 1
    assert "revision 2: has a stable mark but is not stable" in capsys.readouterr().out

    stranger = SigningKey.generate()
    forged = sh.signed_status(4, stranger, stable=(2,))
    assert verify_deployment(forged, cluster) == 1
    assert "revision 1: entry unknown key id" in capsys.readouterr().out

    assert verify_deployment(sh.signed_status(3, None), cluster) == common.EXIT_UNSIGNED
    out = capsys.readouterr().out
    assert "UNSIGNED" in out
    assert "verified" not in out


def test_the_audit_log_verifies_with_the_public_key_and_no_cluster(
    tmp_path: Path, key_file: Path, offline: None, capsys: pytest.CaptureFixture[str]
) -> None:
    tip = audit_chain.ChainTip()
    lines = []
    for revision in (1, 2, 3):
        fields = {"action": "Deployed", "namespace": "ml", "deployment": "fraud", "revision": revision}
        record = audit_chain.seal(fields, prev_hash=tip.hash, seq=tip.seq + 1, key=KEY)
        tip = audit_chain.ChainTip(record["hash"], record["seq"])
        lines.append(audit_chain.to_line(record))
    log = tmp_path / "audit.jsonl"
    log.write_text("".join(lines))
    assert main(["audit", "verify", "--file", str(log), "--public-key", str(key_file)]) == 0
    assert "3 records, every one signed" in capsys.readouterr().out
    forged = json.loads(lines[1])
    forged["actor"] = "mallory"
    forged["hash"] = audit_chain.record_hash(forged)  # re-hashed, but not re-signed
    log.write_text(lines[0] + audit_chain.to_line(forged) + lines[2])
    assert main(["audit", "verify", "--file", str(log), "--public-key", str(key_file)]) == 1
    assert (
        "line 2 (seq 2, ml/fraud revision 2 Deployed): signature does not verify" in capsys.readouterr().out
    )


def test_public_key_prints_the_pem_or_exits_3(
    cluster: type[FakeCluster], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    key = cluster.key
    assert main(["audit", "public-key"]) == 0
    captured = capsys.readouterr()
    assert captured.out == key.public_pem()
    assert key.key_id in captured.err
    monkeypatch.setattr(keys, "current_public_key", lambda _core, _ns: None)
    with pytest.raises(SystemExit) as missing:
        main(["audit", "public-key", "--operator-namespace", "elsewhere"])
    assert missing.value.code == common.EXIT_NOT_FOUND


# --- the exit code table ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(404, 3), (401, 3), (403, 3), (0, 4), (503, 4), (500, 1), (422, 1)],
)
def test_api_errors_map_to_the_exit_code_table(status: int, code: int) -> None:
    with pytest.raises(SystemExit) as exited:
        common.api_error(ApiException(status=status, reason="x"), "ModelDeployment fraud")
    assert exited.value.code == code


def test_a_connection_error_exits_4(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(_self: Any, _args: Any) -> None:
        raise urllib3.exceptions.MaxRetryError(None, "/apis", reason=None)

    monkeypatch.setattr(common.Cluster, "__init__", refuse)
    monkeypatch.setattr(audit_cli, "Cluster", common.Cluster)
    with pytest.raises(SystemExit) as exited:
        main(["audit", "verify", "fraud", "-n", "ml"])
    assert exited.value.code == common.EXIT_UNREACHABLE
