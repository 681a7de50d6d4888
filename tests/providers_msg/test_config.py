"""messaging-nats link-value parsing and the delivery bound, without a host.

The bound is checked against a real nats-server with a stand-in bridge whose ``call_actor``
blocks: exactly ``max_concurrent`` deliveries get in flight, then everything drains.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest

import contracts
from contracts.messaging import HANDLE_MESSAGE, SubMessage
from lattice.connect import NatsOptions, connect
from lattice.links import LinkDefinition
from lattice.provider import HostData, ProviderError
from providers.messaging_nats import (
    MAX_CONCURRENT_DELIVERIES,
    ConnectionConfig,
    MessagingNatsProvider,
    SubscriptionSpec,
    nats_url,
    overlaps_lattice,
    parse_subscriptions,
)
from tests.harness import until

ACTOR = "MACTOR"


def test_values_applied_over_config_json() -> None:
    doc = {"subscriptions": ["a.b"], "cluster_uris": ["nats://x:1"], "auth_jwt": "J",
           "auth_seed": "S", "tls_ca_file": "/ca.pem"}
    cfg = ConnectionConfig.from_values({"config_json": json.dumps(doc), "SUBSCRIPTION": "c,d|q",
                                        "URI": "y:2,z:3"})
    assert cfg.subscriptions == ["a.b", "c", "d|q"]  # appended
    assert cfg.cluster_uris == ["y:2", "z:3"]        # URI replaces; the first one is used
    assert (cfg.auth_jwt, cfg.auth_seed, cfg.tls_ca_file) == ("J", "S", "/ca.pem")


def test_config_b64_and_defaults_merge() -> None:
    raw = base64.b64encode(json.dumps({"subscriptions": ["s.1"]}).encode()).decode()
    link = ConnectionConfig.from_values({"config_b64": raw})
    defaults = ConnectionConfig(subscriptions=["d.1"], cluster_uris=["nats://d:1"])
    merged = link.merged_over(defaults)
    assert merged.subscriptions == ["s.1"] and merged.cluster_uris == ["nats://d:1"]


@pytest.mark.parametrize(("values", "text"), [
    ({"CLIENT_JWT": "eyJ"}, "needs CLIENT_SEED"),
    ({"CLIENT_SEED": "SU"}, "needs CLIENT_JWT"),
    ({"config_json": "{"}, "config_json is not JSON"),
    ({"config_b64": "%%%"}, "config_b64 is not base64"),
    ({"config_json": '{"subscriptions": "a"}'}, "must be an array of strings"),
])
def test_bad_values(values: dict[str, str], text: str) -> None:
    with pytest.raises(ProviderError, match=text) as info:
        ConnectionConfig.from_values(values)
    assert str(info.value).startswith("invalid parameter: ")


def test_subscriptions() -> None:
    assert parse_subscriptions([" a.b ", "", "c.*|workers", "d.>"]) == [
        SubscriptionSpec("a.b"), SubscriptionSpec("c.*", "workers"), SubscriptionSpec("d.>")]
    for bad in ("a..b", "a b", "a.>.c", "x|", "x|a b"):
        with pytest.raises(ProviderError, match="SUBSCRIPTION entry"):
            parse_subscriptions([bad])
    for loop in ("wasmbus.evt.default", "wasmbus.>", ">", "*.evt.default", "wasmbus.rpc.*.M"):
        assert overlaps_lattice(loop)
        with pytest.raises(ProviderError, match="feedback loop"):
            parse_subscriptions([loop])
    assert not overlaps_lattice("wasmbus") and not overlaps_lattice("app.wasmbus.evt")


def test_uris() -> None:
    assert nats_url("127.0.0.1:4222") == "nats://127.0.0.1:4222"
    assert nats_url("tls://nats.example:4443") == "tls://nats.example:4443"
    for bad in ("http://x:1", "x:notaport", "://"):
        with pytest.raises(ProviderError, match="not a NATS server address"):
            nats_url(bad)


class BlockingBridge:
    """Stands in for ProviderBridge: records HandleMessage calls, which wait for ``gate``."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.in_flight = 0
        self.peak = 0
        self.bodies: list[bytes] = []

    async def call_actor(self, actor_key: str, operation: str, payload: bytes,
                         timeout: float | None = None) -> bytes:
        assert (actor_key, operation) == (ACTOR, HANDLE_MESSAGE)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        message: Any = contracts.operation(HANDLE_MESSAGE).decode_input(payload)
        assert isinstance(message, SubMessage)
        self.bodies.append(message.body)
        return b""


@pytest.mark.service
async def test_at_most_75_deliveries_in_flight(nats_server: Any) -> None:
    provider = MessagingNatsProvider()
    bridge = BlockingBridge()
    provider.bridge = bridge  # type: ignore[assignment]  # duck-typed stand-in
    await provider.init(HostData(lattice_rpc_url=nats_server.url))
    await provider.put_link(LinkDefinition(ACTOR, "VPROV", "wasmcloud:messaging", "default",
                                           {"SUBSCRIPTION": "bound.test"}))
    nc = await connect(NatsOptions(url=nats_server.url), name="bound-test")
    try:
        for i in range(200):
            await nc.publish("bound.test", str(i).encode())
        await nc.flush()
        await until(lambda: bridge.in_flight == MAX_CONCURRENT_DELIVERIES)
        subscriber = provider.conns[ACTOR].subscribers[0]
        # The callback is parked on the semaphore: nothing beyond the bound is started.
        assert subscriber.in_flight == MAX_CONCURRENT_DELIVERIES
        bridge.gate.set()
        await until(lambda: len(bridge.bodies) == 200)
        assert sorted(bridge.bodies) == sorted(str(i).encode() for i in range(200))
        assert bridge.peak == MAX_CONCURRENT_DELIVERIES == subscriber.peak
    finally:
        await nc.close()
        await provider.shutdown()
    assert provider.conns == {}
