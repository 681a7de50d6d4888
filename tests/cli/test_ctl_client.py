"""CtlClient against a real NATS server: exact subjects and JSON bodies (docs/wire.md §3.3), reply
parsing, scatter/gather, events, and the errors users see."""

from __future__ import annotations

import asyncio
import json
import time

import nats
import pytest

from lattice.connect import settle
from lattice.ctl import (
    CtlClient,
    CtlError,
    CtlTimeout,
    Event,
    HostInfo,
    HostInventory,
)
from tests.cli.conftest import ACTOR_KEY, CLUSTER, HOST_ID, PROVIDER_KEY


@pytest.fixture
async def ctl(nats_server):
    nc = await nats.connect(nats_server.url)
    yield CtlClient(nc, "default", timeout=1.0)
    await nc.close()


async def test_host_commands_send_the_documented_bodies(ctl, responder):
    await ctl.start_actor(HOST_ID, "file:///a/echo.wasm", 2, {"app": "x"})
    await ctl.stop_actor(HOST_ID, ACTOR_KEY)
    await ctl.scale_actor(HOST_ID, ACTOR_KEY, "file:///a/echo.wasm", 3)
    await ctl.update_actor(HOST_ID, ACTOR_KEY, "file:///a/echo2.wasm")
    await ctl.start_provider(HOST_ID, "kvmem", "other", '{"a": 1}', embedded=True,
                             contract_id="wasmcloud:keyvalue")
    await ctl.start_provider(HOST_ID, "kvmem")
    await ctl.stop_provider(HOST_ID, PROVIDER_KEY, "other", "wasmcloud:keyvalue")
    await ctl.stop_host(HOST_ID, timeout_ms=500)
    await ctl.put_label(HOST_ID, "zone", "eu")
    await ctl.del_label(HOST_ID, "zone")
    got = dict(responder.requests)
    cmd = f"cmd.{HOST_ID}."
    assert got[cmd + "la"] == {"actor_ref": "file:///a/echo.wasm", "count": 2,
                               "annotations": {"app": "x"}, "host_id": HOST_ID}
    assert got[cmd + "sa"] == {"actor_ref": ACTOR_KEY, "count": 0, "annotations": None,
                               "host_id": HOST_ID}
    assert got[cmd + "scale"] == {"actor_id": ACTOR_KEY, "actor_ref": "file:///a/echo.wasm",
                                  "count": 3, "annotations": None, "host_id": HOST_ID}
    assert got[cmd + "upd"] == {"actor_id": ACTOR_KEY, "new_actor_ref": "file:///a/echo2.wasm",
                                "annotations": None, "host_id": HOST_ID}
    launches = responder.bodies(cmd + "lp")
    assert launches[0] == {"provider_ref": "kvmem", "link_name": "other",
                           "configuration": '{"a": 1}', "annotations": None, "host_id": HOST_ID,
                           "embedded": True, "contract_id": "wasmcloud:keyvalue"}
    # Lattice extension fields are only sent when used, so other hosts see the plain OTP body.
    assert launches[1] == {"provider_ref": "kvmem", "link_name": "default", "configuration": "",
                           "annotations": None, "host_id": HOST_ID}
    assert got[cmd + "sp"] == {"provider_ref": PROVIDER_KEY, "link_name": "other",
                               "contract_id": "wasmcloud:keyvalue", "annotations": None,
                               "host_id": HOST_ID}
    assert got[cmd + "stop"] == {"host_id": HOST_ID, "timeout": 500}
    assert got[f"labels.{HOST_ID}.put"] == {"key": "zone", "value": "eu"}
    assert got[f"labels.{HOST_ID}.del"] == {"key": "zone"}


async def test_lattice_commands_and_queries(ctl, responder):
    await ctl.put_link(ACTOR_KEY, PROVIDER_KEY, "wasmcloud:keyvalue", values={"A": "1"})
    await ctl.del_link(ACTOR_KEY, "wasmcloud:keyvalue", "other")
    assert responder.bodies("linkdefs.put") == [
        {"actor_id": ACTOR_KEY, "provider_id": PROVIDER_KEY, "contract_id": "wasmcloud:keyvalue",
         "link_name": "default", "values": {"A": "1"}}]
    assert responder.bodies("linkdefs.del") == [
        {"actor_id": ACTOR_KEY, "contract_id": "wasmcloud:keyvalue", "link_name": "other"}]
    claims = await ctl.get_claims()
    assert {c["name"] for c in claims} == {"echo", "kvmem"}
    (link,) = await ctl.get_links()
    assert (link.actor_id, link.provider_id, link.values) == (ACTOR_KEY, PROVIDER_KEY,
                                                              {"BUCKET": "demo"})
    inv = await ctl.inventory(HOST_ID)
    assert inv.friendly_name == "calm-lake-7" and inv.actor(ACTOR_KEY).count == 2
    assert inv.provider(PROVIDER_KEY, "default").contract_id == "wasmcloud:keyvalue"
    (host,) = await ctl.ping_hosts(wait=0.3)
    assert host.id == HOST_ID and host.cluster_issuers == [CLUSTER, "C2"]
    assert host.labels["zone"] == "eu"


