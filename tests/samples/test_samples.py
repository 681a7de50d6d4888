"""The sample Python actors (actors/*) end to end on a live lattice: built with `lattice build`
(cached by source hash in the persistent test cache), started on real hosts over NATS, linked
to real providers, and driven through real HTTP / NATS clients."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
from pathlib import Path

import aiohttp
import msgpack
import pytest
import redis
from aiohttp import web

import actors
from lattice.build import build_actor
from lattice.claims import module_hash
from lattice.natsd import free_port
from lattice.paths import cache_dir
from lattice.rpc import RpcError
from lattice.runtime.cache import ModuleCache
from lattice.runtime.engine import make_engine
from tests.harness import Lattice, until

HTTP = "wasmcloud:httpserver"
KV = "wasmcloud:keyvalue"
SQL = "wasmcloud:sqldb"
BLOB = "wasmcloud:blobstore"
CLIENT = "wasmcloud:httpclient"
MSG = "wasmcloud:messaging"


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, str]:
    """name -> signed component, built once per session (componentize-py only on a cold cache)."""
    out = tmp_path_factory.mktemp("samples")
    made: dict[str, str] = {}

    def build(name: str) -> str:
        if name not in made:
            result = build_actor(actors.ROOT / name, output=out / f"{name}_s.wasm")
            wasm = result.path.read_bytes()
            # Compile into the hosts' (persistent) module cache now, so starting the actor on a
            # host takes milliseconds rather than the ~10 s a cold compile of CPython costs.
            ModuleCache(make_engine(), cache_dir() / "modules").get(
                module_hash(wasm), wasm, component=True)
            made[name] = str(result.path)
        return made[name]

    return build  # type: ignore[return-value]


async def serve(lattice: Lattice, host, actor: str, http_pk: str, **values: str) -> str:
    """Link ``actor`` to the httpserver on a free port; its base URL once it listens."""
    port = free_port()
    await lattice.link(actor, http_pk, HTTP, port=str(port), **values)
    base = f"http://127.0.0.1:{port}"

    async def listening() -> bool | None:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return None
        writer.close()
        return True

    await until(listening, timeout=15)
    return base


async def test_echo(lattice: Lattice, built) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, built("echo"))
    http = await lattice.start_provider(host, "httpserver", embedded=True)
    base = await serve(lattice, host, actor, http)
    async with aiohttp.ClientSession() as s, \
            s.post(f"{base}/hi/there?a=1&b=2", data=b"payload",
                   headers={"X-Test": "yes"}) as r:
        assert r.status == 200
        body = await r.json()
    assert body["method"] == "POST" and body["path"] == "/hi/there"
    assert body["query"] == {"a": "1", "b": "2"} and body["body"] == "payload"
    assert body["headers"]["x-test"] == "yes"


async def test_kvcounter_on_nats_then_on_redis_by_relinking(lattice: Lattice, built,
                                                            redis_url: str) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, built("kvcounter"))
    http = await lattice.start_provider(host, "httpserver", embedded=True)
    kv_nats = await lattice.start_provider(host, "keyvalue-nats", embedded=True)
    await lattice.link(actor, kv_nats, KV, bucket="kvcounter_test")
    base = await serve(lattice, host, actor, http)
    async with aiohttp.ClientSession() as s:
        counts = []
        for _ in range(3):
            async with s.get(f"{base}/counter") as r:
                assert r.status == 200, await r.text()
                counts.append((await r.json())["counter"])
        assert counts == [1, 2, 3]
        async with s.get(f"{base}/other") as r:
            assert await r.json() == {"counter": 1, "key": "counter:/other"}

        # Same actor, Redis behind it: start the provider and relink. No rebuild, no restart.
        kv_redis = await lattice.start_provider(host, "keyvalue-redis")
        await lattice.unlink(actor, KV)
        await lattice.link(actor, kv_redis, KV, URL=redis_url)
        async with s.get(f"{base}/counter") as r:
            assert r.status == 200, await r.text()
            assert (await r.json())["counter"] == 1  # a fresh store
    assert redis.Redis.from_url(redis_url).get("counter:/counter") == b"1"


async def test_todo_crud_on_sqlite(lattice: Lattice, built) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, built("todo"))
    http = await lattice.start_provider(host, "httpserver", embedded=True)
    sql = await lattice.start_provider(host, "sqldb-sqlite", embedded=True)
    await lattice.link(actor, sql, SQL, path=str(lattice.tmp / "todo.db"))
    await crud(await serve(lattice, host, actor, http))


async def test_todo_crud_on_postgres(lattice: Lattice, built, postgres_dsn: str) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, built("todo"))
    http = await lattice.start_provider(host, "httpserver", embedded=True)
    sql = await lattice.start_provider(host, "sqldb-postgres")
    await lattice.link(actor, sql, SQL, uri=postgres_dsn)
    await crud(await serve(lattice, host, actor, http))


async def crud(base: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/todos") as r:
            assert r.status == 200, await r.text()
            assert await r.json() == []
        ids = []
        for title in ("water the plants", "write the docs"):
            async with s.post(f"{base}/todos", json={"title": title}) as r:
                assert r.status == 201, await r.text()
                todo = await r.json()
                assert todo["title"] == title and todo["done"] is False
                ids.append(todo["id"])
        async with s.patch(f"{base}/todos/{ids[0]}", json={"done": True}) as r:
            assert r.status == 200 and (await r.json())["done"] is True
        async with s.get(f"{base}/todos") as r:
            assert [(t["title"], t["done"]) for t in await r.json()] == [
                ("water the plants", True), ("write the docs", False)]
        async with s.delete(f"{base}/todos/{ids[1]}") as r:
            assert r.status == 204
        async with s.get(f"{base}/todos/{ids[1]}") as r:
            assert r.status == 404
        async with s.post(f"{base}/todos", data=b"not json") as r:
            assert r.status == 400
        async with s.post(f"{base}/todos", json={"title": ""}) as r:
            assert r.status == 400 and "title" in await r.text()


async def test_uploader_streams_10_mb_byte_for_byte(lattice: Lattice, built,
                                                   tmp_path: Path) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, built("uploader"))
    http = await lattice.start_provider(host, "httpserver", embedded=True)
    blobs = await lattice.start_provider(host, "blobstore-fs", embedded=True)
    root = tmp_path / "blobs"
    await lattice.link(actor, blobs, BLOB, ROOT=str(root))
    base = await serve(lattice, host, actor, http)
    data = secrets.token_bytes(10 * 1000 * 1000)
    async with aiohttp.ClientSession() as s:
        async with s.put(f"{base}/files/big.bin", data=data) as r:
            assert r.status == 201, await r.text()
            assert await r.json() == {"name": "big.bin", "size": len(data)}
        assert (root / "uploads" / "big.bin").read_bytes() == data  # really in the store
        async with s.get(f"{base}/files/big.bin") as r:
            assert r.status == 200
            assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(data).digest()
        async with s.get(f"{base}/files") as r:
            assert await r.json() == [{"name": "big.bin", "size": len(data)}]
        async with s.delete(f"{base}/files/big.bin") as r:
            assert r.status == 204
        async with s.get(f"{base}/files/big.bin") as r:
            assert r.status == 404


async def test_fetcher(lattice: Lattice, built) -> None:
    page = b"<html>hello from upstream</html>"
    app = web.Application()
    async def serve_page(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html")

    app.router.add_get("/page", serve_page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        host = await lattice.host()
        actor = await lattice.start_actor(host, built("fetcher"))
        http = await lattice.start_provider(host, "httpserver", embedded=True)
        client = await lattice.start_provider(host, "httpclient", embedded=True)
        await lattice.link(actor, client, CLIENT)
        base = await serve(lattice, host, actor, http)
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{port}/page"
            async with s.get(f"{base}/fetch", params={"url": url}) as r:
                assert r.status == 200, await r.text()
                report = await r.json()
            assert report == {"url": url, "status": 200, "content_type": "text/html",
                              "length": len(page), "sha256": hashlib.sha256(page).hexdigest(),
                              "text": page.decode()}
            dead = f"http://127.0.0.1:{free_port()}/"
            async with s.get(f"{base}/fetch", params={"url": dead}) as r:
                assert r.status == 502 and "could not fetch" in await r.text()
            async with s.get(f"{base}/fetch", params={"url": "ftp://x"}) as r:
                assert r.status == 400
    finally:
        await runner.cleanup()


async def test_pinger_calls_ponger_by_alias_across_hosts(lattice: Lattice, built) -> None:
    front, back = await lattice.host(), await lattice.host()
    pinger = await lattice.start_actor(front, built("pinger"))
    http = await lattice.start_provider(front, "httpserver", embedded=True)
    base = await serve(lattice, front, pinger, http)
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/ping", params={"n": "41"}) as r:  # ponger not running yet
            assert r.status == 502 and "ponger did not answer" in await r.text()
        await lattice.start_actor(back, built("ponger"))  # on the other host: over NATS

        async def answered() -> dict | None:
            async with s.get(f"{base}/ping", params={"n": "41"}) as r:
                return await r.json() if r.status == 200 else None

        assert await until(answered, timeout=15) == {
            "sent": 41, "reply": {"pong": 42, "to": "pinger", "by": "ponger"}}
    # the ponger's own error text reaches its caller
    with pytest.raises(RpcError, match=r"Pingpong\.Ping wants a map"):
        await lattice.call(await _key_of(back, "ponger"), "Pingpong.Ping", msgpack.packb("nope"))


async def _key_of(host, name: str) -> str:
    return next(r.key for r in host.actors.actors.values() if r.actor.name == name)


async def test_chat_subscribes_and_publishes(lattice: Lattice, built) -> None:
    host = await lattice.host()
    actor = await lattice.start_actor(host, built("chat"))
    msg = await lattice.start_provider(host, "messaging-nats", embedded=True)
    await lattice.link(actor, msg, MSG, SUBSCRIPTION="chat.in.*",
                       URI=lattice.server.url)
    out: asyncio.Queue = asyncio.Queue()

    async def on_out(m) -> None:
        await out.put((m.subject, json.loads(m.data)))

    await lattice.nc.subscribe("chat.out.>", cb=on_out)
    await lattice.nc.flush()

    async def ack() -> dict | None:
        try:
            reply = await lattice.nc.request(
                "chat.in.lobby", json.dumps({"user": "ada", "text": "hello"}).encode(),
                timeout=2)
        except Exception:
            return None  # the subscription is still being set up
        return json.loads(reply.data)

    first = await until(ack, timeout=15)
    assert first["ok"] is True
    subject, relayed = await asyncio.wait_for(out.get(), 5)
    assert subject == "chat.out.lobby"
    assert relayed == {"room": "lobby", "seq": first["seq"], "user": "ada", "text": "hello"}
    bad = await lattice.nc.request("chat.in.lobby", b"not json", timeout=5)
    assert json.loads(bad.data)["ok"] is False


def test_every_sample_has_a_readme_and_a_config() -> None:
    for name in ("echo", "kvcounter", "todo", "uploader", "fetcher", "pinger", "ponger", "chat"):
        d = actors.ROOT / name
        assert (d / "README.md").is_file() and (d / "pyproject.toml").is_file(), name
        assert "lattice build" in (d / "README.md").read_text(), name
    assert os.path.isfile(actors.ROOT / "wit" / "lattice-actor.wit")
