"""Ed25519 keys, key ids and signatures: what an attacker without the operator's key cannot redo.

A key id is `sha256:` + the hex sha256 of the public key's DER SubjectPublicKeyInfo, so anyone can
recompute it from the PEM (`openssl pkey -pubin -outform DER | sha256sum`). Signatures are base64.
Ed25519 is deterministic: signing the same message twice gives the same signature, so a status the
operator re-derives unchanged is byte-identical and is not written again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def key_id(public: Ed25519PublicKey) -> str:
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def public_pem(public: Ed25519PublicKey) -> str:
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_pem(text: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; ValueError for anything else."""
    data = text.encode() if isinstance(text, str) else text
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as error:
        raise ValueError(f"not a PEM public key: {error}") from error
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"not an Ed25519 public key: {type(key).__name__}")
    return key


@dataclass(frozen=True)
class SigningKey:
    """The operator's private key; `sign` is the only thing the decisions need from it."""

    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, text: str | bytes) -> SigningKey:
        data = text.encode() if isinstance(text, str) else text
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as error:
            raise ValueError(f"not an unencrypted PEM private key: {error}") from error
        if not isinstance(key, Ed25519PrivateKey):
            raise ValueError(f"the signing key must be Ed25519, not {type(key).__name__}")
        return cls(key)

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def public_pem(self) -> str:
        return public_pem(self.public)

    def private_pem(self) -> str:
        return self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private.sign(message)).decode()


class Check(StrEnum):
    VALID = "valid"
    UNKNOWN_KEY = "unknown key id"
    BAD_SIGNATURE = "signature does not verify"


@dataclass
class Keyring:
    """The public keys a verifier trusts, current and retired, by key id."""

    keys: dict[str, Ed25519PublicKey] = field(default_factory=dict)

    @classmethod
    def of(cls, *public_keys: Ed25519PublicKey) -> Keyring:
        return cls({key_id(key): key for key in public_keys})

    @classmethod
    def from_pems(cls, pems: Iterable[str | bytes]) -> Keyring:
        return cls.of(*(load_public_pem(pem) for pem in pems))

    @classmethod
    def from_mapping(cls, entries: Mapping[str, str]) -> Keyring:
        """From a ConfigMap's data: every value that is a PEM public key (other keys are ignored)."""
        return cls.from_pems(value for value in entries.values() if "PUBLIC KEY" in value)

    def with_key(self, key: SigningKey | None) -> Keyring:
        return Keyring({**self.keys, key.key_id: key.public}) if key else self

    def check(self, key_id: str | None, message: bytes, signature: str) -> Check:
        public = self.keys.get(key_id or "")
        if public is None:
            return Check.UNKNOWN_KEY
        try:
            public.verify(base64.b64decode(signature, validate=True), message)
        except (InvalidSignature, binascii.Error, ValueError):
            return Check.BAD_SIGNATURE
        return Check.VALID
