"""wascap actor claims: sign, embed in and extract from wasm, verify (docs/wire.md §5.2-5.4).

The claims JWT lives in a top-level custom section named ``jwt`` (wascap <= 0.8) or
``wasmcloud_jwt`` (wascap >= 0.9). The signed ``wascap.hash`` is the SHA-256 of the binary with
those sections removed, so the same code works for core modules and components.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from lattice import jwt
from lattice.keys import KeyPair, KeyRole, NKeyError, decode_public_key
from lattice.wasm import (
    WasmFormatError,
    append_custom_section,
    iter_sections,
    strip_custom_sections,
)

SECTION_NAMES: tuple[str, ...] = ("jwt", "wasmcloud_jwt")
WRITE_SECTION = "wasmcloud_jwt"
WASCAP_REVISION = 3
# wascap only enforces the module hash from this internal revision on.
MIN_HASH_REVISION = 3

_SIGN_HINT = "sign it with `lattice claims sign FILE --name NAME --cap …`"
_NUID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CONTRACT_ID = re.compile(r"[A-Za-z0-9_.\-]+(:[A-Za-z0-9_.\-]+)+")
_ALIAS_CHARS = re.compile(r"[a-z0-9_/]+")
_KEY_LIKE = re.compile(r"[A-Z0-9]{56}")


class ClaimsError(Exception):
    """Claims are missing or invalid.

    ``code`` is one of ``no-claims``, ``bad-token``, ``bad-signature``, ``not-a-module-key``,
    ``expired``, ``not-yet-valid``, ``hash-mismatch``, ``bad-wasm``.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SigningError(ValueError):
    """Bad input to :func:`sign_actor` (capability, call alias, key role, revision)."""


@dataclass
class ActorClaims:
    issuer: str
    subject: str
    name: str | None
    caps: list[str]
    tags: list[str]
    rev: int | None
    ver: str | None
    call_alias: str | None
    module_hash: str
    issued_at: int
    expires: int | None
    not_before: int | None
    jti: str
    wascap_revision: int | None
    token: str
    warnings: list[str] = field(default_factory=list)

    @property
    def revision(self) -> int:
        """What hosts compare to order versions: ``rev`` if > 0, else ``iat`` (OTP)."""
        return self.rev if self.rev is not None and self.rev > 0 else self.issued_at

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["revision"] = self.revision
        return data


def format_time(ts: int | float) -> str:
    """``2025-01-01 00:00:00 UTC`` for a seconds-since-epoch stamp."""
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts} (seconds since the epoch)"


# --- hashing and extraction ---------------------------------------------------------------------


def module_hash(wasm: bytes) -> str:
    """Uppercase hex SHA-256 of ``wasm`` without its top-level claims sections."""
    return hashlib.sha256(strip_custom_sections(wasm, SECTION_NAMES)).hexdigest().upper()


def _find_token(wasm: bytes) -> str | None:
    for section in iter_sections(wasm):
        if section.name in SECTION_NAMES:  # first one wins, whichever name it has
            try:
                return section.content(wasm).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ClaimsError(
                    "bad-token", f"the module's '{section.name}' section is not UTF-8 text"
                ) from exc
    return None


def extract_claims(wasm: bytes) -> ActorClaims | None:
    """Parse the embedded claims (no verification); None when the module carries none."""
    try:
        token = _find_token(wasm)
    except WasmFormatError as exc:
        raise ClaimsError("bad-wasm", str(exc)) from exc
    if token is None:
        return None
    try:
        decoded = jwt.decode(token)
    except jwt.JwtError as exc:
        raise ClaimsError("bad-token", f"the module's claims token is unreadable: {exc}") from exc
    return _claims_from_json(decoded.claims, token.strip())


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], required: bool) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise ClaimsError("bad-token", f"the claims token has no '{key}' field")
        return None
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise ClaimsError("bad-token", f"the claims token's '{key}' field has the wrong type")
    return value


def _str_list(obj: dict[str, Any], key: str) -> list[str]:
    values = _field(obj, key, list, required=False) or []
    if not all(isinstance(v, str) for v in values):
        raise ClaimsError("bad-token", f"the claims token's '{key}' must be a list of strings")
    return list(values)


