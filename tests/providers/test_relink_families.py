"""`lattice link put` over an existing link, for every provider family (README "Swapping a
backend"): a put for the same actor, contract and link name that names another provider — or
the same provider with other link values — moves the actor to the new backend while it keeps
calling, with no failed call.

Each test links a test actor, runs a few concurrent loops of calls (bounded in count), puts the
new link over the old one, and then checks on the backends themselves (Redis, the NATS bucket,
the Postgres table, the S3 bucket, the NATS server a message arrived on, the process that made
an HTTP request) that calls made once the hosts route by the new link reach the new backend,
calls finished before the put stayed on the old one, and the old provider let go of the actor.

Two races behind "no failed call" also have deterministic tests of their own: a call already on
its way to the old provider when it lets go, and a call the old provider is still working on.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import socket
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import boto3
import cbor2
import msgpack
import pytest
import redis
from aiohttp import web
from nats.errors import NoRespondersError
from nats.js.errors import KeyNotFoundError

import contracts
from contracts.blobstore import Chunk, PutObjectRequest
from contracts.httpclient import HttpRequest
from contracts.httpserver import HttpRequest as ServerRequest
from contracts.keyvalue import GetResponse, SetRequest
from contracts.messaging import HANDLE_MESSAGE, PubMessage, RequestMessage
from contracts.sqldb import Statement
from lattice.connect import NatsOptions, connect
from lattice.host import Host
from lattice.links import LinkDefinition
from lattice.natsd import NatsServer, free_port
from lattice.rpc import Entity, RpcError, subjects
from providers.httpserver import HttpServerProvider
from providers.keyvalue_nats import Doc, kv_key
from tests.harness import TAP_CONTRACT, Lattice, TapProvider, eventually, until

pytestmark = pytest.mark.service

KV = "wasmcloud:keyvalue"
SQLDB = "wasmcloud:sqldb"
BLOB = "wasmcloud:blobstore"
MSG = "wasmcloud:messaging"
HTTPCLIENT = "wasmcloud:httpclient"
HTTPSERVER = "wasmcloud:httpserver"
HANDLE = contracts.operation("HttpServer.HandleRequest")
S3_CREDS = {"access_key_id": "test", "secret_access_key": "test", "region": "us-east-1"}


@pytest.fixture
async def lattice(nats_server: Any, tmp_path: Path) -> AsyncIterator[Lattice]:
    """The hosts-on-NATS test lattice of tests/harness.py (this directory's conftest has a
    supervisor-only one under the same name)."""
    TapProvider.calls.clear()
    lat = Lattice(nats_server, tmp_path)
    await lat.connect()
    try:
        yield lat
    finally:
        await lat.close()


@pytest.fixture
def own_redis(redis_url: str) -> Iterator[tuple[str, str]]:
    """(URL, key prefix) in a Redis database of this file's own (13), keys unique to the test:
    db 15 of ``redis_url`` is flushed by every test that uses it, which another pytest run on
    the same machine may do in the middle of this one. Only this test's keys are removed."""
    url = redis_url.rsplit("/", 1)[0] + "/13"
    prefix = f"relink-{uuid.uuid4().hex[:10]}-"
    yield url, prefix
    with redis.Redis.from_url(url) as db:
        for key in db.scan_iter(match=f"{prefix}*"):
            db.delete(key)


# Phases of a swap, as seen by a call when it starts and when it returns.
BEFORE, PUTTING, SWITCHED = 0, 1, 2


@dataclass
class Call:
    n: int
    start: int      # phase when the call was made
    end: int        # phase when it returned
    error: str | None


