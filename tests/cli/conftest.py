"""Fixtures for the control-interface client and the networked CLI commands.

The CLI entry point runs its own event loop (``asyncio.run``), so whatever it talks to — a
stand-in responder or a real :class:`lattice.host.Host` — runs on a loop in a background thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Coroutine, Iterator
from typing import Any

import nats
import pytest

from lattice.connect import settle
from lattice.keys import KeyPair, KeyRole


class BackgroundLoop:
    """An asyncio loop in a daemon thread; ``run(coro)`` executes a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        # Cancel what is left (e.g. nats-py's internal tasks) so nothing is destroyed pending.
        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):
            self.run(cancel_all(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def background() -> Iterator[BackgroundLoop]:
    bg = BackgroundLoop()
    yield bg
    bg.close()


HOST_ID = KeyPair.generate(KeyRole.SERVER).public_key
CLUSTER = KeyPair.generate(KeyRole.CLUSTER).public_key
ACTOR_KEY = KeyPair.generate(KeyRole.MODULE).public_key
PROVIDER_KEY = KeyPair.generate(KeyRole.SERVICE).public_key

CLAIMS = [
    {"call_alias": "demo/echo", "caps": "wasmcloud:httpserver", "contract_id": "",
     "iss": "A" * 56, "name": "echo", "rev": "1", "sub": ACTOR_KEY, "tags": "",
     "version": "0.1.0"},
    {"call_alias": "", "caps": "", "contract_id": "wasmcloud:keyvalue", "iss": "A" * 56,
     "name": "kvmem", "rev": "2", "sub": PROVIDER_KEY, "tags": "", "version": "0.2.0"},
]
LINKS = [{"actor_id": ACTOR_KEY, "provider_id": PROVIDER_KEY, "link_name": "default",
          "contract_id": "wasmcloud:keyvalue", "values": {"BUCKET": "demo"}, "id": "X"}]


class Responder:
    """A stand-in host on a real NATS server: records every control request and answers with
    docs/wire.md §3.3 shapes (``refuse`` makes commands answer ``accepted: false``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.requests: list[tuple[str, Any]] = []
        self.refuse = ""
        self.nc: Any = None

    async def start(self) -> Responder:
        self.nc = await nats.connect(self.url)
        await self.nc.subscribe("wasmbus.ctl.default.>", cb=self._on)
        await settle(self.nc)  # nc.flush() does not guarantee the SUB arrived
        return self

    async def stop(self) -> None:
        await self.nc.close()

    def bodies(self, suffix: str) -> list[Any]:
        return [b for s, b in self.requests if s.endswith(suffix)]

    async def _on(self, msg: Any) -> None:
        body = json.loads(msg.data) if msg.data else None
        subject = msg.subject.removeprefix("wasmbus.ctl.default.")
        self.requests.append((subject, body))
        reply = self._answer(subject, body)
        if reply is not None and msg.reply:
            await msg.respond(json.dumps(reply).encode())

    def _answer(self, subject: str, body: Any) -> Any:
        if subject == "ping.hosts":
            return {"id": HOST_ID, "issuer": CLUSTER, "labels": {"hostcore.os": "linux",
                                                                 "zone": "eu"},
                    "friendly_name": "calm-lake-7", "uptime_seconds": 5, "uptime_human": "5s",
                    "version": "0.1.0", "cluster_issuers": f"{CLUSTER},C2",
                    "js_domain": None, "lattice_prefix": "default"}
        if subject == f"get.{HOST_ID}.inv":
            return {"host_id": HOST_ID, "issuer": CLUSTER, "friendly_name": "calm-lake-7",
                    "labels": {"zone": "eu"},
                    "actors": [{"id": ACTOR_KEY, "image_ref": "file:///echo.wasm",
                                "name": "echo", "instances": [
                                    {"annotations": {}, "instance_id": "i1", "revision": 1},
                                    {"annotations": {"a": "b"}, "instance_id": "i2",
                                     "revision": 1}]}],
                    "providers": [{"id": PROVIDER_KEY, "image_ref": "kvmem",
                                   "contract_id": "wasmcloud:keyvalue", "link_name": "default",
                                   "name": "kvmem", "instance_id": "p1", "annotations": {},
                                   "revision": 2}]}
        if subject == "get.claims":
            return {"claims": CLAIMS}
        if subject == "get.links":
            return {"links": LINKS}
        if subject.startswith("auction."):
            if (body.get("constraints") or {}).get("zone", "eu") != "eu":
                return None
            return {**body, "host_id": HOST_ID}
        return {"accepted": not self.refuse, "error": self.refuse}


@pytest.fixture
async def responder(nats_server) -> Any:
    r = await Responder(nats_server.url).start()
    yield r
    await r.stop()


@pytest.fixture
def threaded_responder(nats_server, background: BackgroundLoop) -> Iterator[Responder]:
    r = background.run(Responder(nats_server.url).start())
    yield r
    background.run(r.stop())

