"""Every wasmcloud:keyvalue operation (docs/contracts.md §6.3), the same assertions for each
provider: keyvalue-redis and keyvalue-nats (process and embedded) and kvmem. Redis (kvredis)
semantics are the reference, so whatever Redis answers is what every provider must answer."""

from __future__ import annotations

from contracts.keyvalue import (
    GetResponse,
    IncrementRequest,
    ListAddRequest,
    ListDelRequest,
    ListRangeRequest,
    SetAddRequest,
    SetDelRequest,
    SetRequest,
)
from tests.providers_kv.conftest import Env, until_true

MISSING = GetResponse(value="", exists=False)


async def test_get_set_del_contains(env: Env) -> None:
    kv = env.kv
    assert await kv("Get", "k") == MISSING
    assert await kv("Contains", "k") is False
    assert await kv("Del", "k") is False
    assert await kv("Set", SetRequest("k", "v1")) is None
    assert await kv("Get", "k") == GetResponse("v1", True)
    assert await kv("Contains", "k") is True
    await kv("Set", SetRequest("k", "v2"))
    assert await kv("Get", "k") == GetResponse("v2", True)
    await kv("Set", SetRequest("empty", ""))  # an empty value still exists
    assert await kv("Get", "empty") == GetResponse("", True)
    assert await kv("Del", "k") is True
    assert await kv("Del", "k") is False
    assert await kv("Get", "k") == MISSING
    await kv("Set", SetRequest("k", "again"))  # a deleted key can be written again
    assert await kv("Get", "k") == GetResponse("again", True)


async def test_any_key_and_value(env: Env) -> None:
    # NATS KV keys are subjects: the provider must encode what Redis takes as is.
    keys = ["", "a.b", "a..b.", "*", ">", "a b/c=d", "ключ 🔑", "x" * 1000, "x" * 1001]
    for key in keys:
        await env.kv("Set", SetRequest(key, f"value of {key[:20]!r} ✓\n\x00"))
    for key in keys:
        assert await env.kv("Get", key) == GetResponse(f"value of {key[:20]!r} ✓\n\x00", True)
        assert await env.kv("Get", key + "?") == MISSING  # a neighbour is another key
    for key in keys:
        assert await env.kv("Del", key) is True


async def test_increment(env: Env) -> None:
    kv = env.kv
    assert await kv("Increment", IncrementRequest("n", 5)) == 5  # a missing key counts from 0
    assert await kv("Increment", IncrementRequest("n", -7)) == -2
    assert await kv("Get", "n") == GetResponse("-2", True)
    await kv("Set", SetRequest("s", "41"))
    assert await kv("Increment", IncrementRequest("s", 1)) == 42
    await kv("Set", SetRequest("word", "forty"))
    assert "not an integer" in await kv.error("Increment", IncrementRequest("word", 1))
    assert await kv("Get", "word") == GetResponse("forty", True)  # untouched by the failure


async def test_lists(env: Env) -> None:
    kv = env.kv
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == []
    for i, item in enumerate(["a", "b", "a", "c", "a"], start=1):
        assert await kv("ListAdd", ListAddRequest("l", item)) == i  # the new length
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == ["a", "b", "a", "c", "a"]
    assert await kv("ListRange", ListRangeRequest("l", 1, 2)) == ["b", "a"]  # both inclusive
    assert await kv("ListRange", ListRangeRequest("l", 3, 100)) == ["c", "a"]  # clamped
    assert await kv("ListRange", ListRangeRequest("l", -2, -1)) == ["c", "a"]  # from the end
    assert await kv("ListRange", ListRangeRequest("l", -100, 0)) == ["a"]
    assert await kv("ListRange", ListRangeRequest("l", 3, 1)) == []
    assert await kv("ListRange", ListRangeRequest("l", 9, 12)) == []
    assert await kv("ListDel", ListDelRequest("l", "a")) is True  # the first match only
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == ["b", "a", "c", "a"]
    assert await kv("ListDel", ListDelRequest("l", "zzz")) is False
    assert await kv("ListDel", ListDelRequest("nolist", "a")) is False
    assert await kv("Contains", "l") is True
    assert await kv("ListClear", "l") is True
    assert await kv("ListClear", "l") is False
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == []
    # Removing the last item removes the list (Redis deletes empty lists).
    await kv("ListAdd", ListAddRequest("one", "x"))
    assert await kv("ListDel", ListDelRequest("one", "x")) is True
    assert await kv("Contains", "one") is False