class Swap:
    """``workers`` loops of ``call(n)`` (n unique, at most ``limit`` calls in all) while one link
    is replaced; any exception is a failure of that call, recorded in ``calls``, never raised."""

    def __init__(self, call: Callable[[int], Awaitable[Any]], *, workers: int = 2,
                 limit: int = 3000) -> None:
        self.call, self.workers, self.limit = call, workers, limit
        self.phase = BEFORE
        self.calls: list[Call] = []

    async def run(self, put: Callable[[], Awaitable[None]], *, before: int = 10,
                  after: int = 30) -> list[Call]:
        """Once ``before`` calls succeeded, ``put()`` the new link (it returns when every host
        routes by it); stop once ``after`` calls made after that have returned."""
        numbers = itertools.count()
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                n = next(numbers)
                if n >= self.limit:
                    return
                began = self.phase
                try:
                    await self.call(n)
                    error = None
                except Exception as exc:  # every failure counts, whatever its kind
                    error = f"{type(exc).__name__}: {exc}"
                self.calls.append(Call(n, began, self.phase, error))

        tasks = [asyncio.create_task(loop()) for _ in range(self.workers)]
        try:
            await until(lambda: sum(c.error is None for c in self.calls) >= before, timeout=30)
            self.phase = PUTTING
            await put()
            self.phase = SWITCHED
            await until(lambda: sum(c.start == SWITCHED for c in self.calls) >= after,
                        timeout=60)
        finally:
            stop.set()
            await asyncio.gather(*tasks)
        assert len(self.calls) < self.limit, "the loops hit their call limit during the swap"
        return self.calls


async def swap_under_load(call: Callable[[int], Awaitable[Any]],
                          put: Callable[[], Awaitable[None]], *, workers: int = 2,
                          before: int = 10, after: int = 30) -> list[Call]:
    return await Swap(call, workers=workers).run(put, before=before, after=after)


def failures(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.error is not None]


def old_side(calls: list[Call]) -> set[int]:
    """Calls that returned before the new link was put: they must be on the old backend."""
    return {c.n for c in calls if c.end == BEFORE}


def new_side(calls: list[Call]) -> set[int]:
    """Calls made once every host routed by the new link: they must reach the new backend."""
    return {c.n for c in calls if c.start == SWITCHED}


async def link_put(lattice: Lattice, actor: str, provider: str, contract: str,
                   **values: str) -> None:
    """``lattice link put`` over the existing link; returns once every host has the new one."""
    ack = await lattice.ctl("linkdefs", "put", body={
        "actor_id": actor, "provider_id": provider, "contract_id": contract,
        "link_name": "default", "values": values})
    assert ack["accepted"], ack
    want = LinkDefinition(actor, provider, contract, "default", dict(values))
    await until(lambda: all(h.store.links.get(actor, contract, "default") == want
                            for h in lattice.hosts))


async def let_go(lattice: Lattice, actor: str, provider: str, contract: str, operation: str,
                 value: Any) -> None:
    """Until the old provider, asked directly as the actor, answers "unlinked actor"."""
    op = contracts.operation(operation)

    async def refused() -> bool:
        try:
            await lattice.rpc.invoke(Entity.actor(actor), Entity.provider(provider, contract),
                                     operation, op.encode_input(value), timeout=2)
        except RpcError as exc:
            return str(exc).startswith("unlinked actor")
        return False

    await until(refused, timeout=15)


def instance_script(tmp: Path, package: str, tag: str) -> Path:
    """A second instance of a provider package: an executable with its own content, hence its
    own provider key (a host derives an executable's key from its bytes)."""
    path = tmp / f"{package}-{tag}.sh"
    path.write_text(f'#!/bin/sh\n# {package}, instance {tag}\n'
                    f'exec "{sys.executable}" -m providers.{package} "$@"\n')
    path.chmod(0o755)
    return path


async def start_executable(lattice: Lattice, host: Host, path: Path, contract: str) -> str:
    ack = await lattice.ctl("cmd", host.host_id, "lp", body={
        "provider_ref": str(path), "link_name": "default", "contract_id": contract})
    assert ack["accepted"], ack
    return await until(lambda: next(
        (p.public_key for p in host.providers.list()
         if p.image_ref == str(path) and p.state == "running"), None), timeout=30)


