"""The provider SDK (docs/wire.md §7.2-7.5) against a real nats-server: HostData, serving signed
invocations and refusing forged ones, links, health, shutdown, stdin EOF, chunking."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import subprocess
import sys
from typing import Any

import msgpack
import nats.errors
import pytest

import contracts
from contracts.keyvalue import GetResponse, SetRequest
from lattice.host.providers import derived_key
from lattice.jwt import b64url_encode
from lattice.keys import KeyPair, KeyRole
from lattice.links import LinkDefinition
from lattice.provider import (
    HostData,
    HostDataError,
    Provider,
    ProviderBridge,
    ProviderError,
    link_from_wire,
    method_name,
)
from lattice.rpc import (
    Entity,
    InvocationResponse,
    RpcError,
    accept,
    new_invocation,
    reply,
    subjects,
)
from lattice.rpc.chunking import ChunkStore
from tests.providers.conftest import KV, Lattice, alive, eventually, new_actor

KVMEM = derived_key(b"kvmem").public_key

# ---- HostData -----------------------------------------------------------------------------------

WIRE_KEYS = {"host_id", "lattice_rpc_prefix", "link_name", "lattice_rpc_user_jwt",
             "lattice_rpc_user_seed", "lattice_rpc_url", "provider_key", "invocation_seed",
             "env_values", "instance_id", "link_definitions", "cluster_issuers", "config_json",
             "default_rpc_timeout_ms", "structured_logging", "log_level"}


def full_host_data() -> HostData:
    link = LinkDefinition("Mactor", "Vprov", KV, "default", {"URL": "redis://x"})
    return HostData(
        host_id="N" + "A" * 55, lattice_rpc_prefix="lat", link_name="blue",
        lattice_rpc_user_jwt="eyJ.jwt", lattice_rpc_user_seed="SUSEED",
        lattice_rpc_url="127.0.0.1:4222", provider_key="V" + "B" * 55,
        invocation_seed="SCSEED", env_values={"A": "1"}, instance_id="iid",
        link_definitions=[link], cluster_issuers=["C1", "C2"], config_json='{"url": "x"}',
        default_rpc_timeout_ms=1500, structured_logging=True, log_level="debug",
        js_domain="leaf", lattice_rpc_tls=False, extra={"otel_extra": {"x": 1}})


def test_host_data_round_trips_through_the_stdin_line() -> None:
    hd = full_host_data()
    line = hd.encode()
    assert line.endswith(b"\n") and b"\n" not in line[:-1]
    doc = json.loads(base64.b64decode(line.strip(), validate=True))
    assert set(doc) >= WIRE_KEYS
    assert doc["link_definitions"][0]["values"] == {"URL": "redis://x"}
    assert doc["link_definitions"][0]["actor_id"] == "Mactor"
    assert HostData.decode(line) == hd
    assert HostData.decode(line.rstrip(b"\n") + b"\r\n") == hd  # Rust host line ending
    assert HostData.from_json(hd.to_json()) == hd


def test_host_data_tolerates_missing_optional_keys() -> None:
    hd = HostData.from_json({"env_values": {}, "link_definitions": [], "cluster_issuers": []})
    assert hd.lattice_rpc_prefix == "default" and hd.link_name == "default"
    assert hd.config_json is None and hd.default_rpc_timeout_ms is None
    assert hd.rpc_timeout == 2.0
    assert hd.nats_options().servers == ["nats://127.0.0.1:4222"]
    assert hd.nats_options().jwt is None
    doc = hd.to_json()
    assert "config_json" not in doc and "log_level" not in doc  # Options omitted, never null
    otp = HostData.from_json({"lattice_rpc_url": "10.1.2.3:4333", "lattice_rpc_user_jwt": "j",
                              "env_values": {}, "link_definitions": [
                                  {"actor_id": "M1", "provider_id": "V1", "values": {}}],
                              "cluster_issuers": ["C"]})
    assert otp.nats_options().servers == ["nats://10.1.2.3:4333"]
    assert otp.nats_options().jwt is None  # a JWT without its seed is not used
    assert otp.link_definitions[0].contract_id == ""
    rust = HostData.from_json({"lattice_rpc_url": "nats://h:1", "lattice_rpc_user_jwt": "j",
                               "lattice_rpc_user_seed": "s"})
    assert rust.nats_options().servers == ["nats://h:1"]
    assert (rust.nats_options().jwt, rust.nats_options().seed) == ("j", "s")


@pytest.mark.parametrize("line", [b"", b"%%%not base64", base64.b64encode(b"[1, 2]"),
                                  base64.b64encode(b'{"cluster_issuers": "C"}')])
def test_bad_host_data_is_refused_clearly(line: bytes) -> None:
    with pytest.raises(HostDataError):
        HostData.decode(line)


def test_link_from_wire_defaults_missing_keys() -> None:
    link = link_from_wire({"actor_id": "M", "values": {"k": "v"}})
    # a missing link name means "default", as everywhere in the lattice
    assert (link.provider_id, link.contract_id, link.link_name) == ("", "", "default")
    assert link.values == {"k": "v"}


@pytest.mark.parametrize(("operation", "name"), [
    ("KeyValue.ListAdd", "list_add"), ("KeyValue.Get", "get"), ("KeyValue.Del", "del_"),
    ("KeyValue.SetIntersection", "set_intersection"), ("NumberGen.Random32", "random32"),
    ("HttpServer.HandleRequest", "handle_request"), ("Custom.Shutdown", "shutdown_"),
    ("Messaging.Publish", "publish"), ("Acme.HTTPGet", "http_get")])
def test_operation_to_method_name(operation: str, name: str) -> None:
    assert method_name(operation) == name


# ---- a provider process serving signed invocations ----------------------------------------------


async def raw_call(lat: Lattice, inv: Any, provider_key: str = KVMEM) -> InvocationResponse:
    msg = await lat.nc.request(subjects.provider(lat.name, provider_key, "default"),
                               inv.encode(), timeout=5)
    return InvocationResponse.decode(msg.data)


def signed(lat: Lattice, actor: str, operation: str, msg: bytes, *,
           target_key: str = KVMEM) -> Any:
    return new_invocation(Entity.actor(actor), Entity.provider(target_key, KV, "default"),
                          operation, msg, cluster_key=lat.cluster, host_id=lat.host.public_key)


async def test_process_provider_serves_signed_calls_and_refuses_forgeries(
        lattice: Lattice) -> None:
    lat = lattice
    actor = new_actor()
    lat.link(actor, KVMEM)
    await lat.sup.start("kvmem")
    get = contracts.operation("KeyValue.Get")

    assert await lat.kv(actor, KVMEM, "KeyValue.Set", SetRequest("k", "v")) is None
    assert await lat.kv(actor, KVMEM, "KeyValue.Get", "k") == GetResponse("v", True)

    # Forged signature.
    inv = signed(lat, actor, "KeyValue.Get", get.encode_input("k"))
    head, body, _ = inv.encoded_claims.split(".")
    inv.encoded_claims = f"{head}.{body}.{b64url_encode(bytes(64))}"
    resp = await raw_call(lat, inv)
    assert resp.error == "Anti-forgery check failed: Invocation claims signature invalid"
    assert resp.invocation_id == inv.id and resp.msg == b""

    # Signed by a cluster key the provider does not trust.
    stranger = KeyPair.generate(KeyRole.CLUSTER)
    with pytest.raises(RpcError) as err:
        await lat.rpc(stranger).invoke(Entity.actor(actor), Entity.provider(KVMEM, KV),
                                       "KeyValue.Get", get.encode_input("k"))
    assert str(err.value) == ("Anti-forgery check failed: Issuer of this invocation is not "
                              "among the list of valid issuers")

    # Payload changed after signing.
    inv = signed(lat, actor, "KeyValue.Get", get.encode_input("k"))
    inv.msg = get.encode_input("other")
    inv.content_length = len(inv.msg)
    resp = await raw_call(lat, inv)
    assert resp.error is not None
    assert resp.error.startswith("Anti-forgery check failed: Invocation hash does not match "
                                 "signed claims hash (")

    # Validly signed, but for another provider.
    other = derived_key(b"someone-else").public_key
    resp = await raw_call(lat, signed(lat, actor, "KeyValue.Get", get.encode_input("k"),
                                      target_key=other))
    assert resp.error == f"target key mismatch: {other} != {KVMEM}"

    # An actor without a link.
    loner = new_actor()
    with pytest.raises(RpcError) as err:
        await lat.kv(loner, KVMEM, "KeyValue.Get", "k")
    assert str(err.value) == f"unlinked actor: '{loner}'"

    # Operation the provider does not implement; payload the codec cannot read.
    resp = await raw_call(lat, signed(lat, actor, "KeyValue.Frobnicate", b""))
    assert resp.error == "method not handled KeyValue.Frobnicate"
    resp = await raw_call(lat, signed(lat, actor, "KeyValue.Get", b"\x01"))
    assert resp.error is not None and resp.error.startswith("deserialization: ")

    # Health: msgpack HealthCheckResponse, plus (started by a Lattice host) the linked actors.
    msg = await lat.nc.request(subjects.provider_health(lat.name, KVMEM, "default"), b"\x80",
                               timeout=2)
    assert msgpack.unpackb(msg.data) == {"healthy": True, "lattice_links": [actor]}


async def served(lat: Lattice, actor: str) -> bool:
    """True once kvmem answers this actor (i.e. it is running and the actor is linked)."""
    await lat.kv(actor, KVMEM, "KeyValue.Contains", "probe", timeout=0.5)
    return True


async def test_two_megabyte_request_and_response_are_chunked(lattice: Lattice) -> None:
    lat = lattice
    actor = new_actor()
    lat.link(actor, KVMEM)
    await lat.sup.start("kvmem")
    big = "x" * 2_000_000
    await lat.kv(actor, KVMEM, "KeyValue.Set", SetRequest("big", big))
    got = await lat.kv(actor, KVMEM, "KeyValue.Get", "big")
    assert got.exists and got.value == big
    # The objects were consumed (deleted) by their readers.
    store = await lat.nc.jetstream().object_store(lat.name)
    await eventually(lambda: _no_objects(store), timeout=3)


async def _no_objects(store: Any) -> bool:
    try:
        return not [o for o in await store.list() if not o.deleted]
    except Exception as exc:  # nats-py raises when the bucket holds nothing
        return "no objects" in str(exc).lower() or type(exc).__name__ == "NotFoundError"


async def test_process_provider_follows_link_puts_and_deletes(lattice: Lattice) -> None:
    lat = lattice
    first, later = new_actor(), new_actor()
    lat.link(first, KVMEM)
    await lat.sup.start("kvmem")
    link = LinkDefinition(later, KVMEM, KV, "default", {})

    await lat.sup.link_put(link)
    await lat.sup.link_put(link)  # duplicates (every host re-announces) are harmless
    await eventually(lambda: served(lat, later))
    await lat.kv(later, KVMEM, "KeyValue.Set", SetRequest("a", "1"))
    assert await lat.kv(later, KVMEM, "KeyValue.Get", "a") == GetResponse("1", True)

    await lat.sup.link_del(link)

    async def refused() -> bool:
        try:
            await lat.kv(later, KVMEM, "KeyValue.Get", "a")
        except RpcError as exc:
            return str(exc) == f"unlinked actor: '{later}'"
        return False

    await eventually(refused)
    await lat.sup.link_put(link)
    await eventually(lambda: served(lat, later))
    # del_link dropped the actor's data; the other actor was not affected.
    assert await lat.kv(later, KVMEM, "KeyValue.Get", "a") == GetResponse("", False)
    assert await lat.kv(first, KVMEM, "KeyValue.Contains", "a") is False


async def test_shutdown_request_stops_it_unless_for_another_host(lattice: Lattice) -> None:
    lat = lattice
    info = await lat.sup.start("kvmem")
    assert info.pid is not None
    subject = subjects.provider_shutdown(lat.name, KVMEM, "default")
    other_host = KeyPair.generate(KeyRole.SERVER).public_key
    with pytest.raises(nats.errors.TimeoutError):
        await lat.nc.request(subject, json.dumps({"host_id": other_host}).encode(), timeout=0.5)
    assert alive(info.pid)
    msg = await lat.nc.request(subject, json.dumps({"host_id": lat.host.public_key}).encode(),
                               timeout=3)
    assert msg.data == b"shutting down"
    await eventually(lambda: not alive(info.pid))
    # A clean exit we did not ask for is a stop, not a crash: no restart.
    event = await lat.wait_event("provider_stopped")
    assert event["data"]["reason"] == "normal"
    await eventually(lambda: lat.sup.list() == [])


def _host_data_for(lat: Lattice, actor: str) -> HostData:
    return HostData(host_id=lat.host.public_key, lattice_rpc_prefix=lat.name,
                    link_name="default", lattice_rpc_url=lat.url.removeprefix("nats://"),
                    provider_key=KVMEM, invocation_seed=lat.cluster.seed, instance_id="i-1",
                    link_definitions=[LinkDefinition(actor, KVMEM, KV)],
                    cluster_issuers=[lat.cluster.public_key], log_level="debug")


@pytest.mark.parametrize("how", ["stdin-eof", "sigterm"])
async def test_process_exits_when_the_host_goes_away(lattice: Lattice, how: str) -> None:
    lat = lattice
    actor = new_actor()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "providers.kvmem", stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(_host_data_for(lat, actor).encode())  # host:port URL, as OTP sends
        await proc.stdin.drain()
        await eventually(lambda: served(lat, actor), timeout=10)
        if how == "stdin-eof":
            proc.stdin.close()
        else:
            proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 5) == 0
        lines = (await proc.stderr.read()).decode().splitlines()
        logs = [json.loads(line) for line in lines]  # every line is one JSON object
        stopping = [d for d in logs if d["msg"] == "provider stopping"]
        assert stopping and stopping[0]["reason"] == (
            "stdin closed" if how == "stdin-eof" else "SIGTERM")
        assert any(d["msg"] == "actor linked" and d["actor"] == actor for d in logs)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_unreadable_host_data_exits_with_an_error() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "providers.kvmem", stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(b"garbage!\n"), 10)
    assert proc.returncode == 2
    doc = json.loads(err.decode().splitlines()[-1])
    assert doc["level"] == "error" and "HostData" in doc["error"]


# ---- the bridge in-process, with a provider that records what happens ---------------------------


class Recorder(Provider):
    contract_id = "lattice:test"
    name = "recorder"

    def __init__(self) -> None:
        self.host_data: HostData | None = None
        self.puts: list[LinkDefinition] = []
        self.dels: list[LinkDefinition] = []
        self.state: tuple[bool, str | None] = (True, None)
        self.shutdowns = 0

    async def init(self, host_data: HostData) -> None:
        self.host_data = host_data

    async def put_link(self, link: LinkDefinition) -> None:
        if link.values.get("reject"):
            raise ValueError("bad link config")
        self.puts.append(link)

    async def del_link(self, link: LinkDefinition) -> None:
        self.dels.append(link)

    async def health(self) -> tuple[bool, str | None]:
        return self.state

    async def shutdown(self) -> None:
        self.shutdowns += 1

    # Test.Echo: not a known contract operation, so raw bytes in and out.
    async def echo(self, ctx: Any, payload: bytes) -> bytes:
        return ctx.link.values.get("prefix", "").encode() + payload

    async def fail(self, ctx: Any, payload: bytes) -> bytes:
        raise ProviderError("invalid parameter: no such thing")

    async def boom(self, ctx: Any, payload: bytes) -> bytes:
        raise RuntimeError("kaboom")

    async def call_back(self, ctx: Any, payload: bytes) -> bytes:
        return await ctx.bridge.call_actor(ctx.actor, "Test.Ping", payload)

    # A known contract operation: the SDK decodes str and encodes bool.
    async def contains(self, ctx: Any, key: str) -> bool:
        return key == "yes"


def _recorder_host_data(lat: Lattice, key: str, actor: str, host_id: str | None = None
                        ) -> HostData:
    return HostData(host_id=host_id or lat.host.public_key, lattice_rpc_prefix=lat.name,
                    lattice_rpc_url=lat.url, provider_key=key, invocation_seed=lat.cluster.seed,
                    link_definitions=[LinkDefinition(actor, key, "lattice:test", "default",
                                                     {"prefix": "pre:"})],
                    cluster_issuers=[lat.cluster.public_key], config_json="{}")


async def test_bridge_links_calls_callbacks_health_and_shutdown(
        lattice: Lattice, caplog: pytest.LogCaptureFixture) -> None:
    lat = lattice
    key = KeyPair.generate(KeyRole.SERVICE).public_key
    actor, second, rejected, late = new_actor(), new_actor(), new_actor(), new_actor()
    rec = Recorder()
    hd = _recorder_host_data(lat, key, actor)
    bridge = ProviderBridge(rec, hd)  # connects by itself, as in a provider process
    await bridge.start()
    try:
        assert rec.host_data is hd and [p.actor_id for p in rec.puts] == [actor]

        put = subjects.provider_linkdefs_put(lat.name, key, "default")
        dele = subjects.provider_linkdefs_del(lat.name, key, "default")

        def wire(a: str, values: dict[str, str]) -> bytes:
            return msgpack.packb(LinkDefinition(a, key, "lattice:test", "default",
                                                values).to_wire())

        with caplog.at_level(logging.ERROR, logger="lattice.provider"):
            await lat.nc.publish(put, wire(actor, {"prefix": "changed:"}))  # duplicate: ignored
            await lat.nc.publish(put, wire(rejected, {"reject": "1"}))     # refused by the hook
            await lat.nc.publish(put, wire(second, {"prefix": "2:"}))
            await eventually(lambda: second in bridge.links)
        assert [p.actor_id for p in rec.puts] == [actor, second]
        assert bridge.links[actor].values == {"prefix": "pre:"}
        assert rejected not in bridge.links
        refusal = [r for r in caplog.records if getattr(r, "actor", None) == rejected]
        assert refusal and refusal[0].error == "bad link config"

        provider = Entity.provider(key, "lattice:test")
        rpc = lat.rpc()
        assert await rpc.invoke(Entity.actor(actor), provider, "Test.Echo", b"hi") == b"pre:hi"
        assert await rpc.invoke(Entity.actor(second), provider, "Test.Echo", b"hi") == b"2:hi"
        contains = contracts.operation("KeyValue.Contains")
        out = await rpc.invoke(Entity.actor(actor), provider, "KeyValue.Contains",
                               contains.encode_input("yes"))
        assert contains.decode_output(out) is True
        for op, text in (("Test.Fail", "invalid parameter: no such thing"),
                         ("Test.Boom", "kaboom"), ("Test.Nothing", "method not handled "
                                                                   "Test.Nothing")):
            with pytest.raises(RpcError) as err:
                await rpc.invoke(Entity.actor(actor), provider, op, b"")
            assert str(err.value) == text
        with pytest.raises(RpcError, match=f"unlinked actor: '{rejected}'"):
            await rpc.invoke(Entity.actor(rejected), provider, "Test.Echo", b"")

        # Provider → actor: signed with the invocation seed, origin = this provider's entity.
        chunks = ChunkStore(lat.nc, lat.name)
        seen: list[Any] = []

        async def fake_actor(msg: Any) -> None:
            inv = await accept(msg.data, issuers=[lat.cluster.public_key], chunks=chunks)
            seen.append(inv)
            await msg.respond(await reply(inv.id, result=b"pong:" + inv.msg, chunks=chunks))

        await lat.nc.subscribe(subjects.actor(lat.name, actor), cb=fake_actor)
        assert await rpc.invoke(Entity.actor(actor), provider, "Test.CallBack", b"x") == b"pong:x"
        assert seen[0].origin == Entity(key, "lattice:test", "default")
        assert seen[0].target == Entity(actor) and seen[0].operation == "Test.Ping"
        assert seen[0].host_id == lat.host.public_key

        # Embedded short-circuit: no checks, and a link the NATS put has not delivered yet.
        assert await bridge.dispatch(second, "Test.Echo", b"d") == b"2:d"
        assert await bridge.dispatch(late, "Test.Echo", b"d", link=LinkDefinition(
            late, key, "lattice:test", "default", {"prefix": "late:"})) == b"late:d"
        with pytest.raises(ProviderError, match="method not handled"):
            await bridge.dispatch(actor, "Test.Missing", b"")

        # Deletes: by actor id, idempotent.
        await lat.nc.publish(dele, wire(second, {}))
        await lat.nc.publish(dele, wire(second, {}))
        await eventually(lambda: second not in bridge.links)
        await lat.nc.flush()
        await asyncio.sleep(0.1)
        assert [d.actor_id for d in rec.dels] == [second]

        # Health follows the hook.
        health = subjects.provider_health(lat.name, key, "default")
        rec.state = (False, "database down")
        msg = await lat.nc.request(health, b"\x80", timeout=2)
        assert msgpack.unpackb(msg.data) == {"healthy": False, "message": "database down"}

        # Shutdown: another host's request is ignored; ours stops the bridge.
        shutdown = subjects.provider_shutdown(lat.name, key, "default")
        with pytest.raises(nats.errors.TimeoutError):
            await lat.nc.request(shutdown, b'{"host_id": "NOTHER"}', timeout=0.3)
        assert not bridge.stopped and rec.shutdowns == 0
        msg = await lat.nc.request(shutdown, json.dumps({"host_id": hd.host_id}).encode(),
                                   timeout=3)
        assert msg.data == b"shutting down"
        await asyncio.wait_for(bridge.wait_stopped(), 3)
        assert rec.shutdowns == 1
    finally:
        await bridge.stop()


async def test_bridge_test_mode_uses_json(lattice: Lattice) -> None:
    lat = lattice
    key = KeyPair.generate(KeyRole.SERVICE).public_key
    actor, other = new_actor(), new_actor()
    rec = Recorder()
    bridge = ProviderBridge(rec, _recorder_host_data(lat, key, actor, host_id="_TEST_"),
                            nc=lat.nc)  # embedded: shares the caller's connection
    await bridge.start()
    try:
        link = LinkDefinition(other, key, "lattice:test", "default", {})
        await lat.nc.publish(subjects.provider_linkdefs_put(lat.name, key, "default"),
                             json.dumps(link.to_wire()).encode())
        await eventually(lambda: other in bridge.links)
        msg = await lat.nc.request(subjects.provider_health(lat.name, key, "default"), b"{}",
                                   timeout=2)
        assert json.loads(msg.data) == {"healthy": True}
    finally:
        await bridge.stop()
    assert not lat.nc.is_closed  # an embedded bridge never closes the host's connection
    assert rec.shutdowns == 1
