"""Concurrent invocations: 200 at once (then 2,000) through the lattice, no error, none lost.

The client fires N invocations of kvcounter.wat (8 instances on a host) at the same moment;
each makes a KeyValue.Increment host call to keyvalue-redis (a provider process) on a Redis of
the test's own. Every invocation must succeed, the counters handed out must be exactly the next
N numbers, and Redis must hold them all. The client shares this process with the host (as in
every harness test), so the latencies include the client's own work.

See also tests/providers_kv/test_concurrency.py: 200 concurrent updates of each kind, through
one forwarder instance, for keyvalue-redis and keyvalue-nats.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import msgpack
import pytest
import redis.asyncio as aioredis

from tests.faults.conftest import report
from tests.harness import Lattice
from tests.topology.conftest import poll

pytestmark = pytest.mark.service

KV, HTTP = "wasmcloud:keyvalue", "wasmcloud:httpserver"
REQUEST = msgpack.packb({"method": "GET", "path": "/c", "queryString": "", "header": {},
                         "body": b""})


@pytest.mark.timeout(120)
async def test_200_and_2000_concurrent_invocations(lattice: Lattice, private_redis: str) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, lattice.module("kvcounter", caps=[HTTP, KV]),
                                      count=8)
    kv = await lattice.start_provider(host, "keyvalue-redis")
    await lattice.link(actor, kv, KV, URL=private_redis)

    async def call() -> tuple[int, float]:
        started = time.monotonic()
        out = await lattice.call(actor, "HttpServer.HandleRequest", REQUEST, timeout=60)
        return json.loads(msgpack.unpackb(out)["body"])["counter"], time.monotonic() - started

    await poll(call, 10, "the first counter call")
    db = aioredis.from_url(private_redis)
    figures: dict[str, float | int] = {}
    for n in (200, 2000):
        before = int(await db.get("counter::c"))
        started = time.monotonic()
        results = await asyncio.gather(*(call() for _ in range(n)), return_exceptions=True)
        elapsed = time.monotonic() - started
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} of {n} failed, e.g. {errors[0]!r}"
        counters = sorted(c for c, _ in results)  # type: ignore[misc]
        assert counters == list(range(before + 1, before + n + 1))  # each its own increment
        assert int(await db.get("counter::c")) == before + n
        cuts = statistics.quantiles([t for _, t in results], n=100)  # type: ignore[misc]
        figures.update({f"calls_{n}_errors": 0, f"calls_{n}_wall_s": elapsed,
                        f"calls_{n}_p50_s": cuts[49], f"calls_{n}_p99_s": cuts[98]})
    await db.aclose()
    report("concurrent invocations: kvcounter (8 instances) -> keyvalue-redis", **figures)
