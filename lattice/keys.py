"""nkeys: Ed25519 identities for every wasmCloud role (docs/wire.md §5.1).

A public key is ``base32_nopad(prefix ‖ 32-byte public key ‖ crc16_le)`` (56 characters); a seed is
``base32_nopad(b1 ‖ b2 ‖ 32-byte seed ‖ crc16_le)`` (58 characters) where ``b1``/``b2`` pack the
seed marker ``S`` and the role prefix, so every seed reads ``S{role letter}…``.

Implemented on libsodium's Ed25519 (PyNaCl) because the PyPI ``nkeys`` package lacks the module
(M) and service (V) roles that wasmCloud relies on. libsodium rather than OpenSSL because every
invocation is signed by its sender and verified by its receiver: it is twice as fast here.
"""

from __future__ import annotations

import base64
import binascii
import enum
import os

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

PUBLIC_KEY_LENGTH = 56
SEED_LENGTH = 58
_SEED_PREFIX = 18 << 3  # 'S'
_RAW_LENGTH = 32
_BASE32_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")


class NKeyError(ValueError):
    """A key string or key usage is wrong; the message says exactly what."""


class KeyRole(enum.Enum):
    """The role of a key; the value is the prefix byte that yields its first letter."""

    ACCOUNT = 0
    CLUSTER = 2 << 3
    MODULE = 12 << 3
    SERVER = 13 << 3
    OPERATOR = 14 << 3
    USER = 20 << 3
    SERVICE = 21 << 3
    # x25519 encryption keys: decodable, but KeyPair refuses them (they are not signing keys).
    CURVE = 23 << 3

    @property
    def letter(self) -> str:
        return "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"[self.value >> 3]

    @property
    def label(self) -> str:
        """``"an account key (A…)"`` — the phrase used in error messages."""
        article = "an" if self.name[0] in "AEIO" else "a"  # "a user key", "an operator key"
        return f"{article} {self.name.lower()} key ({self.letter}…)"

    @classmethod
    def parse(cls, text: str) -> KeyRole:
        """Accept a role name (``account``), its letter (``a``/``A``) or a common alias."""
        key = text.strip().lower()
        role = _ROLE_NAMES.get(key)
        if role is None:
            for candidate in cls:
                if candidate.letter.lower() == key:
                    return candidate
            names = ", ".join(r.name.lower() for r in SIGNING_ROLES)
            raise NKeyError(f"unknown key role {text!r}: choose one of {names}")
        return role


SIGNING_ROLES: tuple[KeyRole, ...] = tuple(r for r in KeyRole if r is not KeyRole.CURVE)

# Friendly aliases in wasmCloud's vocabulary (an actor is a module, a provider a service, ...).
_ROLE_NAMES: dict[str, KeyRole] = {
    **{r.name.lower(): r for r in KeyRole},
    "actor": KeyRole.MODULE,
    "provider": KeyRole.SERVICE,
    "host": KeyRole.SERVER,
}
_BY_PREFIX: dict[int, KeyRole] = {r.value: r for r in KeyRole}


# --- CRC16 / XMODEM (poly 0x1021, init 0, no reflection) -------------------------------------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC_TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def _with_crc(payload: bytes) -> str:
    raw = payload + crc16(payload).to_bytes(2, "little")
    return base64.b32encode(raw).decode("ascii").rstrip("=")


# --- encoding -----------------------------------------------------------------------------------


def encode_public_key(role: KeyRole, raw: bytes) -> str:
    """Encode a 32-byte Ed25519 (or x25519) public key for ``role``."""
    _check_raw(raw, "public key")
    return _with_crc(bytes([role.value]) + raw)


def encode_seed(role: KeyRole, raw: bytes) -> str:
    """Encode a 32-byte Ed25519 private seed for ``role``."""
    _check_raw(raw, "seed")
    b1 = _SEED_PREFIX | (role.value >> 5)
    b2 = (role.value & 31) << 3
    return _with_crc(bytes([b1, b2]) + raw)


def _check_raw(raw: bytes, what: str) -> None:
    if len(raw) != _RAW_LENGTH:
        raise NKeyError(f"a raw {what} must be {_RAW_LENGTH} bytes, got {len(raw)}")


# --- decoding -----------------------------------------------------------------------------------


def _b32_checked(text: str, expected_len: int, kind: str) -> bytes:
    """Base32-decode ``text`` and verify its trailing CRC; returns the bytes before the CRC."""
    if len(text) != expected_len:
        raise NKeyError(
            f"not an nkey: expected {expected_len} characters for a {kind}, got {len(text)}"
        )
    bad = sorted(set(text) - _BASE32_ALPHABET)
    if bad:
        raise NKeyError(
            f"not an nkey: {bad[0]!r} is not a base32 character (nkeys use only A-Z and 2-7)"
        )
    padded = text + "=" * (-len(text) % 8)
    try:
        raw = base64.b32decode(padded)
    except binascii.Error as exc:  # pragma: no cover - alphabet and length are already checked
        raise NKeyError(f"not an nkey: {exc}") from exc
    body, checksum = raw[:-2], raw[-2:]
    if crc16(body).to_bytes(2, "little") != checksum:
        raise NKeyError("checksum mismatch: the key was mistyped or truncated")
    return body


