"""No lost updates: many concurrent callers, and for keyvalue-nats several provider instances
(on two hosts) writing one bucket with optimistic concurrency."""

from __future__ import annotations

import asyncio

import pytest

from contracts.keyvalue import (
    GetResponse,
    IncrementRequest,
    ListAddRequest,
    ListDelRequest,
    ListRangeRequest,
    SetAddRequest,
)
from tests.harness import Lattice
from tests.providers_kv.conftest import (
    KV,
    NATS_EMBEDDED,
    NATS_PROCESS,
    REDIS_PROCESS,
    Env,
    Kv,
)

CALLS = 200


@pytest.mark.parametrize("env", [REDIS_PROCESS, NATS_PROCESS, NATS_EMBEDDED], indirect=True,
                         ids=lambda b: b.id)
async def test_concurrent_updates_lose_nothing(env: Env) -> None:
    kv = env.kv
    results = await asyncio.gather(*(kv("Increment", IncrementRequest("n", 1))
                                     for _ in range(CALLS)))
    assert sorted(results) == list(range(1, CALLS + 1))  # every caller saw its own increment
    assert await kv("Get", "n") == GetResponse(str(CALLS), True)

    lengths = await asyncio.gather(*(kv("ListAdd", ListAddRequest("l", f"item{i}"))
                                     for i in range(50)))
    assert sorted(lengths) == list(range(1, 51))
    items = await kv("ListRange", ListRangeRequest("l", 0, -1))
    assert sorted(items) == sorted(f"item{i}" for i in range(50))

    added = await asyncio.gather(*(kv("SetAdd", SetAddRequest("s", f"m{i % 25}"))
                                   for i in range(50)))
    assert sorted(added) == [0] * 25 + [1] * 25  # each member added exactly once
    assert len(await kv("SetQuery", "s")) == 25


async def test_nats_instances_on_two_hosts_share_a_bucket(lattice: Lattice) -> None:
    # Two keyvalue-nats processes (link names "a" and "b", on different hosts) serve one actor
    # whose two links name the same bucket: only revision checks keep their writes apart.
    a, b = await lattice.host(), await lattice.host()
    pk = await lattice.start_provider(a, NATS_PROCESS.ref, link_name="a")
    assert await lattice.start_provider(b, NATS_PROCESS.ref, link_name="b") == pk
    fwd = await lattice.forwarder(a, KV)
    await lattice.link(fwd, pk, KV, link_name="a", bucket="shared_counter")
    await lattice.link(fwd, pk, KV, link_name="b", bucket="shared_counter")
    via_a, via_b = Kv(lattice, fwd, "a"), Kv(lattice, fwd, "b")
    await via_a.ready()
    await via_b.ready()
    assert a.providers.list()[0].pid != b.providers.list()[0].pid  # really two processes

    results = await asyncio.gather(*((via_a if i % 2 else via_b)("Increment",
                                                                 IncrementRequest("n", 1))
                                     for i in range(CALLS)))
    assert sorted(results) == list(range(1, CALLS + 1))
    assert await via_a("Get", "n") == GetResponse(str(CALLS), True)
    assert await via_b("Get", "n") == GetResponse(str(CALLS), True)

    lengths = await asyncio.gather(*((via_a if i % 2 else via_b)("ListAdd",
                                                                 ListAddRequest("l", str(i)))
                                     for i in range(60)))
    assert sorted(lengths) == list(range(1, 61))
    assert sorted(await via_b("ListRange", ListRangeRequest("l", 0, -1)), key=int) == [
        str(i) for i in range(60)]


async def test_nats_conflicting_writers_retry(lattice: Lattice) -> None:
    # Two provider instances called directly (no host in between, no shared lock): every
    # increment races the other instance's, so the revision check and retry do all the work.
    from lattice.keys import KeyPair, KeyRole
    from lattice.links import LinkDefinition
    from lattice.provider import Context, HostData, ProviderBridge
    from providers.keyvalue_nats import KeyValueNatsProvider

    actor = KeyPair.generate(KeyRole.MODULE).public_key
    link = LinkDefinition(actor, "VPROVIDER", KV, "default", {"bucket": "race"})
    contexts = []
    for _ in range(2):
        provider = KeyValueNatsProvider()
        bridge = ProviderBridge(provider, HostData(), nc=lattice.nc)
        await provider.put_link(link)
        contexts.append((provider, Context(actor, "KeyValue.Increment", link, bridge)))
    try:
        results = await asyncio.gather(*(
            contexts[i % 2][0].increment(contexts[i % 2][1], IncrementRequest("n", 1))
            for i in range(CALLS)))
        assert sorted(results) == list(range(1, CALLS + 1))
        # Adds racing deletes (an emptied list is deleted with delete(last=revision)).
        ops = []
        for i in range(100):
            provider, ctx = contexts[i % 2]
            ops.append(provider.list_add(ctx, ListAddRequest("l", "x")))
            provider, ctx = contexts[(i + 1) % 2]
            ops.append(provider.list_del(ctx, ListDelRequest("l", "x")))
        outcomes = await asyncio.gather(*ops)
        removed = sum(1 for result in outcomes[1::2] if result is True)
        provider, ctx = contexts[0]
        left = await provider.list_range(ctx, ListRangeRequest("l", 0, -1))
        assert len(left) == 100 - removed
    finally:
        for provider, _ in contexts:
            await provider.shutdown()