async def test_auctions_gather_matching_hosts(ctl, responder):
    (offer,) = await ctl.auction_actor("file:///e.wasm", {"zone": "eu"}, wait=0.3)
    assert offer.host_id == HOST_ID and offer.actor_ref == "file:///e.wasm"
    assert await ctl.auction_actor("file:///e.wasm", {"zone": "us"}, wait=0.3) == []
    (offer,) = await ctl.auction_provider("kvmem", "l2", {}, wait=0.3)
    assert (offer.provider_ref, offer.link_name) == ("kvmem", "l2")
    assert responder.bodies("auction.provider") == [
        {"provider_ref": "kvmem", "link_name": "l2", "constraints": {}}]
    started = time.monotonic()
    assert len(await ctl.auction_actor("x", {}, wait=5, limit=1)) == 1
    assert time.monotonic() - started < 2, "limit=1 must return on the first offer"


async def test_refused_command_raises_the_hosts_reason(ctl, responder):
    responder.refuse = "actor M… is not running on host N…"
    with pytest.raises(CtlError, match="is not running on host"):
        await ctl.stop_actor(HOST_ID, ACTOR_KEY)


async def test_nobody_listening_says_what_to_do(ctl, nats_server):
    started = time.monotonic()
    assert await ctl.ping_hosts(wait=5) == []
    assert time.monotonic() - started < 1, "no responders must end the gather at once"
    with pytest.raises(CtlError) as err:
        await ctl.get_links()
    msg = str(err.value)
    assert "no host answered on lattice default" in msg and nats_server.url in msg
    assert "lattice up" in msg
    with pytest.raises(CtlError, match="lattice get hosts"):
        await ctl.start_actor(HOST_ID, "file:///x.wasm")


async def test_silent_host_times_out_with_advice(ctl, nats_server):
    nc = await nats.connect(nats_server.url)

    async def ignore(msg: object) -> None:
        return None

    await nc.subscribe("wasmbus.ctl.default.get.links", cb=ignore)
    await settle(nc)
    ctl.timeout = 0.2
    with pytest.raises(CtlTimeout, match="--timeout"):
        await ctl.get_links()
    await nc.close()


async def test_events_are_parsed_filtered_and_awaited(ctl, nats_server):
    nc = await nats.connect(nats_server.url)

    def event(name: str, **data: object) -> bytes:
        return json.dumps({"specversion": "1.0", "type": f"com.wasmcloud.lattice.{name}",
                           "source": HOST_ID, "id": "1", "time": "t",
                           "datacontenttype": "application/json", "data": data}).encode()

    async with ctl.events({"actors_started", "actor_stopped"}) as stream:
        await nc.publish("wasmbus.evt.default", b"not json")
        await nc.publish("wasmbus.evt.default", event("host_heartbeat"))
        await nc.publish("wasmbus.evt.default", event("actors_started", public_key="M1",
                                                      count=2))
        await nc.publish("wasmbus.evt.default", event("actor_stopped", public_key="M2"))
        first = await stream.next(30)
        assert isinstance(first, Event)
        assert (first.name, first.source, first.data["count"]) == ("actors_started", HOST_ID, 2)
        found = await stream.wait_for(lambda e: e.data.get("public_key") == "M2", 30)
        assert found.name == "actor_stopped"
        with pytest.raises(CtlTimeout):  # everything published was consumed or filtered out
            await stream.wait_for(lambda e: True, 0.2)
    # wait_for_event subscribes on its own: publish until it has seen one (its 30 s bound and
    # the loop's are far apart, so only a waiter that never sees the event fails).
    waiter = asyncio.create_task(ctl.wait_for_event(lambda e: e.name == "host_stopped", 30))
    for _ in range(200):
        await nc.publish("wasmbus.evt.default", event("host_stopped"))
        done, _ = await asyncio.wait({waiter}, timeout=0.1)
        if done:
            break
    assert (await waiter).name == "host_stopped"
    await nc.close()


def test_reply_parsing_tolerates_every_generation():
    # OTP 0.57 listed one actor entry per instance and no issuer.
    inv = HostInventory.from_wire({"host_id": HOST_ID, "actors": [
        {"id": "M1", "name": "a", "image_ref": "r", "instances": [{"instance_id": "1"}]},
        {"id": "M1", "name": "a", "image_ref": "r", "instances": [{"instance_id": "2",
                                                                   "revision": "3"}]}],
        "providers": [{"id": "V1"}]})
    assert [a.count for a in inv.actors] == [2] and inv.actors[0].instances[1].revision == 3
    assert inv.providers[0].link_name == "default"
    host = HostInfo.from_wire({"id": "N1", "cluster_issuers": ["C1"], "labels": {"n": 1}})
    assert host.cluster_issuers == ["C1"] and host.labels == {"n": "1"}