def pid_of(host: Host, provider: str) -> int:
    [pid] = [p.pid for p in host.providers.list() if p.public_key == provider]
    assert pid is not None
    return pid


async def typed(lattice: Lattice, actor: str, contract: str, operation: str, value: Any) -> Any:
    """``operation`` made by a forward.wat ``actor`` as one host call, typed both ways."""
    op = contracts.operation(operation)
    out = await lattice.host_call(actor, contract, op.name, op.encode_input(value))
    return op.decode_output(out)


# ---- keyvalue: kvmem → keyvalue-redis → keyvalue-nats ------------------------------------------


@pytest.mark.parametrize("embedded", [False, True], ids=["process", "embedded"])
async def test_keyvalue_moves_from_kvmem_to_redis_to_nats(
        lattice: Lattice, own_redis: tuple[str, str], embedded: bool) -> None:
    redis_url, p = own_redis
    host = await lattice.host()
    mem = await lattice.start_provider(host, "kvmem", embedded=embedded)
    red = await lattice.start_provider(host, "keyvalue-redis", embedded=embedded)
    nat = await lattice.start_provider(host, "keyvalue-nats", embedded=embedded)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, mem, KV)
    await eventually(lambda: typed(lattice, fwd, KV, "KeyValue.Contains", "ready"), timeout=15)

    async def in_kvmem(key: str) -> GetResponse:  # asked of kvmem itself, as the actor
        op = contracts.operation("KeyValue.Get")
        return op.decode_output(await lattice.rpc.invoke(
            Entity.actor(fwd), Entity.provider(mem, KV), op.name, op.encode_input(key)))

    def setter(prefix: str) -> Callable[[int], Awaitable[Any]]:
        return lambda n: typed(lattice, fwd, KV, "KeyValue.Set",
                               SetRequest(f"{p}{prefix}{n}", str(n)))

    swap = Swap(setter("a"))
    seen_in_kvmem: list[int] = []

    async def to_redis() -> None:
        # kvmem keeps its data in memory and drops it when it lets go: look before the put
        for n in sorted(old_side(swap.calls)):
            assert await in_kvmem(f"{p}a{n}") == GetResponse(str(n), True)
            seen_in_kvmem.append(n)
        await link_put(lattice, fwd, red, KV, URL=redis_url)

    first = await swap.run(to_redis)
    assert failures(first) == []
    assert seen_in_kvmem  # the calls before the put were in kvmem
    await let_go(lattice, fwd, mem, KV, "KeyValue.Contains", f"{p}a0")
    with redis.Redis.from_url(redis_url) as db:
        for n in new_side(first):
            assert db.get(f"{p}a{n}") == str(n).encode()
        for n in old_side(first):
            assert db.get(f"{p}a{n}") is None

    second = await swap_under_load(
        setter("b"), lambda: link_put(lattice, fwd, nat, KV, bucket="relinked"))
    assert failures(second) == []
    await let_go(lattice, fwd, red, KV, "KeyValue.Contains", f"{p}b0")
    bucket = await lattice.nc.jetstream().key_value("relinked")
    with redis.Redis.from_url(redis_url) as db:
        for n in new_side(second):
            entry = await bucket.get(kv_key(f"{p}b{n}"))
            assert Doc.decode(entry.value) == Doc("s", str(n))
            assert db.get(f"{p}b{n}") is None
        for n in old_side(second):
            assert db.get(f"{p}b{n}") == str(n).encode()
            with pytest.raises(KeyNotFoundError):
                await bucket.get(kv_key(f"{p}b{n}"))
    last = max(new_side(second))
    assert await typed(lattice, fwd, KV, "KeyValue.Get", f"{p}b{last}") == GetResponse(str(last),
                                                                                    True)


