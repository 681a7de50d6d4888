"""A lattice for tests: hosts sharing one cluster seed on one real nats-server, a client
connection, and helpers to start actors/providers, link them and call through the lattice.

Provider tests use it to drive every operation "through the lattice with test actors":
``forward.wat`` (signed with the contract's cap) turns a call into exactly one host call, and
``tap.wat`` + :class:`TapProvider` make provider→actor deliveries observable.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

from contracts.blobstore import ChunkResponse
from contracts.httpserver import HttpResponse
from lattice.connect import NatsOptions, connect
from lattice.host import Host, HostConfig
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer
from lattice.provider import Context, Provider
from lattice.rpc import Entity, RpcClient, RpcError
from tests.actors import forward_payload, signed

TAP_CONTRACT = "lattice:tap"


async def until(probe, timeout: float = 10.0):
    """Poll ``probe()`` (plain or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached in time")


async def eventually(make_call, timeout: float = 5.0):
    """Retry a call until it succeeds: a link reaches a remote provider asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await make_call()
        except RpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


class TapProvider(Provider):
    """Records what tap.wat relays (provider→actor deliveries, decoded) and answers them.

    Start it embedded with ``lattice.start_provider(host, "tap", provider_cls=TapProvider)``,
    link a tap.wat actor (signed with ``lattice:tap``) to it, and read ``TapProvider.calls``:
    ``(actor key, operation, decoded message)`` in arrival order.
    """

    contract_id = TAP_CONTRACT
    name = "tap"
    calls: ClassVar[list[tuple[str, str, Any]]] = []
    http_response: ClassVar[HttpResponse] = HttpResponse(status_code=200, body=b"tapped")

    async def handle_request(self, ctx: Context, request: Any) -> HttpResponse:
        self.calls.append((ctx.actor, ctx.operation, request))
        return self.http_response

    async def handle_message(self, ctx: Context, message: Any) -> None:
        self.calls.append((ctx.actor, ctx.operation, message))

    async def receive_chunk(self, ctx: Context, chunk: Any) -> ChunkResponse:
        self.calls.append((ctx.actor, ctx.operation, chunk))
        return ChunkResponse(cancel_download=False)


class Lattice:
    """Hosts sharing one cluster seed on one nats-server, plus a client connection."""

    def __init__(self, server: NatsServer, tmp: Path) -> None:
        self.server = server
        self.tmp = tmp
        self.cluster = KeyPair.generate(KeyRole.CLUSTER)
        self.hosts: list[Host] = []

    async def host(self, **overrides: Any) -> Host:
        settings: dict[str, Any] = {
            "nats": NatsOptions(url=self.server.url), "cluster_seed": self.cluster.seed,
            "provider_health_first": 0.3, "provider_health_interval": 1.0,
            "state_dir": self.tmp / f"host{len(self.hosts)}"}
        config = HostConfig(**{**settings, **overrides})
        host = Host(config)
        await host.start()
        self.hosts.append(host)
        return host

    async def connect(self) -> None:
        self.nc = await connect(NatsOptions(url=self.server.url), name="test-client")
        self.rpc = RpcClient(self.nc, "default", self.cluster,
                             KeyPair.generate(KeyRole.SERVER).public_key, timeout=10.0)
        self.me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)

    async def cli(self, *args: str, timeout: float = 120) -> tuple[int, str, str]:
        """``lattice ARGS… --nats-url`` this lattice's server, in a subprocess as a user runs
        it: (exit code, stdout, stderr)."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lattice", *args, "--nats-url", self.server.url,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
        assert proc.returncode is not None
        return proc.returncode, out.decode(), err.decode()

    async def ctl(self, *parts: str, body: dict | None = None) -> dict:
        reply = await self.nc.request("wasmbus.ctl.default." + ".".join(parts),
                                      json.dumps(body or {}).encode(), timeout=10)
        return json.loads(reply.data)

    async def chunk_leftovers(self) -> list[Any]:
        """What is left in the object store that carries chunked payloads (named after the
        lattice): nothing, once every large invocation has been answered."""
        from nats.js.errors import NotFoundError

        store = await self.nc.jetstream().object_store("default")
        try:
            return await store.list(ignore_deletes=True)
        except NotFoundError:  # nats-py's way of saying "the store is empty"
            return []

    async def call(self, actor_key: str, operation: str, payload: bytes, **kw: Any) -> bytes:
        return await self.rpc.invoke(self.me, Entity.actor(actor_key), operation, payload, **kw)

    async def host_call(self, actor_key: str, contract_id: str, operation: str, payload: bytes,
                        link_name: str = "default", **kw: Any) -> bytes:
        """Make ``actor_key`` (a forward.wat actor) perform exactly one host call."""
        return await self.call(actor_key, operation,
                               forward_payload(link_name, contract_id, payload), **kw)

    def module(self, name: str, **claims: Any) -> str:
        path = self.tmp / f"{name}-{len(list(self.tmp.iterdir()))}.wasm"
        path.write_bytes(signed(name, **claims))
        return str(path)

    async def start_actor(self, host: Host, path: str, count: int = 1) -> str:
        ack = await self.ctl("cmd", host.host_id, "la", body={"actor_ref": path, "count": count})
        assert ack == {"accepted": True, "error": ""}, ack
        return await until(lambda: next(
            (r.key for r in host.actors.actors.values() if r.image_ref == path), None))

    async def forwarder(self, host: Host, *caps: str) -> str:
        """A forward.wat actor signed with ``caps``, started on ``host``."""
        return await self.start_actor(host, self.module("forward", caps=list(caps)))

    async def start_provider(self, host: Host, ref: str, *, link_name: str = "default",
                             embedded: bool = False, config: str = "",
                             provider_cls: type[Provider] | None = None) -> str:
        """Start a provider on ``host`` and wait until it runs; returns its public key."""
        if provider_cls is not None:
            await host.start_provider(ref, link_name, provider_cls=provider_cls)
        else:
            ack = await self.ctl("cmd", host.host_id, "lp", body={
                "provider_ref": ref, "link_name": link_name, "embedded": embedded,
                "configuration": config})
            assert ack["accepted"], ack
        return await until(lambda: next(
            (p.public_key for p in host.providers.list()
             if p.image_ref == ref and p.link_name == link_name and p.state == "running"),
            None), timeout=20)

    async def link(self, actor: str, provider: str, contract_id: str, *,
                   link_name: str = "default", **values: str) -> None:
        ack = await self.ctl("linkdefs", "put", body={
            "actor_id": actor, "provider_id": provider, "contract_id": contract_id,
            "link_name": link_name, "values": values})
        assert ack["accepted"], ack
        await until(lambda: all(h.store.links.get(actor, contract_id, link_name)
                                for h in self.hosts))

    async def unlink(self, actor: str, contract_id: str, *, link_name: str = "default") -> None:
        ack = await self.ctl("linkdefs", "del", body={
            "actor_id": actor, "contract_id": contract_id, "link_name": link_name})
        assert ack["accepted"], ack
        await until(lambda: not any(h.store.links.get(actor, contract_id, link_name)
                                    for h in self.hosts))

    async def close(self) -> None:
        for host in self.hosts:
            await host.stop()
        await self.nc.close()


_HOST_PROCESS = """
import asyncio, json, sys
from lattice.connect import NatsOptions
from lattice.host import Host, HostConfig
async def main():
    host = Host(HostConfig(nats=NatsOptions(url=sys.argv[1]), cluster_seed=sys.argv[2],
                           labels={"name": sys.argv[3]}, state_dir=sys.argv[4],
                           **json.loads(sys.argv[5])))
    await host.start()
    print("ready", host.host_id, flush=True)
    await host.run_until_stopped()
asyncio.run(main())
"""


class HostProcesses:
    """Hosts of one lattice as processes of their own (so a test can SIGKILL one), sharing a
    nats-server and a cluster seed; ``close()`` stops whatever still runs."""

    def __init__(self, nats_url: str, tmp: Path, cluster_seed: str) -> None:
        self.nats_url, self.tmp, self.cluster_seed = nats_url, tmp, cluster_seed
        self.procs: dict[str, subprocess.Popen[str]] = {}  # host id -> process

    def spawn(self, name: str, **config: Any) -> str:
        """Start host ``name`` (label name=NAME) with these HostConfig fields; its host id."""
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOST_PROCESS, self.nats_url, self.cluster_seed, name,
             str(self.tmp / name), json.dumps(config)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready "), f"host {name} did not start: {line!r}"
        host_id = line.split()[1]
        self.procs[host_id] = proc
        return host_id

    def alive(self, host_id: str) -> bool:
        return self.procs[host_id].poll() is None

    def kill(self, host_id: str) -> None:
        """SIGKILL: no goodbye, no host_stopped event."""
        proc = self.procs[host_id]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    async def instance_counts(self, ctl: Any) -> dict[str, int] | None:
        """Actor instances per live host, from their inventories (a ``CtlClient``); None when
        a live host was too busy to answer, so a caller polls again instead of misreading."""
        from lattice.ctl import CtlError, CtlTimeout

        out = {}
        for host_id in self.procs:
            if not self.alive(host_id):
                continue
            try:
                inv = await ctl.inventory(host_id)
            except CtlTimeout:
                return None
            except CtlError:  # no responders: it is on its way out
                continue
            out[host_id] = sum(a.count for a in inv.actors)
        return out

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
