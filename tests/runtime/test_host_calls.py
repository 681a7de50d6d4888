"""Host calls through the ABI (docs/wire.md §1.5) with forward.wat: arguments arrive intact, the
handler's result or HostCallError text reaches the guest, and host-call state never leaks
from one host call (or guest call) to the next."""

from __future__ import annotations

import asyncio
import time

import pytest

from lattice.runtime import GuestCallError, HostCallError
from tests.actors import forward_many, forward_payload, signed


class Recorder:
    """A host-call handler that records its calls; body b"fail..." fails the host call."""

    def __init__(self):
        self.calls = []

    async def __call__(self, actor, binding, namespace, operation, payload):
        self.calls.append((binding, namespace, operation, payload))
        if payload.startswith(b"fail"):
            raise HostCallError(f"refused: {payload.decode()}")
        return b"answer:" + payload


async def test_host_call_success(runtime):
    rec = Recorder()
    actor = await runtime.load(signed("forward"), host_call=rec)
    body = bytes(range(256))
    out = await actor.call("KeyValue.Get", forward_payload("default", "wasmcloud:keyvalue", body))
    assert rec.calls == [("default", "wasmcloud:keyvalue", "KeyValue.Get", body)]
    assert out == b"answer:" + body


async def test_host_call_with_empty_strings_and_body(runtime):
    rec = Recorder()
    actor = await runtime.load(signed("forward"), host_call=rec)
    assert await actor.call("X.Y", forward_payload("", "")) == b"answer:"
    assert rec.calls == [("", "", "X.Y", b"")]


async def test_host_call_empty_result(runtime):
    async def handler(actor, binding, namespace, operation, payload):
        return b""

    actor = await runtime.load(signed("forward"), host_call=handler)
    assert await actor.call("X.Y", forward_payload("a", "b", b"c")) == b""


async def test_host_call_large_payloads(runtime):
    async def handler(actor, binding, namespace, operation, payload):
        return payload[::-1] * 2

    actor = await runtime.load(signed("forward"), host_call=handler)
    body = bytes(range(256)) * 4096   # 1 MiB each way (2 MiB back)
    out = await actor.call("Blob.Put", forward_payload("default", "wasmcloud:blobstore", body))
    assert out == body[::-1] * 2


async def test_host_call_failure_reaches_the_guest(runtime):
    rec = Recorder()
    actor = await runtime.load(signed("forward"), host_call=rec)
    with pytest.raises(GuestCallError) as err:
        await actor.call("KeyValue.Get",
                         forward_payload("default", "wasmcloud:keyvalue", b"fail 1"))
    assert err.value.kind == "guest"
    assert str(err.value) == "refused: fail 1"


async def test_unexpected_handler_exception_fails_only_the_host_call(runtime):
    async def handler(actor, binding, namespace, operation, payload):
        raise RuntimeError("handler bug")

    actor = await runtime.load(signed("forward"), host_call=handler)
    with pytest.raises(GuestCallError) as err:
        await actor.call("KeyValue.Get", forward_payload("default", "wasmcloud:keyvalue"))
    assert err.value.kind == "guest"            # the guest got a host error and reported it
    assert "wasmcloud:keyvalue" in str(err.value)


async def test_default_handler_refuses_host_calls(runtime):
    actor = await runtime.load(signed("forward"))   # no host_call handler given
    with pytest.raises(GuestCallError) as err:
        await actor.call("KeyValue.Get", forward_payload("default", "wasmcloud:keyvalue"))
    assert err.value.kind == "guest"


async def test_host_call_state_is_reset_between_guest_calls(runtime):
    rec = Recorder()
    actor = await runtime.load(signed("forward"), host_call=rec, max_instances=1)
    with pytest.raises(GuestCallError, match="refused: fail A"):
        await actor.call("Op.A", forward_payload("b", "ns", b"fail A"))
    # same instance (max_instances=1): a stale host error must not turn this into a failure
    assert await actor.call("Op.B", forward_payload("b", "ns", b"ok B")) == b"answer:ok B"
    # and a stale response must not leak into a failure
    with pytest.raises(GuestCallError, match="refused: fail C"):
        await actor.call("Op.C", forward_payload("b", "ns", b"fail C"))


async def test_host_call_state_is_reset_within_one_guest_call(runtime):
    rec = Recorder()
    actor = await runtime.load(signed("forward"), host_call=rec)
    # a failed host call, then a successful one: the guest recovers, the call succeeds
    out = await actor.call("Op.Retry", forward_many(forward_payload("b", "ns", b"fail first"),
                                                    forward_payload("b", "ns", b"second")))
    assert out == b"answer:second"
    # a successful one, then a failed one: the error text is the second call's, alone
    with pytest.raises(GuestCallError) as err:
        await actor.call("Op.Retry", forward_many(forward_payload("b", "ns", b"first"),
                                                  forward_payload("b", "ns", b"fail second")))
    assert str(err.value) == "refused: fail second"
    # many in a row, alternating: only the last one counts
    specs = [forward_payload("b", "ns", b"fail %d" % i if i % 2 else b"%d" % i) for i in range(20)]
    with pytest.raises(GuestCallError, match=r"^refused: fail 19$"):
        await actor.call("Op.Many", forward_many(*specs))
    assert await actor.call("Op.Many", forward_many(*specs[:-1])) == b"answer:18"


async def test_bad_forward_payload_is_a_guest_error(runtime):
    actor = await runtime.load(signed("forward"), host_call=Recorder())
    with pytest.raises(GuestCallError) as err:
        await actor.call("Op", b"no newlines here")
    assert err.value.kind == "guest"
    assert "binding" in str(err.value)


async def test_host_call_that_never_answers_times_out(make_runtime):
    cancelled = asyncio.Event()

    async def hang(actor, binding, namespace, operation, payload):
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return b""

    runtime = make_runtime(call_timeout=1.0)
    actor = await runtime.load(signed("forward"), host_call=hang, max_instances=1)
    started = time.monotonic()
    with pytest.raises(GuestCallError) as err:
        await actor.call("Slow.Op", forward_payload("default", "wasmcloud:keyvalue"))
    assert time.monotonic() - started < 2.0
    assert err.value.kind == "timeout", str(err.value)
    await asyncio.wait_for(cancelled.wait(), 1.0)     # the abandoned handler was cancelled

    async def quick(actor, binding, namespace, operation, payload):
        return b"fine"

    # the runtime itself is fine: a new actor with a prompt handler works
    actor2 = await runtime.load(signed("forward"), host_call=quick)
    assert await actor2.call("Op", forward_payload("a", "b")) == b"fine"


async def test_handler_sees_the_calling_actor(runtime):
    seen = []

    async def handler(actor, binding, namespace, operation, payload):
        seen.append(actor)
        return b""

    a = await runtime.load(signed("forward"), host_call=handler)
    b = await runtime.load(signed("forward"), host_call=handler)
    await a.call("Op", forward_payload("x", "y"))
    await b.call("Op", forward_payload("x", "y"))
    assert seen == [a, b]
    assert a.key != b.key
