"""Component actors (lattice:actor world) in the runtime: the same claims, pools, deadlines,
memory caps and host-call path as wasmbus modules. The component is a real componentize-py
build of tests/actors/components/raw (CPython inside), compiled once into the test cache."""

from __future__ import annotations

import asyncio
import logging

import pytest
import wasmtime

from lattice.claims import module_hash, sign_actor, verify_module
from lattice.keys import KeyPair, KeyRole
from lattice.runtime import ActorLoadError, GuestCallError, HostCallError
from tests.components import build_raw
from tests.harness import until


@pytest.fixture(scope="module")
def raw() -> bytes:
    return build_raw("raw")


@pytest.fixture(scope="module")
def keys() -> tuple[KeyPair, KeyPair]:
    return KeyPair.generate(KeyRole.ACCOUNT), KeyPair.generate(KeyRole.MODULE)


@pytest.fixture
def signed(raw, keys) -> bytes:
    issuer, subject = keys
    return sign_actor(raw, issuer=issuer, subject=subject, name="raw", rev=3,
                      caps=["wasmcloud:keyvalue"], call_alias="rawcomp")


@pytest.fixture
def rt(make_runtime):
    # cache_dir=None: the persistent test cache, so the ~10 s compile happens once per machine
    return lambda **kw: make_runtime(cache_dir=None, **kw)


async def test_signed_component_runs_with_its_claims(rt, signed, keys):
    actor = await rt().load(signed)
    assert actor.key == keys[1].public_key
    assert actor.name == "raw" and actor.call_alias == "rawcomp"
    assert actor.caps == frozenset({"wasmcloud:keyvalue"})
    assert verify_module(signed).module_hash == module_hash(signed)
    assert await actor.call("Echo", b"hello") == b"hello"


async def test_unsigned_component_is_refused_unless_allowed(rt, raw):
    runtime = rt()
    with pytest.raises(ActorLoadError, match=r"refusing to run .*--allow-unsigned"):
        await runtime.load(raw, name="raw")
    actor = await runtime.load(raw, name="raw", allow_unsigned=True)
    assert await actor.call("Echo", b"x") == b"x"


async def test_tampered_component_is_refused(rt, signed):
    at = len(signed) // 2
    tampered = signed[:at] + bytes([signed[at] ^ 0xFF]) + signed[at + 1:]
    with pytest.raises(ActorLoadError, match="hash"):
        await rt().load(tampered)


async def test_every_byte_value_and_large_payloads_cross_unchanged(rt, signed):
    actor = await rt().load(signed)
    every = bytes(range(256)) * 4
    assert await actor.call("Echo", every) == every
    big = bytes(range(256)) * (5 << 12)  # 5 MiB
    assert await actor.call("Echo", big) == big
    assert await actor.call("Echo", b"") == b""


async def test_host_calls_reach_the_handler_and_errors_come_back(rt, signed):
    seen = []

    async def handler(actor, binding, namespace, operation, payload):
        seen.append((actor.name, binding, namespace, operation, payload))
        if operation == "Fail":
            raise HostCallError("no link for wasmcloud:keyvalue")
        if operation == "Bug":
            raise ValueError("handler bug")
        return payload.upper() + bytes([0, 255])

    actor = await rt().load(signed, handler)
    reply = await actor.call("Host", b"default|wasmcloud:keyvalue|KeyValue.Get|abc")
    assert reply == b"ok:ABC\x00\xff"
    assert seen == [("raw", "default", "wasmcloud:keyvalue", "KeyValue.Get", b"abc")]
    assert await actor.call("Host", b"d|ns|Fail|") == b"err:no link for wasmcloud:keyvalue"
    assert (await actor.call("Host", b"d|ns|Bug|")).startswith(b"err:host error while handling")
    assert (await actor.call("HostLatin", b"")).startswith(b"err:host call rejected")
    # none of that poisoned the instance
    assert actor.pool.created == 1


async def test_guest_errors_are_the_actors_text(rt, signed):
    actor = await rt().load(signed)
    with pytest.raises(GuestCallError) as err:
        await actor.call("Fail", b"because")
    assert err.value.kind == "guest" and str(err.value) == "it failed: because"
    with pytest.raises(GuestCallError, match="unknown operation Nope"):
        await actor.call("Nope", b"")


