"""The generated CRDs: committed files match the models, the schemas are structural, and the CRD carries
the subresources, columns, names and validation rules the design asks for."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelledger.api.common import DATA_DIGEST_PATTERN
from modelledger.api.crdgen import crds, json_schema, structural
from modelledger.api.generated import generated_files, stale_files
from modelledger.api.modelversion import IMMUTABLE_MESSAGE, MUTABLE_SPEC_FIELDS, ModelVersionSpec
from modelledger.cli.main import main

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS = crds()
MV_CRD = CRDS["modelversions.yaml"]
MD_CRD = CRDS["modeldeployments.yaml"]
MDREQ_CRD = CRDS["modeldeploymentrequests.yaml"]


def _schema(crd: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _version(crd: dict[str, Any]) -> dict[str, Any]:
    version: dict[str, Any] = crd["spec"]["versions"][0]
    return version


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{name}")
    if "items" in node:
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}.*")


ALL_NODES = [
    (f"{crd['spec']['names']['kind']}{path}", node)
    for crd in CRDS.values()
    for path, node in _nodes(_schema(crd))
]


def test_committed_crds_and_docs_match_the_models() -> None:
    """Fails when crds/ or docs/api.md were not regenerated after a model change: run `make crds`."""
    stale = stale_files(REPO_ROOT, generated_files())
    assert stale == [], f"out of date: {[str(path) for path in stale]}; run `modelledger crds`"


def test_generation_is_deterministic() -> None:
    assert generated_files() == generated_files()


def test_yaml_reads_back_as_the_crd_without_aliases() -> None:
    for name, crd in CRDS.items():
        text = (REPO_ROOT / "crds" / name).read_text()
        assert "&id" not in text, "YAML anchors make the CRD hard to read"
        assert yaml.safe_load(text) == crd


@pytest.mark.parametrize(("path", "node"), ALL_NODES, ids=[path for path, _ in ALL_NODES])
def test_every_node_is_structural(path: str, node: dict[str, Any]) -> None:
    forbidden = {
        "$ref",
        "$defs",
        "anyOf",
        "oneOf",
        "allOf",
        "not",
        "title",
        "const",
        "uniqueItems",
        "prefixItems",
    }
    assert not forbidden & node.keys()
    assert (
        "type" in node
        or node.get("x-kubernetes-preserve-unknown-fields")
        or node.get("x-kubernetes-int-or-string")
    )
    assert node.get("default", "absent") is not None
    if node.get("type") == "object" and "additionalProperties" in node:
        assert isinstance(node["additionalProperties"], dict), "free-form objects use preserve-unknown-fields"
    for key in ("exclusiveMinimum", "exclusiveMaximum"):
        assert not isinstance(node.get(key), int | float) or isinstance(node.get(key), bool)


def test_structural_refuses_what_kubernetes_would() -> None:
    with pytest.raises(ValueError, match="union"):
        structural(
            {"type": "object", "properties": {"x": {"anyOf": [{"type": "string"}, {"type": "integer"}]}}}
        )
    with pytest.raises(ValueError, match="structural"):
        structural({"type": "object", "properties": {"x": {"type": "string", "const": "a"}}})


def test_optional_fields_are_nullable_and_have_no_null_default() -> None:
    provenance = _schema(MV_CRD)["properties"]["spec"]["properties"]["provenance"]
    assert provenance["nullable"] is True
    assert provenance["type"] == "object"
    assert "default" not in provenance


def test_descriptions_come_from_the_field_docstrings() -> None:
    artifact = _schema(MV_CRD)["properties"]["spec"]["properties"]["artifact"]
    assert artifact["description"] == "The trained model file, pinned by digest."
    assert "sha256" in artifact["properties"]["digest"]["description"]
    # Items of scalar lists and values of maps are described by their list or map.
    described = [
        path
        for path, node in ALL_NODES
        if path.count(".") > 1 and not node.get("description") and not path.endswith(("[]", ".*"))
    ]
    assert described == []


def test_names_scope_and_subresources() -> None:
    for crd, short in ((MV_CRD, "mv"), (MD_CRD, "mdep")):
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert crd["spec"]["group"] == "modelledger.io"
        assert crd["spec"]["scope"] == "Namespaced"
        assert crd["spec"]["names"]["shortNames"] == [short]
        assert crd["spec"]["names"]["categories"] == ["modelledger"]
        version = _version(crd)
        assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
        assert version["subresources"]["status"] == {}
        status = _schema(crd)["properties"]["status"]
        assert status["x-kubernetes-preserve-unknown-fields"] is True, "Kopf stores its state in status"
    assert "scale" not in _version(MV_CRD)["subresources"]
    scale = _version(MD_CRD)["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.replicas"
    assert scale["statusReplicasPath"] == ".status.replicas"
    assert "replicas" in _schema(MD_CRD)["properties"]["status"]["properties"]


def test_printer_columns() -> None:
    def columns(crd: dict[str, Any]) -> list[str]:
        return [
            column["name"]
            for column in _version(crd)["additionalPrinterColumns"]
            if not column.get("priority")
        ]

    assert columns(MV_CRD) == ["Model", "Version", "Digest", "Phase", "Age"]
    assert columns(MD_CRD) == ["Model", "Desired", "Serving", "Revision", "Stable", "Phase", "Age"]


def test_every_column_path_exists_in_the_schema() -> None:
    for crd in CRDS.values():
        for column in _version(crd)["additionalPrinterColumns"]:
            node = _schema(crd)
            for step in column["jsonPath"].strip(".").split("."):
                if step == "metadata":
                    break
                node = node["properties"][step]


def test_spec_is_immutable_except_revocation() -> None:
    spec = _schema(MV_CRD)["properties"]["spec"]
    for name, node in spec["properties"].items():
        rules = [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]
        if name in MUTABLE_SPEC_FIELDS:
            assert "self == oldSelf" not in rules
        else:
            assert "self == oldSelf" in rules, f"spec.{name} must be immutable"
    # Optional fields without defaults can appear or disappear, which a per-field rule does not see.
    optional = [
        name
        for name, node in spec["properties"].items()
        if name not in spec["required"] and "default" not in node
    ]
    presence_rules = " ".join(rule["rule"] for rule in spec["x-kubernetes-validations"])
    for name in optional:
        assert f"has(self.{name}) == has(oldSelf.{name})" in presence_rules
    assert all(rule["message"] for rule in spec["x-kubernetes-validations"])
    assert "create a new ModelVersion" in IMMUTABLE_MESSAGE


def test_transition_rules_sit_only_where_old_self_is_correlatable() -> None:
    """`oldSelf` works only on nodes reached through object properties and map-type lists."""

    def walk(node: dict[str, Any], correlatable: bool, path: str) -> Iterator[str]:
        for rule in node.get("x-kubernetes-validations", []):
            if "oldSelf" in rule["rule"] and not correlatable:
                yield path
        for name, child in node.get("properties", {}).items():
            yield from walk(child, correlatable, f"{path}.{name}")
        if "items" in node:
            keyed = node.get("x-kubernetes-list-type") == "map"
            yield from walk(node["items"], correlatable and keyed, f"{path}[]")
        if isinstance(node.get("additionalProperties"), dict):
            yield from walk(node["additionalProperties"], correlatable, f"{path}.*")

    for crd in CRDS.values():
        assert list(walk(_schema(crd), True, "")) == []


def test_everything_a_rule_reads_is_bounded() -> None:
    """Unbounded lists, maps and strings under a CEL rule blow the apiserver's cost budget."""
    for crd in CRDS.values():
        for path, node in _nodes(_schema(crd)):
            if "x-kubernetes-validations" not in node:
                continue
            for inner_path, inner in _nodes(node, path):
                kind = inner.get("type")
                if kind == "array":
                    assert "maxItems" in inner, inner_path
                # date-time strings are CEL timestamps, of fixed cost.
                if kind == "string" and "enum" not in inner and inner.get("format") != "date-time":
                    assert "maxLength" in inner, inner_path
                if kind == "object" and isinstance(inner.get("additionalProperties"), dict):
                    assert "maxProperties" in inner, inner_path