def _claims_from_json(claims: dict[str, Any], token: str) -> ActorClaims:
    meta = claims.get("wascap")
    if not isinstance(meta, dict):
        raise ClaimsError("bad-token", "the claims token has no 'wascap' metadata")
    return ActorClaims(
        issuer=_field(claims, "iss", str, required=True),
        subject=_field(claims, "sub", str, required=True),
        name=_field(meta, "name", str, required=False),
        caps=_str_list(meta, "caps"),
        tags=_str_list(meta, "tags"),
        rev=_field(meta, "rev", int, required=False),
        ver=_field(meta, "ver", str, required=False),
        call_alias=_field(meta, "call_alias", str, required=False),
        module_hash=_field(meta, "hash", str, required=True),
        issued_at=_field(claims, "iat", int, required=True),
        expires=_field(claims, "exp", int, required=False),
        not_before=_field(claims, "nbf", int, required=False),
        jti=_field(claims, "jti", str, required=False) or "",
        wascap_revision=_field(claims, "wascap_revision", int, required=False),
        token=token,
    )


# --- verification -------------------------------------------------------------------------------


def verify_module(wasm: bytes, *, now: float | None = None) -> ActorClaims:
    """Extract and fully check the claims: signature, key roles, validity window, module hash."""
    claims = extract_claims(wasm)
    if claims is None:
        raise ClaimsError(
            "no-claims",
            f"the module carries no claims (no 'jwt' or 'wasmcloud_jwt' section): {_SIGN_HINT}",
        )
    _check_signature(claims)
    _check_roles(claims)
    _check_times(claims, time.time() if now is None else now)
    try:  # the claims come first; what follows them may still be broken
        actual = module_hash(wasm)
    except WasmFormatError as exc:
        raise ClaimsError("bad-wasm", str(exc)) from exc
    _check_hash(claims, actual)
    return claims


def _check_signature(claims: ActorClaims) -> None:
    try:
        jwt.verify(claims.token)
    except jwt.JwtError as exc:
        if exc.code == "bad-signature":
            message = "invalid signature on the module's claims token"
            raise ClaimsError("bad-signature", message) from exc
        raise ClaimsError("bad-token", f"the module's claims token is invalid: {exc}") from exc


def _check_roles(claims: ActorClaims) -> None:
    issuer_role = _role_of(claims.issuer, "issuer", "bad-token")
    if issuer_role is not KeyRole.ACCOUNT:
        raise ClaimsError(
            "bad-token",
            f"the claims issuer must be {KeyRole.ACCOUNT.label}, got {issuer_role.label}",
        )
    subject_role = _role_of(claims.subject, "subject", "not-a-module-key")
    if subject_role is not KeyRole.MODULE:
        raise ClaimsError(
            "not-a-module-key",
            f"the claims subject must be {KeyRole.MODULE.label}, got {subject_role.label}",
        )


def _role_of(key: str, what: str, code: str) -> KeyRole:
    try:
        return decode_public_key(key)[0]
    except NKeyError as exc:
        raise ClaimsError(code, f"the claims {what} {key!r} is not a public key: {exc}") from exc


def _check_times(claims: ActorClaims, now: float) -> None:
    # Same comparisons as wascap: expired once exp < now, usable once now >= nbf.
    if claims.expires is not None and claims.expires < now:
        raise ClaimsError("expired", f"claims expired on {format_time(claims.expires)}")
    if claims.not_before is not None and now < claims.not_before:
        raise ClaimsError(
            "not-yet-valid", f"claims are not valid until {format_time(claims.not_before)}"
        )


def _check_hash(claims: ActorClaims, actual: str) -> None:
    if claims.module_hash.upper() == actual:
        return
    detail = f"(signed hash {claims.module_hash}, actual {actual})"
    if (claims.wascap_revision or 0) >= MIN_HASH_REVISION:
        raise ClaimsError(
            "hash-mismatch", f"module hash mismatch: the module was changed after signing {detail}"
        )
    # Older signers (no revision, or wascap 0.9's different algorithm) are not enforced by
    # current hosts; we report it instead of refusing the module (docs/wire.md §5.2).
    revision = claims.wascap_revision if claims.wascap_revision is not None else "none"
    claims.warnings.append(
        f"module hash mismatch ignored for an older token (wascap_revision {revision}): the "
        f"module may have been changed after signing {detail}; re-sign it to make it verifiable"
    )


# --- signing ------------------------------------------------------------------------------------


def normalize_call_alias(alias: str) -> str:
    """wascap's normalization: lower-case, trimmed, non-ASCII removed, space/-/. become _."""
    text = alias.lower().strip()
    text = "".join(c for c in text if c.isascii())
    for char in " -.":
        text = text.replace(char, "_")
    return text


