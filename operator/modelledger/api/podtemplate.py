"""`ModelDeployment.spec.template`: the pod overrides a tenant may write, allowlisted.

An editor of ModelDeployments cannot create pods, but the operator creates them: whatever the template
lets through, the tenant gets. So it admits only what keeps the serving pod within Pod Security
`restricted`: resources, env, envFrom, probes, volume mounts and the image pull policy of the model
container; a container security context that only tightens; the pod's node selector, tolerations,
affinity, topology spread, priority class, a pod security context that only tightens, and volumes from
ConfigMaps, Secrets, emptyDir and projected ConfigMap/Secret/downward API sources.

How a refused field is rejected at admission, naming it, whatever the client (kubectl, `--validate=false`,
server-side apply, the API with no field validation):

A structural schema cannot say "no other keys" (additionalProperties: false is not allowed next to
properties), keys it does not declare are pruned before admission sees them, and CEL does not see them
either (not even under x-kubernetes-preserve-unknown-fields). A free-form map would let CEL iterate the
keys, but then its values have no schema CEL can read, and nothing nested (`securityContext.privileged`,
`volumes[].hostPath`) could be checked. So the schema is typed, and it also *declares* every other field
that the Kubernetes types (core/v1, 1.34) have at that place: PodSpec and Container at the top,
SecurityContext, PodSecurityContext, VolumeSource, VolumeProjection, EnvVarSource, probe handlers and
VolumeMount below. Each declared-but-refused field carries the CEL rule `false` with a message, so the
apiserver answers `spec.template.serviceAccountName: Invalid value: ...: not allowed ...`; the models
refuse the same fields with the same message (the `Refused` marker below does both).

A key that is no Kubernetes pod field at all (a typo, or a field of a later Kubernetes) is pruned by the
apiserver with a warning (kubectl's default strict validation refuses it as an unknown field) and dropped
by the models, as everywhere in this API: it cannot reach a pod, because core/workload.py builds the pod
from this typed model only, and refuses a template this model does not validate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, core_schema

from modelledger.api.common import NAME_KEYED_LIST, SHORT_TEXT, ApiModel, DnsLabel, ObjectName, require_unique

REFUSED_RULE = "false"
"""The CEL rule of a declared-but-refused field: present means rejected."""
REFUSED_PREFIX = "not allowed in a ModelDeployment's pod template"
RESERVED_ENV_PREFIX = "MODEL_"
RESERVED_ENV_MESSAGE = f"{RESERVED_ENV_PREFIX}* variables name the pinned pipeline: the operator sets them"

_PATH = 1024
_VALUE = 4096
_INT32 = 2_147_483_647
_YEAR_SECONDS = 365 * 86_400
# A Kubernetes resource quantity (`500m`, `1Gi`, `2`): apimachinery's regular expression, unsigned.
QUANTITY_PATTERN = (
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
# A named container port (IANA_SVC_NAME): lower-case letters and digits, single dashes between them, at
# least one letter (RE2 has no lookahead: digit groups, then the first letter, then the rest).
PORT_NAME_PATTERN = r"^([0-9]+-)*[0-9]*[a-z]([a-z0-9]|-[a-z0-9])*$"
MOUNT_PATH_KEYED_LIST = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"]}

# Why each kind of field is refused. The message names no field: the error's path does.
CONTAINER = "the serving container is the ModelVersion's (spec.serving), not the template's"
HOST = "it reaches into the node (host namespaces, devices, node-level settings)"
IDENTITY = "the serving pod runs as its namespace's default service account, with no other credentials"
OUTSIDE = "it is outside the pod template allowlist (Pod Security restricted)"
PRIVILEGE = "a pod template may only tighten the security context (Pod Security restricted)"
VOLUME = "volumes come only from configMap, secret, emptyDir and projected sources"
PROJECTION = "projected volumes take only configMap, secret and downwardAPI sources"


def _rule(rule: str, message: str, field_path: str | None = None) -> dict[str, str]:
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def _rules(*rules: dict[str, str]) -> dict[str, Any]:
    return {"x-kubernetes-validations": list(rules)}


def _exactly_one(wire_names: tuple[str, ...], what: str) -> tuple[dict[str, str], str]:
    """A CEL rule and its message: exactly one of the (optional) fields is set."""
    message = f"{what} needs exactly one of {', '.join(wire_names)}"
    present = ", ".join(f"has(self.{name})" for name in wire_names)
    return _rule(f"[{present}].exists_one(x, x)", message), message


def _require_one(model: ApiModel, python_names: tuple[str, ...], message: str) -> None:
    if sum(getattr(model, name) is not None for name in python_names) != 1:
        raise ValueError(message)


# --- markers: refused fields and int-or-string values, for the models and the CRD alike -------------

_STRING = {"type": "string", "maxLength": _VALUE}
_BOOLEAN = {"type": "boolean"}
_INTEGER = {"type": "integer"}
_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_OBJECTS = {"type": "array", "maxItems": 256, "items": _OBJECT}
_STRINGS = {"type": "array", "maxItems": 256, "items": _STRING}
_INTEGERS = {"type": "array", "maxItems": 256, "items": _INTEGER}


@dataclass(frozen=True)
class Refused:
    """A field of the Kubernetes type that the template refuses, whatever its value.

    The CRD declares it (typed, so CEL sees it) with the rule `false`; the models raise the same message.
    """

    schema: dict[str, Any]
    why: str

    @property
    def message(self) -> str:
        return f"{REFUSED_PREFIX}: {self.why}"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        message = self.message

        def refuse(value: Any) -> Any:
            # An explicit null is no value: the apiserver prunes it from a non-nullable field.
            if value is not None:
                raise ValueError(message)
            return value

        return core_schema.no_info_plain_validator_function(refuse)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            **self.schema,
            "description": "Refused at admission.",
            "x-kubernetes-validations": [_rule(REFUSED_RULE, self.message)],
        }


@dataclass(frozen=True)
class IntOrString:
    """An `x-kubernetes-int-or-string` value: a bounded integer, or a string matching a pattern."""

    pattern: str
    max_length: int
    minimum: int
    maximum: int | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        compiled = re.compile(self.pattern)

        def check(value: Any) -> int | str:
            # bool is an int in Python, not in JSON: refused, as the apiserver refuses it.
            if isinstance(value, int) and not isinstance(value, bool):
                if value < self.minimum or (self.maximum is not None and value > self.maximum):
                    upper = f" and at most {self.maximum}" if self.maximum is not None else ""
                    raise ValueError(f"must be at least {self.minimum}{upper}")
                return value
            if isinstance(value, str):
                if len(value) > self.max_length or not compiled.fullmatch(value):
                    shown = value[:64]
                    raise ValueError(f"{shown!r} should match {self.pattern!r} ({self.max_length} at most)")
                return value
            raise ValueError(f"must be an integer or a string, not {type(value).__name__}")

        return core_schema.no_info_plain_validator_function(check)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        result: dict[str, Any] = {
            "x-kubernetes-int-or-string": True,
            "pattern": self.pattern,
            "maxLength": self.max_length,
            "minimum": self.minimum,
        }
        if self.maximum is not None:
            result["maximum"] = self.maximum
        return result


def _must_be(value: bool, message: str) -> Callable[[bool], bool]:
    def check(given: bool) -> bool:
        if given is not value:
            raise ValueError(message)
        return given

    return check


def _only_schema(value: bool, message: str) -> WithJsonSchema:
    return WithJsonSchema({"type": "boolean", **_rules(_rule(f"self == {str(value).lower()}", message))})


NO_ESCALATION = "may only be false: a pod template may only tighten the security context"
NON_ROOT = "may only be true: a pod template may only tighten the security context"
NO_TOKEN = "may only be false: the serving pod gets no more credentials than its namespace's default"

Quantity = Annotated[int | str, IntOrString(QUANTITY_PATTERN, 64, 0)]
"""A resource quantity: a whole number, or a string such as `500m` or `1Gi`."""
Port = Annotated[int | str, IntOrString(PORT_NAME_PATTERN, 15, 1, 65535)]
"""A container port: its number, or its name (`http` is the model server's port)."""
Text = Annotated[str, Field(max_length=_VALUE)]
Key = Annotated[str, Field(min_length=1, max_length=SHORT_TEXT)]
FilePath = Annotated[str, Field(min_length=1, max_length=_PATH)]
Mode = Annotated[int, Field(ge=0, le=0o777)]
Seconds = Annotated[int, Field(ge=0, le=_YEAR_SECONDS)]
PositiveSeconds = Annotated[int, Field(ge=1, le=_YEAR_SECONDS)]
NonRootId = Annotated[int, Field(ge=1, le=_INT32)]
OnlyFalse = Annotated[
    bool, AfterValidator(_must_be(False, NO_ESCALATION)), _only_schema(False, NO_ESCALATION)
]
OnlyTrue = Annotated[bool, AfterValidator(_must_be(True, NON_ROOT)), _only_schema(True, NON_ROOT)]
NoToken = Annotated[bool, AfterValidator(_must_be(False, NO_TOKEN)), _only_schema(False, NO_TOKEN)]


# --- env ----------------------------------------------------------------------------------------------


class ObjectFieldSelector(ApiModel):
    """A field of the pod, e.g. `metadata.name` or `status.podIP`."""

    api_version: Annotated[str, Field(max_length=64)] | None = None
    """The schema version the path is written in (`v1`)."""
    field_path: Key
    """The path of the field."""


class ResourceFieldSelector(ApiModel):
    """A resource of the model container, e.g. `limits.memory`."""

    container_name: Annotated[str, Field(max_length=63)] | None = None
    """The container (there is one: `model`)."""
    resource: Key
    """The resource, e.g. `limits.cpu`."""
    divisor: Quantity | None = None
    """The unit the value is written in."""


class KeySelector(ApiModel):
    """A key of a ConfigMap or Secret in the deployment's namespace."""

    name: ObjectName
    """The ConfigMap's or Secret's name."""
    key: Key
    """The key."""
    optional: bool | None = None
    """Whether the pod starts without it."""


_VALUE_FROM, _VALUE_FROM_MESSAGE = _exactly_one(("fieldRef", "configMapKeyRef", "secretKeyRef"), "valueFrom")


class EnvVarSource(ApiModel):
    """Where a variable's value comes from: a field of the pod, or a key of a ConfigMap or Secret."""

    model_config = ConfigDict(json_schema_extra=_rules(_VALUE_FROM))

    field_ref: ObjectFieldSelector | None = None
    """A field of the pod."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    secret_key_ref: KeySelector | None = None
    """A key of a Secret."""
    resource_field_ref: Annotated[Any, Refused(_OBJECT, OUTSIDE)] = None
    file_key_ref: Annotated[Any, Refused(_OBJECT, OUTSIDE)] = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        _require_one(self, ("field_ref", "config_map_key_ref", "secret_key_ref"), _VALUE_FROM_MESSAGE)
        return self


class ContainerEnvVar(ApiModel):
    """An environment variable of the model container; it replaces the ModelVersion's of the same name."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule("!(has(self.value) && has(self.valueFrom))", "set value or valueFrom, not both")
        )
    )

    name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=SHORT_TEXT,
            pattern=r"^[!-<>-~]+$",
            json_schema_extra=_rules(
                _rule(f"!self.startsWith('{RESERVED_ENV_PREFIX}')", RESERVED_ENV_MESSAGE)
            ),
        ),
    ]
    """The variable's name: printable ASCII without `=`; names starting `MODEL_` are the operator's."""
    value: Text | None = None
    """The value."""
    value_from: EnvVarSource | None = None
    """Where the value comes from instead."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(RESERVED_ENV_MESSAGE)
        return name

    @model_validator(mode="after")
    def _value_or_source(self) -> ContainerEnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError("set value or valueFrom, not both")
        return self


class SourceReference(ApiModel):
    """A ConfigMap or Secret in the deployment's namespace."""

    name: ObjectName
    """Its name."""
    optional: bool | None = None
    """Whether the pod starts without it."""


