"""Manifests the unit and integration tests share: the valid examples, a table of malformed ones (each
with the field its rejection must name), manifests whose unknown fields are pruned, and a hypothesis
strategy of valid objects. The pydantic models and the apiserver must give the same verdict on all."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import strategies as st

from modelledger.api import format_duration

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def load_example(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())
    return document


MODEL_VERSION = load_example("fraud-detector-1-4-0")
MODEL_DEPLOYMENT = load_example("fraud-detector-deployment")
DELETE = object()


def steps(path: str) -> list[str | int]:
    """`spec.rollback.rules[0].for` → ["spec", "rollback", "rules", 0, "for"]."""
    return [name if name else int(index) for name, index in _STEP.findall(path)]


def changed(base: dict[str, Any], **edits: Any) -> dict[str, Any]:
    """A copy of `base` with each `path=value` set (paths use `__` for `.`), or removed for DELETE."""
    document = copy.deepcopy(base)
    for key, value in edits.items():
        set_path(document, key.replace("__", "."), value)
    return document


def set_path(document: Any, path: str, value: Any) -> None:
    *parents, last = steps(path)
    for step in parents:
        document = document[step]
    if value is DELETE:
        del document[last]
    else:
        document[last] = value


def error_path(loc: tuple[str | int, ...]) -> str:
    """A pydantic error location in the apiserver's notation: ("spec", "rules", 0) → `spec.rules[0]`."""
    path = ""
    for step in loc:
        path += f"[{step}]" if isinstance(step, int) else (f".{step}" if path else step)
    return path


def names_field(reported: str, expected: str) -> bool:
    """Whether a reported path is the expected field or inside it (`spec.x[1]` names `spec.x`)."""
    return reported == expected or reported.startswith((expected + ".", expected + "["))


@dataclass(frozen=True)
class Malformed:
    id: str
    manifest: dict[str, Any]
    field: str
    """The field path the rejection must name, in the apiserver's notation."""

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])


MV, MD = MODEL_VERSION, MODEL_DEPLOYMENT
RULE = "spec.rollback.rules[0]"
_DIGEST = "sha256:" + "ab" * 32
_COMPONENT = MV["spec"]["serving"]["components"][0]
_RULE = MD["spec"]["rollback"]["rules"][0]


def _mv(id: str, field: str, value: Any) -> Malformed:
    return Malformed(id, changed(MV, **{field.replace(".", "__"): value}), field)


def _md(id: str, field: str, value: Any) -> Malformed:
    return Malformed(id, changed(MD, **{field.replace(".", "__"): value}), field)


def _template(id: str, field: str, template: dict[str, Any]) -> Malformed:
    """A ModelDeployment whose spec.template is `template` (the example's, plus this), naming `field`."""
    return Malformed(id, changed(MD, spec__template={**MD["spec"]["template"], **template}), field)


def _container_security(id: str, field: str, value: Any) -> Malformed:
    """`field` may be nested one level (`capabilities.add`)."""
    parent, _, last = field.rpartition(".")
    context: dict[str, Any] = {"runAsNonRoot": True, **({parent: {last: value}} if parent else {last: value})}
    return _template(id, f"spec.template.securityContext.{field}", {"securityContext": context})


def _volume(id: str, field: str, volume: dict[str, Any]) -> Malformed:
    return _template(id, f"spec.template.volumes[0].{field}", {"volumes": [{"name": "data", **volume}]})


OVERFLOWING_DURATION = "99999999999h"
"""Matches the duration pattern, but is past what `timedelta` and Go's time.Duration hold."""
_PINNED = "ghcr.io/acme/fraud-server@sha256:" + "ab" * 32
_INIT = [{"name": "escalate", "image": "busybox", "securityContext": {"privileged": True}}]


