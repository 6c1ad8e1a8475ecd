"""The audit signing key: a Secret the operator creates at first start (or the user brings), and the
public keys, current and retired, published in a ConfigMap that anyone may read.

- Secret `modelledger-audit-signing-key`, key `private.pem` (PKCS#8 PEM, Ed25519);
- ConfigMap `modelledger-audit-keys`: one `<64 hex>.pem` per public key ever used (the key id without
  its `sha256:` prefix), and `current` holding the current key id. Keys are added, never removed, so a
  report signed before a rotation still verifies.

Both live in the operator's namespace (`--operator-namespace`).
"""

from __future__ import annotations

import base64
import contextlib
from dataclasses import dataclass
from typing import Any, cast

import kubernetes
import structlog
from kubernetes.client.exceptions import ApiException

from modelledger.core.signing import Keyring, SigningKey

log = structlog.get_logger("modelledger.keys")

SECRET = "modelledger-audit-signing-key"
SECRET_KEY = "private.pem"
CONFIGMAP = "modelledger-audit-keys"
CURRENT = "current"
DEFAULT_NAMESPACE = "modelledger-system"
MANAGED = {"app.kubernetes.io/managed-by": "modelledger", "app.kubernetes.io/component": "audit-signing"}


def pem_entry(key_id: str) -> str:
    """The ConfigMap data key of a public key: its id's hex, with `.pem`."""
    return f"{key_id.removeprefix('sha256:')}.pem"


@dataclass(frozen=True)
class KeySetup:
    """What start-up found: the key (None: entries go unsigned) and why not, for the loud warning."""

    key: SigningKey | None
    keyring: Keyring
    problem: str = ""


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()


def _encode(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _found(read: Any, *args: str) -> Any | None:
    """The object read, or None where it does not exist (any other API error is raised)."""
    try:
        return read(*args)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _read_secret(core: Any, namespace: str) -> SigningKey | None:
    secret = _found(core.read_namespaced_secret, SECRET, namespace)
    if secret is None:
        return None
    data = secret.data or {}
    if SECRET_KEY not in data:
        raise ValueError(f"Secret {namespace}/{SECRET} has no {SECRET_KEY!r}")
    return SigningKey.from_pem(_decode(data[SECRET_KEY]))


def _ensure_namespace(core: Any, namespace: str) -> None:
    try:
        core.create_namespace({"metadata": {"name": namespace}})
        log.info("operator namespace created", namespace=namespace)
    except ApiException as error:
        if error.status not in (403, 409):  # exists, or not ours to create: the Secret call will tell
            raise


def _create_secret(core: Any, namespace: str) -> SigningKey:
    key = SigningKey.generate()
    body = {
        "metadata": {"name": SECRET, "namespace": namespace, "labels": MANAGED},
        "type": "Opaque",
        "data": {SECRET_KEY: _encode(key.private_pem())},
    }
    try:
        core.create_namespaced_secret(namespace, body)
    except ApiException as error:
        if error.status == 409:  # another replica created it first: use theirs
            found = _read_secret(core, namespace)
            if found is not None:
                return found
        raise
    log.warning("audit signing key created", namespace=namespace, secret=SECRET, key_id=key.key_id)
    return key


def _publish(core: Any, namespace: str, key: SigningKey) -> Keyring:
    """Add the key's public half to the ConfigMap (creating it) and make it current."""
    data = {pem_entry(key.key_id): key.public_pem(), CURRENT: key.key_id}
    existing = _found(core.read_namespaced_config_map, CONFIGMAP, namespace)
    if existing is None:
        body = {"metadata": {"name": CONFIGMAP, "namespace": namespace, "labels": MANAGED}, "data": data}
        core.create_namespaced_config_map(namespace, body)
        return Keyring.from_mapping(data)
    published = dict(existing.data or {})
    if any(published.get(k) != v for k, v in data.items()):
        core.patch_namespaced_config_map(CONFIGMAP, namespace, {"data": data})
        published.update(data)
    return Keyring.from_mapping(published)


def read_keyring(core: Any, namespace: str) -> Keyring:
    """The published public keys (empty when the ConfigMap is missing)."""
    config_map = _found(core.read_namespaced_config_map, CONFIGMAP, namespace)
    return Keyring.from_mapping(dict(config_map.data or {})) if config_map is not None else Keyring()


def current_public_key(core: Any, namespace: str) -> tuple[str, str] | None:
    """(key id, PEM) of the current key as published, or None."""
    config_map = _found(core.read_namespaced_config_map, CONFIGMAP, namespace)
    if config_map is None:
        return None
    data = cast(dict[str, str], config_map.data or {})
    current = data.get(CURRENT, "")
    pem = data.get(pem_entry(current)) if current else None
    return (current, pem) if pem else None


def set_up(client: kubernetes.client.ApiClient, namespace: str) -> KeySetup:
    """Load (or create) the signing key and publish its public half. Never raises: without a key the
    operator runs, says so loudly, and marks what it writes unsigned."""
    core = kubernetes.client.CoreV1Api(client)
    try:
        key = _read_secret(core, namespace)
        if key is None:
            _ensure_namespace(core, namespace)
            key = _create_secret(core, namespace)
    except (ApiException, ValueError) as error:
        problem = f"no audit signing key in {namespace}/{SECRET}: {_short(error)}"
        keyring = Keyring()
        with contextlib.suppress(ApiException):
            keyring = read_keyring(core, namespace)
        return KeySetup(None, keyring, problem)
    try:
        keyring = _publish(core, namespace, key)
    except ApiException as error:
        log.error("public key not published", namespace=namespace, configmap=CONFIGMAP, error=_short(error))
        keyring = Keyring()
    return KeySetup(key, keyring.with_key(key))


def _short(error: Exception) -> str:
    if isinstance(error, ApiException):
        return f"{error.status} {error.reason}"
    return str(error)[:300]