_ENV_FROM, _ENV_FROM_MESSAGE = _exactly_one(("configMapRef", "secretRef"), "an envFrom entry")


class EnvFromSource(ApiModel):
    """Every key of a ConfigMap or Secret as a variable (`env` and the operator's variables win)."""

    model_config = ConfigDict(json_schema_extra=_rules(_ENV_FROM))

    prefix: Annotated[str, Field(max_length=SHORT_TEXT)] | None = None
    """Put before every key."""
    config_map_ref: SourceReference | None = None
    """The ConfigMap."""
    secret_ref: SourceReference | None = None
    """The Secret."""

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        _require_one(self, ("config_map_ref", "secret_ref"), _ENV_FROM_MESSAGE)
        return self


# --- resources and probes ------------------------------------------------------------------------------


class ResourceRequirements(ApiModel):
    """The model container's resource requests and limits."""

    limits: Annotated[dict[str, Quantity], Field(max_length=16)] | None = None
    """The most the container may use, e.g. `memory: 2Gi`, `nvidia.com/gpu: 1`."""
    requests: Annotated[dict[str, Quantity], Field(max_length=16)] | None = None
    """What the scheduler reserves, e.g. `cpu: 500m`."""
    claims: Annotated[Any, Refused(_OBJECTS, OUTSIDE)] = None


