"""Two hosts on one real nats-server: actors, a provider process, links, RPC, chunking, live
update, reconnects and forgeries, driven over the control interface like a client would."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path

import msgpack
import pytest
from nats.errors import NoRespondersError

from contracts import keyvalue, messaging
from lattice.ctl import EventStream
from lattice.keys import KeyPair, KeyRole
from lattice.links import LinkDefinition
from lattice.natsd import NatsServer
from lattice.rpc import Entity, RpcError, new_invocation
from lattice.rpc.invocation import InvocationResponse
from tests.actors import forward_payload
from tests.harness import Lattice, eventually, until

pytestmark = pytest.mark.service

REQUEST = bytes.fromhex(
    "85a66d6574686f64a3474554a470617468a42f666f6fab7175657279537472696e67a3613d31a6686561646572"
    "81a661636365707491a32a2f2aa4626f6479c40568656c6c6f")


def counter_of(response: bytes) -> int:
    return json.loads(msgpack.unpackb(response)["body"])["counter"]


async def test_actor_on_one_host_calls_a_provider_started_by_the_other(lattice):
    a, b = await lattice.host(), await lattice.host()
    kvc = await lattice.start_actor(a, lattice.module(
        "kvcounter", caps=["wasmcloud:httpserver", "wasmcloud:keyvalue"]))
    # link first, provider afterwards: the link reaches it in HostData
    provider = KeyPair.from_raw_seed(
        KeyRole.SERVICE, hashlib.sha256(b"lattice-provider:kvmem").digest()).public_key
    ack = await lattice.ctl("linkdefs", "put", body={
        "actor_id": kvc, "provider_id": provider, "contract_id": "wasmcloud:keyvalue"})
    assert ack["accepted"], ack
    assert await lattice.start_provider(b, "kvmem") == provider
    assert counter_of(await lattice.call(kvc, "HttpServer.HandleRequest", REQUEST)) == 1
    assert counter_of(await lattice.call(kvc, "HttpServer.HandleRequest", REQUEST)) == 2

    # every host sees the link and the claims (from the KV bucket)
    links = (await lattice.ctl("get", "links"))["links"]
    assert [(ln["actor_id"], ln["provider_id"]) for ln in links] == [(kvc, provider)]
    names = {c["name"]: c for c in (await lattice.ctl("get", "claims"))["claims"]}
    assert names["kvcounter"]["caps"] == "wasmcloud:httpserver,wasmcloud:keyvalue"
    assert names["kvmem"]["contract_id"] == "wasmcloud:keyvalue"
    assert all(isinstance(v, str) for c in names.values() for v in c.values())


async def test_link_put_after_the_provider_started(lattice):
    a, b = await lattice.host(), await lattice.host()
    provider = await lattice.start_provider(b, "kvmem")
    kvc = await lattice.start_actor(a, lattice.module(
        "kvcounter", caps=["wasmcloud:httpserver", "wasmcloud:keyvalue"]))
    with pytest.raises(RpcError, match="no provider is linked for wasmcloud:keyvalue"):
        await lattice.call(kvc, "HttpServer.HandleRequest", REQUEST)
    await lattice.ctl("linkdefs", "put", body={
        "actor_id": kvc, "provider_id": provider, "contract_id": "wasmcloud:keyvalue"})
    await until(lambda: len(a.store.links) == 1)
    assert counter_of(await eventually(
        lambda: lattice.call(kvc, "HttpServer.HandleRequest", REQUEST))) == 1
    # and a link deleted is gone for both hosts
    ack = await lattice.ctl("linkdefs", "del", body={"actor_id": kvc,
                                                     "contract_id": "wasmcloud:keyvalue"})
    assert ack["accepted"]
    await until(lambda: len(a.store.links) == 0 and len(b.store.links) == 0)


async def test_links_written_straight_into_the_bucket_count(lattice):
    # control-interface clients of the wash 0.60-0.63 era write LINKDEF_ keys themselves
    a = await lattice.host()
    provider = await lattice.start_provider(a, "kvmem")
    fwd = await lattice.start_actor(a, lattice.module("forward", caps=["wasmcloud:keyvalue"]))
    kv = await lattice.nc.jetstream().key_value("LATTICEDATA_default")
    link = LinkDefinition(fwd, provider, "wasmcloud:keyvalue")
    wire = link.to_wire()
    del wire["id"]  # written without an id, as the Rust host and ctl client do
    await kv.put("LINKDEF_" + link.id, json.dumps(wire).encode())
    await until(lambda: len(a.store.links) == 1)
    op = keyvalue.OPERATIONS
    set_op = next(o for o in op if o.name == "KeyValue.Set")
    get_op = next(o for o in op if o.name == "KeyValue.Get")
    await eventually(lambda: lattice.call(fwd, "KeyValue.Set", forward_payload(
        "default", "wasmcloud:keyvalue",
        set_op.encode_input(keyvalue.SetRequest(key="k", value="v", expires=0)))))
    got = get_op.decode_output(await lattice.call(fwd, "KeyValue.Get", forward_payload(
        "default", "wasmcloud:keyvalue", get_op.encode_input("k"))))
    assert (got.value, got.exists) == ("v", True)


async def test_two_megabytes_travel_through_chunking_both_ways(lattice):
    a, b = await lattice.host(), await lattice.host()
    provider = await lattice.start_provider(b, "kvmem")
    fwd = await lattice.start_actor(a, lattice.module("forward", caps=["wasmcloud:keyvalue"]))
    await lattice.ctl("linkdefs", "put", body={
        "actor_id": fwd, "provider_id": provider, "contract_id": "wasmcloud:keyvalue"})
    await until(lambda: b.store.links_for_provider(provider, "default"))
    big = "x" * (2 * 1024 * 1024)
    set_op = keyvalue.OPERATIONS[1]
    get_op = keyvalue.OPERATIONS[0]
    assert (set_op.name, get_op.name) == ("KeyValue.Set", "KeyValue.Get")
    # client → host A → actor → host call → NATS (chunked) → provider on B, and back
    await eventually(lambda: lattice.call(fwd, "KeyValue.Set", forward_payload(
        "default", "wasmcloud:keyvalue",
        set_op.encode_input(keyvalue.SetRequest(key="big", value=big, expires=0)))))
    got = await lattice.call(fwd, "KeyValue.Get", forward_payload(
        "default", "wasmcloud:keyvalue", get_op.encode_input("big")))
    assert get_op.decode_output(got).value == big
    # nothing is left behind in the object store named after the lattice
    assert await lattice.chunk_leftovers() == []


async def test_forged_invocations_are_rejected_by_the_host(lattice):
    a = await lattice.host()
    echo = await lattice.start_actor(a, lattice.module("echo", caps=["wasmcloud:httpserver"]))
    subject = f"wasmbus.rpc.default.{echo}"

    async def send(inv) -> str | None:
        reply = await lattice.nc.request(subject, inv.encode(), timeout=5)
        return InvocationResponse.decode(reply.data).error

    good = new_invocation(lattice.me, Entity.actor(echo), "HttpServer.HandleRequest", REQUEST,
                          cluster_key=lattice.cluster, host_id=a.host_id)
    assert await send(good) is None
    untrusted = new_invocation(lattice.me, Entity.actor(echo), "HttpServer.HandleRequest",
                               REQUEST, cluster_key=KeyPair.generate(KeyRole.CLUSTER),
                               host_id=a.host_id)
    assert "not among the list of valid issuers" in await send(untrusted)
    tampered = new_invocation(lattice.me, Entity.actor(echo), "HttpServer.HandleRequest",
                              REQUEST, cluster_key=lattice.cluster, host_id=a.host_id)
    tampered.msg = REQUEST.replace(b"hello", b"HELLO")
    assert "Invocation hash does not match" in await send(tampered)
    retargeted = new_invocation(lattice.me, Entity.actor(lattice.me.public_key),
                                "HttpServer.HandleRequest", REQUEST, cluster_key=lattice.cluster,
                                host_id=a.host_id)
    retargeted.target = Entity.actor(echo)
    assert (await send(retargeted)).startswith("Anti-forgery check failed")
    reply = await lattice.nc.request(subject, b"garbage", timeout=5)
    assert InvocationResponse.decode(reply.data).error == "Failed to deserialize invocation"
    # a provider-origin call needs the contract among the target actor's claims
    forged_provider = new_invocation(
        Entity.provider("V" + "A" * 55, "wasmcloud:keyvalue", "default"), Entity.actor(echo),
        "HttpServer.HandleRequest", REQUEST, cluster_key=lattice.cluster, host_id=a.host_id)
    assert await send(forged_provider) == (
        "Invocation source does not have the required capability claim wasmcloud:keyvalue")


async def test_live_update_under_a_stream_of_calls_loses_none(lattice):
    a = await lattice.host()
    account, module = KeyPair.generate(KeyRole.ACCOUNT), KeyPair.generate(KeyRole.MODULE)
    v1 = lattice.module("echo", caps=["wasmcloud:httpserver"], rev=1, issuer=account,
                        subject=module)
    v2 = lattice.module("echo", caps=["wasmcloud:httpserver"], rev=2, issuer=account,
                        subject=module)
    echo = await lattice.start_actor(a, v1, count=4)
    failures: list[Exception] = []
    done = 0
    stop = asyncio.Event()

    async def caller() -> None:
        nonlocal done
        while not stop.is_set():
            try:
                await lattice.call(echo, "HttpServer.HandleRequest", REQUEST)
                done += 1
            except Exception as exc:  # any failure is the test failing
                failures.append(exc)

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    # Calls are flowing before the update and go on after it (counted, not timed).
    await until(lambda: done >= 20 or failures, timeout=30)
    ack = await lattice.ctl("cmd", a.host_id, "upd", body={"actor_id": echo,
                                                           "new_actor_ref": v2})
    assert ack["accepted"], ack
    await until(lambda: a.actors.actors[echo].revision == 2, timeout=30)
    after_update = done
    await until(lambda: done >= after_update + 20 or failures, timeout=30)
    stop.set()
    await asyncio.gather(*callers)
    assert failures == []
    inv = await lattice.ctl("get", a.host_id, "inv")
    assert {i["revision"] for i in inv["actors"][0]["instances"]} == {2}
    # a lower (or equal) revision is refused, and the failure event says why
    async with EventStream(lattice.nc, "default", {"actor_update_failed"}) as events:
        ack = await lattice.ctl("cmd", a.host_id, "upd", body={"actor_id": echo,
                                                               "new_actor_ref": v1})
        assert ack["accepted"]
        failed = await events.wait_for(lambda e: e.data.get("public_key") == echo, timeout=30)
    assert "revision 1, which is not higher" in failed.data["reason"], failed.data
    assert a.actors.actors[echo].revision == 2


async def test_call_aliases_resolve_across_hosts(lattice):
    a, b = await lattice.host(), await lattice.host()
    await lattice.start_actor(b, lattice.module("echo", call_alias="lattice/echo"))
    fwd = await lattice.start_actor(a, lattice.module("forward"))
    await until(lambda: "lattice/echo" in a.router.alias_table())
    out = await lattice.call(fwd, "HttpServer.HandleRequest",
                             forward_payload("", "lattice/echo", REQUEST))
    assert b'"path":"/foo"' in msgpack.unpackb(out)["body"]


async def test_hosts_reconnect_after_nats_restarts(tmp_path):
    server = NatsServer(tmp_path / "nats").start()
    lat = Lattice(server, tmp_path)
    try:
        await lat.connect()
        a = await lat.host()
        echo = await lat.start_actor(a, lat.module("echo"))
        assert await lat.call(echo, "HttpServer.HandleRequest", REQUEST)
        server.stop()
        await asyncio.sleep(1.0)
        server.start()

        async def served() -> bool:
            try:
                return bool(await lat.call(echo, "HttpServer.HandleRequest", REQUEST,
                                           timeout=1.0))
            except RpcError:
                return False

        deadline = time.monotonic() + 15
        while not await served():
            assert time.monotonic() < deadline, "the host did not serve again after a restart"
            await asyncio.sleep(0.25)
        # and the control interface is back too (its connection reconnects on its own)
        deadline = time.monotonic() + 15
        while True:
            try:
                inv = await lat.ctl("get", a.host_id, "inv")
                break
            except NoRespondersError:
                assert time.monotonic() < deadline, "the control interface did not come back"
                await asyncio.sleep(0.25)
        assert inv["actors"][0]["id"] == echo
    finally:
        await lat.close()
        server.kill()


async def test_ping_inventory_and_graceful_stop(lattice):
    a = await lattice.host(labels={"zone": "eu"})
    echo = await lattice.start_actor(a, lattice.module("echo"), count=2)
    inbox = lattice.nc.new_inbox()
    replies: list[dict] = []

    async def on(msg):
        replies.append(json.loads(msg.data))

    await lattice.nc.subscribe(inbox, cb=on)
    await lattice.nc.publish("wasmbus.ctl.default.ping.hosts", b"", reply=inbox)
    await until(lambda: replies)
    [pong] = replies
    assert pong["id"] == a.host_id and pong["labels"]["zone"] == "eu"
    assert pong["labels"]["hostcore.os"] and pong["lattice_prefix"] == "default"
    assert a.cluster_key.public_key in pong["cluster_issuers"].split(",")
    inv = await lattice.ctl("get", a.host_id, "inv")
    assert inv["host_id"] == a.host_id and len(inv["actors"][0]["instances"]) == 2
    assert inv["actors"][0]["id"] == echo

    events: list[str] = []

    async def on_event(msg):
        events.append(json.loads(msg.data)["type"].rsplit(".", 1)[-1])

    await lattice.nc.subscribe("wasmbus.evt.default", cb=on_event)
    await lattice.nc.flush()
    assert (await lattice.ctl("cmd", a.host_id, "stop"))["accepted"]
    await asyncio.wait_for(a.run_until_stopped(), 15)
    await until(lambda: "host_stopped" in events)
    assert "actors_stopped" in events
    with pytest.raises(RpcError, match="no host runs actor"):
        await lattice.call(echo, "HttpServer.HandleRequest", REQUEST, timeout=1.0)


REPO = Path(__file__).resolve().parents[2]
SLOW_PROVIDER = f"""#!{sys.executable}
import asyncio, sys
sys.path.insert(0, "{REPO}")
from lattice.provider import run_provider
from providers.kvmem import KvMemProvider

