"""(c) An edge host behind a leaf node serves an actor whose provider runs in the hub.

The hub runs JetStream in domain ``hub`` and accepts leaf nodes; the edge's NATS node is a leaf
of it with its own JetStream domain ``edge``. The edge host keeps the lattice state in the
hub's domain (``js_domain="hub"``), so there is one LATTICEDATA bucket and one RPC chunk store
for the whole lattice: links put from either side reach both hosts, and a payload chunked by
the edge host is read by the provider on the hub (docs/operations.md, "Edge hosts behind a
leaf node").
"""

from __future__ import annotations

import time
from pathlib import Path

from contracts.keyvalue import GetResponse, IncrementRequest, SetRequest
from lattice.natsd import NatsServer, free_port
from lattice.rpc.subjects import CHUNK_THRESHOLD
from tests.topology.conftest import (
    KV,
    Topology,
    jetstream_ready,
    kv_call,
    kv_ready,
    poll,
    start_all,
)


async def test_edge_host_behind_a_leaf_uses_a_provider_in_the_hub(tmp_path: Path,
                                                                   servers) -> None:
    started = time.monotonic()
    leaf_port = free_port()
    hub, edge = start_all(
        servers,
        NatsServer(tmp_path / "hub", name="hub", js_domain="hub", leaf_port=leaf_port),
        NatsServer(tmp_path / "edge", name="edge", js_domain="edge",
                   leaf_remotes=[f"nats-leaf://127.0.0.1:{leaf_port}"]))
    await jetstream_ready(edge.url, domain="hub")  # the hub's JetStream, through the leaf

    # The test client sits at the edge too; its chunked payloads go to the hub's domain.
    lat = Topology(edge.url, tmp_path, js_domain="hub")
    await lat.connect()
    try:
        hub_host = await lat.host(hub.url)
        edge_host = await lat.host(edge.url, js_domain="hub", labels={"site": "edge"})
        provider = await lat.start_provider(hub_host, "keyvalue-nats")  # a process, in the hub
        actor = await lat.forwarder(edge_host, KV)
        assert actor not in hub_host.actors.actors

        # A link put at the edge reaches the hub host's store (and the provider) and back.
        await lat.link(actor, provider, KV, bucket="edge_counter")
        await kv_ready(lat, actor)
        assert await kv_call(lat, actor, "Increment", IncrementRequest("n", 2)) == 2
        assert await kv_call(lat, actor, "Increment", IncrementRequest("n", 3)) == 5

        # The bucket lives in the hub's JetStream, not the edge's own domain.
        hub_js = lat.nc.jetstream(domain="hub")
        assert (await (await hub_js.key_value("edge_counter")).get("k.bg")).value
        edge_streams = [s.config.name for s in await lat.nc.jetstream().streams_info()]
        assert "KV_LATTICEDATA_default" not in edge_streams, edge_streams
        assert "KV_edge_counter" not in edge_streams

        # A value above the chunking threshold crosses the leaf both ways through the chunk
        # store of the hub's domain: client → edge actor → hub provider, and back.
        big = "x" * (CHUNK_THRESHOLD + 4096)
        await kv_call(lat, actor, "Set", SetRequest("big", big, 0))
        assert await kv_call(lat, actor, "Get", "big") == GetResponse(big, True)

        # keyvalue-nats at the edge (link name "edge") writes the hub's domain by default — KV
        # writes from behind a leaf go through $JS.hub.API.$KV… (lattice.connect.jetstream) —
        # or, with the link value js_domain=edge, keeps an actor's data in the edge's own.
        edge_provider = await lat.start_provider(edge_host, "keyvalue-nats", link_name="edge")
        assert edge_provider == provider
        await lat.link(actor, provider, KV, link_name="edge", bucket="from_edge")
        await kv_ready(lat, actor, link_name="edge")
        assert await kv_call(lat, actor, "Increment", IncrementRequest("e", 1),
                             link_name="edge") == 1
        assert await (await hub_js.key_value("from_edge")).get("k.ZQ")
        await lat.link(actor, provider, KV, link_name="edge", bucket="at_edge", js_domain="edge")
        await poll(lambda: _local(lat, actor), 10, "a bucket in the edge's own domain")
        assert "KV_at_edge" not in [s.config.name for s in await hub_js.streams_info()]

        # A deleted link disappears on both sides of the leaf.
        await lat.unlink(actor, KV)
        assert edge_host.store.links.get(actor, KV, "default") is None
    finally:
        await lat.close()
    assert time.monotonic() - started < 30


async def _local(lat: Topology, actor: str) -> bool:
    await kv_call(lat, actor, "Set", SetRequest("here", "edge", 0), link_name="edge",
                  timeout=2.0)
    kv = await lat.nc.jetstream().key_value("at_edge")  # the edge's own JetStream
    return (await kv.get("k.aGVyZQ")).value is not None
