"""A host runs at most ``max_instances`` actor instances: starts and scales past it are refused
in the acknowledgement, and at the limit the inventory still fits in one NATS message (it used
to outgrow 1 MiB near 4,700 instances, and `lattice get inventory` called the host gone)."""

from __future__ import annotations

import json

import pytest

from lattice.app.scalers import APP_KEY, MANAGED_BY, MANAGED_BY_KEY, SCALER_KEY, SPREAD_KEY
from lattice.host import HostConfig
from lattice.rpc import RpcError
from tests.harness import Lattice, until

HTTP = "wasmcloud:httpserver"


async def test_starts_and_scales_past_the_limit_are_refused(lattice: Lattice) -> None:
    host = await lattice.host(max_instances=50)
    path = lattice.module("echo", caps=[HTTP])
    ack = await lattice.ctl("cmd", host.host_id, "la", body={"actor_ref": path, "count": 51})
    assert ack["accepted"] is False
    assert "51 actor instances" in ack["error"] and "limit of 50" in ack["error"], ack
    assert "--max-instances" in ack["error"]
    assert not host.actors.actors
    key = await lattice.start_actor(host, path, count=30)
    ack = await lattice.ctl("cmd", host.host_id, "scale",
                            body={"actor_id": key, "actor_ref": path, "count": 60})
    assert ack["accepted"] is False and "60 actor instances" in ack["error"], ack
    ack = await lattice.ctl("cmd", host.host_id, "scale",
                            body={"actor_id": key, "actor_ref": path, "count": 50})
    assert ack["accepted"], ack
    await until(lambda: len(host.actors.actors[key].instances) == 50, timeout=30)


async def test_the_inventory_at_the_default_limit_fits_one_message(lattice: Lattice) -> None:
    limit = HostConfig().max_instances
    host = await lattice.host()
    # Annotations as the reconciler sets them: the largest instances a host reports.
    annotations = {MANAGED_BY_KEY: MANAGED_BY, APP_KEY: "a-rather-long-application-name",
                   SCALER_KEY: "a-component-name/spreadscaler", SPREAD_KEY: "eu-west-zone"}
    path = lattice.module("echo", caps=[HTTP])
    ack = await lattice.ctl("cmd", host.host_id, "la", body={
        "actor_ref": path, "count": limit, "annotations": annotations})
    assert ack["accepted"], ack
    await until(lambda: host.actors.total_instances() == limit, timeout=60)
    reply = await lattice.nc.request(f"wasmbus.ctl.default.get.{host.host_id}.inv", b"",
                                     timeout=10)
    inv = json.loads(reply.data)
    assert sum(len(a["instances"]) for a in inv["actors"]) == limit
    assert len(reply.data) < lattice.nc.max_payload, len(reply.data)


async def test_a_per_actor_memory_limit_applies_from_the_start_command(lattice: Lattice) -> None:
    from lattice.runtime import RuntimeConfig

    host = await lattice.host(runtime=RuntimeConfig(memory_limit=8 << 20))
    small = await lattice.start_actor(host, lattice.module("hog"))
    with pytest.raises(RpcError, match=r"ran out of memory .*8 MiB limit"):
        await lattice.call(small, "Double", b"")
    # the same module with its own 16 MiB cap (a new key, so it is a separate actor)
    path = lattice.module("hog")
    ack = await lattice.ctl("cmd", host.host_id, "la", body={
        "actor_ref": path, "count": 1, "memory_limit_mib": 16})
    assert ack["accepted"], ack
    roomy = await until(lambda: next(
        (r.key for r in host.actors.actors.values() if r.image_ref == path), None))
    assert await lattice.call(roomy, "Double", b"") == b"pong"
    ack = await lattice.ctl("cmd", host.host_id, "la", body={
        "actor_ref": path, "memory_limit_mib": "16"})
    assert ack["accepted"] is False and "memory_limit_mib must be" in ack["error"], ack