class SlowToLink(KvMemProvider):
    async def put_link(self, link):
        await asyncio.sleep(0.5)
        return await super().put_link(link)

run_provider(SlowToLink)
"""


async def test_relinking_to_another_provider_fails_no_call(lattice):
    """A link put naming a new provider for the same actor/contract/link name switches backends
    with no failed call, even when the new provider is remote and learns of the link late."""
    from providers.kvmem import KvMemProvider

    a, b = await lattice.host(), await lattice.host()
    fwd = await lattice.forwarder(a, "wasmcloud:keyvalue")
    local = await lattice.start_provider(a, "kvmem-local", provider_cls=KvMemProvider)
    await lattice.link(fwd, local, "wasmcloud:keyvalue")
    set_op, get_op = keyvalue.OPERATIONS[1], keyvalue.OPERATIONS[0]
    await lattice.host_call(fwd, "wasmcloud:keyvalue", set_op.name, set_op.encode_input(
        keyvalue.SetRequest(key="where", value="old backend", expires=0)))
    # The new backend is a separate process that takes its time accepting links, so calls
    # reach it before it knows the actor: the host must ride that out.
    slow = lattice.tmp / "slow-kv"
    slow.write_text(SLOW_PROVIDER)
    slow.chmod(0o755)
    ack = await lattice.ctl("cmd", b.host_id, "lp", body={
        "provider_ref": str(slow), "contract_id": "wasmcloud:keyvalue"})
    assert ack["accepted"], ack
    remote = await until(lambda: next(
        (p.public_key for p in b.providers.list() if p.state == "running"), None), timeout=20)

    failures: list[Exception] = []
    seen: list[bool] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            try:
                out = await lattice.host_call(fwd, "wasmcloud:keyvalue", get_op.name,
                                              get_op.encode_input("where"))
                seen.append(get_op.decode_output(out).exists)
            except Exception as exc:
                failures.append(exc)

    readers = [asyncio.create_task(reader()) for _ in range(4)]
    await until(lambda: len(seen) > 20)
    await lattice.link(fwd, remote, "wasmcloud:keyvalue")  # put over the existing link
    await until(lambda: seen and seen[-1] is False)  # the (empty) new backend answers
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*readers)
    assert failures == []
    assert True in seen and seen[-1] is False


async def test_embedded_providers_call_local_actors_without_nats(lattice):
    """An embedded provider delivering to an actor on its own host skips signing and NATS, and
    the host still refuses actors that do not claim the provider's contract."""
    from tests.harness import TAP_CONTRACT, TapProvider

    a = await lattice.host()
    tap_actor = await lattice.start_actor(a, lattice.module(
        "tap", caps=[TAP_CONTRACT, "wasmcloud:messaging"]))
    tap = await lattice.start_provider(a, "tap", provider_cls=TapProvider)
    await lattice.link(tap_actor, tap, TAP_CONTRACT)
    spy: list[bytes] = []

    async def on(msg):
        spy.append(msg.data)

    await lattice.nc.subscribe(f"wasmbus.rpc.default.{tap_actor}", cb=on)  # sees NATS copies
    await lattice.nc.flush()
    msgs = await lattice.start_provider(a, "messaging-nats", embedded=True)
    await lattice.link(tap_actor, msgs, "wasmcloud:messaging", SUBSCRIPTION="lattice.test.in")
    bridge = a.providers.embedded(msgs, "default")
    sub = messaging.SubMessage(subject="lattice.test.in", body=b"direct")
    op = messaging.OPERATIONS[2]
    assert op.name == "MessageSubscriber.HandleMessage"
    await bridge.call_actor(tap_actor, op.name, op.encode_input(sub))
    assert TapProvider.calls[-1][2].body == b"direct"
    await asyncio.sleep(0.2)
    assert spy == []  # nothing crossed NATS

    # an actor that does not claim wasmcloud:messaging is refused, as over NATS
    other = await lattice.start_actor(a, lattice.module("tap", caps=[TAP_CONTRACT]))
    with pytest.raises(RpcError, match="required capability claim wasmcloud:messaging"):
        await bridge.call_actor(other, op.name, op.encode_input(sub))
