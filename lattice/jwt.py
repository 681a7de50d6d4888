"""Compact JWS with Ed25519 nkeys, byte-compatible with wascap (docs/wire.md §2.5).

``base64url_nopad(header) . base64url_nopad(claims) . base64url_nopad(signature)`` where the
signature covers the ASCII of the first two segments and is made by the key named in ``iss``.
Generic on purpose: used for actor claims and for RPC invocation tokens alike.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from lattice.keys import KeyPair, NKeyError

HEADER: dict[str, str] = {"typ": "jwt", "alg": "Ed25519"}
_SEPARATORS = (",", ":")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class JwtError(ValueError):
    """A token is malformed or does not verify.

    ``code`` is ``"malformed"``, ``"bad-header"``, ``"missing-field"``, ``"bad-issuer"`` or
    ``"bad-signature"`` so callers can map failures to their own vocabulary.
    """

    def __init__(self, message: str, code: str = "malformed") -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Token:
    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def b64url_decode(text: str, what: str = "segment") -> bytes:
    stripped = text.rstrip("=")
    # b64decode(altchars=...) would also accept '+' and '/'; base64url must not.
    if not _B64URL.fullmatch(stripped):
        raise JwtError(f"the token's {what} is not valid base64url")
    try:
        padded = stripped + "=" * (-len(stripped) % 4)
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise JwtError(f"the token's {what} is not valid base64url") from exc


def _json_segment(obj: dict[str, Any]) -> str:
    # Compact separators and raw UTF-8, exactly as serde_json writes it.
    return b64url_encode(json.dumps(obj, separators=_SEPARATORS, ensure_ascii=False).encode())


def encode(claims: dict[str, Any], signer: KeyPair) -> str:
    """Sign ``claims`` (key order preserved) with ``signer``; returns the compact token."""
    signing_input = f"{_json_segment(HEADER)}.{_json_segment(claims)}"
    signature = signer.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def _json_object(segment: str, what: str) -> dict[str, Any]:
    raw = b64url_decode(segment, what)
    try:
        value = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # also: nested too deeply, 4300+ digit numbers
        raise JwtError(f"the token's {what} is not valid JSON") from exc
    if not isinstance(value, dict):
        raise JwtError(f"the token's {what} is not a JSON object")
    return value


def decode(token: str) -> Token:
    """Split and decode a token without verifying anything but its shape."""
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise JwtError(f"not a JWT: expected 3 dot-separated segments, got {len(parts)}")
    header = _json_object(parts[0], "header")
    claims = _json_object(parts[1], "claims")
    signature = b64url_decode(parts[2], "signature")
    signing_input = f"{parts[0]}.{parts[1]}".encode("ascii")
    return Token(header, claims, signing_input, signature)


def _check_header(header: dict[str, Any]) -> None:
    if header.get("alg") != HEADER["alg"]:
        raise JwtError(
            f"unsupported token algorithm {header.get('alg')!r} (expected 'Ed25519')", "bad-header"
        )
    if header.get("typ") != HEADER["typ"]:
        raise JwtError(
            f"unsupported token type {header.get('typ')!r} (expected 'jwt')", "bad-header"
        )


def _required_str(claims: dict[str, Any], key: str, meaning: str) -> str:
    value = claims.get(key)
    if not isinstance(value, str) or not value:
        raise JwtError(f"the token has no {meaning} ('{key}')", "missing-field")
    return value


def verify(token: str) -> dict[str, Any]:
    """Check shape, header, ``iss``/``sub`` and the signature by ``iss``; return the claims.

    Time claims (``exp``/``nbf``) are left to the caller, whose error wording differs.
    """
    decoded = decode(token)
    _check_header(decoded.header)
    issuer = _required_str(decoded.claims, "iss", "issuer")
    _required_str(decoded.claims, "sub", "subject")
    try:
        key = KeyPair.from_public_key(issuer)
    except NKeyError as exc:
        message = f"the token's issuer is not a usable public key: {exc}"
        raise JwtError(message, "bad-issuer") from exc
    if not key.verify(decoded.signing_input, decoded.signature):
        raise JwtError("invalid signature: the token was not signed by its issuer", "bad-signature")
    return decoded.claims
