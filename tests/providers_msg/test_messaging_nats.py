"""messaging-nats through a lattice (docs/contracts.md §6.6), with the provider both spawned as a
process ("remote") and embedded in the host.

Actor → provider calls go through ``forward.wat``; deliveries (HandleMessage) go to ``tap.wat``,
which relays them to the embedded TapProvider that records them. Raw nats-py clients play the
other side. No fixed sleeps: a link reaches the provider asynchronously, so tests publish probe
messages until the actor sees one, and use NATS "no responders" to see a subscription gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from nats.aio.msg import Msg
from nats.errors import NoRespondersError

import contracts
from contracts.messaging import (
    CONTRACT_ID,
    HANDLE_MESSAGE,
    PUBLISH,
    REQUEST,
    PubMessage,
    ReplyMessage,
    RequestMessage,
    SubMessage,
)
from lattice.connect import settle
from lattice.host import Host
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import free_port
from lattice.rpc import RpcError
from providers.messaging_nats import TIMEOUT_ERROR, MessagingNatsProvider
from tests.harness import TAP_CONTRACT, Lattice, TapProvider, eventually, until

pytestmark = pytest.mark.service

PROBE = b"probe"


def encode(operation: str, value: Any) -> bytes:
    return contracts.operation(operation).encode_input(value)


def deliveries(actor: str | None = None) -> list[SubMessage]:
    return [m for a, op, m in TapProvider.calls
            if op == HANDLE_MESSAGE and (actor is None or a == actor)]


def bodies(actor: str | None = None, prefix: bytes = b"") -> list[bytes]:
    return [m.body for m in deliveries(actor) if m.body.startswith(prefix) and m.body != PROBE]


@dataclass
class Env:
    lattice: Lattice
    host: Host
    provider: str
    embedded: bool
    tap: str = ""
    actors: list[str] = field(default_factory=list)

    def instance(self) -> MessagingNatsProvider:
        """The provider object (embedded mode only)."""
        bridge = self.host.providers.embedded(self.provider, "default")
        assert bridge is not None and isinstance(bridge.provider, MessagingNatsProvider)
        return bridge.provider

    async def forwarder(self, **values: str) -> str:
        actor = await self.lattice.forwarder(self.host, CONTRACT_ID)
        await self.lattice.link(actor, self.provider, CONTRACT_ID, **values)
        return actor

    async def call(self, actor: str, operation: str, value: Any) -> bytes:
        return await self.lattice.host_call(actor, CONTRACT_ID, operation,
                                            encode(operation, value))

    async def subscriber(self, **values: str) -> str:
        """A tap.wat actor linked to the TapProvider and then to messaging-nats."""
        if not self.tap:
            self.tap = await self.lattice.start_provider(self.host, "tap",
                                                         provider_cls=TapProvider)
        path = self.lattice.module("tap", caps=[CONTRACT_ID, TAP_CONTRACT])
        actor = await self.lattice.start_actor(self.host, path)
        await self.lattice.link(actor, self.tap, TAP_CONTRACT)
        await self.lattice.link(actor, self.provider, CONTRACT_ID, **values)
        return actor

    async def probe(self, subject: str, *actors: str) -> None:
        """Publish probes until every actor got one: its subscription is live."""
        nc = self.lattice.nc

        async def seen() -> bool:
            await nc.publish(subject, PROBE)
            await nc.flush()
            return all(any(m.body == PROBE for m in deliveries(a)) for a in actors)

        await eventually_true(seen, timeout=15)

    async def gone(self, subject: str) -> None:
        """Until nobody subscribes to ``subject`` (the server answers "no responders")."""
        async def no_interest() -> bool:
            try:
                await self.lattice.nc.request(subject, PROBE, timeout=0.5)
            except NoRespondersError:
                return True
            except TimeoutError:
                return False
            return False

        await eventually_true(no_interest, timeout=15)


async def eventually_true(check: Any, timeout: float) -> None:
    """Await ``check()`` until it is true (a polling interval, not a synchronising sleep)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


