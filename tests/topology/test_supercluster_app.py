"""(b), the reconciler's half: a manifest spreads an actor over the two clusters of a
supercluster by host label, and the app's status says so."""

from __future__ import annotations

from pathlib import Path

from lattice.app.manifest import load_manifest
from lattice.app.store import AppStore
from lattice.connect import jetstream
from lattice.natsd import NatsServer, free_port
from tests.actors import signed
from tests.topology.conftest import (
    KV,
    Topology,
    cluster_nodes,
    jetstream_ready,
    poll,
    start_all,
)


def spread_app(image: Path) -> dict:
    return {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": "global", "annotations": {"version": "v1"}},
            "spec": {"components": [{
                "name": "fwd", "type": "actor", "properties": {"image": str(image)},
                "traits": [{"type": "spreadscaler", "properties": {"replicas": 4, "spread": [
                    {"name": "east", "requirements": {"cluster": "east"}, "weight": 75},
                    {"name": "west", "requirements": {"cluster": "west"}, "weight": 25}]}}]}]}}


async def test_manifest_spreads_across_clusters_by_label(tmp_path: Path, servers) -> None:
    gateway_ports = {"east": free_port(), "west": free_port()}
    gateways = {name: f"nats://127.0.0.1:{port}" for name, port in gateway_ports.items()}
    east = cluster_nodes(tmp_path, "east", 2, gateway_name="east", gateways=gateways)
    east[0].gateway_port, east[1].gateway_port = gateway_ports["east"], free_port()
    west = [NatsServer(tmp_path / "west-0", name="west-0", gateway_name="west",
                       gateway_port=gateway_ports["west"], gateways=gateways)]
    start_all(servers, *east, *west)
    for node in (*east, *west):
        await jetstream_ready(node.url, timeout=40)

    lat = Topology(",".join(n.url for n in east), tmp_path)
    await lat.connect()
    try:
        fast = {"reconciler": True, "reconcile_interval": 1.0}
        hosts = [await lat.host(east[0].url, labels={"cluster": "east"}, **fast),
                 await lat.host(east[1].url, labels={"cluster": "east"}, **fast),
                 await lat.host(west[0].url, labels={"cluster": "west"}, **fast)]
        image = tmp_path / "fwd.wasm"
        image.write_bytes(signed("forward", caps=[KV]))
        # Deployed from the west cluster's side; the leader may be a host in either cluster.
        store = await AppStore(jetstream(lat.nc), "default").open()
        await store.deploy(load_manifest(spread_app(image)))

        async def deployed():
            state = await store.state("global")
            return state if state and state.status == "deployed" else None

        await poll(deployed, 40, "the app to be deployed")
        per_host = {h.host_id: sum(len(r.instances) for r in h.actors.actors.values())
                    for h in hosts}
        east_count = per_host[hosts[0].host_id] + per_host[hosts[1].host_id]
        assert (east_count, per_host[hosts[2].host_id]) == (3, 1), per_host  # 75 / 25
        assert sum(1 for h in hosts if h.reconciler and h.reconciler.leader) == 1
    finally:
        await lat.close()
