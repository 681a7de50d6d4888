"""keyvalue client: every operation's request encoding, reply decoding and link name."""

from __future__ import annotations

import pytest

from contracts import keyvalue as kv
from lattice_actor import HostError, keyvalue


def test_get_encodes_a_bare_string_and_maps_missing_to_none(host):
    host.on("KeyValue.Get", lambda key: kv.GetResponse("v", True) if key == "k"
            else kv.GetResponse())
    assert keyvalue.get("k") == "v"
    assert keyvalue.get("other") is None
    call = host.calls[0]
    assert (call.binding, call.namespace, call.operation, call.payload) == (
        "default", "wasmcloud:keyvalue", "KeyValue.Get", b"\xa1k")
    host.on("KeyValue.Get", lambda key: kv.GetResponse("", True))
    assert keyvalue.get("empty") == ""  # exists with an empty value: not None


def test_set_delete_contains_increment(host):
    host.on("KeyValue.Set", lambda req: None)
    host.on("KeyValue.Del", lambda key: True)
    host.on("KeyValue.Contains", lambda key: False)
    host.on("KeyValue.Increment", lambda req: 10 + req.value)
    assert keyvalue.set("k", "v") is None
    keyvalue.set("k2", "v2", expires=60)
    assert keyvalue.delete("k") is True
    assert keyvalue.contains("k") is False
    assert keyvalue.increment("n") == 11
    assert keyvalue.increment("n", by=-5) == 5
    assert [c.value for c in host.calls] == [
        kv.SetRequest("k", "v", 0), kv.SetRequest("k2", "v2", 60), "k", "k",
        kv.IncrementRequest("n", 1), kv.IncrementRequest("n", -5)]
    assert host.calls[0].payload == b"\x83\xa3key\xa1k\xa5value\xa1v\xa7expires\x00"
    assert host.last.payload == b"\x82\xa3key\xa1n\xa5value\xfb"


def test_lists(host):
    host.on("KeyValue.ListAdd", lambda req: 3)
    host.on("KeyValue.ListDel", lambda req: True)
    host.on("KeyValue.ListClear", lambda name: False)
    host.on("KeyValue.ListRange", lambda req: ["a", "b"])
    assert keyvalue.list_add("l", "x") == 3
    assert keyvalue.list_del("l", "x") is True
    assert keyvalue.list_clear("l") is False
    assert keyvalue.list_range("l") == ["a", "b"]
    assert keyvalue.list_range("l", 1, 2) == ["a", "b"]
    assert [c.value for c in host.calls] == [
        kv.ListAddRequest("l", "x"), kv.ListDelRequest("l", "x"), "l",
        kv.ListRangeRequest("l", 0, -1), kv.ListRangeRequest("l", 1, 2)]
    assert host.calls[0].payload == b"\x82\xa8listName\xa1l\xa5value\xa1x"


def test_sets(host):
    host.on("KeyValue.SetAdd", lambda req: 1)
    host.on("KeyValue.SetDel", lambda req: 0)
    host.on("KeyValue.SetQuery", lambda name: ["a"])
    host.on("KeyValue.SetUnion", lambda names: ["a", "b"])
    host.on("KeyValue.SetIntersection", lambda names: [])
    host.on("KeyValue.SetClear", lambda name: True)
    assert keyvalue.set_add("s", "a") is True
    assert keyvalue.set_del("s", "a") is False
    assert keyvalue.set_query("s") == ["a"]
    assert keyvalue.set_union("s", "t") == ["a", "b"]
    assert keyvalue.set_union(["s", "t"]) == ["a", "b"]
    assert keyvalue.set_intersection("s", "t") == []
    assert keyvalue.set_clear("s") is True
    assert [c.value for c in host.calls] == [
        kv.SetAddRequest("s", "a"), kv.SetDelRequest("s", "a"), "s", ["s", "t"], ["s", "t"],
        ["s", "t"], "s"]
    assert host.calls[0].payload == b"\x82\xa7setName\xa1s\xa5value\xa1a"


def test_other_link_and_errors(host):
    host.on("KeyValue.Contains", lambda key: True)
    cache = keyvalue.KeyValue("cache")
    assert cache.contains("x") is True and host.last.binding == "cache"
    assert repr(cache) == "KeyValue('cache')"
    with pytest.raises(ValueError, match=r"link_name"):
        keyvalue.KeyValue("")

    def fail(req):
        raise RuntimeError("redis error: ERR value is not an integer or out of range")

    host.on("KeyValue.Increment", fail)
    with pytest.raises(HostError, match=r"^redis error: ERR value is not an integer"):
        keyvalue.increment("text")


def test_wrong_argument_types_fail_before_the_call(host):
    from contracts import CodecError

    with pytest.raises(CodecError):
        keyvalue.set("k", 5)  # type: ignore[arg-type]
    with pytest.raises(CodecError):
        keyvalue.increment("k", by=2**40)
    assert host.calls == []


def test_undecodable_reply_is_a_host_error():
    def garbage(binding, namespace, operation, payload):
        return b"\xa3abc"

    from lattice_actor import testing

    testing.set_host(garbage)
    with pytest.raises(HostError, match=r"deserialization"):
        keyvalue.contains("k")