def test_digests_durations_and_limits_are_constrained() -> None:
    digests = [
        (path, node)
        for path, node in ALL_NODES
        if path.endswith(("digest", "Digest", ".hash"))
        and node.get("type") == "string"
        and "short" not in path
    ]
    assert len(digests) >= 6
    for path, node in digests:
        # A dataset may keep DVC's md5 where its content was not at hand to hash (docs/lineage.md#dvc).
        data = path == "ModelVersion.spec.provenance.data[].digest"
        assert node["pattern"] == (DATA_DIGEST_PATTERN if data else "^sha256:[0-9a-f]{64}$"), path
    spec = _schema(MD_CRD)["properties"]["spec"]["properties"]
    assert (spec["replicas"]["minimum"], spec["replicas"]["maximum"]) == (0, 1000)
    assert (spec["revisionHistoryLimit"]["minimum"], spec["revisionHistoryLimit"]["maximum"]) == (1, 100)
    # The template is typed: nothing free-form at its top, so nothing passes unchecked into the pod.
    assert "x-kubernetes-preserve-unknown-fields" not in spec["template"]
    assert spec["template"]["properties"]["hostPID"]["x-kubernetes-validations"][0]["rule"] == "false"
    rules = spec["rollback"]["properties"]["rules"]
    assert (rules["x-kubernetes-list-type"], rules["x-kubernetes-list-map-keys"]) == ("map", ["name"])
    rule = rules["items"]["properties"]
    assert rule["threshold"]["type"] == "number"
    assert rule["comparator"]["enum"] == [">", ">=", "<", "<=", "==", "!="]
    for duration in (
        rule["for"],
        spec["rollback"]["properties"]["interval"],
        spec["rollback"]["properties"]["cooldown"],
        spec["stability"]["properties"]["bakeTime"],
        spec["approval"]["properties"]["timeout"],
    ):
        assert (duration["type"], "pattern" in duration) == ("string", True)
        assert "duration(self) <= duration('8760h')" in duration["x-kubernetes-validations"][0]["rule"]
    interval = spec["rollback"]["properties"]["interval"]
    assert any("duration(self) >= duration('1s')" in r["rule"] for r in interval["x-kubernetes-validations"])
    image = _schema(MV_CRD)["properties"]["spec"]["properties"]["serving"]["properties"]["image"]
    assert image["minLength"] == 1
    assert image["pattern"].endswith("@sha256:[0-9a-f]{64}$")
    reason = _schema(MV_CRD)["properties"]["spec"]["properties"]["revocationReason"]
    assert reason["maxLength"] == 1024
    request = _schema(MDREQ_CRD)["properties"]["spec"]["properties"]["reason"]
    assert request["maxLength"] == 1024


