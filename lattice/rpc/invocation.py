"""The RPC envelope: WasmCloudEntity, Invocation and InvocationResponse (docs/wire.md §2.2-2.4).

Encoding follows wasmbus-rpc exactly (msgpack maps, snake_case keys, ``msg`` as bin, ``error``
omitted on success). Decoding is tolerant of every peer: OTP's Elixir encoder sends ``msg`` as a
non-UTF-8 *str*, an empty array or nil, so we unpack raw and normalise.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import msgpack


class EnvelopeError(ValueError):
    """An Invocation or InvocationResponse that cannot be decoded."""


@dataclass(frozen=True)
class Entity:
    """An actor (``M…``, no contract/link) or a provider link (``V…`` + contract + link name)."""

    public_key: str
    contract_id: str = ""
    link_name: str = ""

    @classmethod
    def actor(cls, key: str) -> Entity:
        return cls(key)

    @classmethod
    def provider(cls, key: str, contract_id: str, link_name: str = "default") -> Entity:
        return cls(key, contract_id, link_name)

    @property
    def is_actor(self) -> bool:
        return self.public_key.upper().startswith("M")

    @property
    def url(self) -> str:
        if self.is_actor:
            return f"wasmbus://{self.public_key}"
        contract = self.contract_id.replace(":", "/").replace(" ", "_").lower()
        link = self.link_name.replace(" ", "_").lower()
        return f"wasmbus://{contract}/{link}/{self.public_key}"

    def to_wire(self) -> dict[str, str]:
        return {"public_key": self.public_key, "link_name": self.link_name,
                "contract_id": self.contract_id}

    @classmethod
    def from_wire(cls, value: Any) -> Entity:
        if not isinstance(value, dict):
            raise EnvelopeError(f"expected an entity map, got {type(value).__name__}")
        return cls(_text(value.get("public_key")), _text(value.get("contract_id")),
                   _text(value.get("link_name")))


def invocation_hash(origin_url: str, target_url: str, operation: str, msg: bytes) -> str:
    """HEX_UPPER(SHA-256(origin_url ‖ target_url ‖ operation ‖ msg)) (docs/wire.md §2.5)."""
    digest = hashlib.sha256()
    for part in (origin_url.encode(), target_url.encode(), operation.encode(), msg):
        digest.update(part)
    return digest.hexdigest().upper()


@dataclass
class Invocation:
    origin: Entity
    target: Entity
    operation: str
    msg: bytes
    id: str
    encoded_claims: str
    host_id: str
    content_length: int
    trace_context: dict[str, str] | None = None

    @property
    def target_url(self) -> str:
        return f"{self.target.url}/{self.operation}"

    @property
    def chunked(self) -> bool:
        return self.content_length > len(self.msg)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "origin": self.origin.to_wire(), "target": self.target.to_wire(),
            "operation": self.operation, "msg": self.msg, "id": self.id,
            "encoded_claims": self.encoded_claims, "host_id": self.host_id,
            "content_length": self.content_length}
        if self.trace_context:
            doc["traceContext"] = self.trace_context
        return msgpack.packb(doc, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> Invocation:
        doc = _unpack(data, "Invocation")
        try:
            msg = _blob(doc.get("msg"))
            length = doc.get("content_length")
            return cls(
                origin=Entity.from_wire(doc.get("origin")),
                target=Entity.from_wire(doc.get("target")),
                operation=_text(doc.get("operation")),
                msg=msg,
                id=_text(doc.get("id")),
                encoded_claims=_text(doc.get("encoded_claims")),
                host_id=_text(doc.get("host_id")),
                content_length=length if isinstance(length, int) else len(msg),
                trace_context=_str_map(doc.get("traceContext")))
        except (TypeError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
            raise EnvelopeError(f"malformed Invocation: {exc}") from None


@dataclass
class InvocationResponse:
    invocation_id: str
    msg: bytes = b""
    error: str | None = None
    content_length: int | None = None
    trace_context: dict[str, str] | None = field(default=None)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"msg": self.msg, "invocation_id": self.invocation_id}
        if self.error is not None:  # presence alone means failure, even ""
            doc["error"] = self.error
        doc["content_length"] = (len(self.msg) if self.content_length is None
                                 else self.content_length)
        if self.trace_context:
            doc["traceContext"] = self.trace_context
        return msgpack.packb(doc, use_bin_type=True)

    @classmethod
    def decode(cls, data: bytes) -> InvocationResponse:
        doc = _unpack(data, "InvocationResponse")
        try:
            error = doc.get("error")
            length = doc.get("content_length")
            return cls(invocation_id=_text(doc.get("invocation_id")),
                       msg=_blob(doc.get("msg")),
                       error=None if error is None else _text(error),
                       content_length=length if isinstance(length, int) else None,
                       trace_context=_str_map(doc.get("traceContext")))
        except (TypeError, ValueError) as exc:
            raise EnvelopeError(f"malformed InvocationResponse: {exc}") from None


# ---- tolerant decoding helpers ------------------------------------------------------------------


def _unpack(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = msgpack.unpackb(data, raw=True)
    except Exception as exc:  # msgpack raises several types for garbage
        raise EnvelopeError(f"cannot decode {what}: not msgpack ({exc})") from None
    if not isinstance(doc, dict):
        raise EnvelopeError(f"cannot decode {what}: expected a map, got {type(doc).__name__}")
    try:
        return _deep(doc, 0)  # keys become str; values stay raw until a field decoder reads them
    except _TooDeep:
        raise EnvelopeError(f"cannot decode {what}: maps nested more than {_MAX_DEPTH} "
                            "deep") from None


# An envelope nests three maps at most (the invocation, an entity, traceContext); stop well
# before Python's recursion limit, which msgpack's 1024 levels would otherwise reach.
_MAX_DEPTH = 32


class _TooDeep(Exception):
    pass


def _key(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _deep(value: Any, depth: int = 0) -> Any:
    if isinstance(value, dict):
        if depth >= _MAX_DEPTH:
            raise _TooDeep
        return {_key(k): _deep(v, depth + 1) for k, v in value.items()}
    return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _blob(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):  # bin, or an Elixir str unpacked raw
        return value
    if isinstance(value, list):  # OTP's "actor not running" reply sends []; or ints
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    raise TypeError(f"expected bytes, got {type(value).__name__}")


def _str_map(value: Any) -> dict[str, str] | None:
    if not isinstance(value, dict):
        return None
    return {_text(k): _text(v) for k, v in _deep(value).items() if v is not None}
