"""Fixtures for the keyvalue provider suite: one contract, several providers, real services.

Every test talks to the providers the way an actor does: a ``forward.wat`` actor on a real host
makes exactly one ``wasmcloud:keyvalue`` host call per test call, payloads encoded with the
contract codecs. Redis is the real server of the ``redis_url`` fixture (db 15, flushed per test);
keyvalue-nats uses JetStream on the test lattice's own nats-server.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import contracts
from contracts.keyvalue import CONTRACT_ID
from lattice.host import Host
from lattice.rpc import RpcError
from tests.harness import Lattice, eventually

KV = CONTRACT_ID


@dataclass(frozen=True)
class Backend:
    """A keyvalue provider as a test runs it: package name and process vs embedded."""

    ref: str
    embedded: bool

    @property
    def id(self) -> str:
        return f"{self.ref}-{'embedded' if self.embedded else 'process'}"

    def values(self, redis_url: str, bucket: str = "") -> dict[str, str]:
        """Link values that give an actor its own store (``bucket`` picks a NATS bucket)."""
        if self.ref == "keyvalue-redis":
            return {"URL": redis_url}
        if self.ref == "keyvalue-nats" and bucket:
            return {"bucket": bucket}
        return {}


REDIS_PROCESS = Backend("keyvalue-redis", embedded=False)
REDIS_EMBEDDED = Backend("keyvalue-redis", embedded=True)
NATS_PROCESS = Backend("keyvalue-nats", embedded=False)
NATS_EMBEDDED = Backend("keyvalue-nats", embedded=True)
KVMEM = Backend("kvmem", embedded=True)
ALL = [REDIS_PROCESS, REDIS_EMBEDDED, NATS_PROCESS, NATS_EMBEDDED, KVMEM]


class Kv:
    """Typed keyvalue calls made by one forwarder actor through the lattice."""

    def __init__(self, lattice: Lattice, actor: str, link_name: str = "default") -> None:
        self.lattice, self.actor, self.link_name = lattice, actor, link_name

    async def __call__(self, method: str, value: Any = None) -> Any:
        op = contracts.operation(f"KeyValue.{method}")
        out = await self.lattice.host_call(self.actor, KV, op.name, op.encode_input(value),
                                           link_name=self.link_name)
        return op.decode_output(out)

    async def error(self, method: str, value: Any = None) -> str:
        """The error text of a call that must fail."""
        with pytest.raises(RpcError) as info:
            await self(method, value)
        return str(info.value)

    async def ready(self, timeout: float = 10.0) -> None:
        """Until the provider has the link (a process provider learns it over NATS)."""
        await eventually(lambda: self("Contains", "__ready__"), timeout=timeout)


@dataclass
class Env:
    lattice: Lattice
    host: Host
    backend: Backend
    provider: str  # the provider's public key
    redis_url: str
    kv: Kv

    async def actor(self, **values: str) -> Kv:
        """Another forwarder linked to the provider with ``values``."""
        fwd = await self.lattice.forwarder(self.host, KV)
        await self.lattice.link(fwd, self.provider, KV, **values)
        kv = Kv(self.lattice, fwd)
        await kv.ready()
        return kv


async def until_true(probe: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """``until`` for an async probe: poll until it answers True."""
    deadline = time.monotonic() + timeout
    while not await probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def start(lattice: Lattice, host: Host, backend: Backend, *, link_name: str = "default",
                config: str = "") -> str:
    return await lattice.start_provider(host, backend.ref, embedded=backend.embedded,
                                        link_name=link_name, config=config)


@pytest.fixture
def redis_url_2(redis_url: str) -> Iterator[str]:
    """A second real Redis database (14) for isolation tests, flushed before and after."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/14"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture(params=ALL, ids=lambda b: b.id)
async def env(request: pytest.FixtureRequest, lattice: Lattice, redis_url: str
              ) -> AsyncIterator[Env]:
    backend: Backend = request.param
    host = await lattice.host()
    pk = await start(lattice, host, backend)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, pk, KV, **backend.values(redis_url))
    kv = Kv(lattice, fwd)
    await kv.ready()
    yield Env(lattice, host, backend, pk, redis_url, kv)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Everything here needs real services (nats-server, Redis).
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.service)
