"""Codec features that no current contract exercises directly (floats, helpers, bare specs)."""

import datetime as dt
from dataclasses import dataclass, field

import msgpack
import pytest

import contracts
from contracts import F32, F64, CodecError, Timestamp, blobstore, messaging


@dataclass
class Sample:
    ratio: F32 = 0.0
    scores: list[F32] = field(default_factory=list)


@dataclass
class Mixed:
    single: F32 = 0.0
    double: F64 = 0.0


def test_f32_is_packed_as_float32():
    assert contracts.encode(F32, 1.5) == bytes.fromhex("ca3fc00000")
    assert contracts.encode(Sample, Sample(0.5, [2.0])) == bytes.fromhex(
        "82 a5 726174696f ca 3f000000 a6 73636f726573 91 ca 40000000".replace(" ", "")
    )
    assert contracts.decode(Sample, contracts.encode(Sample, Sample(0.5, [2.0]))) == Sample(
        0.5, [2.0]
    )


def test_f64_and_mixed_widths():
    assert contracts.encode(F64, 1.5) == bytes.fromhex("cb3ff8000000000000")
    # msgpack-python packs all floats one way: mixed messages use f64 (decoders accept it).
    assert contracts.decode(Mixed, contracts.encode(Mixed, Mixed(0.5, 0.1))) == Mixed(0.5, 0.1)


def test_floats_accept_ints_and_reject_bools():
    assert contracts.decode(F64, msgpack.packb(3)) == 3.0
    assert contracts.encode(F64, 3) == bytes.fromhex("cb4008000000000000")
    with pytest.raises(CodecError, match="expected float"):
        contracts.encode(F64, True)


def test_float_cbor():
    assert contracts.encode(F32, 1.5, fmt="cbor") == bytes.fromhex("7ffa3fc00000")
    assert contracts.decode(F64, bytes.fromhex("7ffb3ff8000000000000")) == 1.5
    assert contracts.decode(F32, bytes.fromhex("7ff93e00")) == 1.5  # half precision


def test_timestamp_helpers():
    when = dt.datetime(2023, 11, 14, 22, 13, 20, 5, tzinfo=dt.UTC)
    ts = Timestamp.from_datetime(when)
    assert ts == Timestamp(1700000000, 5000)
    assert ts.to_datetime() == when
    assert Timestamp.now().sec > 1700000000


def test_bare_container_specs():
    spec = list[blobstore.ContainerMetadata]
    value = [blobstore.ContainerMetadata("a"), blobstore.ContainerMetadata("b", Timestamp(1, 2))]
    assert contracts.decode(spec, contracts.encode(spec, value)) == value
    assert contracts.type_name(spec) == "list[ContainerMetadata]"
    assert contracts.type_name(dict[str, list[str]]) == "dict[str, list[str]]"
    assert contracts.type_name(None) == "none"
    assert contracts.from_json(spec, [{"containerId": "a"}]) == [blobstore.ContainerMetadata("a")]


def test_optional_string_sent_as_empty_bin_is_none():
    raw = msgpack.packb({"subject": "s", "replyTo": b""}, use_bin_type=True)
    assert contracts.decode(messaging.SubMessage, raw).reply_to is None


def test_str_enum_values_encode_as_plain_strings():
    import enum

    class Level(str, enum.Enum):  # noqa: UP042 - str() of this mixin is "Level.INFO"
        INFO = "info"

    entry = contracts.builtin_logging.LogEntry(level=Level.INFO, text="t")
    assert contracts.encode(contracts.builtin_logging.LogEntry, entry) == bytes.fromhex(
        "82 a5 6c6576656c a4 696e666f a4 74657874 a1 74".replace(" ", "")
    )
