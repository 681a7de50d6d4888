"""The component export ``Guest.guest_call`` and the component side of ``host_call``.

``componentize_py_types`` exists only inside a component (it is not importable natively here),
so a stand-in with the same ``Err`` shape is injected into ``sys.modules``.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest

import lattice_actor as la
from lattice_actor import HostError, _host
from lattice_actor._guest import OUT_OF_MEMORY, Guest


@dataclass(frozen=True)
class Err(Exception):  # same shape as componentize_py_types.Err
    value: Any


@pytest.fixture
def cpt(monkeypatch):
    try:
        import componentize_py_types as real
    except ImportError:
        real = None
    module = real or types.ModuleType("componentize_py_types")
    if real is None:
        module.Err = Err  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "componentize_py_types", module)
    return module


ALL_BYTES = bytes(range(256))


def test_roundtrip_every_byte_value(cpt):
    la.operation("Test.Echo")(lambda payload: payload[::-1])
    out = Guest().guest_call("Test.Echo", ALL_BYTES.decode("latin-1"))
    assert isinstance(out, str) and out.encode("latin-1") == ALL_BYTES[::-1]


def test_msgpack_through_guest(cpt):
    la.operation("Test.Add", msgpack=True)(lambda v: v[0] + v[1])
    out = Guest().guest_call("Test.Add", msgpack.packb([2, 3]).decode("latin-1"))
    assert msgpack.unpackb(out.encode("latin-1")) == 5


@pytest.mark.parametrize(("exc", "text"), [
    (RuntimeError("kaboom"), "kaboom"),
    (RuntimeError(), "RuntimeError"),
    (KeyError("k"), "'k'"),
    (HostError("Invocation not authorized: missing capability claim for wasmcloud:keyvalue"),
     "Invocation not authorized: missing capability claim for wasmcloud:keyvalue"),
    (MemoryError(), OUT_OF_MEMORY),
    (SystemExit(3), "3"),
])
def test_handler_exceptions_become_err_text(cpt, capsys, exc, text):
    def handler(payload):
        raise exc

    la.operation("Test.Fail")(handler)
    with pytest.raises(cpt.Err) as info:
        Guest().guest_call("Test.Fail", "")
    assert info.value.value == text
    if not isinstance(exc, MemoryError):
        assert "handler for Test.Fail failed" in capsys.readouterr().err


def test_err_raised_by_a_handler_passes_through(cpt):
    def handler(payload):
        raise cpt.Err("custom")

    la.operation("Test.Err")(handler)
    with pytest.raises(cpt.Err) as info:
        Guest().guest_call("Test.Err", "")
    assert info.value.value == "custom"


def test_unknown_operation_err(cpt, capsys):
    with pytest.raises(cpt.Err) as info:
        Guest().guest_call("Nope.Nope", "")
    assert info.value.value == ("method not handled: 'Nope.Nope'; this actor handles "
                                "Actor.HealthRequest")
    assert capsys.readouterr().err == ""  # not a crash: no traceback


def test_payload_outside_latin1_is_rejected(cpt):
    la.operation("Test.Echo")(lambda payload: payload)
    with pytest.raises(cpt.Err) as info:
        Guest().guest_call("Test.Echo", "ab\u4e2d")
    assert "not Latin-1" in info.value.value and "position 2" in info.value.value


def test_health_through_guest(cpt):
    assert Guest().guest_call("Actor.HealthRequest", "\x80") == "\x81\xa7healthy\xc3"


# ---- host_call inside a component (bindings faked) -------------------------------------------


class FakeWitHost:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, str]] = []

    def host_call(self, binding: str, namespace: str, operation: str, payload: str) -> str:
        self.calls.append((binding, namespace, operation, payload))
        if operation == "Fail.Me":
            raise Err("Invocation not authorized: missing link definition for x on default")
        return payload[::-1]


@pytest.fixture
def component(monkeypatch):
    wit = FakeWitHost()
    monkeypatch.setattr(_host, "in_component", lambda: True)
    monkeypatch.setattr(_host, "_wit_host", wit)
    monkeypatch.setattr(_host, "_Err", Err)
    return wit


def test_component_host_call_converts_latin1_both_ways(component):
    reply = _host.host_call("default", "wasmcloud:keyvalue", "KeyValue.Get", ALL_BYTES)
    assert reply == ALL_BYTES[::-1]
    assert component.calls == [("default", "wasmcloud:keyvalue", "KeyValue.Get",
                                ALL_BYTES.decode("latin-1"))]


def test_component_host_call_err_becomes_host_error(component):
    with pytest.raises(HostError) as info:
        _host.host_call("lnk", "x", "Fail.Me", b"")
    err = info.value
    assert str(err) == "Invocation not authorized: missing link definition for x on default"
    assert (err.binding, err.namespace, err.operation) == ("lnk", "x", "Fail.Me")


def test_component_without_bindings_says_so(monkeypatch):
    monkeypatch.setattr(_host, "in_component", lambda: True)
    monkeypatch.setattr(_host, "_wit_host", None)
    monkeypatch.setattr(_host, "_wit_error", "the component has no lattice:actor host import")
    with pytest.raises(RuntimeError, match=r"no lattice:actor host import"):
        _host.host_call("default", "x", "A.B", b"")
