"""Actor-to-actor calls: binding "", namespace = target key or call alias."""

from __future__ import annotations

import msgpack
import pytest

from lattice_actor import HostError, actors

KEY = "MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5"


def test_call_raw(host):
    host.on("Pingpong.Ping", lambda payload: b"pong:" + payload)
    assert actors.call("wasmcloud/ponger", "Pingpong.Ping", b"\x00") == b"pong:\x00"
    call = host.last
    assert (call.binding, call.namespace, call.operation, call.payload) == (
        "", "wasmcloud/ponger", "Pingpong.Ping", b"\x00")
    assert actors.Actor(KEY).call("Pingpong.Ping") == b"pong:"
    assert host.last.namespace == KEY


def test_call_msgpack(host):
    host.on("Calc.Add", lambda payload: msgpack.packb(sum(msgpack.unpackb(payload))))
    assert actors.call_msgpack("calc", "Calc.Add", [1, 2, 3]) == 6
    host.on("Calc.Nothing", lambda payload: b"")
    assert actors.call_msgpack("calc", "Calc.Nothing") is None
    assert host.last.payload == b""
    host.on("Calc.Bad", lambda payload: b"\xc1")
    with pytest.raises(HostError, match=r"deserialization"):
        actors.call_msgpack("calc", "Calc.Bad", 1)


def test_errors(host):
    def missing(payload):
        raise RuntimeError("Invocation not authorized: missing link definition for nobody")

    host.on("X.Y", missing)
    with pytest.raises(HostError, match=r"missing link definition"):
        actors.call("nobody", "X.Y", b"")
    with pytest.raises(ValueError, match=r"actor key or call alias"):
        actors.call(" ", "X.Y", b"")