MALFORMED: tuple[Malformed, ...] = (
    # ModelVersion
    Malformed("mv-no-spec", changed(MV, spec=DELETE), "spec"),
    _mv("mv-missing-model-name", "spec.modelName", DELETE),
    _mv("mv-model-name-not-dns-label", "spec.modelName", "Fraud_Detector"),
    _mv("mv-missing-version", "spec.version", DELETE),
    _mv("mv-empty-version", "spec.version", ""),
    _mv("mv-missing-artifact-digest", "spec.artifact.digest", DELETE),
    _mv("mv-artifact-digest-too-short", "spec.artifact.digest", "sha256:abc123"),
    _mv("mv-artifact-digest-upper-case", "spec.artifact.digest", "sha256:" + "AB" * 32),
    _mv("mv-artifact-digest-md5", "spec.artifact.digest", "md5:" + "ab" * 16),
    _mv("mv-artifact-digest-number", "spec.artifact.digest", 12345),
    _mv("mv-empty-artifact-uri", "spec.artifact.uri", ""),
    _mv("mv-missing-serving", "spec.serving", DELETE),
    _mv("mv-empty-image", "spec.serving.image", ""),
    _mv("mv-port-zero", "spec.serving.port", 0),
    _mv("mv-port-string", "spec.serving.port", "8080"),
    _mv("mv-component-digest-bad", "spec.serving.components[0].digest", "sha256:xyz"),
    Malformed(
        "mv-duplicate-component-names",
        changed(MV, spec__serving__components=[_COMPONENT, {**_COMPONENT, "digest": _DIGEST}]),
        "spec.serving.components",
    ),
    _mv("mv-env-not-a-list", "spec.serving.env", {"THRESHOLD": "0.7"}),
    _mv("mv-dataset-digest-bad", "spec.provenance.data[0].digest", "sha256:" + "0" * 63),
    _mv("mv-commit-short", "spec.provenance.code.commit", "c4bfa83"),
    _mv("mv-metric-not-a-number", "spec.metrics.auc", "high"),
    _mv("mv-hyperparameter-not-a-string", "spec.hyperparameters.max_depth", 8),
    _mv("mv-duplicate-tags", "spec.tags", ["compliant", "compliant"]),
    _mv("mv-revoked-not-a-bool", "spec.revoked", "yes"),
    Malformed("mv-revoked-without-reason", changed(MV, spec__revoked=True), "spec.revoked"),
    Malformed(
        "mv-revocation-reason-32-kib",
        changed(MV, spec__revoked=True, spec__revocationReason="x" * 32 * 1024),
        "spec.revocationReason",
    ),
    _mv("mv-revocation-reason-1025-characters", "spec.revocationReason", "x" * 1025),
    # Images must be pinned by digest: a tag can be moved to other content.
    _mv("mv-image-tag-only", "spec.serving.image", "ghcr.io/acme/fraud-server:1.4.0"),
    _mv("mv-image-no-tag-no-digest", "spec.serving.image", "ghcr.io/acme/fraud-server"),
    _mv("mv-image-short-digest", "spec.serving.image", "ghcr.io/acme/fraud-server@sha256:abc123"),
    _mv("mv-image-digest-upper-case", "spec.serving.image", _PINNED.upper()),
    _mv("mv-image-digest-then-text", "spec.serving.image", _PINNED + " --privileged"),
    # ModelDeployment
    Malformed("md-no-spec", changed(MD, spec=DELETE), "spec"),
    _md("md-missing-model-name", "spec.modelName", DELETE),
    _md("md-missing-version", "spec.version", DELETE),
    _md("md-version-not-an-object-name", "spec.version", "Fraud Detector"),
    _md("md-negative-replicas", "spec.replicas", -1),
    _md("md-replicas-string", "spec.replicas", "2"),
    _md("md-replicas-fraction", "spec.replicas", 1.5),
    _md("md-revision-history-limit-0", "spec.revisionHistoryLimit", 0),
    _md("md-revision-history-limit-101", "spec.revisionHistoryLimit", 101),
    _md("md-replicas-1001", "spec.replicas", 1001),
    _md("md-template-not-an-object", "spec.template", "big-nodes"),
    _md("md-bake-time-without-unit", "spec.stability.bakeTime", "10"),
    _md("md-bake-time-zero", "spec.stability.bakeTime", "0s"),
    _md("md-interval-in-days", "spec.rollback.interval", "1d"),
    _md("md-interval-number", "spec.rollback.interval", 15),
    _md("md-negative-cooldown", "spec.rollback.cooldown", "-5m"),
    _md("md-automatic-string", "spec.rollback.automatic", "true"),
    _md("md-prometheus-url-without-scheme", "spec.rollback.prometheus.url", "prometheus:9090"),
    _md("md-rules-not-a-list", "spec.rollback.rules", {"error-rate": {}}),
    Malformed(
        "md-duplicate-rule-names",
        changed(MD, spec__rollback__rules=[_RULE, {**_RULE, "threshold": 0.1}]),
        "spec.rollback.rules",
    ),
    _md("md-rule-name-with-spaces", f"{RULE}.name", "Error Rate"),
    _md("md-rule-missing-name", f"{RULE}.name", DELETE),
    _md("md-rule-empty-query", f"{RULE}.query", ""),
    _md("md-rule-unknown-comparator", f"{RULE}.comparator", "=>"),
    _md("md-rule-missing-comparator", f"{RULE}.comparator", DELETE),
    _md("md-rule-bad-aggregate", f"{RULE}.aggregate", "median"),
    _md("md-rule-threshold-string", f"{RULE}.threshold", "0.05"),
    _md("md-rule-missing-threshold", f"{RULE}.threshold", DELETE),
    _md("md-rule-for-in-words", f"{RULE}.for", "1 minute"),
    _md("md-rule-for-zero", f"{RULE}.for", "0m0s"),
    _md("md-rule-bad-on-no-data", f"{RULE}.onNoData", "Ignore"),
    _md("md-rule-bad-on-error", f"{RULE}.onError", "retry"),
    # Durations: at most a year, parsed without overflow; the rule interval at least a second.
    _md("md-interval-overflowing", "spec.rollback.interval", OVERFLOWING_DURATION),
    _md("md-bake-time-overflowing", "spec.stability.bakeTime", OVERFLOWING_DURATION),
    _md("md-rule-for-overflowing", f"{RULE}.for", OVERFLOWING_DURATION),
    _md("md-interval-1ms", "spec.rollback.interval", "1ms"),
    _md("md-interval-999ms", "spec.rollback.interval", "999ms"),
    _md("md-bake-time-over-a-year", "spec.stability.bakeTime", "8761h"),
    _md("md-cooldown-over-a-year", "spec.rollback.cooldown", "525601m"),
    _md("md-rule-for-over-a-year", f"{RULE}.for", "31536000001ms"),
    Malformed(
        "md-approval-timeout-over-a-year",
        changed(MD, spec__approval={"requiredFor": ["Rollback"], "timeout": "8760h1s"}),
        "spec.approval.timeout",
    ),
    # The pod template: every field that would take the pod outside Pod Security restricted.
    _template(
        "md-template-service-account-name",
        "spec.template.serviceAccountName",
        {"serviceAccountName": "admin"},
    ),
    _template("md-template-service-account", "spec.template.serviceAccount", {"serviceAccount": "admin"}),
    _template(
        "md-template-automount-token",
        "spec.template.automountServiceAccountToken",
        {"automountServiceAccountToken": True},
    ),
    _template("md-template-host-network", "spec.template.hostNetwork", {"hostNetwork": True}),
    _template("md-template-host-pid", "spec.template.hostPID", {"hostPID": True}),
    _template("md-template-host-ipc", "spec.template.hostIPC", {"hostIPC": True}),
    _template("md-template-host-users", "spec.template.hostUsers", {"hostUsers": False}),
    _template(
        "md-template-share-process-namespace",
        "spec.template.shareProcessNamespace",
        {"shareProcessNamespace": True},
    ),
    _template("md-template-init-containers", "spec.template.initContainers", {"initContainers": _INIT}),
    _template("md-template-containers", "spec.template.containers", {"containers": _INIT}),
    _template(
        "md-template-ephemeral-containers",
        "spec.template.ephemeralContainers",
        {"ephemeralContainers": _INIT},
    ),
    _template("md-template-image", "spec.template.image", {"image": "busybox"}),
    _template("md-template-command", "spec.template.command", {"command": ["sh", "-c", "id"]}),
    _template(
        "md-template-runtime-class-name", "spec.template.runtimeClassName", {"runtimeClassName": "runc"}
    ),
    _template("md-template-node-name", "spec.template.nodeName", {"nodeName": "control-plane"}),
    _template(
        "md-template-image-pull-secrets",
        "spec.template.imagePullSecrets",
        {"imagePullSecrets": [{"name": "x"}]},
    ),
    _template(
        "md-template-apparmor-annotation",
        "spec.template.metadata",
        {"metadata": {"annotations": {"container.apparmor.security.beta.kubernetes.io/model": "unconfined"}}},
    ),
    _volume("md-template-host-path", "hostPath", {"hostPath": {"path": "/"}}),
    _volume(
        "md-template-persistent-volume-claim",
        "persistentVolumeClaim",
        {"persistentVolumeClaim": {"claimName": "x"}},
    ),
    _volume(
        "md-template-projected-service-account-token",
        "projected.sources[0].serviceAccountToken",
        {"projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}},
    ),
    _container_security("md-template-privileged", "privileged", True),
    _container_security("md-template-allow-privilege-escalation", "allowPrivilegeEscalation", True),
    _container_security("md-template-run-as-root", "runAsUser", 0),
    _container_security("md-template-run-as-non-root-false", "runAsNonRoot", False),
    _container_security("md-template-capability-sys-admin", "capabilities.add", ["SYS_ADMIN"]),
    _container_security("md-template-seccomp-unconfined", "seccompProfile.type", "Unconfined"),
    _container_security("md-template-proc-mount-unmasked", "procMount", "Unmasked"),
    _container_security("md-template-se-linux-options", "seLinuxOptions", {"type": "spc_t"}),
    _template(
        "md-template-pod-run-as-root",
        "spec.template.podSecurityContext.runAsUser",
        {"podSecurityContext": {"runAsUser": 0}},
    ),
    _template(
        "md-template-pod-sysctls",
        "spec.template.podSecurityContext.sysctls",
        {"podSecurityContext": {"sysctls": [{"name": "kernel.msgmax", "value": "1"}]}},
    ),
    _template(
        "md-template-probe-host",
        "spec.template.readinessProbe.httpGet.host",
        {"readinessProbe": {"httpGet": {"host": "169.254.169.254", "port": 80}}},
    ),
    _template(
        "md-template-env-overrides-the-model-digest",
        "spec.template.env[0].name",
        {"env": [{"name": "MODEL_DIGEST", "value": _DIGEST}]},
    ),
    _template(
        "md-template-env-value-and-value-from",
        "spec.template.env[0]",
        {"env": [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
    ),
    _template(
        "md-template-probe-port-name-without-a-letter",
        "spec.template.readinessProbe.httpGet.port",
        {"readinessProbe": {"httpGet": {"port": "8080"}}},
    ),
    _template(
        "md-template-mount-names-no-volume",
        "spec.template.volumeMounts",
        {"volumeMounts": [{"name": "host", "mountPath": "/host"}]},
    ),
    _template(
        "md-template-quantity-not-a-quantity",
        "spec.template.resources.limits.cpu",
        {"resources": {"limits": {"cpu": "lots"}}},
    ),
)


@dataclass(frozen=True)
class Pruned:
    """A manifest with fields the schema does not know: the apiserver prunes them, the models drop them."""

    id: str
    manifest: dict[str, Any]
    expected: dict[str, Any]
    unknown: tuple[str, ...]

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])


PRUNED: tuple[Pruned, ...] = (
    Pruned(
        "mv-unknown-fields",
        changed(MV, spec__owner="team-fraud", spec__artifact__checksum="md5:00", spec__serving__gpu=True),
        MV,
        ("spec.owner", "spec.artifact.checksum", "spec.serving.gpu"),
    ),
    Pruned(
        "md-unknown-fields",
        changed(MD, spec__strategy="Canary", **{"spec__rollback__rules[0]__severity": "page"}),
        MD,
        ("spec.strategy", "spec.rollback.rules[0].severity"),
    ),
    # A key that is no field of a Kubernetes pod cannot reach one: pruned (kubectl refuses it by default).
    Pruned(
        "md-template-unknown-fields",
        changed(MD, spec__template__gpuCount=2, spec__template__resources__gpus=1),
        MD,
        ("spec.template.gpuCount", "spec.template.resources.gpus"),
    ),
)


# --- valid objects, for round trips -------------------------------------------------------------------

_label = st.from_regex(r"[a-z]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True)
_digest = st.binary(min_size=32, max_size=32).map(lambda raw: "sha256:" + raw.hex())
_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=24)
_word = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=12)
_number = st.floats(allow_nan=False, allow_infinity=False, width=64)
_duration = st.integers(min_value=1, max_value=10 * 86_400_000).map(
    lambda ms: format_duration(timedelta(milliseconds=ms))
)
_interval = st.integers(min_value=1000, max_value=3_600_000).map(
    lambda ms: format_duration(timedelta(milliseconds=ms))
)
_time = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0).isoformat().replace("+00:00", "Z"))