async def test_a_call_on_its_way_to_the_old_provider_follows_the_new_link(
        lattice: Lattice, tmp_path: Path) -> None:
    """The race behind "no failed call": a call resolved the old link just before the put and
    reaches the old provider after it let go of the actor. The host must not keep retrying the
    provider that will never take the actor back; it follows the link to the new one. (Driven
    through the host's provider hook with the stale link, which makes the race deterministic.)"""
    host = await lattice.host()
    old = await lattice.start_provider(host, "kvmem")
    new = await start_executable(lattice, host, instance_script(tmp_path, "kvmem", "b"), KV)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, old, KV)
    await eventually(lambda: typed(lattice, fwd, KV, "KeyValue.Set", SetRequest("k", "old")))
    stale = host.store.links.get(fwd, KV, "default")
    assert stale is not None and stale.provider_id == old
    await link_put(lattice, fwd, new, KV)
    await let_go(lattice, fwd, old, KV, "KeyValue.Contains", "k")

    set_op, get_op = contracts.operation("KeyValue.Set"), contracts.operation("KeyValue.Get")
    actor = host.actors.actors[fwd].actor
    await host._call_provider(actor, stale, set_op.name, set_op.encode_input(
        SetRequest("k", "new")))
    got = await lattice.rpc.invoke(Entity.actor(fwd), Entity.provider(new, KV), get_op.name,
                                   get_op.encode_input("k"))
    assert get_op.decode_output(got) == GetResponse("new", True)


# ---- sqldb: sqldb-sqlite → sqldb-postgres ------------------------------------------------------


async def test_sqldb_moves_from_sqlite_to_postgres(lattice: Lattice, postgres_dsn: str,
                                                   tmp_path: Path) -> None:
    host = await lattice.host()
    lite = await lattice.start_provider(host, "sqldb-sqlite")
    pg_key = await lattice.start_provider(host, "sqldb-postgres")
    fwd = await lattice.forwarder(host, SQLDB)
    sqlite_file = tmp_path / "before.db"
    await lattice.link(fwd, lite, SQLDB, path=str(sqlite_file))

    async def execute(sql: str, *values: Any) -> None:
        result = await typed(lattice, fwd, SQLDB, "SqlDb.Execute", Statement(
            sql=sql, parameters=[cbor2.dumps(v) for v in values] or None))
        if result.error is not None:
            raise AssertionError(f"in-band error: {result.error}")

    await eventually(lambda: execute("CREATE TABLE log (n integer PRIMARY KEY)"), timeout=15)
    pg = await asyncpg.connect(postgres_dsn)
    try:
        await pg.execute("CREATE TABLE log (n integer PRIMARY KEY)")
        calls = await swap_under_load(
            lambda n: execute("INSERT INTO log (n) VALUES ($1)", n),
            lambda: link_put(lattice, fwd, pg_key, SQLDB, uri=postgres_dsn))
        assert failures(calls) == []
        await let_go(lattice, fwd, lite, SQLDB, "SqlDb.Query", Statement(sql="SELECT 1"))
        in_pg = {r["n"] for r in await pg.fetch("SELECT n FROM log")}
    finally:
        await pg.close()
    with sqlite3.connect(sqlite_file) as direct:
        in_sqlite = {r[0] for r in direct.execute("SELECT n FROM log")}
    assert new_side(calls) <= in_pg and not (new_side(calls) & in_sqlite)
    assert old_side(calls) <= in_sqlite and not (old_side(calls) & in_pg)
    assert in_pg | in_sqlite == {c.n for c in calls} and not (in_pg & in_sqlite)


# ---- blobstore: blobstore-fs → blobstore-s3 ----------------------------------------------------


