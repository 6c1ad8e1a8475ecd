"""Building blocks shared by both kinds: the base model, constrained strings, conditions."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "modelledger.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
# A DNS-1123 label: model and rule names end up in label values and Prometheus labels.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# A DNS-1123 subdomain: the shape of every Kubernetes object name.
OBJECT_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Bounds on every string, list and map keep the apiserver's CEL cost estimate inside its budget
# (unbounded inputs are costed at the maximum request size) and keep objects well under 1.5 MiB.
SHORT_TEXT = 253
URI_LENGTH = 2048
LONG_TEXT = 32768

Digest = Annotated[str, Field(pattern=DIGEST_PATTERN, max_length=71)]
"""`sha256:` followed by 64 lower-case hex digits."""

# A dataset tracked by DVC may only be known by DVC's own md5 (a directory's ends in `.dir`) when its
# content is not in the local DVC cache to hash again; artifacts and components stay sha256-only.
DATA_DIGEST_PATTERN = r"^(sha256:[0-9a-f]{64}|md5:[0-9a-f]{32}(\.dir)?)$"
DataDigest = Annotated[str, Field(pattern=DATA_DIGEST_PATTERN, max_length=71)]
"""`sha256:` and 64 lower-case hex digits, or DVC's `md5:` and 32 (a directory's with `.dir` after)."""

DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
ObjectName = Annotated[str, Field(min_length=1, max_length=SHORT_TEXT, pattern=OBJECT_NAME_PATTERN)]
Uri = Annotated[str, Field(min_length=1, max_length=URI_LENGTH)]


def _reject_non_timestamp(value: Any) -> Any:
    # Lax datetime parsing would accept unix numbers; the apiserver only accepts RFC 3339 strings.
    if not isinstance(value, str | datetime):
        raise ValueError(f"a timestamp must be an RFC 3339 string, not {type(value).__name__}")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_reject_non_timestamp), Field(strict=False)]
"""An RFC 3339 time with a zone, e.g. `2026-11-27T10:00:00Z`."""


class ApiModel(BaseModel):
    """Base of every API model: camelCase on the wire, snake_case in Python, strict types.

    Strict mode makes `replicas: "2"` fail here as it fails in the apiserver. Unknown fields are
    dropped, as the apiserver prunes them, so both sides agree on what an object contains.
    """

    model_config = ConfigDict(
        strict=True,
        extra="ignore",
        alias_generator=to_camel,
        populate_by_name=True,
        serialize_by_alias=True,
        use_attribute_docstrings=True,
        allow_inf_nan=False,
        use_enum_values=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict as it goes to the apiserver (camelCase, unset optionals left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def require_unique(values: list[str], what: str) -> None:
    """Raise naming the first duplicate, as the apiserver does for map- and set-typed lists."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}: each must be unique")
        seen.add(value)


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """The standard Kubernetes condition (the shape of metav1.Condition)."""

    type: Annotated[str, Field(min_length=1, max_length=316)]
    """The aspect this condition describes, in CamelCase, e.g. `Available` or `RulesHealthy`."""
    # Enums validate from their string values even though the model is strict.
    status: Annotated[ConditionStatus, Field(strict=False)]
    """`True`, `False` or `Unknown`."""
    reason: Annotated[
        str, Field(min_length=1, max_length=1024, pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    ]
    """A CamelCase, machine-readable reason for the last transition."""
    message: Annotated[str, Field(max_length=LONG_TEXT)] = ""
    """A human-readable explanation of the last transition."""
    last_transition_time: Timestamp
    """When `status` last changed."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The `.metadata.generation` this condition was computed from."""


CONDITIONS_LIST = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]}
NAME_KEYED_LIST = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}
SET_LIST = {"x-kubernetes-list-type": "set"}
