"""Property tests: every operation's input and output type survives encode -> decode."""

import dataclasses
import typing

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts
from contracts import OPERATIONS

from .strategies import strategy_for

SIDES = [
    pytest.param(op, side, id=f"{name}-{side}")
    for name, op in OPERATIONS.items()
    for side in ("input", "output")
    if getattr(op, side) is not None
]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _codec(op: contracts.Operation, side: str):
    if side == "input":
        return op.input, op.encode_input, op.decode_input
    return op.output, op.encode_output, op.decode_output


@pytest.mark.parametrize(("op", "side"), SIDES)
@PROPERTY
@given(data=st.data())
def test_msgpack_round_trip(op, side, data):
    spec, enc, dec = _codec(op, side)
    value = data.draw(strategy_for(spec))
    payload = enc(value)
    assert dec(payload) == value
    assert enc(dec(payload)) == payload  # canonical: one value, one byte string
    assert contracts.decode(spec, payload) == value


@pytest.mark.parametrize(("op", "side"), SIDES)
@PROPERTY
@given(data=st.data())
def test_cbor_round_trip(op, side, data):
    # The CBOR codec exists for old (<=0.7) blobstore peers, but it is generic: exercise it all.
    spec, enc, dec = _codec(op, side)
    value = data.draw(strategy_for(spec))
    payload = enc(value, fmt="cbor")
    assert payload[0] == 0x7F
    assert dec(payload) == value


@pytest.mark.parametrize(("op", "side"), SIDES)
@PROPERTY
@given(data=st.data())
def test_prefixed_msgpack_round_trip(op, side, data):
    spec, enc, dec = _codec(op, side)
    value = data.draw(strategy_for(spec))
    assert dec(b"\xc1" + enc(value)) == value


def _structs(spec):
    """All dataclass types reachable from a type spec."""
    origin, args = typing.get_origin(spec), typing.get_args(spec)
    if origin is typing.Annotated:
        yield from _structs(args[0])
    elif args:
        for a in args:
            yield from _structs(a)
    elif dataclasses.is_dataclass(spec):
        yield spec
        hints = typing.get_type_hints(spec, include_extras=True)
        for f in dataclasses.fields(spec):
            yield from _structs(hints[f.name])


STRUCTS = sorted(
    {s for op in OPERATIONS.values() for spec in (op.input, op.output) for s in _structs(spec)},
    key=lambda c: f"{c.__module__}.{c.__name__}",
)


def _is_optional(hint) -> bool:
    return type(None) in typing.get_args(hint)


def _struct_id(cls: type) -> str:
    return f"{cls.__module__.split('.')[-1]}.{cls.__name__}"


@pytest.mark.parametrize("cls", STRUCTS, ids=_struct_id)
@PROPERTY
@given(data=st.data())
def test_required_keys_always_written_optional_omitted(cls, data):
    value = data.draw(strategy_for(cls))
    raw = msgpack.unpackb(contracts.encode(cls, value), raw=False)
    hints = typing.get_type_hints(cls, include_extras=True)
    expected = [
        contracts._codec.wire_name(f.name)
        for f in dataclasses.fields(cls)
        if not (_is_optional(hints[f.name]) and getattr(value, f.name) is None)
    ]
    assert list(raw) == expected  # declaration order, camelCase, never nil
    assert None not in raw.values()


def test_no_payload_operations_are_zero_bytes():
    empty_in = [op for op in OPERATIONS.values() if op.input is None]
    empty_out = [op for op in OPERATIONS.values() if op.output is None]
    assert {op.name for op in empty_in} == {
        "Blobstore.ListContainers",
        "NumberGen.GenerateGuid",
        "NumberGen.Random32",
    }
    assert {op.name for op in empty_out} == {
        "KeyValue.Set",
        "Blobstore.CreateContainer",
        "Blobstore.PutChunk",
        "Messaging.Publish",
        "MessageSubscriber.HandleMessage",
        "Logging.WriteLog",
    }
    for op in empty_in:
        assert op.encode_input(None) == b""
        assert op.decode_input(b"") is None
    for op in empty_out:
        assert op.encode_output(None) == b""
        assert op.decode_output(b"") is None
        assert op.decode_output(b"\xc0") is None  # senders ignore whatever comes back