async def test_blobstore_moves_from_fs_to_s3(lattice: Lattice, s3_endpoint: str,
                                             tmp_path: Path) -> None:
    host = await lattice.host()
    fs = await lattice.start_provider(host, "blobstore-fs")
    s3_key = await lattice.start_provider(host, "blobstore-s3")
    fwd = await lattice.forwarder(host, BLOB)
    root = tmp_path / "blobs"
    await lattice.link(fwd, fs, BLOB, ROOT=str(root))
    container = f"relink{os.getpid()}{free_port()}"
    await eventually(lambda: typed(lattice, fwd, BLOB, "Blobstore.CreateContainer", container),
                     timeout=15)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="test",
                      aws_secret_access_key="test", region_name="us-east-1")
    await asyncio.to_thread(s3.create_bucket, Bucket=container)

    def put(n: int) -> Awaitable[Any]:
        return typed(lattice, fwd, BLOB, "Blobstore.PutObject", PutObjectRequest(
            chunk=Chunk(f"o{n}", container, f"v{n}".encode(), 0, True)))

    calls = await swap_under_load(
        put, lambda: link_put(lattice, fwd, s3_key, BLOB, endpoint=s3_endpoint, **S3_CREDS))
    assert failures(calls) == []
    await let_go(lattice, fwd, fs, BLOB, "Blobstore.ContainerExists", container)
    on_disk = {int(p.name[1:]) for p in (root / container).iterdir() if p.name.startswith("o")}
    listing = await asyncio.to_thread(s3.list_objects_v2, Bucket=container)
    in_s3 = {int(o["Key"][1:]) for o in listing.get("Contents", [])}
    assert new_side(calls) <= in_s3 and not (new_side(calls) & on_disk)
    assert old_side(calls) <= on_disk and not (old_side(calls) & in_s3)
    assert in_s3 | on_disk == {c.n for c in calls} and not (in_s3 & on_disk)
    some = min(new_side(calls))
    body = (await asyncio.to_thread(s3.get_object, Bucket=container, Key=f"o{some}"))["Body"]
    assert body.read() == f"v{some}".encode()


# ---- messaging: to another instance on another NATS server; new link values ---------------------


class Inbox:
    """Bodies published on ``subject`` of one NATS server, recorded by a plain subscriber."""

    def __init__(self) -> None:
        self.bodies: list[int] = []

    async def watch(self, nc: Any, subject: str) -> None:
        async def record(msg: Any) -> None:
            self.bodies.append(int(msg.data))

        await nc.subscribe(subject, cb=record)
        await nc.flush()


async def test_messaging_moves_to_another_instance_on_another_server(
        lattice: Lattice, tmp_path: Path) -> None:
    other = NatsServer(tmp_path / "other-nats", jetstream=False).start()
    nc2 = None
    try:
        host = await lattice.host()
        first = await lattice.start_provider(host, "messaging-nats")
        second = await start_executable(lattice, host,
                                        instance_script(tmp_path, "messaging_nats", "b"), MSG)
        assert first != second
        fwd = await lattice.forwarder(host, MSG)
        await lattice.link(fwd, first, MSG)  # no URI: the lattice's own NATS server
        on_lattice, on_other = Inbox(), Inbox()
        await on_lattice.watch(lattice.nc, "relink.out")
        nc2 = await connect(NatsOptions(url=other.url), name="other-side")
        await on_other.watch(nc2, "relink.out")

        def publish(n: int) -> Awaitable[Any]:
            return typed(lattice, fwd, MSG, "Messaging.Publish",
                         PubMessage(subject="relink.out", body=str(n).encode()))

        calls = await swap_under_load(
            publish, lambda: link_put(lattice, fwd, second, MSG, URI=other.url))
        assert failures(calls) == []
        await let_go(lattice, fwd, first, MSG, "Messaging.Publish",
                     PubMessage(subject="relink.probe", body=b"x"))
        everything = {c.n for c in calls}
        await until(lambda: set(on_lattice.bodies) | set(on_other.bodies) >= everything)
        # exactly once each, on the server the link named when the provider sent it
        assert sorted(on_lattice.bodies + on_other.bodies) == sorted(everything)
        assert new_side(calls) <= set(on_other.bodies)
        assert old_side(calls) <= set(on_lattice.bodies)
    finally:
        if nc2 is not None:
            await nc2.close()
        other.kill()