def _role_from_prefix(prefix: int, text: str) -> KeyRole:
    role = _BY_PREFIX.get(prefix)
    if role is None:
        raise NKeyError(f"not an nkey: unknown role prefix {text[:1]!r} (byte {prefix})")
    return role


def _expect_role(actual: KeyRole, wanted: KeyRole | None) -> None:
    if wanted is not None and actual is not wanted:
        raise NKeyError(f"expected {wanted.label}, got {actual.label}")


def decode_public_key(pk: str, role: KeyRole | None = None) -> tuple[KeyRole, bytes]:
    """Return ``(role, raw 32-byte public key)``; checks length, checksum and (optional) role."""
    text = pk.strip()
    if len(text) == SEED_LENGTH and text.startswith("S"):
        raise NKeyError("this is a seed (S…), not a public key; never share seeds")
    body = _b32_checked(text, PUBLIC_KEY_LENGTH, "public key")
    actual = _role_from_prefix(body[0], text)
    _expect_role(actual, role)
    return actual, body[1:]


def decode_seed(seed: str, role: KeyRole | None = None) -> tuple[KeyRole, bytes]:
    """Return ``(role, raw 32-byte seed)``; checks length, checksum, seed marker and role."""
    text = seed.strip()
    if len(text) == PUBLIC_KEY_LENGTH and is_public_key(text):
        raise NKeyError("this is a public key; a seed (S…) is needed to sign")
    body = _b32_checked(text, SEED_LENGTH, "seed")
    if body[0] & 0xF8 != _SEED_PREFIX:
        raise NKeyError(f"not a seed: seeds start with 'S', this one starts with {text[0]!r}")
    prefix = ((body[0] & 0x07) << 5) | ((body[1] & 0xF8) >> 3)
    actual = _role_from_prefix(prefix, text[1:])
    _expect_role(actual, role)
    return actual, body[2:]


def is_public_key(s: str, role: KeyRole | None = None) -> bool:
    """True when ``s`` is a well-formed public nkey (of ``role``, if given)."""
    try:
        decode_public_key(s, role)
    except NKeyError:
        return False
    return True


# --- key pairs ----------------------------------------------------------------------------------


class KeyPair:
    """An Ed25519 nkey; holds the private seed unless built from a public key (verify-only)."""

    __slots__ = ("_private", "_public", "_public_raw", "_seed_raw", "role")

    def __init__(self, role: KeyRole, *, seed_raw: bytes | None, public_raw: bytes) -> None:
        if role is KeyRole.CURVE:
            raise NKeyError("curve (X…) keys are x25519 encryption keys and cannot sign or verify")
        self.role = role
        self._seed_raw = seed_raw
        self._public_raw = public_raw
        self._private = SigningKey(seed_raw) if seed_raw else None
        self._public = VerifyKey(public_raw)

    @classmethod
    def generate(cls, role: KeyRole) -> KeyPair:
        return cls.from_raw_seed(role, os.urandom(_RAW_LENGTH))

    @classmethod
    def from_raw_seed(cls, role: KeyRole, raw32: bytes) -> KeyPair:
        """Deterministic key from 32 raw bytes (used to derive stable pseudo-identities)."""
        _check_raw(raw32, "seed")
        public_raw = bytes(SigningKey(bytes(raw32)).verify_key)
        return cls(role, seed_raw=bytes(raw32), public_raw=public_raw)

    @classmethod
    def from_seed(cls, seed: str, role: KeyRole | None = None) -> KeyPair:
        actual, raw = decode_seed(seed, role)
        return cls.from_raw_seed(actual, raw)

    @classmethod
    def from_public_key(cls, pk: str, role: KeyRole | None = None) -> KeyPair:
        actual, raw = decode_public_key(pk, role)
        return cls(actual, seed_raw=None, public_raw=raw)

    @property
    def public_key(self) -> str:
        return encode_public_key(self.role, self._public_raw)

    @property
    def raw_public_key(self) -> bytes:
        return self._public_raw

    @property
    def has_seed(self) -> bool:
        return self._seed_raw is not None

    @property
    def seed(self) -> str:
        if self._seed_raw is None:
            raise NKeyError("this key pair holds only a public key; it has no seed")
        return encode_seed(self.role, self._seed_raw)

    def sign(self, data: bytes) -> bytes:
        if self._private is None:
            raise NKeyError("this is a public key; a seed (S…) is needed to sign")
        return self._private.sign(data).signature

    def verify(self, data: bytes, signature: bytes) -> bool:
        if len(signature) != 64:
            return False
        try:
            self._public.verify(data, signature)
        except BadSignatureError:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyPair):
            return NotImplemented
        return self.role is other.role and self._public_raw == other._public_raw

    def __hash__(self) -> int:
        return hash((self.role, self._public_raw))

    def __repr__(self) -> str:  # never print the seed
        kind = "seed" if self.has_seed else "public only"
        return f"KeyPair({self.role.name}, {self.public_key}, {kind})"
