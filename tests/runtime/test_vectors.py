"""The hand-written echo and kvcounter actors reproduce, through the Runtime, the exchanges
recorded from the real wasmCloud 0.x actors (tests/data/vectors/wasmbus-recorded.json) byte for
byte: the guest-call payload in, every host call out, and the response."""

from __future__ import annotations

import msgpack
import pytest

import actors
from lattice.runtime import GuestCallError, HostCallError
from tests.actors import HERE, signed


async def test_echo_vector(runtime, vectors):
    case = vectors["echo"]
    assert case["host_calls"] == []
    actor = await runtime.load(signed("echo"))
    out = await actor.call(case["operation"], bytes.fromhex(case["request_hex"]))
    assert out.hex() == case["response_hex"]


async def test_kvcounter_vector(runtime, vectors):
    case = vectors["kvcounter"]
    seen = []

    async def handler(actor, binding, namespace, operation, payload):
        seen.append((actor, binding, namespace, operation, payload))
        return bytes.fromhex(case["host_reply_hex"])

    actor = await runtime.load(signed("kvcounter", caps=["wasmcloud:keyvalue"]), host_call=handler)
    out = await actor.call(case["operation"], bytes.fromhex(case["request_hex"]))

    assert [(b, ns, op, p.hex()) for _, b, ns, op, p in seen] == [
        (c["binding"], c["namespace"], c["operation"], c["payload_hex"]) for c in case["host_calls"]
    ]
    assert seen[0][0] is actor
    assert out.hex() == case["response_hex"]


@pytest.mark.parametrize(("path", "key"), [
    ("/", "counter::"),
    ("/a/b/c", "counter::a:b:c"),
    ("/" + "x" * 40, "counter::" + "x" * 40),      # str8 key
    ("/" + "é" * 200, "counter::" + "é" * 200),    # str16 key
])
@pytest.mark.parametrize("value", [0, 7, 128, 65536, -1, -200, 2**31 - 1, -(2**31)])
async def test_kvcounter_keys_and_counters(runtime, path, key, value):
    seen = []

    async def handler(actor, binding, namespace, operation, payload):
        seen.append(msgpack.unpackb(payload))
        return msgpack.packb(value)

    actor = await runtime.load(signed("kvcounter"), host_call=handler)
    out = await actor.call("HttpServer.HandleRequest",
                           msgpack.packb({"method": "GET", "path": path, "queryString": "",
                                          "header": {}, "body": b""}))
    assert seen == [{"key": key, "value": 1}]
    response = msgpack.unpackb(out)
    assert list(response) == ["body", "header", "statusCode"]
    assert response == {"body": b'{"counter":%d}' % value, "header": {}, "statusCode": 200}


async def test_kvcounter_passes_host_error_on(runtime):
    async def handler(actor, binding, namespace, operation, payload):
        raise HostCallError("redis error: connection refused")

    actor = await runtime.load(signed("kvcounter"), host_call=handler)
    with pytest.raises(GuestCallError) as err:
        await actor.call("HttpServer.HandleRequest", msgpack.packb({"path": "/x", "header": {}}))
    assert err.value.kind == "guest"
    assert str(err.value) == "redis error: connection refused"


@pytest.mark.parametrize("reply", [b"", b"\xc0", b"\xa17", msgpack.packb(2**31),
                                   msgpack.packb(-(2**31) - 1), b"\xcd\x01"])
async def test_kvcounter_rejects_a_reply_that_is_not_an_i32(runtime, reply):
    async def handler(actor, binding, namespace, operation, payload):
        return reply

    actor = await runtime.load(signed("kvcounter"), host_call=handler)
    with pytest.raises(GuestCallError) as err:
        await actor.call("HttpServer.HandleRequest", msgpack.packb({"path": "/x", "header": {}}))
    assert err.value.kind == "guest"
    assert "KeyValue.Increment reply is not an i32" in str(err.value)


@pytest.mark.parametrize("name", ["echo", "kvcounter"])
async def test_health_and_unknown_operations(runtime, name):
    actor = await runtime.load(signed(name))
    assert await actor.call("Actor.HealthRequest", b"\x80") == b"\x81\xa7healthy\xc3"
    with pytest.raises(GuestCallError) as err:
        await actor.call("Foo.Bar", b"")
    assert err.value.kind == "guest"
    assert str(err.value) == "Guest call failed for method Foo.Bar: method not handled"


MALFORMED = {
    "empty": b"",
    "truncated-map": b"\x85",
    "not-a-map": b"\x90",
    "key-without-value": b"\x81\xa6method",
    "truncated-str": b"\x81\xa6method\xa5GE",
    "int-key": b"\x81\x01\xa3GET",
    "int-method": b"\x81\xa6method\x01",
    "non-utf8-method": b"\x81\xa6method\xa2\xff\xfe",
    "reserved-byte-c1": b"\x81\xa6header\x81\xa1a\x91\xc1",
    "huge-array-truncated": b"\x81\xa1x\xdd\xff\xff\xff\xff",
    "huge-map-truncated": b"\xdf\xff\xff\xff\xff",
    "deep-nesting-truncated": b"\x81\xa1x" + b"\x91" * 100_000,
}


@pytest.mark.parametrize("payload", list(MALFORMED.values()), ids=list(MALFORMED))
async def test_echo_rejects_malformed_requests_without_trapping(runtime, payload):
    actor = await runtime.load(signed("echo"))
    with pytest.raises(GuestCallError) as err:
        await actor.call("HttpServer.HandleRequest", payload)
    assert err.value.kind == "guest"
    assert str(err.value) == ("Guest call failed for method HttpServer.HandleRequest: "
                              "deserialization error: invalid HttpRequest")


async def test_echo_skips_deeply_nested_unknown_fields(runtime):
    # 100 000 nested arrays under an unknown key: skipped iteratively, so no stack overflow
    actor = await runtime.load(signed("echo"))
    out = await actor.call("HttpServer.HandleRequest", b"\x81\xa1x" + b"\x91" * 100_000 + b"\xc0")
    assert msgpack.unpackb(out)["body"] == (b'{"body":[],"method":"","path":"",'
                                            b'"query_string":""}')


async def test_echo_accepts_str_or_bin_fields_and_ignores_unknown_ones(runtime):
    actor = await runtime.load(signed("echo"))
    request = msgpack.packb({"extra": [1, {"deep": None}, 2.5], "method": b"POST",
                             "path": "/p", "queryString": b"q=\"1\"", "body": "hi",
                             "header": {"a": ["b", "c"]}})
    out = msgpack.unpackb(await actor.call("HttpServer.HandleRequest", request))
    assert out == {"statusCode": 200, "header": {},
                   "body": b'{"body":[104,105],"method":"POST","path":"/p",'
                           b'"query_string":"q=\\"1\\""}'}


async def test_echo_large_body_uses_bin32(runtime):
    actor = await runtime.load(signed("echo"))
    body = bytes(range(256)) * 300      # 76800 bytes -> JSON body well over 64 KiB
    out = await actor.call("HttpServer.HandleRequest",
                           msgpack.packb({"method": "PUT", "path": "/big", "queryString": "",
                                          "header": {}, "body": body}))
    response = msgpack.unpackb(out)
    assert response["body"].startswith(b'{"body":[0,1,2,')
    assert out[27] == 0xc6     # bin32 header right after the 27-byte constant prefix


def test_bundled_echo_is_the_tested_echo():
    bundled = actors.ROOT / "echo-wasmbus" / "echo.wat"
    assert bundled.read_text() == (HERE / "echo.wat").read_text()
