"""Shared fixtures for provider tests: one lattice on a real nats-server, with a supervisor."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client

import contracts
from lattice.connect import NatsOptions
from lattice.host.events import EventPublisher
from lattice.host.providers import ProviderSupervisor
from lattice.keys import KeyPair, KeyRole
from lattice.links import LinkDefinition
from lattice.rpc import Entity, RpcClient

KV = "wasmcloud:keyvalue"


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


async def eventually(check: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05
                     ) -> Any:
    """Poll ``check`` (sync or async) until it returns a truthy value; fail after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return result
            last = result
        except Exception as exc:
            last = exc
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")
        await asyncio.sleep(interval)


@dataclass
class Lattice:
    nc: Client
    name: str
    url: str
    cluster: KeyPair
    host: KeyPair
    state_dir: Path
    links: list[LinkDefinition] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    supervisor: ProviderSupervisor | None = None

    @property
    def sup(self) -> ProviderSupervisor:
        assert self.supervisor is not None
        return self.supervisor

    def links_for(self, provider_key: str, link_name: str) -> list[LinkDefinition]:
        return [ld for ld in self.links
                if ld.provider_id == provider_key and ld.link_name == link_name]

    def link(self, actor: str, provider_key: str, *, contract_id: str = KV,
             link_name: str = "default", values: dict[str, str] | None = None) -> LinkDefinition:
        ld = LinkDefinition(actor, provider_key, contract_id, link_name, values or {})
        self.links.append(ld)
        return ld

    def rpc(self, cluster: KeyPair | None = None) -> RpcClient:
        return RpcClient(self.nc, self.name, cluster or self.cluster, self.host.public_key)

    async def kv(self, actor: str, provider_key: str, operation: str, value: Any,
                 link_name: str = "default", timeout: float | None = None) -> Any:
        """A typed keyvalue call over NATS, signed like a host would."""
        op = contracts.operation(operation)
        out = await self.rpc().invoke(Entity.actor(actor), Entity.provider(provider_key, KV,
                                                                           link_name),
                                      operation, op.encode_input(value), timeout=timeout)
        return op.decode_output(out)

    async def wait_event(self, kind: str, timeout: float = 5.0,
                         where: Callable[[dict[str, Any]], bool] | None = None
                         ) -> dict[str, Any]:
        def find() -> dict[str, Any] | None:
            for event in self.events:
                if event["type"] == f"com.wasmcloud.lattice.{kind}" and (
                        where is None or where(event["data"])):
                    return event
            return None
        return await eventually(find, timeout)


def new_actor() -> str:
    return KeyPair.generate(KeyRole.MODULE).public_key


async def make_lattice(nc: Client, url: str, state_dir: Path) -> Lattice:
    """A fresh lattice name on ``nc`` with an event recorder and a fast-checking supervisor."""
    lat = Lattice(nc=nc, name=f"t{uuid.uuid4().hex[:10]}", url=url,
                  cluster=KeyPair.generate(KeyRole.CLUSTER), host=KeyPair.generate(KeyRole.SERVER),
                  state_dir=state_dir)

    async def collect(msg: Any) -> None:
        lat.events.append(json.loads(msg.data))

    await nc.subscribe(f"wasmbus.evt.{lat.name}", cb=collect)
    lat.supervisor = ProviderSupervisor(
        nc=nc, lattice=lat.name, host_id=lat.host.public_key, cluster_seed=lat.cluster.seed,
        cluster_issuers=[lat.cluster.public_key], nats=NatsOptions(url=url),
        events=EventPublisher(nc, lat.name, lat.host.public_key), links_for=lat.links_for,
        rpc_timeout=2.0, state_dir=state_dir, health_first=0.2, health_interval=0.5)
    return lat


async def close_lattice(lat: Lattice) -> None:
    pids = [p.pid for p in lat.sup.list() if p.pid]
    await lat.sup.stop_all()
    await lat.nc.close()
    for pid in pids:  # never leave a provider behind, even when a test failed
        if alive(pid):
            os.kill(pid, 9)


@pytest.fixture
async def lattice(nats_server: Any, tmp_path: Path) -> AsyncIterator[Lattice]:
    nc = await nats.connect(nats_server.url)
    lat = await make_lattice(nc, nats_server.url, tmp_path / "state")
    try:
        yield lat
    finally:
        await close_lattice(lat)
