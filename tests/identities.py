"""Real identities for tests: client certificates issued by the cluster's CSR API, ServiceAccount tokens.

Not impersonation (`--as`): the apiserver authenticates these users itself, so `request.userInfo` in
admission is exactly what it would be for a person (a certificate: CN = user name, O = groups, no UID;
a token: the ServiceAccount's name, UID and groups). Works on the local plane and on kind, whose
controller-manager signs `kubernetes.io/kube-apiserver-client` requests with the cluster CA.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from modelledger.testing.access import ClusterAccess
from tests.helpers import eventually

CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
AUTHENTICATED = "system:authenticated"

# The people of the tests: user name → the groups their certificate carries (as an OIDC provider would).
USERS: dict[str, tuple[str, ...]] = {
    "alice": ("ml-release-managers",),
    "bob": ("ml-release-managers", "ml-approvers"),
    "carol": ("ml-engineers",),
}


@dataclass(frozen=True)
class Person:
    """A user the apiserver authenticates by client certificate, and kubectl bound to them."""

    username: str
    groups: tuple[str, ...]
    access: ClusterAccess
    user_info_groups: tuple[str, ...]
    """The groups as the apiserver reports them (`request.userInfo.groups`: its order, plus
    system:authenticated), from a SelfSubjectReview."""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.access.kubectl(*args, input=input, check=check)


def who_am_i(access: ClusterAccess) -> dict[str, Any]:
    """`request.userInfo` as the apiserver authenticates `access` (a SelfSubjectReview)."""
    review = json.loads(access.kubectl("auth", "whoami", "-o", "json").stdout)
    user_info: dict[str, Any] = review["status"]["userInfo"]
    return user_info


def _admin_cluster(admin: ClusterAccess) -> dict[str, Any]:
    """The admin kubeconfig's current cluster entry (server and CA), to reuse for other users."""
    config = yaml.safe_load(admin.kubeconfig.read_text())
    current = config.get("current-context")
    context = next((c for c in config["contexts"] if c["name"] == current), config["contexts"][0])
    cluster_name = context["context"]["cluster"]
    cluster: dict[str, Any] = next(c for c in config["clusters"] if c["name"] == cluster_name)
    return cluster


def write_kubeconfig(
    admin: ClusterAccess, user: str, credentials: dict[str, str], path: Path
) -> ClusterAccess:
    """A kubeconfig for the admin's cluster that authenticates with `credentials` (a kubeconfig `user`)."""
    cluster = _admin_cluster(admin)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
        "current-context": user,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return ClusterAccess(path)


def user_kubeconfig(
    admin: ClusterAccess, username: str, groups: tuple[str, ...], path: Path, *, seconds: int = 24 * 3600
) -> ClusterAccess:
    """A kubeconfig with a client certificate for `username` in `groups`, issued through the CSR API.

    A key and a CertificateSigningRequest (CN = user name, O = groups) are made here, the CSR is approved
    as admin, the controller-manager signs it, and the CSR object is deleted once the certificate is read.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, username)]
    subject += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
    request = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name(subject)).sign(key, hashes.SHA256())
    )
    name = f"modelledger-test-{username}-{uuid.uuid4().hex[:8]}"
    csr = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {
            "request": base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
            "signerName": CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
            "expirationSeconds": seconds,
        },
    }
    admin.kubectl("create", "-f", "-", input=json.dumps(csr))
    try:
        admin.kubectl("certificate", "approve", name)

        def issued() -> str:
            found = admin.kubectl("get", "csr", name, "-o", "jsonpath={.status.certificate}")
            return found.stdout.strip()

        certificate = eventually(issued, 60, f"CSR {name} signed by the controller-manager")
    finally:
        admin.kubectl("delete", "csr", name, "--ignore-not-found", check=False)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    credentials = {
        "client-certificate-data": certificate,  # already base64 in the CSR's status
        "client-key-data": base64.b64encode(key_pem).decode(),
    }
    return write_kubeconfig(admin, username, credentials, path)


def person(admin: ClusterAccess, username: str, directory: Path) -> Person:
    """One of USERS, with a fresh certificate."""
    groups = USERS[username]
    access = user_kubeconfig(admin, username, groups, directory / f"{username}.kubeconfig")
    seen = who_am_i(access)
    assert seen["username"] == username, seen
    assert set(seen["groups"]) == {*groups, AUTHENTICATED}, seen
    return Person(username, groups, access, tuple(seen["groups"]))


def people(admin: ClusterAccess, directory: Path) -> dict[str, Person]:
    """alice, bob and carol, each with a certificate of their own."""
    return {username: person(admin, username, directory) for username in USERS}


def service_account_kubeconfig(
    admin: ClusterAccess, namespace: str, service_account: str, path: Path, *, duration: str = "1h"
) -> ClusterAccess:
    """A kubeconfig that authenticates as a ServiceAccount (a bound token, as in a pod)."""
    token = admin.kubectl(
        "create", "token", service_account, "-n", namespace, f"--duration={duration}"
    ).stdout.strip()
    return write_kubeconfig(admin, service_account, {"token": token}, path)


def service_account_username(namespace: str, service_account: str) -> str:
    return f"system:serviceaccount:{namespace}:{service_account}"