async def test_sets(env: Env) -> None:
    kv = env.kv
    assert await kv("SetQuery", "s1") == []
    assert await kv("SetAdd", SetAddRequest("s1", "a")) == 1
    assert await kv("SetAdd", SetAddRequest("s1", "a")) == 0
    assert await kv("SetAdd", SetAddRequest("s1", "b")) == 1
    for item in ["b", "c", "d"]:
        await kv("SetAdd", SetAddRequest("s2", item))
    assert sorted(await kv("SetQuery", "s1")) == ["a", "b"]  # unordered by contract
    assert sorted(await kv("SetUnion", ["s1", "s2"])) == ["a", "b", "c", "d"]
    assert sorted(await kv("SetUnion", ["s1", "missing"])) == ["a", "b"]
    assert await kv("SetIntersection", ["s1", "s2"]) == ["b"]
    assert await kv("SetIntersection", ["s1", "missing"]) == []  # a missing set is empty
    assert await kv("SetDel", SetDelRequest("s1", "zzz")) == 0
    assert await kv("SetDel", SetDelRequest("missing", "a")) == 0
    assert await kv("SetDel", SetDelRequest("s1", "a")) == 1
    assert await kv("SetQuery", "s1") == ["b"]
    assert await kv("SetDel", SetDelRequest("s1", "b")) == 1
    assert await kv("Contains", "s1") is False  # an emptied set disappears
    assert await kv("SetClear", "s2") is True
    assert await kv("SetClear", "s2") is False
    assert await kv("SetQuery", "s2") == []


async def test_wrong_type(env: Env) -> None:
    # One keyspace: a key holds a string, a list or a set, and is not silently reinterpreted.
    kv = env.kv
    await kv("Set", SetRequest("str", "v"))
    await kv("ListAdd", ListAddRequest("list", "x"))
    await kv("SetAdd", SetAddRequest("set", "x"))
    assert "WRONGTYPE" in await kv.error("Get", "list")
    assert "WRONGTYPE" in await kv.error("Increment", IncrementRequest("set", 1))
    assert "WRONGTYPE" in await kv.error("ListAdd", ListAddRequest("str", "y"))
    assert "WRONGTYPE" in await kv.error("ListRange", ListRangeRequest("set", 0, -1))
    assert "WRONGTYPE" in await kv.error("SetAdd", SetAddRequest("list", "y"))
    assert "WRONGTYPE" in await kv.error("SetQuery", "str")
    assert "WRONGTYPE" in await kv.error("SetUnion", ["set", "list"])
    # Del, Contains and the clears work on any kind; Set replaces any kind.
    assert await kv("Contains", "list") is True
    assert await kv("SetClear", "list") is True
    await kv("Set", SetRequest("set", "now a string"))
    assert await kv("Get", "set") == GetResponse("now a string", True)
    if env.backend.ref == "keyvalue-redis":  # kvredis's error text: "redis error: <redis's>"
        assert (await kv.error("ListAdd", ListAddRequest("str", "y"))).endswith(
            "redis error: WRONGTYPE Operation against a key holding the wrong kind of value")


async def test_expiry(env: Env) -> None:
    kv = env.kv
    # Each key is read straight after it is written, one RPC later, well inside its 3 s TTL
    # (TTLs are whole seconds; 1 s left too little room on a loaded machine).
    await kv("Set", SetRequest("ttl", "soon gone", expires=3))
    assert await kv("Get", "ttl") == GetResponse("soon gone", True)
    await kv("Set", SetRequest("counter", "10", expires=3))
    assert await kv("Increment", IncrementRequest("counter", 1)) == 11  # INCRBY keeps the TTL
    await kv("Set", SetRequest("kept", "stays", expires=0))
    await kv("Set", SetRequest("renewed", "x", expires=3))
    await kv("Set", SetRequest("renewed", "y"))  # a plain SET drops the TTL

    async def expired() -> bool:
        return await kv("Get", "ttl") == MISSING and await kv("Get", "counter") == MISSING

    await until_true(expired, timeout=30)
    assert await kv("Contains", "ttl") is False
    assert await kv("Del", "ttl") is False
    assert await kv("Increment", IncrementRequest("ttl", 1)) == 1  # counts from 0 again
    assert await kv("Get", "kept") == GetResponse("stays", True)
    assert await kv("Get", "renewed") == GetResponse("y", True)


async def test_isolation(env: Env, redis_url_2: str) -> None:
    # Another actor with its own store (Redis: another database; NATS: its default bucket
    # lattice_kv_<actor>) sees none of the first actor's data, and vice versa.
    other = await env.actor(**env.backend.values(redis_url_2))
    await env.kv("Set", SetRequest("shared-name", "mine"))
    await env.kv("ListAdd", ListAddRequest("list", "mine"))
    assert await other("Get", "shared-name") == MISSING
    assert await other("ListRange", ListRangeRequest("list", 0, -1)) == []
    await other("Set", SetRequest("shared-name", "theirs"))
    assert await other("Del", "list") is False
    assert await env.kv("Get", "shared-name") == GetResponse("mine", True)
    assert await other("Get", "shared-name") == GetResponse("theirs", True)
    assert await env.kv("Del", "shared-name") is True
    assert await other("Get", "shared-name") == GetResponse("theirs", True)