async def test_messaging_new_link_values_move_publishes_and_subscriptions(
        lattice: Lattice, tmp_path: Path) -> None:
    """The same provider, other link values (URI and SUBSCRIPTION): delivered to the provider
    as a delete and a put, so it drops the old connection and subscription for new ones."""
    other = NatsServer(tmp_path / "other-nats", jetstream=False).start()
    nc2 = None
    try:
        host = await lattice.host()
        provider = await lattice.start_provider(host, "messaging-nats")
        tap = await lattice.start_provider(host, "tap", provider_cls=TapProvider)
        fwd = await lattice.forwarder(host, MSG)
        await lattice.link(fwd, provider, MSG)
        listener = await lattice.start_actor(host, lattice.module("tap", caps=[MSG,
                                                                             TAP_CONTRACT]))
        await lattice.link(listener, tap, TAP_CONTRACT)
        await lattice.link(listener, provider, MSG, SUBSCRIPTION="relink.a")
        nc2 = await connect(NatsOptions(url=other.url), name="other-side")
        on_lattice, on_other = Inbox(), Inbox()
        await on_lattice.watch(lattice.nc, "relink.out")
        await on_other.watch(nc2, "relink.out")

        def delivered(subject: str) -> list[bytes]:
            return [m.body for a, op, m in TapProvider.calls
                    if a == listener and op == HANDLE_MESSAGE and m.subject == subject]

        async def reaches(nc: Any, subject: str) -> bool:
            await nc.publish(subject, b"probe")
            await nc.flush()
            await asyncio.sleep(0.05)
            return bool(delivered(subject))

        await until(lambda: reaches(lattice.nc, "relink.a"), timeout=15)

        def publish(n: int) -> Awaitable[Any]:
            return typed(lattice, fwd, MSG, "Messaging.Publish",
                         PubMessage(subject="relink.out", body=str(n).encode()))

        async def put_both() -> None:
            await link_put(lattice, fwd, provider, MSG, URI=other.url)
            await link_put(lattice, listener, provider, MSG, SUBSCRIPTION="relink.b",
                           URI=other.url)

        # One loop: calls are strictly ordered, so the move shows as one cut in the sequence.
        calls = await swap_under_load(publish, put_both, workers=1, after=40)
        assert failures(calls) == []
        everything = {c.n for c in calls}
        await until(lambda: set(on_lattice.bodies) | set(on_other.bodies) >= everything)
        assert sorted(on_lattice.bodies + on_other.bodies) == sorted(everything)
        assert old_side(calls) <= set(on_lattice.bodies)
        assert on_other.bodies, "no publish reached the server of the new link values"
        cut = min(on_other.bodies)
        assert set(on_lattice.bodies) == {n for n in everything if n < cut}
        assert set(on_other.bodies) == {n for n in everything if n >= cut}
        assert max(everything) in on_other.bodies  # the latest calls are on the new server

        # The subscription moved too: relink.b on the other server delivers, relink.a is gone.
        await until(lambda: reaches(nc2, "relink.b"), timeout=15)

        async def gone(subject: str) -> bool:
            try:
                await lattice.nc.request(subject, b"probe", timeout=1)
            except NoRespondersError:
                return True
            except TimeoutError:
                return False
            return False

        await until(lambda: gone("relink.a"), timeout=15)
    finally:
        if nc2 is not None:
            await nc2.close()
        other.kill()


