"""Whether the identity guards are in force in a namespace: the ValidatingAdmissionPolicies that make a
request's `spec.requester` and the version-setter stamp on a ModelDeployment impossible to forge.

Without them, whatever a client writes there is only a claim, and history records `unverified`. A
binding scoped by a namespaceSelector covers only the namespaces it selects, and one with an
objectSelector covers only some objects (so: not guarded). Answers are cached for `TTL` seconds: a
policy removed at run time is noticed that late at most.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import kubernetes
import structlog
from kubernetes.client.exceptions import ApiException

from modelledger.adapters.kube import TIMEOUT

log = structlog.get_logger("modelledger.admission")

GUARDS = ("modelledger-requester", "modelledger-version-setter")
TTL = 30.0


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A metav1.LabelSelector (as a dict, camelCase) against labels; empty selects everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        matched = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(str(operator), False)
        if not matched:
            return False
    return True


def _binding_scope(api: Any, name: str) -> dict[str, Any] | None:
    """The namespaceSelector of a guard in force (a Deny binding of its own policy), or None."""
    try:
        api.read_validating_admission_policy(name, _request_timeout=TIMEOUT)
        binding = cast(Any, api.read_validating_admission_policy_binding(name, _request_timeout=TIMEOUT))
    except ApiException as error:
        if error.status in (403, 404):
            return None
        raise
    spec = binding.spec
    if not (spec and spec.policy_name == name and "Deny" in (spec.validation_actions or [])):
        return None
    resources = api.api_client.sanitize_for_serialization(spec.match_resources) or {}
    if resources.get("objectSelector"):
        return None  # only some objects are covered
    return dict(resources.get("namespaceSelector") or {})


class GuardCheck:
    """`guarded(namespace)` → True when every guard policy and its Deny binding cover the namespace."""

    def __init__(self, client: Callable[[], kubernetes.client.ApiClient], ttl: float = TTL) -> None:
        self._client = client
        self._ttl = ttl
        self._lock = threading.Lock()
        self._scopes: list[dict[str, Any]] | None = None  # None: some guard is missing
        self._labels: dict[str, dict[str, str] | None] = {}
        self._checked = -float("inf")
        self._logged: bool | None = None

    def _refresh(self) -> None:
        api = kubernetes.client.AdmissionregistrationV1Api(self._client())
        try:
            scopes = [_binding_scope(api, name) for name in GUARDS]
        except (ApiException, OSError) as error:
            log.warning("admission guards not checked", error=str(error)[:200])
            scopes = [None]
        self._scopes = None if any(s is None for s in scopes) else [s for s in scopes if s is not None]
        self._labels = {}
        self._checked = time.monotonic()
        installed = self._scopes is not None
        if self._logged is not installed:
            self._logged = installed
            message = "installed" if installed else "missing: actors are recorded unverified"
            (log.info if installed else log.warning)(f"identity guards {message}", policies=list(GUARDS))

    def _namespace_labels(self, namespace: str) -> dict[str, str] | None:
        if namespace not in self._labels:
            try:
                found = kubernetes.client.CoreV1Api(self._client()).read_namespace(
                    namespace, _request_timeout=TIMEOUT
                )
                self._labels[namespace] = dict((found.metadata and found.metadata.labels) or {})
            except (ApiException, OSError) as error:
                log.warning("namespace labels not read", namespace=namespace, error=str(error)[:200])
                self._labels[namespace] = None
        return self._labels[namespace]

    def guarded(self, namespace: str) -> bool:
        with self._lock:
            if time.monotonic() - self._checked >= self._ttl:
                self._refresh()
            if self._scopes is None:
                return False
            if all(not scope for scope in self._scopes):
                return True  # every namespace
            labels = self._namespace_labels(namespace)
            return labels is not None and all(selects(scope, labels) for scope in self._scopes)