class ExecAction(ApiModel):
    """A command run in the model container."""

    command: Annotated[list[Text], Field(min_length=1, max_length=64)]
    """The command and its arguments (no shell)."""


class HTTPHeader(ApiModel):
    """A request header."""

    name: Key
    """The header's name."""
    value: Text
    """The header's value."""


class Scheme(StrEnum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"


class HTTPGetAction(ApiModel):
    """An HTTP GET to the pod."""

    path: Annotated[str, Field(max_length=2048)] | None = None
    """The request path, e.g. `/healthz`."""
    port: Port
    """The port, by number or name (`http`)."""
    scheme: Annotated[Scheme, Field(strict=False)] | None = None
    """`HTTP` (the default) or `HTTPS`."""
    http_headers: Annotated[list[HTTPHeader], Field(max_length=16)] | None = None
    """Extra request headers."""
    host: Annotated[Any, Refused(_STRING, "a probe checks the pod itself, not another host")] = None


class TCPSocketAction(ApiModel):
    """A TCP connection to the pod."""

    port: Port
    """The port, by number or name (`http`)."""
    host: Annotated[Any, Refused(_STRING, "a probe checks the pod itself, not another host")] = None


class GRPCAction(ApiModel):
    """A gRPC health check of the pod."""

    port: Annotated[int, Field(ge=1, le=65535)]
    """The port number."""
    service: Annotated[str, Field(max_length=SHORT_TEXT)] | None = None
    """The service name sent in the health check request."""


_HANDLER, _HANDLER_MESSAGE = _exactly_one(("exec", "httpGet", "tcpSocket", "grpc"), "a probe")


class Probe(ApiModel):
    """A check of the model container, by exactly one of exec, httpGet, tcpSocket and grpc."""

    model_config = ConfigDict(json_schema_extra=_rules(_HANDLER))

    exec: ExecAction | None = None
    """Run a command."""
    http_get: HTTPGetAction | None = None
    """Send an HTTP GET."""
    tcp_socket: TCPSocketAction | None = None
    """Open a TCP connection."""
    grpc: GRPCAction | None = None
    """Call the gRPC health service."""
    initial_delay_seconds: Seconds | None = None
    """Seconds after the start before the first check."""
    timeout_seconds: PositiveSeconds | None = None
    """Seconds before a check times out."""
    period_seconds: PositiveSeconds | None = None
    """Seconds between checks."""
    success_threshold: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Consecutive successes that count as passing."""
    failure_threshold: Annotated[int, Field(ge=1, le=1000)] | None = None
    """Consecutive failures that count as failing."""
    termination_grace_period_seconds: PositiveSeconds | None = None
    """Seconds the container gets to stop after a failed liveness or startup probe."""

    @model_validator(mode="after")
    def _one_handler(self) -> Probe:
        _require_one(self, ("exec", "http_get", "tcp_socket", "grpc"), _HANDLER_MESSAGE)
        return self


# --- security contexts -----------------------------------------------------------------------------------


class AddableCapability(StrEnum):
    NET_BIND_SERVICE = "NET_BIND_SERVICE"


class Capabilities(ApiModel):
    """Linux capabilities: any may be dropped, only NET_BIND_SERVICE added (Pod Security restricted)."""

    drop: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=64)] | None = (
        None
    )
    """Capabilities removed; `ALL` is always dropped by the operator."""
    add: Annotated[list[Annotated[AddableCapability, Field(strict=False)]], Field(max_length=1)] | None = None
    """Capabilities added back: only `NET_BIND_SERVICE`."""


class SeccompType(StrEnum):
    RUNTIME_DEFAULT = "RuntimeDefault"
    LOCALHOST = "Localhost"


class SeccompProfile(ApiModel):
    """The seccomp profile: the runtime's default, or one installed on the node (never Unconfined)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "(self.type == 'Localhost') == has(self.localhostProfile)",
                "localhostProfile is required for, and only for, type Localhost",
            )
        )
    )

    type: Annotated[SeccompType, Field(strict=False)]
    """`RuntimeDefault` or `Localhost`."""
    localhost_profile: Annotated[str, Field(min_length=1, max_length=_PATH)] | None = None
    """The profile's path under the kubelet's seccomp directory (type Localhost only)."""

    @model_validator(mode="after")
    def _localhost_has_profile(self) -> SeccompProfile:
        if (self.type is SeccompType.LOCALHOST) != (self.localhost_profile is not None):
            raise ValueError("localhostProfile is required for, and only for, type Localhost")
        return self


