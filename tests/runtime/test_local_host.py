"""Routing and authorization of host calls in a LocalHost (docs/wire.md §1.6, §5.3, §5.6):
capability claims are enforced, builtins answer in-process, and actors call each other by key or
alias. forward.wat is signed with different caps to get one host-caller per contract."""

from __future__ import annotations

import logging
import uuid

import msgpack
import pytest

from lattice.runtime import GuestCallError
from tests.actors import forward_payload, signed

KV = "wasmcloud:keyvalue"
LOGGING = "wasmcloud:builtin:logging"
NUMBERGEN = "wasmcloud:builtin:numbergen"


async def _fails(host, actor, operation, payload) -> str:
    with pytest.raises(GuestCallError) as err:
        await host.call(actor.key, operation, payload)
    assert err.value.kind == "guest"
    return str(err.value)


# ---- capability contracts ------------------------------------------------------------------------


async def test_contract_call_without_the_capability_is_refused(host):
    fwd = await host.start_actor(signed("forward", caps=["wasmcloud:httpserver"]))
    message = await _fails(host, fwd, "KeyValue.Get",
                           forward_payload("default", KV, msgpack.packb("key")))
    assert f"Invocation not authorized: missing capability claim for {KV}" in message
    assert "--cap" in message


async def test_contract_call_with_the_capability_but_no_link(host):
    fwd = await host.start_actor(signed("forward", caps=[KV]))
    message = await _fails(host, fwd, "KeyValue.Get",
                           forward_payload("default", KV, msgpack.packb("key")))
    assert f"Invocation not authorized: missing link definition for {KV} on default" in message
    assert f"no provider is linked for {KV} (link name default)" in message


async def test_link_name_is_reported(host):
    fwd = await host.start_actor(signed("forward", caps=[KV]))
    message = await _fails(host, fwd, "KeyValue.Get", forward_payload("cache", KV))
    assert f"no provider is linked for {KV} (link name cache)" in message


async def test_kvcounter_without_a_provider_gets_the_routing_error(host):
    counter = await host.start_actor(signed("kvcounter", caps=[KV]))
    message = await _fails(host, counter, "HttpServer.HandleRequest",
                           msgpack.packb({"path": "/foo", "header": {}}))
    assert f"no provider is linked for {KV} (link name default)" in message


async def test_unknown_namespace_without_colon_is_an_unknown_actor(host):
    fwd = await host.start_actor(signed("forward"))
    message = await _fails(host, fwd, "Op", forward_payload("", "nobody/here"))
    assert "nobody/here" in message


# ---- builtins ------------------------------------------------------------------------------------


async def test_generate_guid(host):
    fwd = await host.start_actor(signed("forward", caps=[NUMBERGEN]))
    seen = set()
    for _ in range(5):
        out = await host.call(fwd.key, "NumberGen.GenerateGuid",
                              forward_payload("default", NUMBERGEN))
        assert out[:2] == b"\xd9\x24"               # a msgpack str8 of 36 characters
        text = msgpack.unpackb(out)
        assert str(uuid.UUID(text)) == text         # lower-case, hyphenated
        assert uuid.UUID(text).version == 4
        seen.add(text)
    assert len(seen) == 5


async def test_random_in_range_is_inclusive(host):
    fwd = await host.start_actor(signed("forward", caps=[NUMBERGEN]))

    async def draw(lo, hi):
        out = await host.call(fwd.key, "NumberGen.RandomInRange",
                              forward_payload("default", NUMBERGEN,
                                              msgpack.packb({"min": lo, "max": hi})))
        return msgpack.unpackb(out)

    assert await draw(5, 5) == 5
    assert await draw(0, 0) == 0
    assert await draw(2**32 - 1, 2**32 - 1) == 2**32 - 1
    values = [await draw(1, 3) for _ in range(150)]
    assert set(values) == {1, 2, 3}                 # both ends reachable
    wide = [await draw(10, 2**32 - 1) for _ in range(20)]
    assert all(10 <= v <= 2**32 - 1 for v in wide)


async def test_random_in_range_rejects_min_above_max(host):
    fwd = await host.start_actor(signed("forward", caps=[NUMBERGEN]))
    await _fails(host, fwd, "NumberGen.RandomInRange",
                 forward_payload("default", NUMBERGEN, msgpack.packb({"min": 9, "max": 1})))


async def test_random32(host):
    fwd = await host.start_actor(signed("forward", caps=[NUMBERGEN]))
    values = []
    for _ in range(20):
        out = await host.call(fwd.key, "NumberGen.Random32", forward_payload("default", NUMBERGEN))
        value = msgpack.unpackb(out)
        assert isinstance(value, int) and 0 <= value < 2**32
        values.append(value)
    assert len(set(values)) > 1