def validate_call_alias(alias: str) -> str:
    """Normalize like wascap, then enforce wash's rules; returns the alias to embed."""
    if _KEY_LIKE.fullmatch(alias.strip()):
        raise SigningError(
            f"call alias {alias!r} looks like a public key; pick a name such as 'myorg/service'"
        )
    normalized = normalize_call_alias(alias)
    if not normalized:
        raise SigningError("the call alias is empty; use e.g. 'wasmcloud/ponger'")
    if not _ALIAS_CHARS.fullmatch(normalized):
        raise SigningError(
            f"call alias {alias!r} (normalized {normalized!r}) may only contain a-z, 0-9, '_' "
            "and '/'"
        )
    return normalized


def validate_caps(caps: Iterable[str]) -> list[str]:
    """Check each capability is a contract id (``vendor:name``); keeps order, drops repeats."""
    result: list[str] = []
    for cap in caps:
        text = cap.strip()
        if not _CONTRACT_ID.fullmatch(text):
            hint = f" (did you mean 'wasmcloud:{text}'?)" if text and ":" not in text else ""
            raise SigningError(
                f"capability {cap!r} is not a contract id: expected vendor:name, e.g. "
                f"wasmcloud:keyvalue{hint}"
            )
        if text not in result:
            result.append(text)
    return result


def _check_signing_keys(issuer: KeyPair, subject: KeyPair) -> None:
    if issuer.role is not KeyRole.ACCOUNT:
        raise SigningError(f"the issuer must be {KeyRole.ACCOUNT.label}, got {issuer.role.label}")
    if not issuer.has_seed:
        raise SigningError("the issuer is a public key; its seed (SA…) is needed to sign")
    if subject.role is not KeyRole.MODULE:
        raise SigningError(f"the subject must be {KeyRole.MODULE.label}, got {subject.role.label}")


def _nuid() -> str:
    # wascap uses a 22-character NUID; any unique random id of that shape is equivalent.
    return "".join(secrets.choice(_NUID_ALPHABET) for _ in range(22))


def _actor_metadata(
    name: str, hash_: str, caps: list[str], tags: list[str],
    rev: int | None, ver: str | None, call_alias: str | None,
) -> dict[str, Any]:
    # Key order and Option-omission follow wascap's `Actor` serde layout.
    meta: dict[str, Any] = {"name": name, "hash": hash_, "tags": tags, "caps": caps}
    optional = {"rev": rev, "ver": ver, "call_alias": call_alias}
    meta.update({k: v for k, v in optional.items() if v is not None})
    meta["prov"] = False
    return meta


def _claims_json(
    issuer: KeyPair, subject: KeyPair, meta: dict[str, Any],
    iat: int, expires: int | None, not_before: int | None,
) -> dict[str, Any]:
    # Key order follows wascap's `Claims` struct: exp, jti, iat, iss, sub, nbf, wascap, revision.
    claims: dict[str, Any] = {}
    if expires is not None:
        claims["exp"] = int(expires)
    claims.update({"jti": _nuid(), "iat": iat, "iss": issuer.public_key,
                   "sub": subject.public_key})
    if not_before is not None:
        claims["nbf"] = int(not_before)
    claims["wascap"] = meta
    claims["wascap_revision"] = WASCAP_REVISION
    return claims


def sign_actor(
    wasm: bytes,
    *,
    issuer: KeyPair,
    subject: KeyPair,
    name: str,
    caps: Iterable[str] = (),
    tags: Iterable[str] = (),
    rev: int | None = None,
    ver: str | None = None,
    call_alias: str | None = None,
    expires: int | None = None,
    not_before: int | None = None,
    now: float | None = None,
) -> bytes:
    """Return ``wasm`` with fresh claims in a ``wasmcloud_jwt`` section (old claims removed)."""
    _check_signing_keys(issuer, subject)
    if not name.strip():
        raise SigningError("the actor needs a name (--name)")
    if rev is not None and not 0 <= rev <= 2**31 - 1:
        raise SigningError(f"revision {rev} is out of range (0 to 2147483647)")
    alias = validate_call_alias(call_alias) if call_alias is not None else None
    try:
        stripped = strip_custom_sections(wasm, SECTION_NAMES)
    except WasmFormatError as exc:
        raise ClaimsError("bad-wasm", str(exc)) from exc
    hash_ = hashlib.sha256(stripped).hexdigest().upper()
    tag_list = [t.strip() for t in tags if t.strip()]
    meta = _actor_metadata(name.strip(), hash_, validate_caps(caps), tag_list, rev, ver, alias)
    iat = int(time.time() if now is None else now)
    token = jwt.encode(_claims_json(issuer, subject, meta, iat, expires, not_before), issuer)
    return append_custom_section(stripped, WRITE_SECTION, token.encode("utf-8"))