class ContainerSecurityContext(ApiModel):
    """The model container's security context: it may only be tightened. The operator already sets
    allowPrivilegeEscalation false, runAsNonRoot true, drops ALL capabilities and the RuntimeDefault
    seccomp profile (unless the pod's names another)."""

    allow_privilege_escalation: OnlyFalse | None = None
    """Only `false`."""
    run_as_non_root: OnlyTrue | None = None
    """Only `true`."""
    run_as_user: NonRootId | None = None
    """A user id other than 0."""
    run_as_group: NonRootId | None = None
    """A group id other than 0."""
    read_only_root_filesystem: bool | None = None
    """Mount the image's file system read-only."""
    capabilities: Capabilities | None = None
    """Capabilities to drop (any), or to add back (only NET_BIND_SERVICE)."""
    seccomp_profile: SeccompProfile | None = None
    """`RuntimeDefault` or `Localhost`."""
    privileged: Annotated[Any, Refused(_BOOLEAN, PRIVILEGE)] = None
    proc_mount: Annotated[Any, Refused(_STRING, PRIVILEGE)] = None
    se_linux_options: Annotated[Any, Refused(_OBJECT, PRIVILEGE)] = None
    windows_options: Annotated[Any, Refused(_OBJECT, PRIVILEGE)] = None
    app_armor_profile: Annotated[Any, Refused(_OBJECT, PRIVILEGE)] = None


class PodSecurityContext(ApiModel):
    """The pod's security context (the PodSpec's `securityContext`): it may only be tightened."""

    run_as_non_root: OnlyTrue | None = None
    """Only `true`."""
    run_as_user: NonRootId | None = None
    """A user id other than 0."""
    run_as_group: NonRootId | None = None
    """A group id other than 0."""
    fs_group: NonRootId | None = None
    """The group that owns mounted volumes: other than 0."""
    seccomp_profile: SeccompProfile | None = None
    """`RuntimeDefault` or `Localhost`."""
    se_linux_options: Annotated[Any, Refused(_OBJECT, PRIVILEGE)] = None
    windows_options: Annotated[Any, Refused(_OBJECT, PRIVILEGE)] = None
    app_armor_profile: Annotated[Any, Refused(_OBJECT, PRIVILEGE)] = None
    supplemental_groups: Annotated[Any, Refused(_INTEGERS, PRIVILEGE)] = None
    supplemental_groups_policy: Annotated[Any, Refused(_STRING, PRIVILEGE)] = None
    sysctls: Annotated[Any, Refused(_OBJECTS, HOST)] = None
    fs_group_change_policy: Annotated[Any, Refused(_STRING, PRIVILEGE)] = None
    se_linux_change_policy: Annotated[Any, Refused(_STRING, PRIVILEGE)] = None


