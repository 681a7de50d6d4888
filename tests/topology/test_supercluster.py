"""(b) A supercluster: two NATS clusters joined by gateways, one lattice across both.

Cluster ``east`` has two nodes (routes), cluster ``west`` one; every node has a gateway and the
supercluster runs one JetStream (no domains), so the LATTICEDATA bucket — placed in whichever
cluster created it — serves the hosts of both. An actor on a host in east calls a provider on a
host in west: the invocation crosses the gateway. (Spreading a manifest over the clusters by
label is the reconciler's side of this issue, tested with the app suite.)
"""

from __future__ import annotations

from pathlib import Path

from contracts.keyvalue import GetResponse, IncrementRequest, SetRequest
from lattice.natsd import NatsServer, free_port
from tests.topology.conftest import (
    KV,
    Topology,
    cluster_nodes,
    jetstream_ready,
    kv_call,
    kv_ready,
    start_all,
)


async def test_actor_in_one_cluster_calls_a_provider_in_the_other(tmp_path: Path,
                                                                   servers) -> None:
    gateway_ports = {"east": free_port(), "west": free_port()}
    gateways = {name: f"nats://127.0.0.1:{port}" for name, port in gateway_ports.items()}
    east = cluster_nodes(tmp_path, "east", 2, gateway_name="east", gateways=gateways)
    east[0].gateway_port, east[1].gateway_port = gateway_ports["east"], free_port()
    west = [NatsServer(tmp_path / "west-0", name="west-0", gateway_name="west",
                       gateway_port=gateway_ports["west"], gateways=gateways)]
    assert west[0].cluster_name == "west" and west[0].cluster_port  # JetStream needs a cluster
    start_all(servers, *east, *west)
    for node in (*east, *west):  # one meta leader for the whole supercluster
        await jetstream_ready(node.url, timeout=40)

    lat = Topology(",".join(n.url for n in east), tmp_path)
    await lat.connect()
    try:
        east_host = await lat.host(",".join(n.url for n in east), labels={"cluster": "east"})
        west_host = await lat.host(west[0].url, labels={"cluster": "west"})
        provider = await lat.start_provider(west_host, "kvmem", embedded=True)
        actor = await lat.forwarder(east_host, KV)
        await lat.link(actor, provider, KV)  # both hosts see it: one lattice store
        await kv_ready(lat, actor)

        assert await kv_call(lat, actor, "Increment", IncrementRequest("n", 7)) == 7
        await kv_call(lat, actor, "Set", SetRequest("where", "west", 0))
        assert await kv_call(lat, actor, "Get", "where") == GetResponse("west", True)
        # The data is in the provider in west, not anywhere in east.
        assert not east_host.providers.list()
        assert [p.public_key for p in west_host.providers.list()] == [provider]

        # The lattice store is one bucket in one cluster, used from both.
        info = await lat.nc.jetstream().stream_info("KV_LATTICEDATA_default")
        assert info.cluster is not None and info.cluster.name in ("east", "west")
        assert west_host.store.links.get(actor, KV, "default") is not None
        assert east_host.store.claims and east_host.store.claims == west_host.store.claims
    finally:
        await lat.close()
