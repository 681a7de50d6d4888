"""``host_call`` natively: the installed test host, its failures, and no host at all."""

from __future__ import annotations

import pytest

from lattice_actor import HostError, keyvalue, testing
from lattice_actor._host import NOT_IN_COMPONENT, host_call


def test_without_a_host_the_error_says_what_to_do():
    with pytest.raises(RuntimeError) as info:
        host_call("default", "wasmcloud:keyvalue", "KeyValue.Get", b"")
    assert str(info.value) == NOT_IN_COMPONENT == (
        "not running inside a component; in unit tests install a host with "
        "lattice_actor.testing.set_host")
    with pytest.raises(RuntimeError, match=r"set_host"):
        keyvalue.get("k")


def test_installed_host_gets_bytes_and_its_reply_is_returned():
    seen = []

    def fn(binding, namespace, operation, payload):
        seen.append((binding, namespace, operation, payload))
        return bytearray(b"reply")

    testing.set_host(fn)
    assert host_call("b", "ns", "S.M", memoryview(b"abc")) == b"reply"
    assert seen == [("b", "ns", "S.M", b"abc")]
    assert isinstance(seen[0][3], bytes)


def test_host_exceptions_become_host_errors_with_the_text():
    def fn(binding, namespace, operation, payload):
        raise ConnectionError("redis error: connection refused")

    testing.set_host(fn)
    with pytest.raises(HostError) as info:
        host_call("default", "wasmcloud:keyvalue", "KeyValue.Get", b"")
    err = info.value
    assert str(err) == err.message == "redis error: connection refused"
    assert (err.binding, err.namespace, err.operation) == ("default", "wasmcloud:keyvalue",
                                                           "KeyValue.Get")
    assert isinstance(err.__cause__, ConnectionError)

    testing.set_host(lambda *a: (_ for _ in ()).throw(ValueError()))
    with pytest.raises(HostError, match=r"^ValueError$"):
        host_call("default", "x", "A.B", b"")

    original = HostError("as is", operation="X.Y")
    testing.set_host(lambda *a: (_ for _ in ()).throw(original))
    with pytest.raises(HostError) as info:
        host_call("default", "x", "A.B", b"")
    assert info.value is original


def test_host_reply_types():
    testing.set_host(lambda *a: None)
    assert host_call("d", "n", "A.B", b"") == b""
    testing.set_host(lambda *a: "text")
    with pytest.raises(TypeError, match=r"must return bytes"):
        host_call("d", "n", "A.B", b"")
    with pytest.raises(TypeError, match=r"callable"):
        testing.set_host("nope")  # type: ignore[arg-type]


def test_clear_host():
    testing.set_host(lambda *a: b"")
    testing.clear_host()
    with pytest.raises(RuntimeError, match=r"not running inside a component"):
        host_call("d", "n", "A.B", b"")