# --- volumes -------------------------------------------------------------------------------------------


class KeyToPath(ApiModel):
    """A key of a ConfigMap or Secret, as a file."""

    key: Key
    """The key."""
    path: FilePath
    """The file's relative path in the volume."""
    mode: Mode | None = None
    """The file's permission bits, e.g. `0o440` (292)."""


Items = Annotated[list[KeyToPath], Field(max_length=64)]


class ConfigMapVolume(ApiModel):
    """A ConfigMap's keys as files."""

    name: ObjectName
    """The ConfigMap's name."""
    items: Items | None = None
    """Only these keys, at these paths (all keys when left out)."""
    default_mode: Mode | None = None
    """The files' permission bits."""
    optional: bool | None = None
    """Whether the pod starts without the ConfigMap."""


class SecretVolume(ApiModel):
    """A Secret's keys as files."""

    secret_name: ObjectName
    """The Secret's name."""
    items: Items | None = None
    """Only these keys, at these paths (all keys when left out)."""
    default_mode: Mode | None = None
    """The files' permission bits."""
    optional: bool | None = None
    """Whether the pod starts without the Secret."""


class StorageMedium(StrEnum):
    DEFAULT = ""
    MEMORY = "Memory"


class EmptyDirVolume(ApiModel):
    """A scratch directory that lives as long as the pod."""

    medium: Annotated[StorageMedium, Field(strict=False)] | None = None
    """`""` (the node's disk) or `Memory` (tmpfs)."""
    size_limit: Quantity | None = None
    """The most it may hold, e.g. `1Gi`."""


class DownwardAPIFile(ApiModel):
    """A field of the pod or a resource of the container, as a file."""

    model_config = ConfigDict(
        json_schema_extra=_rules(_exactly_one(("fieldRef", "resourceFieldRef"), "a downwardAPI item")[0])
    )

    path: FilePath
    """The file's relative path in the volume."""
    field_ref: ObjectFieldSelector | None = None
    """A field of the pod."""
    resource_field_ref: ResourceFieldSelector | None = None
    """A resource of the container."""
    mode: Mode | None = None
    """The file's permission bits."""

    @model_validator(mode="after")
    def _one_source(self) -> DownwardAPIFile:
        _require_one(
            self,
            ("field_ref", "resource_field_ref"),
            "a downwardAPI item needs exactly one of fieldRef, resourceFieldRef",
        )
        return self


class DownwardAPIProjection(ApiModel):
    """Fields of the pod as files."""

    items: Annotated[list[DownwardAPIFile], Field(max_length=64)] | None = None
    """The files."""


class ConfigMapProjection(ApiModel):
    """A ConfigMap's keys in a projected volume."""

    name: ObjectName
    """The ConfigMap's name."""
    items: Items | None = None
    """Only these keys, at these paths."""
    optional: bool | None = None
    """Whether the pod starts without the ConfigMap."""


class SecretProjection(ApiModel):
    """A Secret's keys in a projected volume."""

    name: ObjectName
    """The Secret's name."""
    items: Items | None = None
    """Only these keys, at these paths."""
    optional: bool | None = None
    """Whether the pod starts without the Secret."""


_PROJECTION, _PROJECTION_MESSAGE = _exactly_one(("configMap", "secret", "downwardAPI"), "a projected source")


class VolumeProjection(ApiModel):
    """One source of a projected volume."""

    model_config = ConfigDict(json_schema_extra=_rules(_PROJECTION))

    config_map: ConfigMapProjection | None = None
    """A ConfigMap's keys."""
    secret: SecretProjection | None = None
    """A Secret's keys."""
    downward_api: Annotated[DownwardAPIProjection | None, Field(alias="downwardAPI")] = None
    """Fields of the pod."""
    service_account_token: Annotated[Any, Refused(_OBJECT, IDENTITY)] = None
    cluster_trust_bundle: Annotated[Any, Refused(_OBJECT, PROJECTION)] = None
    pod_certificate: Annotated[Any, Refused(_OBJECT, IDENTITY)] = None

    @model_validator(mode="after")
    def _one_source(self) -> VolumeProjection:
        _require_one(self, ("config_map", "secret", "downward_api"), _PROJECTION_MESSAGE)
        return self


class ProjectedVolume(ApiModel):
    """Several ConfigMap, Secret and downward API sources in one directory."""

    sources: Annotated[list[VolumeProjection], Field(max_length=16)]
    """The sources."""
    default_mode: Mode | None = None
    """The files' permission bits."""


_VOLUME_SOURCES = ("configMap", "secret", "emptyDir", "projected")
_SOURCE, _SOURCE_MESSAGE = _exactly_one(_VOLUME_SOURCES, "a volume")
_HOST_VOLUME = Refused(_OBJECT, f"{VOLUME}: it reaches into the node")
_STORAGE_VOLUME = Refused(_OBJECT, VOLUME)