def _unique_by(key: str, items: st.SearchStrategy[dict[str, Any]], max_size: int) -> Any:
    return st.lists(items, max_size=max_size, unique_by=lambda item: item[key])


def _optional(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """Dicts holding any subset of `fields`."""
    return st.fixed_dictionaries({}, optional=fields)


_component = st.fixed_dictionaries({"name": _label, "uri": _word, "digest": _digest})
_image = st.builds(
    lambda repository, tag, digest: f"registry.example.com/{repository}{tag}@{digest}",
    _label,
    st.sampled_from(["", ":1.4.0", ":latest"]),
    _digest,
)

model_version_specs = st.fixed_dictionaries(
    {
        "modelName": _label,
        "version": _word,
        "artifact": st.fixed_dictionaries({"uri": _word, "digest": _digest}, optional={"format": _label}),
        "serving": st.fixed_dictionaries(
            {"image": _image},
            optional={
                "port": st.integers(1, 65535),
                "args": st.lists(_text, max_size=3),
                "command": st.lists(_text, max_size=2),
                "env": _unique_by("name", st.fixed_dictionaries({"name": _word, "value": _text}), 3),
                "components": _unique_by("name", _component, 3),
            },
        ),
    },
    optional={
        "provenance": _optional(
            {
                "code": st.fixed_dictionaries(
                    {"repository": _word, "commit": st.binary(min_size=20, max_size=20).map(bytes.hex)}
                ),
                "data": _unique_by("name", _component, 2),
                "trainingRun": _word,
            }
        ),
        "hyperparameters": st.dictionaries(_label, _text, max_size=4),
        "metrics": st.dictionaries(_label, _number, max_size=4),
        "tags": st.lists(_label, max_size=3, unique=True),
        "revoked": st.just(False),
        "revocationReason": _text,
    },
)

_rule = st.fixed_dictionaries(
    {
        "name": _label,
        "query": _text.filter(bool),
        "comparator": st.sampled_from([">", ">=", "<", "<=", "==", "!="]),
        "threshold": _number,
    },
    optional={
        "aggregate": st.sampled_from(["max", "min", "sum", "avg"]),
        "for": _duration,
        "onNoData": st.sampled_from(["Hold", "Breach", "Pass"]),
        "onError": st.sampled_from(["Hold", "Breach", "Pass"]),
    },
)

_quantity = st.one_of(st.integers(0, 64), st.sampled_from(["100m", "1", "1.5", "512Mi", "2Gi", "1e3"]))
_resources = st.dictionaries(st.sampled_from(["cpu", "memory", "nvidia.com/gpu"]), _quantity, max_size=3)
_env_name = st.from_regex(r"[A-LN-Z_][A-Z0-9_]{0,10}", fullmatch=True)
pod_templates = _optional(
    {
        "resources": _optional({"limits": _resources, "requests": _resources}),
        "env": _unique_by("name", st.fixed_dictionaries({"name": _env_name, "value": _text}), 3),
        "nodeSelector": st.dictionaries(_label, _label, max_size=2),
        "tolerations": st.lists(
            st.fixed_dictionaries(
                {"key": _label, "operator": st.just("Exists")},
                optional={"effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"])},
            ),
            max_size=2,
        ),
        "securityContext": _optional(
            {
                "allowPrivilegeEscalation": st.just(False),
                "runAsNonRoot": st.just(True),
                "runAsUser": st.integers(1, 65535),
                "readOnlyRootFilesystem": st.booleans(),
                "capabilities": _optional(
                    {
                        "drop": st.lists(
                            st.sampled_from(["ALL", "NET_RAW", "CHOWN"]), max_size=2, unique=True
                        ),
                        "add": st.just(["NET_BIND_SERVICE"]),
                    }
                ),
                "seccompProfile": st.just({"type": "RuntimeDefault"}),
            }
        ),
        "podSecurityContext": _optional({"runAsNonRoot": st.just(True), "fsGroup": st.integers(1, 65535)}),
        "readinessProbe": st.builds(
            lambda port: {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 5},
            st.one_of(st.integers(1, 65535), st.just("http")),
        ),
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        "priorityClassName": _label,
        "automountServiceAccountToken": st.just(False),
    }
)