async def test_unknown_builtin_operation_and_namespace(host):
    fwd = await host.start_actor(signed("forward", caps=[NUMBERGEN, "wasmcloud:builtin:nope"]))
    await _fails(host, fwd, "NumberGen.Nope", forward_payload("default", NUMBERGEN))
    message = await _fails(host, fwd, "Nope.Op",
                           forward_payload("default", "wasmcloud:builtin:nope"))
    assert "wasmcloud:builtin:nope" in message


async def test_write_log_is_logged_with_the_actor_key(host, caplog):
    caplog.set_level(logging.DEBUG, logger="lattice")
    fwd = await host.start_actor(signed("forward", caps=[LOGGING]))
    entry = msgpack.packb({"level": "warn", "text": "hello from the logger actor"})
    out = await host.call(fwd.key, "Logging.WriteLog", forward_payload("default", LOGGING, entry))
    assert out == b""
    records = [r for r in caplog.records if "hello from the logger actor" in r.getMessage()]
    assert len(records) == 1
    assert records[0].name.startswith("lattice")
    assert fwd.key in records[0].getMessage()
    assert records[0].levelno == logging.WARNING


async def test_write_log_with_a_bad_payload_fails_the_host_call(host):
    fwd = await host.start_actor(signed("forward", caps=[LOGGING]))
    await _fails(host, fwd, "Logging.WriteLog", forward_payload("default", LOGGING, b"\xc1"))


@pytest.mark.parametrize(("namespace", "operation", "body"), [
    (NUMBERGEN, "NumberGen.Random32", b""),
    (LOGGING, "Logging.WriteLog", msgpack.packb({"level": "info", "text": "x"})),
])
async def test_builtin_without_the_capability_is_refused(host, namespace, operation, body):
    other = NUMBERGEN if namespace == LOGGING else LOGGING
    fwd = await host.start_actor(signed("forward", caps=[other]))
    message = await _fails(host, fwd, operation, forward_payload("default", namespace, body))
    assert f"Invocation not authorized: missing capability claim for {namespace}" in message


async def test_builtin_caps_can_be_relaxed(make_host):
    host = make_host(enforce_builtin_caps=False)
    fwd = await host.start_actor(signed("forward"))
    out = await host.call(fwd.key, "NumberGen.Random32", forward_payload("default", NUMBERGEN))
    assert 0 <= msgpack.unpackb(out) < 2**32
    # contracts are still enforced
    message = await _fails(host, fwd, "KeyValue.Get", forward_payload("default", KV))
    assert f"missing capability claim for {KV}" in message


# ---- actor to actor ------------------------------------------------------------------------------


async def test_actor_to_actor_by_key_and_by_alias(host, vectors):
    case = vectors["echo"]
    request = bytes.fromhex(case["request_hex"])
    echo = await host.start_actor(signed("echo", call_alias="lattice/echo"))
    fwd = await host.start_actor(signed("forward"))       # no capability needed
    by_key = await host.call(fwd.key, case["operation"], forward_payload("", echo.key, request))
    by_alias = await host.call(fwd.key, case["operation"],
                               forward_payload("", "lattice/echo", request))
    assert by_key.hex() == case["response_hex"]
    assert by_alias.hex() == case["response_hex"]
    # the host itself resolves aliases too
    assert (await host.call("lattice/echo", case["operation"], request)).hex() \
        == case["response_hex"]


async def test_actor_to_actor_error_reaches_the_caller(host):
    echo = await host.start_actor(signed("echo"))
    fwd = await host.start_actor(signed("forward"))
    message = await _fails(host, fwd, "No.Such", forward_payload("", echo.key))
    assert "Guest call failed for method No.Such: method not handled" in message


async def test_actor_to_actor_chain(host):
    echo = await host.start_actor(signed("echo", call_alias="chain/echo"))
    await host.start_actor(signed("forward", call_alias="chain/inner"))
    outer = await host.start_actor(signed("forward"))
    # outer -> inner -> echo, all with operation Actor.HealthRequest
    payload = forward_payload("", "chain/inner", forward_payload("", echo.key))
    assert await host.call(outer.key, "Actor.HealthRequest", payload) == b"\x81\xa7healthy\xc3"


async def test_call_to_a_stopped_actor(host):
    echo = await host.start_actor(signed("echo"))
    fwd = await host.start_actor(signed("forward"))
    await host.stop_actor(echo)
    await _fails(host, fwd, "Actor.HealthRequest", forward_payload("", echo.key))
    with pytest.raises(LookupError):
        await host.call(echo.key, "Actor.HealthRequest", b"")