class Volume(ApiModel):
    """A volume of the pod: from a ConfigMap, a Secret, an emptyDir or projected sources."""

    model_config = ConfigDict(json_schema_extra=_rules(_SOURCE))

    name: DnsLabel
    """The volume's name, which volumeMounts refer to."""
    config_map: ConfigMapVolume | None = None
    """A ConfigMap's keys as files."""
    secret: SecretVolume | None = None
    """A Secret's keys as files."""
    empty_dir: EmptyDirVolume | None = None
    """A scratch directory."""
    projected: ProjectedVolume | None = None
    """ConfigMap, Secret and downward API sources together."""
    host_path: Annotated[Any, _HOST_VOLUME] = None
    gce_persistent_disk: Annotated[Any, _STORAGE_VOLUME] = None
    aws_elastic_block_store: Annotated[Any, _STORAGE_VOLUME] = None
    git_repo: Annotated[Any, _HOST_VOLUME] = None
    nfs: Annotated[Any, _STORAGE_VOLUME] = None
    iscsi: Annotated[Any, _HOST_VOLUME] = None
    glusterfs: Annotated[Any, _STORAGE_VOLUME] = None
    persistent_volume_claim: Annotated[Any, _STORAGE_VOLUME] = None
    rbd: Annotated[Any, _HOST_VOLUME] = None
    flex_volume: Annotated[Any, _HOST_VOLUME] = None
    cinder: Annotated[Any, _STORAGE_VOLUME] = None
    cephfs: Annotated[Any, _STORAGE_VOLUME] = None
    flocker: Annotated[Any, _STORAGE_VOLUME] = None
    downward_api: Annotated[Any, _STORAGE_VOLUME, Field(alias="downwardAPI")] = None
    fc: Annotated[Any, _HOST_VOLUME] = None
    azure_file: Annotated[Any, _STORAGE_VOLUME] = None
    vsphere_volume: Annotated[Any, _STORAGE_VOLUME] = None
    quobyte: Annotated[Any, _STORAGE_VOLUME] = None
    azure_disk: Annotated[Any, _STORAGE_VOLUME] = None
    photon_persistent_disk: Annotated[Any, _STORAGE_VOLUME] = None
    portworx_volume: Annotated[Any, _STORAGE_VOLUME] = None
    scale_io: Annotated[Any, _STORAGE_VOLUME, Field(alias="scaleIO")] = None
    storageos: Annotated[Any, _STORAGE_VOLUME] = None
    csi: Annotated[Any, _STORAGE_VOLUME] = None
    ephemeral: Annotated[Any, _STORAGE_VOLUME] = None
    image: Annotated[Any, _STORAGE_VOLUME] = None

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        _require_one(self, ("config_map", "secret", "empty_dir", "projected"), _SOURCE_MESSAGE)
        return self


class RecursiveReadOnly(StrEnum):
    DISABLED = "Disabled"
    IF_POSSIBLE = "IfPossible"
    ENABLED = "Enabled"


class VolumeMount(ApiModel):
    """Where a volume of the template appears in the model container."""

    name: DnsLabel
    """The volume's name (one of `volumes`)."""
    mount_path: FilePath
    """Where it appears, e.g. `/etc/model`; unique."""
    sub_path: Annotated[str, Field(max_length=_PATH)] | None = None
    """A path inside the volume to mount instead of its root."""
    sub_path_expr: Annotated[str, Field(max_length=_PATH)] | None = None
    """Like subPath, with `$(VAR)` expanded from the container's environment."""
    read_only: bool | None = None
    """Mount it read-only."""
    recursive_read_only: Annotated[RecursiveReadOnly, Field(strict=False)] | None = None
    """`Disabled`, `IfPossible` or `Enabled`: read-only all the way down."""
    mount_propagation: Annotated[Any, Refused(_STRING, HOST)] = None


# --- scheduling ----------------------------------------------------------------------------------------


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(ApiModel):
    """A taint the serving pods tolerate."""

    key: Annotated[str, Field(max_length=317)] | None = None
    """The taint's key; all keys when empty (with operator Exists)."""
    operator: Annotated[TolerationOperator, Field(strict=False)] | None = None
    """`Equal` (the default) or `Exists`."""
    value: Annotated[str, Field(max_length=63)] | None = None
    """The taint's value (operator Equal)."""
    effect: Annotated[TaintEffect, Field(strict=False)] | None = None
    """`NoSchedule`, `PreferNoSchedule` or `NoExecute`; all effects when empty."""
    toleration_seconds: Annotated[int, Field(ge=0, le=_YEAR_SECONDS)] | None = None
    """How long a NoExecute taint is tolerated."""


FreeForm = Annotated[dict[str, Any], Field(max_length=16)]


class Affinity(ApiModel):
    """Node and pod (anti-)affinity, as in a PodSpec; only scheduling, checked by the apiserver's Deployment
    validation when the operator applies it."""

    node_affinity: FreeForm | None = None
    """Which nodes the pods prefer or require."""
    pod_affinity: FreeForm | None = None
    """Which pods the pods are scheduled near."""
    pod_anti_affinity: FreeForm | None = None
    """Which pods the pods are scheduled away from."""


class WhenUnsatisfiable(StrEnum):
    DO_NOT_SCHEDULE = "DoNotSchedule"
    SCHEDULE_ANYWAY = "ScheduleAnyway"


class InclusionPolicy(StrEnum):
    HONOR = "Honor"
    IGNORE = "Ignore"