async def test_state_lives_in_an_instance_and_a_timeout_replaces_it(rt, signed):
    actor = await rt(call_timeout=0.5, max_instances=1).load(signed)
    assert await actor.call("Count", b"") == b"1"
    assert await actor.call("Count", b"") == b"2"
    with pytest.raises(GuestCallError) as err:
        await actor.call("Loop", b"")
    assert err.value.kind == "timeout"
    assert await actor.call("Count", b"") == b"1"  # a fresh instance
    assert actor.pool.created == 2


async def test_slow_host_call_times_the_guest_call_out(rt, signed):
    async def slow(actor, binding, namespace, operation, payload):
        await asyncio.sleep(5)
        return b""

    actor = await rt(call_timeout=0.3).load(signed, slow)
    with pytest.raises(GuestCallError) as err:
        await actor.call("Host", b"d|ns|op|")
    assert err.value.kind == "timeout"
    assert await actor.call("Echo", b"after") == b"after"


async def test_memory_cap_stops_a_hungry_actor_not_the_host(rt, signed):
    actor = await rt(component_memory_limit=96 << 20).load(signed)
    assert await actor.call("Alloc", b"8") == b"8"
    with pytest.raises(GuestCallError) as err:
        await actor.call("Alloc", b"200")
    assert "memory" in str(err.value).lower(), err.value
    assert await actor.call("Echo", b"still here") == b"still here"


async def test_exit_and_bad_replies_fail_the_call_only(rt, signed):
    actor = await rt().load(signed)
    with pytest.raises(GuestCallError) as err:
        await actor.call("Exit", b"")
    assert err.value.kind == "trap"
    with pytest.raises(GuestCallError) as err:
        await actor.call("Wide", b"")
    assert err.value.kind == "abi" and "Latin-1" in str(err.value)
    with pytest.raises(GuestCallError, match="raised ValueError that nothing caught") as err:
        await actor.call("Raise", b"")
    assert err.value.kind == "trap"
    assert await actor.call("Echo", b"ok") == b"ok"


async def test_output_is_logged_with_the_actor(rt, signed, caplog):
    actor = await rt().load(signed)
    with caplog.at_level(logging.INFO, logger="lattice.actor"):
        await actor.call("Print", b"hi")
    texts = {(r.getMessage(), r.source) for r in caplog.records if r.name == "lattice.actor"}
    assert ("to stdout: hi", "stdout") in texts and ("to stderr: hi", "stderr") in texts
    assert all(r.actor.startswith("raw/") for r in caplog.records if r.name == "lattice.actor")


async def test_instances_serve_concurrent_calls(rt, signed):
    gate = asyncio.Event()

    async def wait(actor, binding, namespace, operation, payload):
        await gate.wait()
        return b"done"

    actor = await rt(max_instances=3).load(signed, wait)
    calls = [asyncio.create_task(actor.call("Host", b"d|ns|op|")) for _ in range(3)]
    # all three run at once: each holds an instance while it waits on the gate
    await until(lambda: actor.pool.in_use == 3)
    assert not any(c.done() for c in calls)
    gate.set()
    assert await asyncio.gather(*calls) == [b"ok:done"] * 3


async def test_compiled_component_comes_from_the_disk_cache(tmp_path, make_runtime, signed):
    first = make_runtime(cache_dir=tmp_path / "c")
    await first.load(signed)
    assert first.cache.last_source == "compiled"
    second = make_runtime(cache_dir=tmp_path / "c")
    actor = await second.load(signed)
    assert second.cache.last_source == "disk"
    assert await actor.call("Echo", b"x") == b"x"


@pytest.mark.parametrize(("wat", "message"), [
    ("(component)", "does not export lattice:actor/guest@0.1.0"),
    ('(component (import "acme:db/query@1.0.0" (instance)))', "imports acme:db/query@1.0.0"),
    ('(component (import "lattice:actor/host@0.9.0" (instance)))',
     "this host provides lattice:actor/host@0.1.0"),
])
async def test_components_of_other_worlds_are_explained(rt, wat, message):
    with pytest.raises(ActorLoadError, match=message.replace(".", r"\.")):
        await rt().load(bytes(wasmtime.wat2wasm(wat)), allow_unsigned=True, name="other")
