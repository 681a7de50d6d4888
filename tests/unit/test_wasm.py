"""WebAssembly section walking: modules and components, custom sections, clear format errors."""

from __future__ import annotations

import itertools

import pytest
import wasmtime
from hypothesis import given
from hypothesis import strategies as st

from lattice.wasm import (
    COMPONENT_VERSION,
    MAGIC,
    WasmFormatError,
    append_custom_section,
    custom_section_bytes,
    custom_sections,
    encode_leb128_u32,
    is_component,
    iter_sections,
    read_leb128_u32,
    strip_custom_sections,
)

COMPONENT_HEADER = MAGIC + COMPONENT_VERSION


def _module() -> bytes:
    return wasmtime.wat2wasm(
        '(module (memory (export "memory") 1)'
        ' (func (export "answer") (result i32) i32.const 42))'
    )


def test_module_and_component_detection() -> None:
    assert not is_component(_module())
    assert is_component(COMPONENT_HEADER)
    assert is_component(COMPONENT_HEADER + custom_section_bytes("x", b"y"))


def test_iter_sections_covers_the_whole_module() -> None:
    wasm = _module()
    sections = list(iter_sections(wasm))
    assert [s.id for s in sections] == [1, 3, 5, 7, 10]  # type, func, memory, export, code
    assert sections[0].start == 8
    assert all(a.end == b.start for a, b in itertools.pairwise(sections))
    assert sections[-1].end == len(wasm)
    assert all(s.name is None for s in sections)


def test_append_then_read_custom_sections() -> None:
    wasm = append_custom_section(_module(), "jwt", b"first")
    wasm = append_custom_section(wasm, "other", b"")
    wasm = append_custom_section(wasm, "jwt", b"second")
    assert custom_sections(wasm, "jwt") == [b"first", b"second"]
    assert custom_sections(wasm, "other") == [b""]
    assert custom_sections(wasm, "missing") == []
    named = [s for s in iter_sections(wasm) if s.name == "other"]
    assert named[0].content(wasm) == b""
    assert named[0].payload(wasm) == b"\x05other"


def test_strip_removes_only_named_top_level_sections() -> None:
    original = append_custom_section(_module(), "keep", b"kept bytes")
    signed = append_custom_section(original, "jwt", b"a")
    signed = append_custom_section(signed, "wasmcloud_jwt", b"b")
    assert strip_custom_sections(signed, ["jwt", "wasmcloud_jwt"]) == original
    assert strip_custom_sections(signed, []) == signed
    assert custom_sections(strip_custom_sections(signed, {"jwt"}), "wasmcloud_jwt") == [b"b"]


def test_strip_section_in_the_middle_keeps_bytes_exact() -> None:
    wasm = _module()
    first = next(iter_sections(wasm))
    # Insert a custom section between the type and function sections.
    inserted = wasm[: first.end] + custom_section_bytes("jwt", b"x" * 300) + wasm[first.end :]
    assert strip_custom_sections(inserted, ["jwt"]) == wasm


def test_component_nested_custom_sections_are_not_touched() -> None:
    inner = append_custom_section(_module(), "jwt", b"inner token")
    core_module_section = bytes([1]) + encode_leb128_u32(len(inner)) + inner
    component = COMPONENT_HEADER + core_module_section
    assert strip_custom_sections(component, ["jwt"]) == component
    assert custom_sections(component, "jwt") == []
    outer = append_custom_section(component, "jwt", b"outer")
    assert custom_sections(outer, "jwt") == [b"outer"]
    assert strip_custom_sections(outer, ["jwt"]) == component


@pytest.mark.parametrize("size", [0, 1, 127, 128, 16383, 16384, 70000])
def test_large_custom_sections_use_multibyte_leb128(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wasm = append_custom_section(_module(), "big", payload)
    assert custom_sections(wasm, "big") == [payload]


@given(st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_leb128_round_trip(value: int) -> None:
    encoded = encode_leb128_u32(value)
    assert read_leb128_u32(encoded + b"\xff", 0, "value") == (value, len(encoded))


def test_leb128_errors() -> None:
    with pytest.raises(WasmFormatError, match="longer than 5 bytes"):
        read_leb128_u32(b"\x80\x80\x80\x80\x80\x00", 0, "value")
    with pytest.raises(WasmFormatError, match="does not fit in 32 bits"):
        read_leb128_u32(b"\xff\xff\xff\xff\x7f", 0, "value")
    with pytest.raises(ValueError):
        encode_leb128_u32(-1)


# --- errors -------------------------------------------------------------------------------------


def test_json_file_is_not_wasm() -> None:
    with pytest.raises(WasmFormatError) as info:
        list(iter_sections(b'{"name": "not wasm"}'))
    assert str(info.value) == (
        "not a WebAssembly binary: file starts with 7b 22 6e 61 … instead of 00 61 73 6d"
    )


def test_empty_and_text_files() -> None:
    with pytest.raises(WasmFormatError, match="empty file"):
        is_component(b"")
    with pytest.raises(WasmFormatError, match=r"compile the \.wat first"):
        is_component(b"  (module)")


def test_truncated_header_and_unknown_version() -> None:
    with pytest.raises(WasmFormatError, match="truncated WebAssembly binary: 6 bytes"):
        is_component(MAGIC + b"\x01\x00")
    with pytest.raises(WasmFormatError, match="unsupported WebAssembly version 02 00 00 00"):
        is_component(MAGIC + b"\x02\x00\x00\x00")


def test_section_overrunning_the_file() -> None:
    wasm = _module() + bytes([0]) + encode_leb128_u32(900) + b"\x03abc" + bytes(36)
    offset = len(_module())
    with pytest.raises(WasmFormatError) as info:
        list(iter_sections(wasm))
    assert str(info.value) == f"section at offset {offset} claims 900 bytes but only 40 remain"


def test_truncated_section_size() -> None:
    with pytest.raises(WasmFormatError, match="cut off by the end of the file"):
        list(iter_sections(_module() + b"\x00\x80"))


def test_custom_section_name_overruns_section() -> None:
    bad = _module() + b"\x00\x02\x09ab"
    with pytest.raises(WasmFormatError, match="name of 9 bytes does not fit"):
        custom_sections(bad, "ab")


def test_custom_section_name_not_utf8() -> None:
    bad = _module() + b"\x00\x03\x02\xff\xfe"
    with pytest.raises(WasmFormatError, match="not valid UTF-8"):
        list(iter_sections(bad))


def test_strip_and_append_validate_input() -> None:
    with pytest.raises(WasmFormatError):
        strip_custom_sections(b"garbage!", ["jwt"])
    with pytest.raises(WasmFormatError):
        append_custom_section(_module()[:-1], "jwt", b"")
