"""The lattice's nats-server SIGKILLed and started again on the same port, 1 s later.

A host (in this process), httpserver and kvmem as provider processes, kvcounter.wat linked to
both; the test client has its own NATS connection. Every piece reconnects by itself: the same
provider processes serve again (no restart: kvmem still holds the counter), the host answers
its control interface, and the counter carries on from where it was — every value handed out
is distinct (a call that failed during the outage may still have counted once NATS was back).

Printed: time from the kill to the first good HTTP call (HTTP → httpserver → NATS → host →
actor → NATS → kvmem) and from the restart to it, and when the client's RPC and the control
interface answered again.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import msgpack
import pytest

from lattice.natsd import NatsServer, free_port
from tests.faults.conftest import Clock, report
from tests.harness import Lattice, until
from tests.providers_http.conftest import wait_listening

pytestmark = pytest.mark.service

KV, HTTP = "wasmcloud:keyvalue", "wasmcloud:httpserver"
REQUEST = msgpack.packb({"method": "GET", "path": "/n", "queryString": "", "header": {},
                         "body": b""})
DOWN = 1.0  # seconds the server stays down


async def _http(session: aiohttp.ClientSession, url: str) -> int | None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=1.0)) as resp:
            return json.loads(await resp.read())["counter"] if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None


@pytest.mark.timeout(90)
async def test_nats_server_killed_and_restarted(nats_server: NatsServer,
                                                lattice: Lattice) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, lattice.module("kvcounter", caps=[HTTP, KV]))
    kv = await lattice.start_provider(host, "kvmem")
    http = await lattice.start_provider(host, "httpserver")
    port = free_port()
    await lattice.link(actor, kv, KV)
    await lattice.link(actor, http, HTTP, port=str(port))
    url = f"http://127.0.0.1:{port}/n"
    await wait_listening(url)
    pids = {p.public_key: p.pid for p in host.providers.list()}
    seen: list[int] = []
    async with aiohttp.ClientSession() as session:
        seen.append(await until(lambda: _http(session, url), timeout=15))
        seen.append(await until(lambda: _http(session, url)))

        nats_server.kill()
        clock = Clock()
        await asyncio.sleep(DOWN)
        await asyncio.to_thread(nats_server.start)  # same port, same JetStream directory
        back = clock.since()

        first: dict[str, float] = {}

        async def http_back() -> None:
            seen.append(await until(lambda: _http(session, url), timeout=30))
            first["http"] = clock.since()

        async def rpc_back() -> None:
            while True:
                try:
                    out = await lattice.call(actor, "HttpServer.HandleRequest", REQUEST,
                                             timeout=1.0)
                    seen.append(json.loads(msgpack.unpackb(out)["body"])["counter"])
                    first["rpc"] = clock.since()
                    return
                except Exception:
                    await asyncio.sleep(0.05)

        async def ctl_back() -> None:
            while True:
                try:
                    inv = await lattice.ctl("get", host.host_id, "inv")
                    assert inv["host_id"] == host.host_id
                    first["ctl"] = clock.since()
                    return
                except Exception:
                    await asyncio.sleep(0.05)

        await asyncio.wait_for(asyncio.gather(http_back(), rpc_back(), ctl_back()), 40)
        # steady again: a few more calls in a row succeed
        for _ in range(5):
            seen.append(await until(lambda: _http(session, url)))
    # Reconnected, not restarted: the same provider processes, kvmem's data still there.
    now = {p.public_key: p for p in host.providers.list()}
    assert {k: p.pid for k, p in now.items()} == pids
    assert all(p.restarts == 0 for p in now.values())
    assert len(seen) == len(set(seen)), seen           # no value handed out twice...
    assert seen[:2] == [seen[0], seen[0] + 1] and min(seen[2:]) > seen[1], seen  # ...none lost
    report("nats-server SIGKILL, restarted on the same port after 1 s",
           down_s=back, first_http_call_after_kill_s=first["http"],
           first_http_call_after_restart_s=first["http"] - back,
           first_rpc_call_after_kill_s=first["rpc"], control_interface_after_kill_s=first["ctl"],
           providers_restarted=sum(p.restarts for p in now.values()))
