"""Large payloads across the lattice, checked by sha256, and a clear error past the limit.

The client calls a forward.wat actor on host A, which makes a KeyValue.Set / KeyValue.Get host
call to kvmem, a provider process started by host B: every hop over NATS carries the payload
through the JetStream object store (chunking, > 900 KiB), both ways. 2 MB and 20 MB values
come back with the sha256 they went in with, and nothing is left in the object store.

The limit is the receiving actor's memory (wasmbus: the whole request is copied into it): the
same 20 MB sent to a forward.wat started with a 16 MiB limit fails with the actor's "out of
memory" and the runtime's reason: the request is larger than the actor's memory limit, and how
to raise it. Both actors keep answering.
"""

from __future__ import annotations

import hashlib
import os
import time

import pytest

import contracts
from contracts.keyvalue import SetRequest
from lattice.rpc import RpcError
from tests.faults.conftest import report
from tests.harness import Lattice, until
from tests.topology.conftest import kv_ready

pytestmark = pytest.mark.service

KV = "wasmcloud:keyvalue"
MB = 1_000_000
SET, GET = contracts.operation("KeyValue.Set"), contracts.operation("KeyValue.Get")


@pytest.mark.timeout(120)
async def test_2_and_20_mb_travel_intact_and_past_the_limit_fail_clearly(
        lattice: Lattice) -> None:
    a, b = await lattice.host(), await lattice.host()
    provider = await lattice.start_provider(b, "kvmem")
    fwd = await lattice.forwarder(a, KV)
    await lattice.link(fwd, provider, KV)
    await kv_ready(lattice, fwd)

    figures: dict[str, float] = {}
    for size in (2 * MB, 20 * MB):
        value = os.urandom(size // 2).hex()  # a str of `size` characters
        digest = hashlib.sha256(value.encode()).hexdigest()
        started = time.monotonic()
        await lattice.host_call(fwd, KV, SET.name, SET.encode_input(SetRequest("big", value, 0)),
                                timeout=60)
        stored = time.monotonic()
        out = await lattice.host_call(fwd, KV, GET.name, GET.encode_input("big"), timeout=60)
        done = time.monotonic()
        got = GET.decode_output(out)
        assert got.exists and hashlib.sha256(got.value.encode()).hexdigest() == digest
        figures[f"set_{size // MB}mb_s"] = stored - started
        figures[f"get_{size // MB}mb_s"] = done - stored
    assert await lattice.chunk_leftovers() == []

    # Past the limit: the same 20 MB to an actor that may use 16 MiB.
    path = lattice.module("forward", caps=[KV])
    ack = await lattice.ctl("cmd", a.host_id, "la", body={"actor_ref": path, "count": 1,
                                                          "memory_limit_mib": 16})
    assert ack["accepted"], ack
    small = await until(lambda: next(
        (r.key for r in a.actors.actors.values() if r.image_ref == path), None))
    await lattice.link(small, provider, KV)
    await kv_ready(lattice, small)
    started = time.monotonic()
    with pytest.raises(RpcError) as err:
        await lattice.host_call(small, KV, SET.name,
                                SET.encode_input(SetRequest("too-big", "x" * (20 * MB), 0)),
                                timeout=60)
    refused = time.monotonic() - started
    message = str(err.value)
    assert err.value.kind == "remote" and "out of memory" in message, message
    assert "the request, 20.0 MB, is larger than the actor's 16 MiB memory limit" in message
    assert "--memory-limit MIB" in message
    # both actors still serve
    assert GET.decode_output(await lattice.host_call(fwd, KV, GET.name,
                                                     GET.encode_input("big"))).exists
    assert not GET.decode_output(await lattice.host_call(small, KV, GET.name,
                                                         GET.encode_input("too-big"))).exists
    report("2 MB and 20 MB payloads across two hosts; 20 MB to a 16 MiB actor",
           **figures, intact="2 MB, 20 MB (sha256)", past_limit_refused_s=refused,
           past_limit_error=message)