class TopologySpreadConstraint(ApiModel):
    """How the serving pods spread across a topology (zones, nodes)."""

    max_skew: Annotated[int, Field(ge=1, le=1000)]
    """The most the number of pods may differ between two domains."""
    topology_key: Annotated[str, Field(min_length=1, max_length=317)]
    """The node label that names the domain, e.g. `topology.kubernetes.io/zone`."""
    when_unsatisfiable: Annotated[WhenUnsatisfiable, Field(strict=False)]
    """`DoNotSchedule` or `ScheduleAnyway`."""
    label_selector: FreeForm | None = None
    """The pods counted (a label selector)."""
    min_domains: Annotated[int, Field(ge=1, le=1000)] | None = None
    """The least number of eligible domains."""
    node_affinity_policy: Annotated[InclusionPolicy, Field(strict=False)] | None = None
    """`Honor` or `Ignore` the pods' node affinity when counting."""
    node_taints_policy: Annotated[InclusionPolicy, Field(strict=False)] | None = None
    """`Honor` or `Ignore` node taints when counting."""
    match_label_keys: Annotated[list[Annotated[str, Field(max_length=317)]], Field(max_length=16)] | None = (
        None
    )
    """Pod label keys whose values further select the pods counted."""


class PullPolicy(StrEnum):
    ALWAYS = "Always"
    IF_NOT_PRESENT = "IfNotPresent"
    NEVER = "Never"


# --- the template ----------------------------------------------------------------------------------------

CONTAINER_FIELDS = (
    "resources",
    "env",
    "envFrom",
    "volumeMounts",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "imagePullPolicy",
    "securityContext",
)
"""The template's fields that go to the model container; the others go to the pod."""