model_deployment_specs = st.fixed_dictionaries(
    {"modelName": _label, "version": _label},
    optional={
        "replicas": st.integers(0, 1000),
        "template": pod_templates,
        "revisionHistoryLimit": st.integers(1, 100),
        "stability": _optional({"bakeTime": _duration}),
        "rollback": _optional(
            {
                "automatic": st.booleans(),
                "interval": _interval,
                "cooldown": _duration,
                "prometheus": st.builds(lambda host: {"url": f"http://{host}:9090"}, _label),
                "rules": _unique_by("name", _rule, 3),
            }
        ),
    },
)

_pinned_component = st.fixed_dictionaries({"name": _label, "digest": _digest})
_rule_state = st.sampled_from(["Pass", "Pending", "Breached", "NoData", "Error"])
_history_entry = st.fixed_dictionaries(
    {
        "version": _label,
        "cause": st.sampled_from(["Deploy", "AutomaticRollback", "ManualRollback", "Revocation"]),
        "at": _time,
        "actor": _word,
        "hash": _digest,
    },
    optional={
        "rule": _label,
        "reason": _text,
        "stable": st.booleans(),
        "evidence": st.fixed_dictionaries(
            {"query": _text, "threshold": _number, "comparator": st.sampled_from([">", "<"])},
            optional={"value": _number},
        ),
        "pipeline": st.fixed_dictionaries(
            {"artifactDigest": _digest, "image": _word},
            optional={"components": _unique_by("name", _pinned_component, 2)},
        ),
    },
)


