"""(e) A manifest upgrade of an actor under HTTP load: no request fails while the reconciler
live-updates the actor to the new version."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import aiohttp

from lattice.keys import KeyPair, KeyRole
from lattice.natsd import free_port
from tests.actors import signed
from tests.app.test_reconciler import deploy, state_of
from tests.harness import Lattice, until

HTTP = "wasmcloud:httpserver"


def app(version: str, image: Path, port: int) -> dict:
    return {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": "web", "annotations": {"version": version}},
            "spec": {"components": [
                {"name": "echo", "type": "actor", "properties": {"image": str(image)},
                 "traits": [{"type": "spreadscaler", "properties": {"replicas": 2}},
                            {"type": "linkdef", "properties": {
                                "target": "http", "values": {"port": str(port)}}}]},
                {"name": "http", "type": "capability", "properties": {
                    "image": "httpserver", "contract": HTTP, "embedded": True},
                 "traits": [{"type": "spreadscaler", "properties": {"replicas": 1}}]}]}}


async def test_upgrade_under_http_load_fails_no_request(lattice: Lattice, tmp_path: Path):
    host = await lattice.host(reconcile_interval=0.5)
    issuer, subject = KeyPair.generate(KeyRole.ACCOUNT), KeyPair.generate(KeyRole.MODULE)
    images = []
    for rev in (1, 2):
        path = tmp_path / f"echo-{rev}.wasm"
        path.write_bytes(signed("echo", caps=[HTTP], issuer=issuer, subject=subject, rev=rev))
        images.append(path)
    port = free_port()

    async def deployed(version: str):
        st = await state_of(lattice, "web")
        return st if st and st.version == version and st.status == "deployed" else None

    await deploy(lattice, app("v1", images[0], port), tmp_path)
    await until(lambda: deployed("v1"), timeout=30)
    url = f"http://127.0.0.1:{port}/load"
    results: list[int] = []
    stop = asyncio.Event()

    async def client(session: aiohttp.ClientSession) -> None:
        while not stop.is_set():
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    results.append(resp.status)
            except aiohttp.ClientError as exc:
                results.append(-1)
                raise AssertionError(f"request failed: {exc}") from exc

    async with aiohttp.ClientSession() as session:
        await until(lambda: _ok(session, url), timeout=15)
        load = [asyncio.create_task(client(session)) for _ in range(4)]
        await until(lambda: len(results) >= 50, timeout=15)
        before = len(results)
        await deploy(lattice, app("v2", images[1], port), tmp_path)
        await until(lambda: deployed("v2"), timeout=30)
        running = {r.image_ref for r in host.actors.actors.values()}
        digest = hashlib.sha256(images[1].read_bytes()).hexdigest()
        assert running == {f"lattice://sha256:{digest}/{images[1].name}"}
        await until(lambda: len(results) >= before + 100, timeout=15)
        stop.set()
        await asyncio.gather(*load)
    assert results and set(results) == {200}, {s: results.count(s) for s in set(results)}


async def _ok(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url) as resp:
            return resp.status == 200
    except aiohttp.ClientError:
        return False
