"""Relinking at run time: an actor moves from keyvalue-redis to keyvalue-nats while it keeps
calling; once the new link is in place no call fails and writes land in the NATS bucket."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from contracts.keyvalue import GetResponse, IncrementRequest, SetRequest
from lattice.rpc import RpcError
from providers.keyvalue_nats import Doc, kv_key
from tests.harness import Lattice
from tests.providers_kv.conftest import (
    KV,
    NATS_EMBEDDED,
    NATS_PROCESS,
    REDIS_PROCESS,
    Backend,
    Kv,
    start,
    until_true,
)


@pytest.mark.parametrize("target", [NATS_PROCESS, NATS_EMBEDDED], ids=lambda b: b.id)
async def test_swap_redis_for_nats_under_load(lattice: Lattice, redis_url: str,
                                              target: Backend) -> None:
    host = await lattice.host()
    redis_pk = await start(lattice, host, REDIS_PROCESS)
    nats_pk = await start(lattice, host, target)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, redis_pk, KV, URL=redis_url)
    kv = Kv(lattice, fwd)
    await kv.ready()

    # (started at, index, error or None) for every call of the stream.
    log: list[tuple[float, int, str | None]] = []
    stop = asyncio.Event()

    async def stream() -> None:
        i = 0
        while not stop.is_set():
            began = time.monotonic()
            try:
                await kv("Set", SetRequest(f"k{i}", str(i)))
                log.append((began, i, None))
            except RpcError as exc:  # only allowed while the link is being replaced
                log.append((began, i, str(exc)))
            i += 1

    task = asyncio.create_task(stream())
    await until_true(lambda: _ready(len(log) >= 20))
    assert all(error is None for _, _, error in log)  # on Redis, steady
    on_redis = len(log)

    await lattice.unlink(fwd, KV)
    await lattice.link(fwd, nats_pk, KV, bucket="swapped")
    await kv.ready()  # a process provider learns the link over NATS: wait until it has it
    switched = time.monotonic()
    await until_true(lambda: _ready(sum(began > switched for began, _, _ in log) >= 30))
    stop.set()
    await task

    after = [(i, error) for began, i, error in log if began > switched]
    assert [error for _, error in after if error is not None] == []
    # Writes after the switch are in the NATS bucket, not in Redis; earlier ones stayed there.
    bucket = await lattice.nc.jetstream().key_value("swapped")
    with redis.Redis.from_url(redis_url) as old:
        for i, _ in after:
            assert Doc.decode((await bucket.get(kv_key(f"k{i}"))).value) == Doc("s", str(i))
            assert old.get(f"k{i}") is None
        for _, i, _ in log[:on_redis]:
            assert old.get(f"k{i}") == str(i).encode()
    last = after[-1][0]
    assert await kv("Get", f"k{last}") == GetResponse(str(last), True)  # read back via the actor
    assert await kv("Increment", IncrementRequest("fresh", 1)) == 1


async def _ready(value: bool) -> bool:
    return value