class PodTemplate(ApiModel):
    """Overrides of the serving pod, allowlisted so the pod stays within Pod Security restricted.

    The model container's resources, env, envFrom, volumeMounts, probes, imagePullPolicy and (tightened)
    securityContext; the pod's nodeSelector, tolerations, affinity, topologySpreadConstraints,
    priorityClassName, volumes (configMap, secret, emptyDir, projected), a tightened podSecurityContext
    and automountServiceAccountToken false. Every other field of a pod or container is rejected.
    """

    model_config = ConfigDict(
        json_schema_extra=_rules(
            _rule(
                "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                "self.volumes.exists(v, v.name == m.name))",
                "every volumeMount names a volume of the template",
                ".volumeMounts",
            )
        )
    )

    resources: ResourceRequirements | None = None
    """The model container's resource requests and limits."""
    env: Annotated[list[ContainerEnvVar], Field(max_length=128, json_schema_extra=NAME_KEYED_LIST)] | None = (
        None
    )
    """Environment variables of the model container; they replace the ModelVersion's of the same name."""
    env_from: Annotated[list[EnvFromSource], Field(max_length=16)] | None = None
    """ConfigMaps and Secrets whose keys become environment variables."""
    volumes: Annotated[list[Volume], Field(max_length=32, json_schema_extra=NAME_KEYED_LIST)] | None = None
    """Volumes from ConfigMaps, Secrets, emptyDir and projected sources; names are unique."""
    volume_mounts: (
        Annotated[list[VolumeMount], Field(max_length=32, json_schema_extra=MOUNT_PATH_KEYED_LIST)] | None
    ) = None
    """Where the volumes appear in the model container; mount paths are unique."""
    readiness_probe: Probe | None = None
    """When the model container is ready for requests."""
    liveness_probe: Probe | None = None
    """When the model container is restarted."""
    startup_probe: Probe | None = None
    """When the model container has started."""
    image_pull_policy: Annotated[PullPolicy, Field(strict=False)] | None = None
    """`Always`, `IfNotPresent` or `Never`."""
    security_context: ContainerSecurityContext | None = None
    """The model container's security context: tightened only."""
    pod_security_context: PodSecurityContext | None = None
    """The pod's security context (the PodSpec's `securityContext`): tightened only."""
    node_selector: Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=64)] | None = (
        None
    )
    """Node labels the serving pods require, e.g. `kubernetes.io/os: linux`."""
    tolerations: Annotated[list[Toleration], Field(max_length=32)] | None = None
    """Taints the serving pods tolerate."""
    affinity: Affinity | None = None
    """Node and pod (anti-)affinity."""
    topology_spread_constraints: Annotated[list[TopologySpreadConstraint], Field(max_length=8)] | None = None
    """How the serving pods spread across zones or nodes."""
    priority_class_name: ObjectName | None = None
    """The pods' PriorityClass."""
    automount_service_account_token: NoToken | None = None
    """Only `false`: no API token in the pods."""

    # Every other field of a PodSpec and of a Container (Kubernetes 1.34), each rejected by name.
    metadata: Annotated[Any, Refused(_OBJECT, OUTSIDE)] = None
    init_containers: Annotated[Any, Refused(_OBJECTS, CONTAINER)] = None
    containers: Annotated[Any, Refused(_OBJECTS, CONTAINER)] = None
    ephemeral_containers: Annotated[Any, Refused(_OBJECTS, CONTAINER)] = None
    name: Annotated[Any, Refused(_STRING, CONTAINER)] = None
    image: Annotated[Any, Refused(_STRING, CONTAINER)] = None
    command: Annotated[Any, Refused(_STRINGS, CONTAINER)] = None
    args: Annotated[Any, Refused(_STRINGS, CONTAINER)] = None
    working_dir: Annotated[Any, Refused(_STRING, CONTAINER)] = None
    ports: Annotated[Any, Refused(_OBJECTS, CONTAINER)] = None
    lifecycle: Annotated[Any, Refused(_OBJECT, CONTAINER)] = None
    termination_message_path: Annotated[Any, Refused(_STRING, CONTAINER)] = None
    termination_message_policy: Annotated[Any, Refused(_STRING, CONTAINER)] = None
    resize_policy: Annotated[Any, Refused(_OBJECTS, CONTAINER)] = None
    restart_policy_rules: Annotated[Any, Refused(_OBJECTS, CONTAINER)] = None
    stdin: Annotated[Any, Refused(_BOOLEAN, CONTAINER)] = None
    stdin_once: Annotated[Any, Refused(_BOOLEAN, CONTAINER)] = None
    tty: Annotated[Any, Refused(_BOOLEAN, CONTAINER)] = None
    service_account_name: Annotated[Any, Refused(_STRING, IDENTITY)] = None
    service_account: Annotated[Any, Refused(_STRING, IDENTITY)] = None
    image_pull_secrets: Annotated[Any, Refused(_OBJECTS, IDENTITY)] = None
    resource_claims: Annotated[Any, Refused(_OBJECTS, OUTSIDE)] = None
    host_network: Annotated[Any, Refused(_BOOLEAN, HOST)] = None
    host_pid: Annotated[Any, Refused(_BOOLEAN, HOST), Field(alias="hostPID")] = None
    host_ipc: Annotated[Any, Refused(_BOOLEAN, HOST), Field(alias="hostIPC")] = None
    host_users: Annotated[Any, Refused(_BOOLEAN, HOST)] = None
    share_process_namespace: Annotated[Any, Refused(_BOOLEAN, PRIVILEGE)] = None
    volume_devices: Annotated[Any, Refused(_OBJECTS, HOST)] = None
    node_name: Annotated[Any, Refused(_STRING, HOST)] = None
    runtime_class_name: Annotated[Any, Refused(_STRING, HOST)] = None
    scheduler_name: Annotated[Any, Refused(_STRING, OUTSIDE)] = None
    priority: Annotated[Any, Refused(_INTEGER, OUTSIDE)] = None
    preemption_policy: Annotated[Any, Refused(_STRING, OUTSIDE)] = None
    overhead: Annotated[Any, Refused(_OBJECT, OUTSIDE)] = None
    os: Annotated[Any, Refused(_OBJECT, OUTSIDE)] = None
    scheduling_gates: Annotated[Any, Refused(_OBJECTS, OUTSIDE)] = None
    readiness_gates: Annotated[Any, Refused(_OBJECTS, OUTSIDE)] = None
    restart_policy: Annotated[Any, Refused(_STRING, OUTSIDE)] = None
    termination_grace_period_seconds: Annotated[Any, Refused(_INTEGER, OUTSIDE)] = None
    active_deadline_seconds: Annotated[Any, Refused(_INTEGER, OUTSIDE)] = None
    dns_policy: Annotated[Any, Refused(_STRING, OUTSIDE)] = None
    dns_config: Annotated[Any, Refused(_OBJECT, OUTSIDE)] = None
    host_aliases: Annotated[Any, Refused(_OBJECTS, OUTSIDE)] = None
    hostname: Annotated[Any, Refused(_STRING, OUTSIDE)] = None
    hostname_override: Annotated[Any, Refused(_STRING, OUTSIDE)] = None
    subdomain: Annotated[Any, Refused(_STRING, OUTSIDE)] = None
    set_hostname_as_fqdn: Annotated[Any, Refused(_BOOLEAN, OUTSIDE), Field(alias="setHostnameAsFQDN")] = None
    enable_service_links: Annotated[Any, Refused(_BOOLEAN, OUTSIDE)] = None

    @field_validator("env")
    @classmethod
    def _env_names_unique(cls, env: list[ContainerEnvVar] | None) -> list[ContainerEnvVar] | None:
        require_unique([variable.name for variable in env or []], "env name")
        return env

    @field_validator("volumes")
    @classmethod
    def _volume_names_unique(cls, volumes: list[Volume] | None) -> list[Volume] | None:
        require_unique([volume.name for volume in volumes or []], "volume name")
        return volumes

    @field_validator("volume_mounts")
    @classmethod
    def _mounts_name_volumes(
        cls, mounts: list[VolumeMount] | None, info: ValidationInfo
    ) -> list[VolumeMount] | None:
        require_unique([mount.mount_path for mount in mounts or []], "mountPath")
        # `volumes` is declared first, so it has been validated (it is absent if it was invalid).
        declared = {volume.name for volume in info.data.get("volumes") or []}
        for mount in mounts or []:
            if mount.name not in declared:
                raise ValueError(
                    f"every volumeMount names a volume of the template: {mount.name!r} names none"
                )
        return mounts
