"""Ed25519 signatures on checkpoints, laid out as Go's signed notes (sumdb/note).

A signature line is `— <name> <base64(key hash ‖ signature)>`: the key hash is the first
four bytes (big-endian) of SHA-256 over `<name>\\n`, the algorithm byte 0x01 and the 32-byte
public key; the signature is Ed25519 over the note's text, its final newline included. So a
checkpoint auditkit signs opens with Go's `note.Open` given the verifier key `verifier_key`
prints, and a witness that co-signs notes can co-sign it.

The `cryptography` package is optional (`pip install 'auditkit[signing]'`), imported only
when a key is used.
"""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from auditkit._exceptions import AuditKitError, InvalidKey

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

__all__ = [
    "KeySpec",
    "key_hash",
    "private_key",
    "public_key",
    "signature",
    "signature_problem",
    "verifier_key",
]

KeySpec = Any
"""An Ed25519 key object from `cryptography`, or the path of a PEM file holding one."""

_ALGORITHM_ED25519 = b"\x01"
_NEW_KEY = "openssl genpkey -algorithm ed25519 -out signing.pem"
_PUBLIC_HALF = "openssl pkey -in signing.pem -pubout -out signing.pub.pem"


def private_key(value: KeySpec) -> Ed25519PrivateKey:
    """The Ed25519 private key `value` is or names (a PEM file)."""
    _require()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(value, ed25519.Ed25519PrivateKey):
        return value
    if isinstance(value, ed25519.Ed25519PublicKey):
        raise InvalidKey(
            "signing_key is a public key; signing needs the private key (the public one "
            "goes to those who verify)."
        )
    data, where = _pem(value, "signing_key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise InvalidKey(
            f"{where} is encrypted; give an unencrypted PEM file, or load the key in Python "
            "(`serialization.load_pem_private_key(data, password)`) and pass the key object."
        ) from None
    except ValueError:
        if b"PUBLIC KEY" in data:
            raise InvalidKey(
                f"{where} holds a public key; signing needs the private key it was made from."
            ) from None
        raise InvalidKey(f"{where} holds no PEM private key; make one with `{_NEW_KEY}`.") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InvalidKey(
            f"{where} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519 key; "
            f"checkpoints are signed with Ed25519: `{_NEW_KEY}`."
        )
    return key


def public_key(value: KeySpec) -> Ed25519PublicKey:
    """The Ed25519 public key `value` is or names (a PEM file)."""
    _require()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    if isinstance(value, ed25519.Ed25519PublicKey):
        return value
    if isinstance(value, ed25519.Ed25519PrivateKey):
        raise InvalidKey(
            "public_key is a private key; verify with its public half "
            "(`key.public_key()`, or `" + _PUBLIC_HALF + "`)."
        )
    data, where = _pem(value, "public_key")
    if b"PRIVATE KEY" in data:
        raise InvalidKey(
            f"{where} holds a private key; verify with its public half: `{_PUBLIC_HALF}`."
        )
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise InvalidKey(
            f"{where} holds no PEM public key; make it from the signing key: `{_PUBLIC_HALF}`."
        ) from None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InvalidKey(
            f"{where} holds a {type(key).__name__.removeprefix('_')}, not an Ed25519 key; "
            "checkpoints are signed with Ed25519."
        )
    return key


def key_hash(name: str, key: Ed25519PublicKey) -> bytes:
    """The four bytes that name a key in a signature line (as Go's signed notes compute it)."""
    return hashlib.sha256(name.encode() + b"\n" + _ALGORITHM_ED25519 + _raw(key)).digest()[:4]


def verifier_key(name: str, key: Ed25519PublicKey) -> str:
    """The key as Go's `note.NewVerifier` reads it: `<name>+<hash hex>+<base64 key>`."""
    encoded = base64.b64encode(_ALGORITHM_ED25519 + _raw(key)).decode()
    return f"{name}+{key_hash(name, key).hex()}+{encoded}"


def signature(text: str, name: str, key: Ed25519PrivateKey) -> str:
    """The base64 part of the signature line `name`'s key gives `text`."""
    signed = key.sign(text.encode())
    return base64.b64encode(key_hash(name, key.public_key()) + signed).decode()


def signature_problem(
    text: str, signatures: tuple[tuple[str, str], ...], key: Ed25519PublicKey
) -> str | None:
    """Why no signature in `signatures` is `key`'s over `text`, or None when one is."""
    from cryptography.exceptions import InvalidSignature

    if not signatures:
        return "it is not signed"
    for name, encoded in signatures:
        raw = base64.b64decode(encoded)
        if raw[:4] != key_hash(name, key):
            continue
        try:
            key.verify(raw[4:], text.encode())
        except InvalidSignature:
            return (
                f"the signature of `{name}+{raw[:4].hex()}` (the public key given) does not "
                "match its text: the text, or the signature, was changed after signing"
            )
        return None
    signers = ", ".join(f"`{name}+{base64.b64decode(sig)[:4].hex()}`" for name, sig in signatures)
    given = ", ".join(sorted({f"`{name}+{key_hash(name, key).hex()}`" for name, _ in signatures}))
    return f"it is signed by {signers}, not by the public key given ({given}): another key"


def _raw(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _pem(value: KeySpec, option: str) -> tuple[bytes, str]:
    """The bytes of the PEM file `value` names, and how to name it in a message."""
    if not isinstance(value, str | os.PathLike):
        raise InvalidKey(
            f"{option} takes an Ed25519 key object or the path of a PEM file, got "
            f"{type(value).__name__}."
        )
    path = Path(value)
    try:
        return path.read_bytes(), f"`{path}`"
    except OSError as exc:
        raise InvalidKey(f"Cannot read the key file `{path}`: {exc.strerror}.") from None


def _require() -> None:
    """Fail with the install line when the optional `cryptography` package is missing."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        raise AuditKitError(
            "Signing and checking checkpoints needs the cryptography package: "
            "pip install 'auditkit[signing]'."
        ) from None