@pytest.fixture(params=[False, True], ids=["remote", "embedded"])
async def env(request: pytest.FixtureRequest, lattice: Lattice) -> Env:
    host = await lattice.host()
    key = await lattice.start_provider(host, "messaging-nats", embedded=request.param)
    return Env(lattice, host, key, request.param)


async def test_publish_reaches_a_nats_subscriber(env: Env) -> None:
    nc = env.lattice.nc
    sub = await nc.subscribe("app.publish")
    await settle(nc)
    actor = await env.forwarder()
    out = await eventually(lambda: env.call(
        actor, PUBLISH, PubMessage(subject="app.publish", reply_to="app.reply", body=b"hello")))
    assert out == b""
    msg = await sub.next_msg(timeout=5)
    assert (msg.subject, msg.reply, msg.data) == ("app.publish", "app.reply", b"hello")
    # Without replyTo the message carries no reply subject.
    await env.call(actor, PUBLISH, PubMessage(subject="app.publish", body=b"bare"))
    msg = await sub.next_msg(timeout=5)
    assert (msg.reply, msg.data) == ("", b"bare")


async def test_request_reply(env: Env) -> None:
    nc = env.lattice.nc

    async def respond(msg: Msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    await nc.subscribe("app.service", cb=respond)
    await settle(nc)
    actor = await env.forwarder()
    raw = await eventually(lambda: env.call(
        actor, REQUEST, RequestMessage(subject="app.service", body=b"ping", timeout_ms=2000)))
    reply = contracts.operation(REQUEST).decode_output(raw)
    assert isinstance(reply, ReplyMessage)
    assert reply.body == b"pong:ping"
    assert reply.subject.startswith("_INBOX.") and reply.reply_to is None


async def test_request_errors(env: Env) -> None:
    nc = env.lattice.nc
    await nc.subscribe("app.silent")  # listens, never answers
    await settle(nc)
    actor = await env.forwarder()
    # A publish proves the link reached the provider before we look at error texts.
    await eventually(lambda: env.call(actor, PUBLISH, PubMessage(subject="app.nobody")))
    with pytest.raises(RpcError, match=TIMEOUT_ERROR):  # 0 ms = immediate timeout
        await env.call(actor, REQUEST, RequestMessage(subject="app.silent", timeout_ms=0))
    with pytest.raises(RpcError, match=TIMEOUT_ERROR):
        await env.call(actor, REQUEST, RequestMessage(subject="app.silent", timeout_ms=200))
    with pytest.raises(RpcError, match="nats: no responders"):
        await env.call(actor, REQUEST, RequestMessage(subject="app.nobody", timeout_ms=1000))


async def test_subscription_delivers_to_the_actor(env: Env) -> None:
    actor = await env.subscriber(SUBSCRIPTION="app.events, app.other")
    await env.probe("app.events", actor)
    nc = env.lattice.nc
    await nc.publish("app.events", b"payload-1", reply="app.inbox.1")
    await nc.publish("app.other", b"payload-2")
    await nc.flush()
    await until(lambda: len(bodies(actor, b"payload-")) == 2)
    got = {m.body: m for m in deliveries(actor)}
    assert got[b"payload-1"] == SubMessage(subject="app.events", reply_to="app.inbox.1",
                                           body=b"payload-1")
    assert got[b"payload-2"] == SubMessage(subject="app.other", reply_to=None, body=b"payload-2")


async def test_queue_subscription_delivers_each_message_once(env: Env) -> None:
    first = await env.subscriber(SUBSCRIPTION="jobs.in|workers")
    second = await env.subscriber(SUBSCRIPTION="jobs.in|workers")
    await env.probe("jobs.in", first, second)  # both members are in the group
    nc = env.lattice.nc
    sent = [f"job-{i}".encode() for i in range(40)]
    for body in sent:
        await nc.publish("jobs.in", body)
    await nc.flush()
    await until(lambda: len(bodies(None, b"job-")) >= len(sent))
    got = bodies(first, b"job-") + bodies(second, b"job-")
    assert sorted(got) == sorted(sent)  # every job exactly once, across the group


async def test_unlink_stops_deliveries(env: Env) -> None:
    actor = await env.subscriber(SUBSCRIPTION="app.unlink")
    await env.probe("app.unlink", actor)
    await env.lattice.unlink(actor, CONTRACT_ID)
    await env.gone("app.unlink")  # the provider dropped the subscription (and connection)
    if env.embedded:
        assert actor not in env.instance().conns
    nc = env.lattice.nc
    for i in range(5):
        await nc.publish("app.unlink", f"after-{i}".encode())
    await nc.flush()  # the server has processed (and, lacking interest, dropped) them
    assert bodies(actor, b"after-") == []


async def test_many_messages_with_bounded_concurrency(env: Env) -> None:
    if env.embedded:
        env.instance().max_concurrent = 8  # small enough to be reached
    actor = await env.subscriber(SUBSCRIPTION="app.bulk")
    await env.probe("app.bulk", actor)
    nc = env.lattice.nc
    sent = [f"bulk-{i}".encode() for i in range(200)]
    for body in sent:
        await nc.publish("app.bulk", body)
    await nc.flush()
    await until(lambda: len(bodies(actor, b"bulk-")) >= len(sent), timeout=30)
    assert sorted(bodies(actor, b"bulk-")) == sorted(sent)
    if env.embedded:
        subscriber = env.instance().conns[actor].subscribers[0]
        assert 1 <= subscriber.peak <= 8
        assert subscriber.failed == 0


def refusals(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """actor → error text of every "link refused" record (embedded, or relayed from the child)."""
    return {getattr(r, "actor", ""): str(getattr(r, "error", ""))
            for r in caplog.records if r.getMessage() == "link refused by the provider"}


async def test_bad_links_are_refused(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    loop = await env.forwarder(SUBSCRIPTION="app.ok,wasmbus.evt.default")
    others = {
        "jwt": {"CLIENT_JWT": "eyJhbGciOi"},
        "uri": {"URI": f"127.0.0.1:{free_port()}"},
        "subject": {"SUBSCRIPTION": "bad subject"},
    }
    keys = {}
    for what, values in others.items():
        keys[what] = KeyPair.generate(KeyRole.MODULE).public_key
        await env.lattice.link(keys[what], env.provider, CONTRACT_ID, **values)
    await until(lambda: {loop, *keys.values()} <= refusals(caplog).keys(), timeout=20)
    errors = refusals(caplog)
    assert "feedback loop" in errors[loop] and "wasmbus.evt.default" in errors[loop]
    assert errors[keys["jwt"]].startswith("invalid parameter: CLIENT_JWT")
    assert "cannot connect" in errors[keys["uri"]]
    assert "not a valid NATS subject" in errors[keys["subject"]]
    # The refused actor is not linked: its calls fail and nothing subscribed for it.
    with pytest.raises(RpcError, match=r"unlinked actor|actor not linked"):
        await env.call(loop, PUBLISH, PubMessage(subject="app.ok"))
    with pytest.raises(NoRespondersError):
        await env.lattice.nc.request("app.ok", b"", timeout=1)


@pytest.mark.parametrize("embedded", [False, True], ids=["remote", "embedded"])
async def test_provider_config_supplies_defaults(lattice: Lattice, embedded: bool) -> None:
    host = await lattice.host()
    config = json.dumps({"subscriptions": ["app.default"], "cluster_uris": [lattice.server.url]})
    key = await lattice.start_provider(host, "messaging-nats", embedded=embedded, config=config)
    env = Env(lattice, host, key, embedded)
    plain = await env.subscriber()  # empty link values: the provider's defaults as they are
    await env.probe("app.default", plain)
    await lattice.nc.publish("app.default", b"default-1", reply="app.r")
    await until(lambda: bodies(plain, b"default-"))
    got = [m for m in deliveries(plain) if m.body == b"default-1"]
    assert got == [SubMessage("app.default", "app.r", b"default-1")]
