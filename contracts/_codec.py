"""Declarative codec for wasmCloud 0.x contract payloads (msgpack, plus the old CBOR protocol).

Messages are plain ``@dataclass`` classes. Python field names are snake_case; the wire key is
derived as lowerCamelCase (``query_string`` -> ``queryString``) unless the field carries
``metadata={WIRE: "name"}``. The field *type annotation* drives the encoding:

* ``str``, ``bool``, ``bytes``/``Blob`` (msgpack bin), ``U8``..``I64`` (range-checked ints),
  ``F32``/``F64``, ``list[T]``, ``dict[str, T]``, nested dataclasses, ``Timestamp``,
  ``IntArrayBytes`` (bytes written as an array of ints - sqldb parameters),
  ``T | None`` (optional: key omitted when None).

Sending is strict (wrong types and out-of-range ints raise ``CodecError``, every non-optional key
is always written, map keys follow declaration order so bytes match Rust ``rmp_serde``).
Receiving is lenient the way docs/contracts.md §2/§11 asks: missing keys and nil take defaults,
``""`` is "absent" for optional strings, blobs may arrive as bin/str/int arrays, structs may be
positional arrays, unknown keys are ignored, and a ``0xc1``/``0x7f`` format prefix is honoured.

Each type annotation is compiled once into a small tree of ``_Node`` objects (cached), so the
hot path never re-inspects annotations.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import difflib
import struct
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import msgpack

__all__ = [
    "F32",
    "F64",
    "I8",
    "I16",
    "I32",
    "I64",
    "INT_ARRAY",
    "U8",
    "U16",
    "U32",
    "U64",
    "WIRE",
    "Blob",
    "CodecError",
    "FloatKind",
    "IntArrayBytes",
    "IntKind",
    "Timestamp",
    "decode",
    "encode",
    "format_of",
    "from_json",
    "strip_prefix",
    "to_jsonable",
    "type_name",
    "wire_name",
]


# --------------------------------------------------------------------------------------------
# Type vocabulary


@dataclass(frozen=True)
class IntKind:
    """Metadata for an ``Annotated[int, ...]`` alias: wasmCloud width name and inclusive range."""

    name: str
    lo: int
    hi: int


@dataclass(frozen=True)
class FloatKind:
    name: str
    bits: int


@dataclass(frozen=True)
class _IntArrayMarker:
    """Bytes sent as an array of small ints (Rust ``Vec<u8>`` without serde_bytes)."""


INT_ARRAY = _IntArrayMarker()

U8 = Annotated[int, IntKind("U8", 0, 2**8 - 1)]
U16 = Annotated[int, IntKind("U16", 0, 2**16 - 1)]
U32 = Annotated[int, IntKind("U32", 0, 2**32 - 1)]
U64 = Annotated[int, IntKind("U64", 0, 2**64 - 1)]
I8 = Annotated[int, IntKind("I8", -(2**7), 2**7 - 1)]
I16 = Annotated[int, IntKind("I16", -(2**15), 2**15 - 1)]
I32 = Annotated[int, IntKind("I32", -(2**31), 2**31 - 1)]
I64 = Annotated[int, IntKind("I64", -(2**63), 2**63 - 1)]
F32 = Annotated[float, FloatKind("F32", 32)]
F64 = Annotated[float, FloatKind("F64", 64)]
IntArrayBytes = Annotated[bytes, INT_ARRAY]
# Alias for ``bytes``: needed where a field is itself named ``bytes`` (blobstore Chunk), because
# ``bytes: bytes = b""`` in a class body would make the annotation the value b"".
Blob = bytes

_PLAIN_INT = IntKind("I64", -(2**63), 2**63 - 1)  # a bare ``int`` annotation

WIRE = "wire"  # field metadata key overriding the derived wire name


def wire_name(py_name: str) -> str:
    """snake_case -> lowerCamelCase, the Smithy member naming used on the wire."""
    head, *rest = py_name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


@dataclass(slots=True)
class Timestamp:
    """``org.wasmcloud.model#Timestamp``: seconds + nanoseconds since the Unix epoch (UTC)."""

    sec: I64 = 0
    nsec: U32 = 0

    @classmethod
    def from_datetime(cls, when: _dt.datetime) -> Timestamp:
        if when.tzinfo is None:
            when = when.replace(tzinfo=_dt.UTC)
        delta = when - _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        sec = delta.days * 86400 + delta.seconds
        return cls(sec, delta.microseconds * 1000)

    @classmethod
    def now(cls) -> Timestamp:
        return cls.from_datetime(_dt.datetime.now(_dt.UTC))

    def to_datetime(self) -> _dt.datetime:
        epoch = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
        return epoch + _dt.timedelta(seconds=self.sec, microseconds=self.nsec // 1000)


# --------------------------------------------------------------------------------------------
# Errors


class CodecError(ValueError):
    """A payload could not be encoded/decoded/converted. The message names type, field and cause.

    Attributes: ``type_name`` (root message type or operation label), ``path`` (e.g.
    ``.header['accept'][0]``) and ``reason``.
    """

    def __init__(self, message: str, type_name: str = "", path: str = "", reason: str = ""):
        super().__init__(message)
        self.type_name = type_name
        self.path = path
        self.reason = reason or message


class _Fail(Exception):
    """Internal: raised at the failing leaf; containers append their path segment on the way up."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason
        self.path: list[str] = []  # innermost first


def _error(root: str, exc: _Fail, mode: str) -> CodecError:
    path = "".join(reversed(exc.path))
    if mode == "decode":
        msg = f"cannot decode {root}{path}: {exc.reason}"
    elif mode == "json":
        msg = f"cannot convert JSON to {root}{path}: {exc.reason}"
    else:
        msg = f"{root}{path}: {exc.reason}"
    return CodecError(msg, root, path, exc.reason)


_WIRE_KIND = {
    dict: "map",
    list: "array",
    str: "str",
    bytes: "bin",
    int: "int",
    float: "float",
    bool: "bool",
    type(None): "nil",
}
_JSON_KIND = {
    dict: "object",
    list: "array",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def _wk(o: object) -> str:
    return _WIRE_KIND.get(type(o), type(o).__name__)


def _jk(o: object) -> str:
    return _JSON_KIND.get(type(o), type(o).__name__)


def _pk(o: object) -> str:
    return "None" if o is None else type(o).__name__


# --------------------------------------------------------------------------------------------
# Minimal CBOR reader/writer (schema-guided, so the old blobstore Timestamp quirk can be honoured)

_CB_NULL = (0xF6, 0xF7)  # null, undefined


class _CborIn:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def _take(self, n: int) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise _Fail("truncated CBOR data")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _skip_tags(self) -> None:
        data = self.data
        while self.pos < len(data) and data[self.pos] >> 5 == 6:
            self.pos += 1
            self._arg(data[self.pos - 1] & 31)

    def _arg(self, ai: int) -> int | None:
        if ai < 24:
            return ai
        if ai <= 27:
            return int.from_bytes(self._take(1 << (ai - 24)), "big")
        if ai == 31:
            return None  # indefinite length
        raise _Fail(f"invalid CBOR additional info {ai}")

    def take_null(self) -> bool:
        """Consume a null/undefined item if one is next."""
        self._skip_tags()
        if self.pos < len(self.data) and self.data[self.pos] in _CB_NULL:
            self.pos += 1
            return True
        return False

    def peek_major(self) -> int:
        self._skip_tags()
        if self.pos >= len(self.data):
            raise _Fail("truncated CBOR data")
        return self.data[self.pos] >> 5

    def head(self) -> tuple[int, int, int | None]:
        """Read an item head -> (major type, additional info, argument; None if indefinite)."""
        self._skip_tags()
        ib = self._take(1)[0]
        major, ai = ib >> 5, ib & 31
        if major == 7:
            return major, ai, None
        return major, ai, self._arg(ai)

    def at_break(self) -> bool:
        if self.pos < len(self.data) and self.data[self.pos] == 0xFF:
            self.pos += 1
            return True
        return False

    def string(self, major: int, n: int | None) -> bytes:
        if n is not None:
            return self._take(n)
        parts = []  # indefinite: definite chunks of the same major type until break
        while not self.at_break():
            m, _, size = self.head()
            if m != major or size is None:
                raise _Fail("invalid chunk in indefinite-length CBOR string")
            parts.append(self._take(size))
        return b"".join(parts)

    def float_value(self, ai: int) -> float:
        if ai == 25:
            return struct.unpack(">e", self._take(2))[0]
        if ai == 26:
            return struct.unpack(">f", self._take(4))[0]
        return struct.unpack(">d", self._take(8))[0]

    def count(self, n: int | None) -> Callable[[], bool]:
        """Iterator helper for definite or indefinite arrays/maps: returns 'has another item'."""
        if n is None:
            return lambda: not self.at_break()
        remaining = [n]

        def more() -> bool:
            remaining[0] -= 1
            return remaining[0] >= 0

        return more

    def skip(self) -> None:
        major, ai, n = self.head()
        if major in (2, 3):
            self.string(major, n)
        elif major in (4, 5):
            more = self.count(n)
            while more():
                self.skip()
                if major == 5:
                    self.skip()
        elif major == 7:
            if ai == 24:
                self._take(1)
            elif 25 <= ai <= 27:
                self.float_value(ai)


def _cbor_kind(major: int, ai: int) -> str:
    if major == 7:
        return {20: "bool", 21: "bool", 22: "null", 23: "undefined"}.get(
            ai, "float" if 25 <= ai <= 27 else "simple value"
        )
    return ("uint", "negative int", "byte string", "text string", "array", "map", "tag")[major]


def _cb_head(w: bytearray, major: int, n: int) -> None:
    mt = major << 5
    if n < 24:
        w.append(mt | n)
    elif n < 0x100:
        w.append(mt | 24)
        w.append(n)
    elif n < 0x10000:
        w.append(mt | 25)
        w += n.to_bytes(2, "big")
    elif n < 0x100000000:
        w.append(mt | 26)
        w += n.to_bytes(4, "big")
    else:
        w.append(mt | 27)
        w += n.to_bytes(8, "big")


def _cb_int(w: bytearray, v: int) -> None:
    if v >= 0:
        _cb_head(w, 0, v)
    else:
        _cb_head(w, 1, -1 - v)


# --------------------------------------------------------------------------------------------
# Nodes: one per distinct type annotation
#
# enc(v)       typed value -> msgpack-ready object (validates)
# dec(o)       unpacked msgpack object -> typed value (lenient)
# cin(r)       CBOR reader -> typed value (lenient)
# cout(w, v)   typed value -> CBOR bytes
# from_json(o) JSON value -> typed value
# zero()       value used for a missing key / nil on receive


class _Node:
    name = "?"

    def zero(self) -> Any:
        raise NotImplementedError

    def children(self) -> tuple[_Node, ...]:
        return ()

    def enc(self, v: Any) -> Any:
        raise NotImplementedError

    def dec(self, o: Any) -> Any:
        raise NotImplementedError

    def cin(self, r: _CborIn) -> Any:
        raise NotImplementedError

    def cout(self, w: bytearray, v: Any) -> None:
        raise NotImplementedError

    def from_json(self, o: Any) -> Any:
        raise NotImplementedError


class _Str(_Node):
    name = "str"

    def zero(self) -> str:
        return ""

    def enc(self, v: Any) -> str:
        if type(v) is str:
            return v
        if isinstance(v, str):
            return str.__str__(v)  # plain value of a str subclass (e.g. an enum)
        raise _Fail(f"expected str, got {_pk(v)}")

    def dec(self, o: Any) -> str:
        if type(o) is str:
            return o
        if type(o) is bytes:  # Rust accepts bin for a String too
            try:
                return o.decode("utf-8")
            except UnicodeDecodeError:
                raise _Fail("bin is not valid UTF-8 text") from None
        if o is None:
            return ""
        raise _Fail(f"expected a str, got {_wk(o)}")

    def cin(self, r: _CborIn) -> str:
        major, ai, n = r.head()
        if major in (2, 3):
            try:
                return r.string(major, n).decode("utf-8")
            except UnicodeDecodeError:
                raise _Fail("string is not valid UTF-8") from None
        raise _Fail(f"expected a text string, got CBOR {_cbor_kind(major, ai)}")

    def cout(self, w: bytearray, v: Any) -> None:
        data = self.enc(v).encode("utf-8")
        _cb_head(w, 3, len(data))
        w += data

    def from_json(self, o: Any) -> str:
        if isinstance(o, str):
            return str.__str__(o)
        raise _Fail(f"expected a string, got {_jk(o)}")


def _ints_to_bytes(o: list) -> bytes:
    try:
        return bytes(o)
    except (ValueError, TypeError):
        for i, x in enumerate(o):
            if type(x) is not int or not 0 <= x <= 255:
                raise _Fail(f"array element [{i}] = {x!r} is not a byte (0..255)") from None
        raise


class _Bytes(_Node):
    """Blob: bin on the wire (serde_bytes)."""

    name = "bytes"

    def zero(self) -> bytes:
        return b""

    def _check(self, v: Any) -> bytes:
        if type(v) is bytes:
            return v
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v)
        raise _Fail(f"expected bytes, got {_pk(v)}")

    enc = _check

    def dec(self, o: Any) -> bytes:
        t = type(o)
        if t is bytes:
            return o
        if t is str:
            return o.encode("utf-8")
        if t is list:
            return _ints_to_bytes(o)
        if o is None:
            return b""
        raise _Fail(f"expected bin, got {_wk(o)}")

    def cin(self, r: _CborIn) -> bytes:
        major, ai, n = r.head()
        if major in (2, 3):
            return r.string(major, n)
        if major == 4:
            out = bytearray()
            more = r.count(n)
            while more():
                m, _, x = r.head()
                if m != 0 or x is None or x > 255:
                    raise _Fail("array element is not a byte (0..255)")
                out.append(x)
            return bytes(out)
        raise _Fail(f"expected a byte string, got CBOR {_cbor_kind(major, ai)}")

    def cout(self, w: bytearray, v: Any) -> None:
        data = self._check(v)
        _cb_head(w, 2, len(data))
        w += data

    def from_json(self, o: Any) -> bytes:
        if isinstance(o, str):
            return o.encode("utf-8")
        if isinstance(o, (bytes, bytearray, memoryview)):
            return bytes(o)
        if isinstance(o, list):
            return _ints_to_bytes(o)
        if isinstance(o, dict) and set(o) == {"base64"} and isinstance(o["base64"], str):
            try:
                return base64.b64decode(o["base64"], validate=True)
            except ValueError:
                raise _Fail("invalid base64 text") from None
        raise _Fail(f'expected a string, an array of bytes or {{"base64": ...}}, got {_jk(o)}')


class _IntArray(_Bytes):
    """Bytes written as a msgpack array of ints (sqldb ``parameters`` elements)."""

    name = "IntArrayBytes"

    def enc(self, v: Any) -> list[int]:
        if isinstance(v, (list, tuple)):
            return list(_ints_to_bytes(list(v)))
        return list(self._check(v))

    def cout(self, w: bytearray, v: Any) -> None:
        data = bytes(self.enc(v))
        _cb_head(w, 4, len(data))
        for b in data:
            _cb_head(w, 0, b)


class _Bool(_Node):
    name = "bool"

    def zero(self) -> bool:
        return False

    def enc(self, v: Any) -> bool:
        if v is True or v is False:
            return v
        raise _Fail(f"expected bool, got {_pk(v)}")

    def dec(self, o: Any) -> bool:
        if o is True or o is False:
            return o
        if o is None:
            return False
        raise _Fail(f"expected a bool, got {_wk(o)}")

    def cin(self, r: _CborIn) -> bool:
        major, ai, _ = r.head()
        if major == 7 and ai in (20, 21):
            return ai == 21
        raise _Fail(f"expected a bool, got CBOR {_cbor_kind(major, ai)}")

    def cout(self, w: bytearray, v: Any) -> None:
        w.append(0xF5 if self.enc(v) else 0xF4)

    def from_json(self, o: Any) -> bool:
        if isinstance(o, bool):
            return o
        raise _Fail(f"expected true or false, got {_jk(o)}")


class _Int(_Node):
    def __init__(self, kind: IntKind):
        self.kind = kind
        self.name = kind.name
        self.lo = kind.lo
        self.hi = kind.hi

    def zero(self) -> int:
        return 0

    def _range(self, v: int) -> int:
        if self.lo <= v <= self.hi:
            return v
        raise _Fail(f"{v} does not fit {self.name} ({self.lo}..{self.hi})")

    def enc(self, v: Any) -> int:
        if type(v) is not int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise _Fail(f"expected int ({self.name}), got {_pk(v)}")
            v = int(v)
        return self._range(v)

    def dec(self, o: Any) -> int:
        if type(o) is int:
            return self._range(o)
        if o is None:
            return 0
        raise _Fail(f"expected an integer ({self.name}), got {_wk(o)}")

    def cin(self, r: _CborIn) -> int:
        major, ai, n = r.head()
        if major == 0 and n is not None:
            return self._range(n)
        if major == 1 and n is not None:
            return self._range(-1 - n)
        raise _Fail(f"expected an integer ({self.name}), got CBOR {_cbor_kind(major, ai)}")

    def cout(self, w: bytearray, v: Any) -> None:
        _cb_int(w, self.enc(v))

    def from_json(self, o: Any) -> int:
        if isinstance(o, int) and not isinstance(o, bool):
            return self._range(int(o))
        raise _Fail(f"expected an integer ({self.name}), got {_jk(o)}")


class _Float(_Node):
    def __init__(self, kind: FloatKind):
        self.kind = kind
        self.name = kind.name

    def zero(self) -> float:
        return 0.0

    def enc(self, v: Any) -> float:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise _Fail(f"expected float ({self.name}), got {_pk(v)}")

    def dec(self, o: Any) -> float:
        if type(o) is float or type(o) is int:
            return float(o)
        if o is None:
            return 0.0
        raise _Fail(f"expected a number ({self.name}), got {_wk(o)}")

    def cin(self, r: _CborIn) -> float:
        major, ai, n = r.head()
        if major == 7 and 25 <= ai <= 27:
            return r.float_value(ai)
        if major in (0, 1) and n is not None:
            return float(n if major == 0 else -1 - n)
        raise _Fail(f"expected a number ({self.name}), got CBOR {_cbor_kind(major, ai)}")

    def cout(self, w: bytearray, v: Any) -> None:
        if self.kind.bits == 32:
            w.append(0xFA)
            w += struct.pack(">f", self.enc(v))
        else:
            w.append(0xFB)
            w += struct.pack(">d", self.enc(v))

    def from_json(self, o: Any) -> float:
        if isinstance(o, (int, float)) and not isinstance(o, bool):
            return float(o)
        raise _Fail(f"expected a number ({self.name}), got {_jk(o)}")


class _Optional(_Node):
    """``T | None``. Only meaningful as a struct member (key omitted when None)."""

    def __init__(self, inner: _Node):
        self.inner = inner
        self.name = f"{inner.name} | None"
        # TinyGo writes "" for an unset optional string: treat it as absent on receive.
        self.empty_is_none = isinstance(inner, _Str)

    def children(self) -> tuple[_Node, ...]:
        return (self.inner,)

    def zero(self) -> None:
        return None

    def enc(self, v: Any) -> Any:
        return None if v is None else self.inner.enc(v)

    def dec(self, o: Any) -> Any:
        if o is None:
            return None
        v = self.inner.dec(o)
        return None if self.empty_is_none and v == "" else v

    def cin(self, r: _CborIn) -> Any:
        if r.take_null():
            return None
        v = self.inner.cin(r)
        return None if self.empty_is_none and v == "" else v

    def cout(self, w: bytearray, v: Any) -> None:
        if v is None:
            w.append(0xF6)
        else:
            self.inner.cout(w, v)

    def from_json(self, o: Any) -> Any:
        if o is None:
            return None
        v = self.inner.from_json(o)
        return None if self.empty_is_none and v == "" else v


class _List(_Node):
    def __init__(self, item: _Node):
        self.item = item
        self.name = f"list[{item.name}]"

    def children(self) -> tuple[_Node, ...]:
        return (self.item,)

    def zero(self) -> list:
        return []

    def enc(self, v: Any) -> list:
        if not isinstance(v, (list, tuple)):
            raise _Fail(f"expected list, got {_pk(v)}")
        enc = self.item.enc
        try:
            return [enc(x) for x in v]
        except _Fail as e:
            e.path.append(f"[{self._bad_index(v, enc)}]")
            raise

    @staticmethod
    def _bad_index(v: Any, fn: Callable[[Any], Any]) -> int:
        # Only runs on the error path: find which element failed, for the message.
        for i, x in enumerate(v):
            try:
                fn(x)
            except _Fail:
                return i
        return -1

    def dec(self, o: Any) -> list:
        if type(o) is not list:
            if o is None:
                return []
            raise _Fail(f"expected an array, got {_wk(o)}")
        item = self.item
        out = []
        for i, x in enumerate(o):
            try:
                out.append(item.zero() if x is None else item.dec(x))
            except _Fail as e:
                e.path.append(f"[{i}]")
                raise
        return out

    def cin(self, r: _CborIn) -> list:
        major, ai, n = r.head()
        if major != 4:
            raise _Fail(f"expected an array, got CBOR {_cbor_kind(major, ai)}")
        item = self.item
        out: list = []
        more = r.count(n)
        while more():
            try:
                out.append(item.zero() if r.take_null() else item.cin(r))
            except _Fail as e:
                e.path.append(f"[{len(out)}]")
                raise
        return out

    def cout(self, w: bytearray, v: Any) -> None:
        if not isinstance(v, (list, tuple)):
            raise _Fail(f"expected list, got {_pk(v)}")
        _cb_head(w, 4, len(v))
        for i, x in enumerate(v):
            try:
                self.item.cout(w, x)
            except _Fail as e:
                e.path.append(f"[{i}]")
                raise

    def from_json(self, o: Any) -> list:
        if not isinstance(o, list):
            raise _Fail(f"expected an array, got {_jk(o)}")
        out = []
        for i, x in enumerate(o):
            try:
                out.append(self.item.from_json(x))
            except _Fail as e:
                e.path.append(f"[{i}]")
                raise
        return out


class _Dict(_Node):
    def __init__(self, value: _Node):
        self.value = value
        self.name = f"dict[str, {value.name}]"

    def children(self) -> tuple[_Node, ...]:
        return (self.value,)

    def zero(self) -> dict:
        return {}

    def enc(self, v: Any) -> dict:
        if not isinstance(v, dict):
            raise _Fail(f"expected dict, got {_pk(v)}")
        enc = self.value.enc
        out = {}
        for k, x in v.items():
            if type(k) is not str:
                raise _Fail(f"map key {k!r} must be str, got {_pk(k)}")
            try:
                out[k] = enc(x)
            except _Fail as e:
                e.path.append(f"[{k!r}]")
                raise
        return out

    def dec(self, o: Any) -> dict:
        if type(o) is not dict:
            if o is None:
                return {}
            raise _Fail(f"expected a map, got {_wk(o)}")
        val = self.value
        out = {}
        for k, x in o.items():
            if type(k) is not str:
                if type(k) is bytes:
                    k = k.decode("utf-8", "replace")
                else:
                    raise _Fail(f"map key {k!r} must be a str, got {_wk(k)}")
            try:
                out[k] = val.zero() if x is None else val.dec(x)
            except _Fail as e:
                e.path.append(f"[{k!r}]")
                raise
        return out

    def cin(self, r: _CborIn) -> dict:
        major, ai, n = r.head()
        if major != 5:
            raise _Fail(f"expected a map, got CBOR {_cbor_kind(major, ai)}")
        out = {}
        more = r.count(n)
        while more():
            key = _STR.cin(r)
            try:
                out[key] = self.value.zero() if r.take_null() else self.value.cin(r)
            except _Fail as e:
                e.path.append(f"[{key!r}]")
                raise
        return out

    def cout(self, w: bytearray, v: Any) -> None:
        if not isinstance(v, dict):
            raise _Fail(f"expected dict, got {_pk(v)}")
        _cb_head(w, 5, len(v))
        for k, x in v.items():
            _STR.cout(w, k)
            try:
                self.value.cout(w, x)
            except _Fail as e:
                e.path.append(f"[{k!r}]")
                raise

    def from_json(self, o: Any) -> dict:
        if not isinstance(o, dict):
            raise _Fail(f"expected an object, got {_jk(o)}")
        out = {}
        for k, x in o.items():
            try:
                out[str(k)] = self.value.from_json(x)
            except _Fail as e:
                e.path.append(f"[{k!r}]")
                raise
        return out


class _Field:
    __slots__ = ("name", "node", "optional", "wire")

    def __init__(self, name: str, wire: str, node: _Node):
        self.name = name
        self.wire = wire
        self.node = node
        self.optional = isinstance(node, _Optional)


_MISSING = object()


class _Struct(_Node):
    def __init__(self, cls: type):
        self.cls = cls
        self.name = cls.__name__
        self.fields: tuple[_Field, ...] = ()
        self.by_wire: dict[str, _Field] = {}
        self.by_json: dict[str, _Field] = {}

    def build(self) -> None:
        hints = typing.get_type_hints(self.cls, include_extras=True)
        fields = []
        for f in dataclasses.fields(self.cls):
            if not f.init:
                continue
            wire = f.metadata.get(WIRE) or wire_name(f.name)
            fields.append(_Field(f.name, wire, _compile(hints[f.name])))
        self.fields = tuple(fields)
        self.by_wire = {f.wire: f for f in fields}
        self.by_json = {**{f.name: f for f in fields}, **self.by_wire}

    def children(self) -> tuple[_Node, ...]:
        return tuple(f.node for f in self.fields)

    def zero(self) -> Any:
        return self.cls(**{f.name: f.node.zero() for f in self.fields})

    def enc(self, v: Any) -> dict:
        if not isinstance(v, self.cls):
            raise _Fail(f"expected {self.name}, got {_pk(v)}")
        out = {}
        for f in self.fields:
            x = getattr(v, f.name)
            if x is None and f.optional:
                continue  # optional keys are omitted, never sent as nil
            try:
                out[f.wire] = f.node.enc(x)
            except _Fail as e:
                e.path.append("." + f.name)
                raise
        return out

    def dec(self, o: Any) -> Any:
        t = type(o)
        if t is dict:
            get = o.get
            values = [get(f.wire) for f in self.fields]
        elif t is list:  # positional form (rmp_serde::to_vec), declaration order
            values = o[: len(self.fields)]
            values += [None] * (len(self.fields) - len(values))
        elif o is None:
            return self.zero()
        else:
            raise _Fail(f"expected a msgpack map, got {_wk(o)}")
        kw = {}
        for f, x in zip(self.fields, values, strict=True):
            try:
                kw[f.name] = f.node.zero() if x is None else f.node.dec(x)
            except _Fail as e:
                e.path.append("." + f.name)
                raise
        return self.cls(**kw)

    def cin(self, r: _CborIn) -> Any:
        major, ai, n = r.head()
        kw: dict[str, Any] = {}
        more = r.count(n)
        if major == 4:  # CBOR-era structs: array in field order
            i = 0
            while more():
                if i >= len(self.fields):
                    r.skip()
                else:
                    self._cin_field(r, self.fields[i], kw)
                i += 1
        elif major == 5:
            while more():
                f = self.by_wire.get(_STR.cin(r))
                if f is None:
                    r.skip()
                else:
                    self._cin_field(r, f, kw)
        else:
            raise _Fail(f"expected a CBOR array or map, got {_cbor_kind(major, ai)}")
        for f in self.fields:
            if f.name not in kw:
                kw[f.name] = f.node.zero()
        return self.cls(**kw)

    @staticmethod
    def _cin_field(r: _CborIn, f: _Field, kw: dict[str, Any]) -> None:
        try:
            kw[f.name] = f.node.zero() if r.take_null() else f.node.cin(r)
        except _Fail as e:
            e.path.append("." + f.name)
            raise

    def cout(self, w: bytearray, v: Any) -> None:
        if not isinstance(v, self.cls):
            raise _Fail(f"expected {self.name}, got {_pk(v)}")
        _cb_head(w, 4, len(self.fields))
        for f in self.fields:
            try:
                f.node.cout(w, getattr(v, f.name))
            except _Fail as e:
                e.path.append("." + f.name)
                raise

    def from_json(self, o: Any) -> Any:
        if isinstance(o, self.cls):
            return o
        if not isinstance(o, dict):
            raise _Fail(f"expected a JSON object for {self.name}, got {_jk(o)}")
        kw = {}
        for k, x in o.items():
            f = self.by_json.get(k)
            if f is None:
                raise _Fail(self._unknown_field(k))
            if x is None and not f.optional:
                continue  # null for a required field: keep the default
            try:
                kw[f.name] = f.node.from_json(x)
            except _Fail as e:
                e.path.append("." + f.name)
                raise
        return self.cls(**kw)

    def _unknown_field(self, key: Any) -> str:
        names = ", ".join(
            f.wire if f.wire == f.name else f"{f.wire} ({f.name})" for f in self.fields
        )
        msg = f"unknown field {key!r}; valid fields: {names or '(none)'}"
        close = difflib.get_close_matches(str(key), list(self.by_json), n=1)
        # Suggest the wire spelling even when the snake_case name was the closer match.
        return f"{msg}; did you mean {self.by_json[close[0]].wire!r}?" if close else msg


class _Timestamp(_Struct):
    """Timestamp: a {sec, nsec} map in msgpack; in the CBOR era written as two bare items."""

    def dec(self, o: Any) -> Any:
        if isinstance(o, msgpack.Timestamp):  # msgpack's own timestamp extension, just in case
            return Timestamp(o.seconds, o.nanoseconds)
        return super().dec(o)

    def cin(self, r: _CborIn) -> Any:
        if r.peek_major() in (4, 5):
            return super().cin(r)
        # weld-codegen quirk: `sec` then `nsec` inline, without an array header.
        sec = _I64.cin(r)
        return Timestamp(sec, _U32.cin(r))

    def cout(self, w: bytearray, v: Any) -> None:
        if not isinstance(v, Timestamp):
            raise _Fail(f"expected Timestamp, got {_pk(v)}")
        _I64.cout(w, v.sec)
        _U32.cout(w, v.nsec)


_STR = _Str()
_I64 = _Int(IntKind("I64", -(2**63), 2**63 - 1))
_U32 = _Int(IntKind("U32", 0, 2**32 - 1))

# --------------------------------------------------------------------------------------------
# Compilation of type annotations -> nodes (cached)

_NODES: dict[Any, _Node] = {}  # fully built nodes only (read without the lock)
_BUILDING: dict[Any, _Node] = {}  # structs under construction (lets recursive types resolve)
_LOCK = threading.RLock()
_SINGLE_FLOAT: dict[int, bool] = {}


def _compile(spec: Any) -> _Node:
    try:
        return _NODES[spec]
    except KeyError:
        pass
    except TypeError:
        raise TypeError(f"unhashable type spec {spec!r}") from None
    with _LOCK:
        if spec in _NODES:
            return _NODES[spec]
        if spec in _BUILDING:
            return _BUILDING[spec]
        node = _build(spec)
        if isinstance(node, _Struct):
            _BUILDING[spec] = node
            try:
                node.build()
            finally:
                del _BUILDING[spec]
        _NODES[spec] = node
        return node


def _build(spec: Any) -> _Node:
    origin = typing.get_origin(spec)
    args = typing.get_args(spec)
    if origin is Annotated:
        for meta in args[1:]:
            if isinstance(meta, IntKind):
                return _Int(meta)
            if isinstance(meta, FloatKind):
                return _Float(meta)
            if isinstance(meta, _IntArrayMarker):
                return _IntArray()
        return _compile(args[0])
    if origin is typing.Union or origin is types.UnionType:
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and len(args) == 2:
            return _Optional(_compile(inner[0]))
        raise TypeError(f"unsupported union {spec!r}: only `T | None` is allowed")
    if origin is list:
        return _List(_compile(args[0]))
    if origin is dict:
        if args[0] is not str:
            raise TypeError(f"unsupported map {spec!r}: keys must be str")
        return _Dict(_compile(args[1]))
    if spec is str:
        return _Str()
    if spec is bytes:
        return _Bytes()
    if spec is bool:
        return _Bool()
    if spec is int:
        return _Int(_PLAIN_INT)
    if spec is float:
        return _Float(FloatKind("F64", 64))
    if spec is Timestamp:
        return _Timestamp(spec)
    if isinstance(spec, type) and dataclasses.is_dataclass(spec):
        return _Struct(spec)
    raise TypeError(f"unsupported type spec {spec!r}")


def _single_float(node: _Node) -> bool:
    """msgpack-python can only pack *all* floats as f32 or as f64. Use f32 when a message holds
    only F32 floats (matches Rust); with mixed widths F32 goes out as f64, which decoders accept."""
    key = id(node)
    if key not in _SINGLE_FLOAT:
        kinds: set[int] = set()
        seen: set[int] = set()
        stack = [node]
        while stack:
            n = stack.pop()
            if id(n) in seen:
                continue
            seen.add(id(n))
            if isinstance(n, _Float):
                kinds.add(n.kind.bits)
            stack.extend(n.children())
        _SINGLE_FLOAT[key] = kinds == {32}
    return _SINGLE_FLOAT[key]


def type_name(spec: Any) -> str:
    """Display name of a type spec: ``HttpRequest``, ``U32``, ``list[str]``..."""
    return "none" if spec is None else _compile(spec).name


# --------------------------------------------------------------------------------------------
# Payload format prefix (wasmbus_rpc::common::message_format)


def _format(payload: bytes | bytearray | memoryview) -> str:
    n = len(payload)
    if n == 0:
        return "empty"
    if n == 1:
        return "msgpack"  # 1-byte legacy msgpack, e.g. a bare small int reply
    first = payload[0]
    if first == 0x7F:
        return "cbor"
    if first <= 0x7E or first == 0xC0:
        raise _Fail(f"invalid encoding (reserved first byte 0x{first:02x})")
    return "msgpack"


def format_of(payload: bytes | bytearray | memoryview) -> str:
    """Classify a payload: ``"empty"``, ``"msgpack"`` or ``"cbor"``; CodecError if reserved."""
    try:
        return _format(payload)
    except _Fail as e:
        raise CodecError(f"payload: {e.reason}", "payload", "", e.reason) from None


def strip_prefix(payload: bytes | bytearray | memoryview) -> bytes:
    """Return the payload body without its 0xc1 (msgpack) / 0x7f (CBOR) format prefix byte."""
    data = bytes(payload)
    format_of(data)
    if len(data) >= 2 and data[0] in (0x7F, 0xC1):
        return data[1:]
    return data


# --------------------------------------------------------------------------------------------
# Public entry points


def encode(spec: Any, value: Any, *, fmt: str = "msgpack", label: str | None = None) -> bytes:
    """Encode ``value`` as the payload for ``spec``. ``spec=None`` means "no payload" -> b"".

    ``fmt="cbor"`` produces the ``0x7f``-prefixed CBOR of old (≤0.7) blobstore peers.
    """
    if spec is None:
        if value is not None:
            root = label or "payload"
            raise CodecError(f"{root}: takes no payload, got {_pk(value)}", root)
        return b""
    node = _compile(spec)
    try:
        if fmt == "msgpack":
            return msgpack.packb(
                node.enc(value), use_bin_type=True, use_single_float=_single_float(node)
            )
        if fmt == "cbor":
            out = bytearray(b"\x7f")
            node.cout(out, value)
            return bytes(out)
    except _Fail as e:
        raise _error(label or node.name, e, "encode") from None
    raise ValueError(f"unknown payload format {fmt!r} (use 'msgpack' or 'cbor')")


def decode(spec: Any, data: bytes | bytearray | memoryview, *, label: str | None = None) -> Any:
    """Decode a payload for ``spec`` (prefix-sniffing, lenient). ``spec=None`` -> None."""
    if spec is None:
        return None
    node = _compile(spec)
    root = label or node.name
    data = bytes(data)
    try:
        fmt = _format(data)
        if fmt == "empty":
            raise _Fail("empty payload, expected a value")
        if fmt == "cbor":
            reader = _CborIn(data, 1)
            value = node.zero() if reader.take_null() else node.cin(reader)
            if reader.pos != len(data):
                raise _Fail(f"{len(data) - reader.pos} trailing bytes after the CBOR value")
            return value
        body = data[1:] if data[0] == 0xC1 and len(data) >= 2 else data
        try:
            obj = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except msgpack.ExtraData:
            raise _Fail("trailing bytes after the msgpack value") from None
        except UnicodeDecodeError:
            raise _Fail("a msgpack str is not valid UTF-8") from None
        except (ValueError, msgpack.UnpackException) as exc:
            raise _Fail(f"invalid msgpack ({exc})") from None
        except TypeError:  # a map key that is an array or a map (unhashable in Python)
            raise _Fail("invalid msgpack (a map key is an array or a map)") from None
        return node.zero() if obj is None else node.dec(obj)
    except _Fail as e:
        raise _error(root, e, "decode") from None


def from_json(spec: Any, obj: Any, *, label: str | None = None) -> Any:
    """Convert a JSON value (dicts keyed by wire or snake_case names) to the typed value."""
    if spec is None:
        if obj in (None, {}, ""):
            return None
        root = label or "payload"
        raise CodecError(f"{root}: takes no input, got JSON {_jk(obj)}", root)
    node = _compile(spec)
    try:
        return node.from_json(obj)
    except _Fail as e:
        raise _error(label or node.name, e, "json") from None


def to_jsonable(value: Any) -> Any:
    """Typed value -> JSON-friendly data: dataclasses become dicts with wire keys (None optionals
    omitted), bytes become str when valid UTF-8 else ``{"base64": ...}``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return {"base64": base64.b64encode(raw).decode("ascii")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        node = _compile(type(value))
        out = {}
        for f in node.fields:  # type: ignore[attr-defined]
            x = getattr(value, f.name)
            if x is None and f.optional:
                continue
            out[f.wire] = to_jsonable(x)
        return out
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return str(value)