async def test_a_call_in_flight_on_the_old_provider_is_not_cut_off(lattice: Lattice,
                                                                   tmp_path: Path) -> None:
    """A call the old provider is still working on when it is told to let go (here a
    Messaging.Request waiting for its reply) completes: the provider refuses new calls for the
    actor at once but closes the actor's connection only once that call is done."""
    host = await lattice.host()
    first = await lattice.start_provider(host, "messaging-nats")
    second = await start_executable(lattice, host,
                                    instance_script(tmp_path, "messaging_nats", "b"), MSG)
    fwd = await lattice.forwarder(host, MSG)
    await lattice.link(fwd, first, MSG, rpc_timeout_ms="8000")
    asked: list[Any] = []
    answer = asyncio.Event()

    async def responder(msg: Any) -> None:
        asked.append(msg)
        await answer.wait()
        await msg.respond(b"answer to " + msg.data)

    await lattice.nc.subscribe("relink.slow", cb=responder)
    await lattice.nc.flush()
    await eventually(lambda: typed(lattice, fwd, MSG, "Messaging.Publish",
                                   PubMessage(subject="relink.ready", body=b"")), timeout=15)
    request = asyncio.create_task(typed(lattice, fwd, MSG, "Messaging.Request", RequestMessage(
        subject="relink.slow", body=b"q", timeout_ms=8000)))
    try:
        await until(lambda: asked or request.done(), timeout=15)
        assert not request.done(), request
        await link_put(lattice, fwd, second, MSG)
        # the old provider has let go (new calls are refused) while the request still waits
        await let_go(lattice, fwd, first, MSG, "Messaging.Publish",
                     PubMessage(subject="relink.probe", body=b""))
        assert not request.done()
        answer.set()
        reply = await asyncio.wait_for(request, 15)
    finally:
        answer.set()
        if not request.done():
            request.cancel()
    assert reply.body == b"answer to q"
    await typed(lattice, fwd, MSG, "Messaging.Publish",  # and the actor is on the new one
                PubMessage(subject="relink.after", body=b""))


# ---- httpclient: to another instance -----------------------------------------------------------