def test_defaults_are_written_as_on_the_wire() -> None:
    spec = _schema(MD_CRD)["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == 1
    assert spec["revisionHistoryLimit"]["default"] == 10
    assert spec["stability"]["default"] == {"bakeTime": "10m"}
    rollback = spec["rollback"]["properties"]
    assert (rollback["interval"]["default"], rollback["cooldown"]["default"]) == ("15s", "5m")
    assert rollback["automatic"]["default"] is True
    rule = rollback["rules"]["items"]["properties"]
    assert (rule["aggregate"]["default"], rule["onNoData"]["default"], rule["onError"]["default"]) == (
        "max",
        "Hold",
        "Hold",
    )


def test_json_schema_of_a_model_is_available_for_tools() -> None:
    assert "$defs" in json_schema(ModelVersionSpec)


def test_cli_writes_and_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["crds", "--check"]) == 1
    assert main(["crds", "--output-dir", "crds"]) == 0
    assert sorted(path.name for path in (tmp_path / "crds").iterdir()) == [
        "modeldeploymentrequests.yaml",
        "modeldeployments.yaml",
        "modelversions.yaml",
    ]
    assert (tmp_path / "docs" / "api.md").is_file()
    assert main(["crds", "--check"]) == 0


def test_api_reference_lists_every_field() -> None:
    docs = generated_files()[Path("docs/api.md")]
    for field in (
        "spec.artifact.digest",
        "spec.rollback.rules[].onNoData",
        "status.history[].evidence.value",
        "spec.requester.username",
        "status.history[].stableMark.signature",
        "spec.approval.approverGroups",
        "spec.stability.bakeTime",
    ):
        assert f"`{field}`" in docs
    assert '`"10m"`' in docs
