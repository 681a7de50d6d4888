"""kvmem: every wasmcloud:keyvalue operation (docs/contracts.md §6.3), through
ProviderBridge.dispatch with the contract codecs, i.e. exactly the bytes an embedding host
passes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

import contracts
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
from lattice.host.providers import derived_key
from lattice.links import LinkDefinition
from lattice.provider import HostData, ProviderBridge, ProviderError
from lattice.rpc import subjects
from providers.kvmem import NOT_INTEGER, WRONGTYPE, KvMemProvider, lrange
from tests.providers.conftest import KV, Lattice, eventually, new_actor

KEY = derived_key(b"kvmem").public_key


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Kv:
    """Typed calls for one actor through dispatch()."""

    def __init__(self, bridge: ProviderBridge, actor: str) -> None:
        self.bridge, self.actor = bridge, actor

    async def raw(self, operation: str, payload: bytes) -> bytes:
        return await self.bridge.dispatch(self.actor, operation, payload)

    async def __call__(self, method: str, value: Any = None) -> Any:
        op = contracts.operation(f"KeyValue.{method}")
        return op.decode_output(await self.raw(op.name, op.encode_input(value)))


@pytest.fixture
async def env(lattice: Lattice) -> AsyncIterator[tuple[ProviderBridge, Clock, list[str]]]:
    actors = [new_actor(), new_actor()]
    clock = Clock()
    hd = HostData(host_id=lattice.host.public_key, lattice_rpc_prefix=lattice.name,
                  provider_key=KEY, invocation_seed=lattice.cluster.seed,
                  link_definitions=[LinkDefinition(a, KEY, KV) for a in actors],
                  cluster_issuers=[lattice.cluster.public_key])
    bridge = ProviderBridge(KvMemProvider(clock=clock), hd, nc=lattice.nc)
    await bridge.start()
    yield bridge, clock, actors
    await bridge.stop()


@pytest.fixture
def kv(env: tuple[ProviderBridge, Clock, list[str]]) -> Kv:
    return Kv(env[0], env[2][0])


async def test_get_set_del_contains(kv: Kv) -> None:
    assert await kv("Get", "k") == GetResponse(value="", exists=False)
    assert await kv("Contains", "k") is False
    assert await kv("Set", SetRequest("k", "v1")) is None
    assert await kv("Get", "k") == GetResponse("v1", True)
    await kv("Set", SetRequest("k", "v2"))
    assert await kv("Get", "k") == GetResponse("v2", True)
    assert await kv("Contains", "k") is True
    assert await kv("Del", "k") is True
    assert await kv("Del", "k") is False
    assert await kv("Get", "k") == GetResponse("", False)
    await kv("Set", SetRequest("empty", ""))
    assert await kv("Get", "empty") == GetResponse("", True)  # exists, with an empty value


async def test_wire_bytes(kv: Kv) -> None:
    assert await kv.raw("KeyValue.Set", msgpack.packb(
        {"key": "k", "value": "v", "expires": 0})) == b""  # no output = empty payload
    out = await kv.raw("KeyValue.Get", msgpack.packb("k"))
    assert msgpack.unpackb(out) == {"value": "v", "exists": True}


async def test_set_with_expiry(kv: Kv, env: tuple[ProviderBridge, Clock, list[str]]) -> None:
    clock = env[1]
    await kv("Set", SetRequest("session", "abc", expires=10))
    clock.now += 9.9
    assert await kv("Get", "session") == GetResponse("abc", True)
    clock.now += 0.1
    assert await kv("Get", "session") == GetResponse("", False)
    assert await kv("Contains", "session") is False
    await kv("Set", SetRequest("t", "1", expires=5))
    await kv("Set", SetRequest("t", "2"))  # a plain SET clears the TTL
    clock.now += 100
    assert await kv("Get", "t") == GetResponse("2", True)


async def test_increment(kv: Kv) -> None:
    assert await kv("Increment", IncrementRequest("n", 5)) == 5  # a missing key counts from 0
    assert await kv("Increment", IncrementRequest("n", -7)) == -2
    assert await kv("Get", "n") == GetResponse("-2", True)
    await kv("Set", SetRequest("s", "ten"))
    with pytest.raises(ProviderError, match=NOT_INTEGER):
        await kv("Increment", IncrementRequest("s", 1))
    await kv("Set", SetRequest("big", str(2**31 - 1)))
    with pytest.raises(ProviderError, match="overflow"):
        await kv("Increment", IncrementRequest("big", 1))


async def test_lists(kv: Kv) -> None:
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == []
    for i, item in enumerate(["a", "b", "c", "b", "d"], start=1):
        assert await kv("ListAdd", ListAddRequest("l", item)) == i
    assert await kv("ListRange", ListRangeRequest("l", 0, 1)) == ["a", "b"]  # inclusive
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == ["a", "b", "c", "b", "d"]
    assert await kv("ListRange", ListRangeRequest("l", -2, -1)) == ["b", "d"]
    assert await kv("ListRange", ListRangeRequest("l", 3, 100)) == ["b", "d"]
    assert await kv("ListRange", ListRangeRequest("l", 3, 1)) == []
    assert await kv("ListRange", ListRangeRequest("l", 9, 12)) == []
    assert await kv("ListRange", ListRangeRequest("l", -100, 0)) == ["a"]
    assert await kv("ListDel", ListDelRequest("l", "b")) is True  # the first match only
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == ["a", "c", "b", "d"]
    assert await kv("ListDel", ListDelRequest("l", "zzz")) is False
    assert await kv("ListDel", ListDelRequest("nolist", "a")) is False
    assert await kv("ListClear", "l") is True
    assert await kv("ListClear", "l") is False
    assert await kv("ListRange", ListRangeRequest("l", 0, -1)) == []


def test_lrange_matches_redis() -> None:
    items = list("abcdefg")
    assert lrange(items, 0, 0) == ["a"]
    assert lrange(items, -3, 2) == []
    assert lrange(items, -3, -3) == ["e"]
    assert lrange(items, 5, -1) == ["f", "g"]
    assert lrange([], 0, -1) == []


async def test_sets(kv: Kv) -> None:
    assert await kv("SetQuery", "s") == []
    assert await kv("SetAdd", SetAddRequest("s", "x")) == 1
    assert await kv("SetAdd", SetAddRequest("s", "x")) == 0
    await kv("SetAdd", SetAddRequest("s", "y"))
    await kv("SetAdd", SetAddRequest("t", "y"))
    await kv("SetAdd", SetAddRequest("t", "z"))
    assert sorted(await kv("SetQuery", "s")) == ["x", "y"]
    assert sorted(await kv("SetUnion", ["s", "t"])) == ["x", "y", "z"]
    assert sorted(await kv("SetUnion", ["s", "missing"])) == ["x", "y"]
    assert await kv("SetIntersection", ["s", "t"]) == ["y"]
    assert await kv("SetIntersection", ["s", "missing"]) == []
    assert await kv("SetIntersection", []) == []
    assert await kv("SetDel", SetDelRequest("s", "x")) == 1
    assert await kv("SetDel", SetDelRequest("s", "x")) == 0
    assert await kv("SetQuery", "s") == ["y"]
    assert await kv("SetClear", "t") is True
    assert await kv("SetClear", "t") is False
    assert await kv("SetQuery", "t") == []


async def test_a_key_holds_one_kind_of_value(kv: Kv) -> None:
    await kv("Set", SetRequest("k", "v"))
    with pytest.raises(ProviderError, match=WRONGTYPE):
        await kv("ListAdd", ListAddRequest("k", "x"))
    with pytest.raises(ProviderError, match=WRONGTYPE):
        await kv("SetAdd", SetAddRequest("k", "x"))
    await kv("ListAdd", ListAddRequest("l", "x"))
    with pytest.raises(ProviderError, match=WRONGTYPE):
        await kv("Get", "l")
    assert await kv("Contains", "l") is True
    assert await kv("Del", "l") is True  # Del removes any kind


async def test_actors_are_isolated_and_unlinking_drops_data(
        lattice: Lattice, env: tuple[ProviderBridge, Clock, list[str]]) -> None:
    bridge, _, (first, second) = env
    a, b = Kv(bridge, first), Kv(bridge, second)
    await a("Set", SetRequest("k", "from a"))
    await a("SetAdd", SetAddRequest("s", "a"))
    assert await b("Get", "k") == GetResponse("", False)
    assert await b("SetQuery", "s") == []
    await b("Set", SetRequest("k", "from b"))
    assert await a("Get", "k") == GetResponse("from a", True)

    gone = LinkDefinition(first, KEY, KV)
    await lattice.nc.publish(subjects.provider_linkdefs_del(lattice.name, KEY, "default"),
                             msgpack.packb(gone.to_wire()))
    await eventually(lambda: first not in bridge.links)
    provider = bridge.provider
    assert isinstance(provider, KvMemProvider) and first not in provider.spaces
    # Relinked, the actor starts from nothing; the other actor kept its data.
    await bridge.dispatch(first, "KeyValue.Contains", msgpack.packb("k"), link=gone)
    assert await a("Get", "k") == GetResponse("", False)
    assert await b("Get", "k") == GetResponse("from b", True)


async def test_bad_payloads_are_invalid_parameters(kv: Kv) -> None:
    with pytest.raises(ProviderError, match=r"^deserialization: "):
        await kv.raw("KeyValue.Increment", msgpack.packb("not a struct"))
    with pytest.raises(ProviderError, match=r"method not handled KeyValue\.Scan"):
        await kv.raw("KeyValue.Scan", b"")