def _socket_owner(client_port: int, server_port: int, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the loopback TCP connection from ``client_port`` to
    ``server_port`` (via /proc/net/tcp and the processes' open sockets)."""
    inode = None
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if (int(local.split(":")[1], 16) == client_port
                    and int(remote.split(":")[1], 16) == server_port):
                inode = fields[9]
                break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_httpclient_moves_to_another_instance(lattice: Lattice, tmp_path: Path) -> None:
    host = await lattice.host()
    first = await lattice.start_provider(host, "httpclient")
    second = await start_executable(lattice, host,
                                    instance_script(tmp_path, "httpclient", "b"), HTTPCLIENT)
    pids = [pid_of(host, first), pid_of(host, second)]
    port = free_port()
    served: dict[str, int | None] = {}  # path → pid of the provider process that asked

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        owner = _socket_owner(peer[1], port, pids) if peer else None
        served[request.path] = owner
        return web.Response(text=request.path)

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        fwd = await lattice.forwarder(host, HTTPCLIENT)
        base = f"http://127.0.0.1:{port}"
        await lattice.link(fwd, first, HTTPCLIENT, allowed_hosts="127.0.0.1")

        async def get(n: int) -> None:
            resp = await typed(lattice, fwd, HTTPCLIENT, "HttpClient.Request",
                               HttpRequest(url=f"{base}/c{n}"))
            assert (resp.status_code, resp.body) == (200, f"/c{n}".encode())

        await eventually(lambda: typed(lattice, fwd, HTTPCLIENT, "HttpClient.Request",
                                       HttpRequest(url=f"{base}/ready")), timeout=15)
        assert served["/ready"] == pids[0]
        calls = await swap_under_load(
            get, lambda: link_put(lattice, fwd, second, HTTPCLIENT, allowed_hosts="127.0.0.1"))
        assert failures(calls) == []
        await let_go(lattice, fwd, first, HTTPCLIENT, "HttpClient.Request",
                     HttpRequest(url=f"{base}/probe"))
    finally:
        await runner.cleanup()
    by = {n: served.get(f"/c{n}") for n in (c.n for c in calls)}
    assert {by[n] for n in new_side(calls)} == {pids[1]}
    assert {by[n] for n in old_side(calls)} == {pids[0]}
    assert set(by.values()) <= set(pids)  # each request made by one of the two, seen once


# ---- httpserver: to another port, same provider or another instance ----------------------------


async def _answers(url: str) -> str | None:
    """The path echo.wat reports for a GET of ``url``, or None if nothing listens."""
    try:
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200, resp.status
            return json.loads(await resp.read())["path"]
    except aiohttp.ClientConnectionError:
        return None


async def _refuses(port: int) -> bool:
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return True
    writer.close()
    return False


@pytest.mark.parametrize("target", ["same-provider", "another-instance",
                                    "another-instance-same-port"])
async def test_httpserver_moves_to_another_port_or_instance(lattice: Lattice, tmp_path: Path,
                                                            target: str) -> None:
    host = await lattice.host()
    first = await lattice.start_provider(host, "httpserver")
    if target == "same-provider":
        second = first
    else:
        second = await start_executable(
            lattice, host, instance_script(tmp_path, "httpserver", "b"), HTTPSERVER)
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTPSERVER]))
    old_port = free_port()
    new_port = old_port if target.endswith("same-port") else free_port()
    await lattice.link(echo, first, HTTPSERVER, port=str(old_port))
    assert await until(lambda: _answers(f"http://127.0.0.1:{old_port}/before"),
                       timeout=15) == "/before"

    # While the link moves, the actor keeps answering; HTTP then moves to the new port.
    def call(n: int) -> Awaitable[Any]:
        return lattice.call(echo, HANDLE.name, HANDLE.encode_input(
            ServerRequest(method="GET", path=f"/rpc{n}")))

    calls = await swap_under_load(
        call, lambda: link_put(lattice, echo, second, HTTPSERVER, port=str(new_port)),
        after=10)
    assert failures(calls) == []
    if second != first:
        # the old instance lets go of its listener, the new one opens one (on the same port
        # too: the new instance waits a moment for the old one to free it)
        await until(lambda: has_listeners(host, first, 0), timeout=15)
        await until(lambda: has_listeners(host, second, 1), timeout=15)
    assert await until(lambda: _answers(f"http://127.0.0.1:{new_port}/after"),
                       timeout=15) == "/after"
    if new_port != old_port:
        await until(lambda: _refuses(old_port), timeout=15)
    for n in range(20):  # once up, the new port serves every request
        assert await _answers(f"http://127.0.0.1:{new_port}/n{n}") == f"/n{n}"


async def has_listeners(host: Host, provider: str, count: int) -> bool:
    """Whether an httpserver reports ``count`` HTTP listeners in its health message."""
    reply = await host.rpc_nc.request(
        subjects.provider_health(host.lattice, provider, "default"), b"\x80", timeout=2)
    return msgpack.unpackb(reply.data, raw=False).get("message") == f"{count} listener(s)"


async def _true(value: bool) -> bool:
    return value


async def test_httpserver_takes_a_port_freed_a_moment_after_the_link(
        caplog: pytest.LogCaptureFixture) -> None:
    """The deterministic core of the same-port move: the port is still held when the link
    arrives and is freed a moment later; the listener is opened then, not refused."""
    caplog.set_level(logging.DEBUG, logger="providers.httpserver")
    provider = HttpServerProvider()
    port = free_port()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", port))
    blocker.listen()
    try:
        put = asyncio.create_task(provider.put_link(LinkDefinition(
            "MACTOR", "VPROV", HTTPSERVER, values={"port": str(port)})))
        await until(lambda: _true(put.done() or any(
            r.getMessage() == "address in use; trying again" for r in caplog.records)))
        assert not put.done(), put
    finally:
        blocker.close()
    await asyncio.wait_for(put, 10)  # not refused
    assert await provider.health() == (True, "1 listener(s)")
    await provider.shutdown()
