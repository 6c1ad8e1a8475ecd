"""Whether the identity guards are installed: the ValidatingAdmissionPolicies that make a request's
`spec.requester` and the version-setter stamp on a ModelDeployment impossible to forge.

Without them, whatever a client writes there is only a claim, and history records `unverified`. The
answer is cached for a short time: a policy removed at run time is noticed within `TTL` seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, cast

import kubernetes
import structlog
from kubernetes.client.exceptions import ApiException

log = structlog.get_logger("modelledger.admission")

GUARDS = ("modelledger-requester", "modelledger-version-setter")
TTL = 30.0


def _guard_in_force(api: Any, name: str) -> bool:
    try:
        api.read_validating_admission_policy(name)
        binding = cast(Any, api.read_validating_admission_policy_binding(name))
    except ApiException as error:
        if error.status in (403, 404):
            return False
        raise
    spec = binding.spec
    return bool(spec and spec.policy_name == name and "Deny" in (spec.validation_actions or []))


class GuardCheck:
    """`guarded()` → True when every guard policy and its Deny binding exist (cached for TTL)."""

    def __init__(self, client: Callable[[], kubernetes.client.ApiClient], ttl: float = TTL) -> None:
        self._client = client
        self._ttl = ttl
        self._lock = threading.Lock()
        self._value = False
        self._checked = -float("inf")

    def guarded(self) -> bool:
        with self._lock:
            if time.monotonic() - self._checked < self._ttl:
                return self._value
            api = kubernetes.client.AdmissionregistrationV1Api(self._client())
            try:
                value = all(_guard_in_force(api, name) for name in GUARDS)
            except (ApiException, OSError) as error:
                log.warning("admission guards not checked", error=str(error)[:200])
                value = False
            if value != self._value or self._checked == -float("inf"):
                log_method = log.info if value else log.warning
                log_method(
                    "identity guards "
                    + ("installed" if value else "missing: actors are recorded unverified"),
                    policies=list(GUARDS),
                )
            self._value, self._checked = value, time.monotonic()
            return value
