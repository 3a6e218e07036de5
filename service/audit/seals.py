"""Seals: signed commitments to the chain head, and the Ed25519 keys that sign them."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from service.audit.hashing import HEAD_FORMAT, SEAL_FORMAT, canonical_json


def load_private_key(path: str) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def load_public_key(path: str) -> Ed25519PublicKey:
    return parse_public_key(Path(path).read_bytes())


def parse_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (a private key's PEM gives its public half)."""
    try:
        key: Any = serialization.load_pem_public_key(data)
    except ValueError:
        key = serialization.load_pem_private_key(data, password=None).public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def make_seal(
    last_position: int,
    digest: bytes,
    count: int,
    first_position: int,
    private_key: Ed25519PrivateKey | None = None,
) -> dict[str, Any]:
    seal: dict[str, Any] = {
        "format": SEAL_FORMAT,
        "version": 1,
        "first_position": first_position,
        "last_position": last_position,
        "count": count,
        "digest": digest.hex(),
        "sealed_at": datetime.now(UTC).isoformat(),
        "key_id": key_id(private_key.public_key()) if private_key else None,
    }
    if private_key is not None:
        seal["signature"] = base64.b64encode(
            private_key.sign(canonical_json(seal).encode())
        ).decode()
    return seal


def make_head(
    position: int,
    digest: bytes,
    seal_position: int,
    private_key: Ed25519PrivateKey | None = None,
) -> dict[str, Any]:
    """The chainer's head record: the highest position it chained, the chain hash there and
    the last seal it knew of, signed like a seal when the chainer has the key."""
    head: dict[str, Any] = {
        "format": HEAD_FORMAT,
        "version": 1,
        "position": position,
        "digest": digest.hex(),
        "seal_position": seal_position,
        "recorded_at": datetime.now(UTC).isoformat(),
        "key_id": key_id(private_key.public_key()) if private_key else None,
    }
    if private_key is not None:
        head["signature"] = base64.b64encode(
            private_key.sign(canonical_json(head).encode())
        ).decode()
    return head


def seal_signature_valid(seal: dict[str, Any], public_key: Ed25519PublicKey) -> bool:
    """Whether ``seal`` (or a head record) carries ``public_key``'s signature over the rest."""
    signature = seal.get("signature")
    if not signature:
        return False
    unsigned = {key: value for key, value in seal.items() if key != "signature"}
    try:
        public_key.verify(base64.b64decode(signature), canonical_json(unsigned).encode())
    except (InvalidSignature, ValueError):
        return False
    return True


class InvalidSeal(ValueError):
    pass


def check_seal_shape(seal: Any) -> dict[str, Any]:
    """A seal as ``verify`` needs it, or InvalidSeal saying what is missing."""
    if not isinstance(seal, dict):
        raise InvalidSeal("a seal is a JSON object")
    if not isinstance(seal.get("last_position"), int) or isinstance(
        seal.get("last_position"), bool
    ):
        raise InvalidSeal("a seal has an integer last_position")
    if not isinstance(seal.get("count"), int) or not isinstance(seal.get("digest"), str):
        raise InvalidSeal("a seal has an integer count and a hex digest")
    return seal