def _numbered(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Newest first, revisions counting down to 1, as the operator writes them."""
    return [{**entry, "revision": len(entries) - index} for index, entry in enumerate(entries)]


model_deployment_statuses = _optional(
    {
        "observedGeneration": st.integers(0, 100),
        "phase": st.sampled_from(["Progressing", "Healthy", "Degraded", "RolledBack", "Failed"]),
        "desiredVersion": _label,
        "servingVersion": _label,
        "currentRevision": st.integers(1, 100),
        "stableRevision": st.integers(1, 100),
        "replicas": st.integers(0, 10),
        "quarantined": st.lists(_label, max_size=3, unique=True),
        "history": st.lists(_history_entry, max_size=3).map(_numbered),
        "rules": _unique_by(
            "name",
            st.fixed_dictionaries(
                {"name": _label, "state": _rule_state},
                optional={"value": _number, "since": _time, "message": _text},
            ),
            3,
        ),
        "requests": _unique_by(
            "id",
            st.fixed_dictionaries(
                {"id": _word, "kind": st.just("Rollback"), "requestedBy": _word, "at": _time},
                optional={"reason": _text, "toRevision": st.integers(1, 50)},
            ),
            2,
        ),
        "conditions": _unique_by(
            "type",
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["Available", "Progressing", "RolledBack", "RulesHealthy"]),
                    "status": st.sampled_from(["True", "False", "Unknown"]),
                    "reason": st.from_regex(r"[A-Z][A-Za-z]{0,15}", fullmatch=True),
                    "lastTransitionTime": _time,
                },
                optional={"message": _text, "observedGeneration": st.integers(0, 100)},
            ),
            3,
        ),
    }
)
