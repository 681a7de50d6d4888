"""Minimal WebAssembly binary utilities: walk top-level sections, read/strip/append custom sections.

Works for core modules (version ``01 00 00 00``) and components (``0d 00 01 00``) alike: both use
the same framing (section id byte + LEB128 u32 size + payload; a custom section, id 0, starts with
a LEB128 name length and the UTF-8 name). Nothing else is parsed, so bytes we do not touch are
preserved exactly — which is what the claims module hash requires.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

MAGIC = b"\x00asm"
MODULE_VERSION = b"\x01\x00\x00\x00"
COMPONENT_VERSION = b"\x0d\x00\x01\x00"
HEADER_SIZE = 8
CUSTOM_SECTION_ID = 0


class WasmFormatError(ValueError):
    """The bytes are not a well-formed WebAssembly binary; the message says where and why."""


@dataclass(frozen=True)
class Section:
    """One top-level section: ``data[start:end]`` is the whole section including id and size."""

    id: int
    start: int
    end: int
    payload_start: int
    name: str | None = None  # custom sections only
    content_start: int | None = None  # custom sections: first byte after the name

    def payload(self, data: bytes) -> bytes:
        return bytes(data[self.payload_start : self.end])

    def content(self, data: bytes) -> bytes:
        """Custom section data after the name (the whole payload for other sections)."""
        begin = self.content_start if self.content_start is not None else self.payload_start
        return bytes(data[begin : self.end])


def _hex(data: bytes) -> str:
    return " ".join(f"{b:02x}" for b in data)


def _check_header(data: bytes) -> bytes:
    """Validate the 8-byte preamble and return the version/layer field."""
    if len(data) < HEADER_SIZE and data and (MAGIC + MODULE_VERSION).startswith(data):
        raise WasmFormatError(
            f"truncated WebAssembly binary: {len(data)} bytes, but the header alone is 8"
        )
    if data[:4] != MAGIC:
        hint = ""
        if data.lstrip()[:1] == b"(":
            hint = " (this looks like WebAssembly text; compile the .wat first)"
        shown = (_hex(data[:4]) + (" …" if len(data) > 4 else "")) or "nothing (empty file)"
        raise WasmFormatError(
            f"not a WebAssembly binary: file starts with {shown} instead of {_hex(MAGIC)}{hint}"
        )
    if len(data) < HEADER_SIZE:
        raise WasmFormatError(
            f"truncated WebAssembly binary: {len(data)} bytes, but the header alone is 8"
        )
    version = bytes(data[4:8])
    if version not in (MODULE_VERSION, COMPONENT_VERSION):
        raise WasmFormatError(
            f"unsupported WebAssembly version {_hex(version)} (expected {_hex(MODULE_VERSION)} "
            f"for a module or {_hex(COMPONENT_VERSION)} for a component)"
        )
    return version


def is_component(data: bytes) -> bool:
    """True for a component binary, False for a core module; raises for anything else."""
    return _check_header(data) == COMPONENT_VERSION


def read_leb128_u32(data: bytes, offset: int, what: str) -> tuple[int, int]:
    """Decode an unsigned LEB128 (at most 5 bytes); returns ``(value, next offset)``."""
    result = 0
    for index in range(5):
        pos = offset + index
        if pos >= len(data):
            raise WasmFormatError(f"{what} at offset {offset} is cut off by the end of the file")
        byte = data[pos]
        result |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            if result > 0xFFFFFFFF:
                raise WasmFormatError(f"{what} at offset {offset} does not fit in 32 bits")
            return result, pos + 1
    raise WasmFormatError(f"{what} at offset {offset} is longer than 5 bytes")


def encode_leb128_u32(value: int) -> bytes:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{value} does not fit in an unsigned 32-bit LEB128")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _custom_name(data: bytes, payload_start: int, end: int) -> tuple[str, int]:
    """Read the name at the start of a custom section payload; returns ``(name, content start)``."""
    length, pos = read_leb128_u32(data, payload_start, "custom section name length")
    if pos > end or length > end - pos:
        raise WasmFormatError(
            f"custom section at offset {payload_start}: name of {length} bytes does not fit "
            f"in the section"
        )
    raw = bytes(data[pos : pos + length])
    try:
        return raw.decode("utf-8"), pos + length
    except UnicodeDecodeError as exc:
        raise WasmFormatError(
            f"custom section at offset {payload_start}: name is not valid UTF-8"
        ) from exc


def iter_sections(data: bytes) -> Iterator[Section]:
    """Yield every top-level section in order, validating framing as it goes."""
    _check_header(data)
    offset = HEADER_SIZE
    total = len(data)
    while offset < total:
        section_id = data[offset]
        size, payload_start = read_leb128_u32(data, offset + 1, f"size of section {section_id}")
        remaining = total - payload_start
        if size > remaining:
            raise WasmFormatError(
                f"section at offset {offset} claims {size} bytes but only {remaining} remain"
            )
        end = payload_start + size
        if section_id == CUSTOM_SECTION_ID:
            name, content_start = _custom_name(data, payload_start, end)
            yield Section(section_id, offset, end, payload_start, name, content_start)
        else:
            yield Section(section_id, offset, end, payload_start)
        offset = end


def custom_sections(data: bytes, name: str) -> list[bytes]:
    """Contents (after the name) of every top-level custom section called ``name``, in order."""
    return [s.content(data) for s in iter_sections(data) if s.name == name]


def strip_custom_sections(data: bytes, names: Iterable[str]) -> bytes:
    """Remove every top-level custom section with one of ``names``; all other bytes are kept."""
    drop = set(names)
    sections = list(iter_sections(data))  # validate everything before building the result
    out = bytearray(data[:HEADER_SIZE])
    for section in sections:
        if section.name is None or section.name not in drop:
            out += data[section.start : section.end]
    return bytes(out)


def custom_section_bytes(name: str, payload: bytes) -> bytes:
    """Encode a complete custom section (id, size, name, payload)."""
    encoded_name = name.encode("utf-8")
    body = encode_leb128_u32(len(encoded_name)) + encoded_name + bytes(payload)
    return bytes([CUSTOM_SECTION_ID]) + encode_leb128_u32(len(body)) + body


def append_custom_section(data: bytes, name: str, payload: bytes) -> bytes:
    """Return ``data`` with a custom section appended at the end (after validating framing)."""
    for _ in iter_sections(data):
        pass
    return bytes(data) + custom_section_bytes(name, payload)
