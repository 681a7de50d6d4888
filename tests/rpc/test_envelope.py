"""The RPC envelope (docs/wire.md §2.2-2.4, §2.7; docs/contracts.md §3.3): entity URLs, the
invocation hash, exact Invocation/InvocationResponse encodings and tolerant decoding of every
peer."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.rpc import subjects
from lattice.rpc.invocation import (
    Entity,
    EnvelopeError,
    Invocation,
    InvocationResponse,
    invocation_hash,
)

# The worked example of docs/wire.md §2.7.
ACTOR = "MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5"
PROVIDER = "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M"
HASH_27 = "C51558F531564714A8D8BFB8E4195D9E8C8E6B42C3758952679420EDE9CFC99A"
HOST = "NwashHostCallerId000000000000000000000000000000000000000"

INVOCATION_KEYS = {"origin", "target", "operation", "msg", "id", "encoded_claims", "host_id",
                   "content_length"}
ENTITY_KEYS = {"public_key", "link_name", "contract_id"}


def _invocation(**overrides) -> Invocation:
    fields = {
        "origin": Entity.actor(ACTOR),
        "target": Entity.provider(PROVIDER, "wasmcloud:httpserver", "default"),
        "operation": "HttpServer.HandleRequest",
        "msg": b"hello",
        "id": "4d2b8e4c-7b1f-4f0e-9c63-0f3d1f1f2a9b",
        "encoded_claims": "a.b.c",
        "host_id": HOST,
        "content_length": 5,
    }
    fields.update(overrides)
    return Invocation(**fields)


def _plain(data: bytes) -> dict:
    """Unpack as a strict modern peer would: str stays str, bin stays bytes."""
    return msgpack.unpackb(data, raw=False)


# ---- WasmCloudEntity URLs (§2.2) ----------------------------------------------------------------


def test_actor_url_is_the_bare_key() -> None:
    assert Entity.actor(ACTOR).url == f"wasmbus://{ACTOR}"


def test_provider_url_from_the_worked_example() -> None:
    entity = Entity.provider(PROVIDER, "wasmcloud:httpserver", "default")
    assert entity.url == f"wasmbus://wasmcloud/httpserver/default/{PROVIDER}"


def test_provider_url_normalises_contract_and_link_but_not_the_key() -> None:
    entity = Entity.provider("VMixedCaseKey", "WasmCloud:Http Server:V2", "My Link")
    assert entity.url == "wasmbus://wasmcloud/http_server/v2/my_link/VMixedCaseKey"


def test_a_key_starting_with_m_in_any_case_is_an_actor_even_with_a_contract() -> None:
    assert Entity("mlowercase").url == "wasmbus://mlowercase"
    assert Entity("mlowercase").is_actor
    # OTP and wasmbus-rpc decide by the key alone.
    assert Entity(ACTOR, "wasmcloud:httpserver", "default").url == f"wasmbus://{ACTOR}"


def test_wash_fake_origin_url_matches_wire_md() -> None:
    wash = Entity("__WASH__")
    assert not wash.is_actor
    assert wash.url == "wasmbus:////__WASH__"


def test_non_actor_key_with_empty_contract_and_link() -> None:
    assert Entity(PROVIDER).url == f"wasmbus:////{PROVIDER}"


def test_provider_constructor_defaults_link_name_to_default() -> None:
    entity = Entity.provider(PROVIDER, "wasmcloud:keyvalue")
    assert entity.link_name == "default"
    assert entity.url == f"wasmbus://wasmcloud/keyvalue/default/{PROVIDER}"


def test_entity_wire_form_always_has_all_three_keys() -> None:
    assert Entity.actor(ACTOR).to_wire() == {"public_key": ACTOR, "link_name": "",
                                             "contract_id": ""}
    provider = Entity.provider(PROVIDER, "wasmcloud:httpserver", "default")
    assert Entity.from_wire(provider.to_wire()) == provider


def test_entity_from_wire_tolerates_missing_keys_and_rejects_non_maps() -> None:
    assert Entity.from_wire({"public_key": ACTOR}) == Entity.actor(ACTOR)
    assert Entity.from_wire({"public_key": ACTOR, "contract_id": None,
                             "link_name": None}) == Entity.actor(ACTOR)
    with pytest.raises(EnvelopeError, match="entity map"):
        Entity.from_wire([ACTOR, "", ""])


# ---- the invocation hash (§2.5, §2.7) -----------------------------------------------------------


def test_worked_example_hash_exactly() -> None:
    origin = Entity.actor(ACTOR)
    target = Entity.provider(PROVIDER, "wasmcloud:httpserver", "default")
    operation = "HttpServer.HandleRequest"
    inv = _invocation(origin=origin, target=target, operation=operation, msg=b"hello")
    assert origin.url == "wasmbus://MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5"
    assert inv.target_url == ("wasmbus://wasmcloud/httpserver/default/"
                              "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M"
                              "/HttpServer.HandleRequest")
    assert invocation_hash(origin.url, inv.target_url, operation, b"hello") == HASH_27


def test_hash_is_upper_hex_sha256_of_the_plain_concatenation() -> None:
    import hashlib

    origin, target, op, msg = "wasmbus://Ma", "wasmbus://Mb/Op.Do", "Op.Do", b"\x00\xff"
    expected = hashlib.sha256(b"wasmbus://Mawasmbus://Mb/Op.DoOp.Do\x00\xff").hexdigest().upper()
    assert invocation_hash(origin, target, op, msg) == expected
    assert invocation_hash(origin, target, op, b"") != invocation_hash(origin, target, op, b"\0")


# ---- Invocation encoding (§2.3) -----------------------------------------------------------------


def test_invocation_encodes_exactly_the_wire_keys() -> None:
    doc = _plain(_invocation().encode())
    assert set(doc) == INVOCATION_KEYS
    assert set(doc["origin"]) == ENTITY_KEYS
    assert set(doc["target"]) == ENTITY_KEYS
    assert doc["origin"] == {"public_key": ACTOR, "link_name": "", "contract_id": ""}
    assert doc["target"] == {"public_key": PROVIDER, "link_name": "default",
                             "contract_id": "wasmcloud:httpserver"}
    assert doc["operation"] == "HttpServer.HandleRequest"
    assert doc["host_id"] == HOST
    assert doc["content_length"] == 5
    assert doc["encoded_claims"] == "a.b.c"


def test_invocation_msg_is_bin_and_strings_are_str() -> None:
    data = _invocation().encode()
    assert b"\xa3msg\xc4\x05hello" in data          # bin 8
    assert b"\xa9operation\xb8HttpServer.HandleRequest" in data  # fixstr key, str 8 value
    doc = _plain(data)
    assert isinstance(doc["msg"], bytes) and doc["msg"] == b"hello"
    assert isinstance(doc["id"], str)
    big = _invocation(msg=b"x" * 300, content_length=300).encode()
    assert b"\xa3msg\xc5\x01\x2c" in big             # bin 16 for longer payloads


def test_empty_and_chunked_invocation_still_send_msg_as_empty_bin_and_content_length() -> None:
    inv = _invocation(msg=b"", content_length=2_000_000)
    data = inv.encode()
    assert b"\xa3msg\xc4\x00" in data
    assert _plain(data)["content_length"] == 2_000_000
    assert inv.chunked
    assert not _invocation().chunked


def test_invocation_trace_context_only_when_set() -> None:
    assert "traceContext" not in _plain(_invocation(trace_context=None).encode())
    assert "traceContext" not in _plain(_invocation(trace_context={}).encode())
    ctx = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    doc = _plain(_invocation(trace_context=ctx).encode())
    assert set(doc) == INVOCATION_KEYS | {"traceContext"}
    assert doc["traceContext"] == ctx
    assert Invocation.decode(_invocation(trace_context=ctx).encode()).trace_context == ctx


def test_invocation_encoding_has_no_nil_values() -> None:
    def walk(value):
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        assert value is not None

    walk(_plain(_invocation().encode()))


# ---- InvocationResponse encoding (§2.4) ---------------------------------------------------------


def test_success_response_omits_error() -> None:
    doc = _plain(InvocationResponse("inv-1", b"result").encode())
    assert doc == {"msg": b"result", "invocation_id": "inv-1", "content_length": 6}
    assert "error" not in doc


def test_failure_response_carries_error_even_when_empty() -> None:
    doc = _plain(InvocationResponse("inv-1", b"", "boom").encode())
    assert doc == {"msg": b"", "invocation_id": "inv-1", "error": "boom", "content_length": 0}
    empty = _plain(InvocationResponse("inv-1", b"", "").encode())
    assert "error" in empty and empty["error"] == ""
    assert InvocationResponse.decode(InvocationResponse("i", error="").encode()).error == ""


def test_response_content_length_is_always_present() -> None:
    assert _plain(InvocationResponse("i").encode())["content_length"] == 0
    assert _plain(InvocationResponse("i", b"abc").encode())["content_length"] == 3
    chunked = _plain(InvocationResponse("i", b"", None, 2_000_000).encode())
    assert chunked["content_length"] == 2_000_000


def test_response_msg_is_bin() -> None:
    data = InvocationResponse("i", b"hi").encode()
    assert b"\xa3msg\xc4\x02hi" in data
    assert b"\xa3msg\xc4\x00" in InvocationResponse("i").encode()


def test_response_trace_context_only_when_set() -> None:
    assert "traceContext" not in _plain(InvocationResponse("i", b"x").encode())
    ctx = {"traceparent": "00-abc-def-01", "tracestate": "k=v"}
    doc = _plain(InvocationResponse("i", b"x", trace_context=ctx).encode())
    assert doc["traceContext"] == ctx
    assert set(doc) == {"msg", "invocation_id", "content_length", "traceContext"}


# ---- tolerant decoding (§2.4 "Decoder tolerance") -----------------------------------------------


NOT_UTF8 = b"\x83\xa6status\xcc\xc8\xff\xfe\x80"


def test_otp_response_with_msg_as_non_utf8_str() -> None:
    doc = {"msg": NOT_UTF8, "invocation_id": "inv-otp", "content_length": len(NOT_UTF8),
           "instance_id": "0f8e2a3c-1111-2222-3333-444455556666"}
    data = msgpack.packb(doc, use_bin_type=False)  # Msgpax: binaries become str
    assert b"\xa3msg" + bytes([0xA0 | len(NOT_UTF8)]) + NOT_UTF8 in data  # fixstr, not bin
    resp = InvocationResponse.decode(data)
    assert resp.msg == NOT_UTF8
    assert resp.invocation_id == "inv-otp"
    assert resp.error is None
    assert resp.content_length == len(NOT_UTF8)


def test_otp_not_running_reply_with_msg_as_empty_array() -> None:
    text = f"Invocation received for actor {ACTOR} that is not running"
    data = msgpack.packb({"msg": [], "invocation_id": "inv-9", "error": text,
                          "instance_id": "x"}, use_bin_type=False)
    resp = InvocationResponse.decode(data)
    assert resp.msg == b""
    assert resp.error == text
    assert resp.content_length is None


def test_old_otp_error_reply_with_msg_nil() -> None:
    data = msgpack.packb({"msg": None, "invocation_id": "inv-1", "error": "nope"})
    resp = InvocationResponse.decode(data)
    assert resp.msg == b""
    assert resp.error == "nope"


def test_response_with_error_nil_is_success() -> None:
    data = msgpack.packb({"msg": b"ok", "invocation_id": "i", "error": None,
                          "content_length": 2}, use_bin_type=True)
    assert InvocationResponse.decode(data).error is None


def test_response_extra_keys_and_key_order_do_not_matter() -> None:
    pairs = [("content_length", 2), ("instance_id", "abc"), ("error", "bad"),
             ("invocation_id", "i-1"), ("msg", b"ok"), ("future_field", [1, {"a": 2}])]
    for order in (pairs, list(reversed(pairs))):
        resp = InvocationResponse.decode(msgpack.packb(dict(order), use_bin_type=True))
        assert (resp.invocation_id, resp.msg, resp.error, resp.content_length) == (
            "i-1", b"ok", "bad", 2)


def test_invocation_keys_in_any_order_with_extra_keys() -> None:
    inv = _invocation()
    doc = _plain(inv.encode())
    reordered = dict(reversed(list(doc.items())))
    reordered["instance_id"] = "ignored"
    assert Invocation.decode(msgpack.packb(reordered, use_bin_type=True)) == inv


def test_invocation_without_content_length_uses_msg_length() -> None:
    doc = _plain(_invocation(msg=b"abcdef", content_length=6).encode())
    del doc["content_length"]
    inv = Invocation.decode(msgpack.packb(doc, use_bin_type=True))
    assert inv.content_length == 6
    assert not inv.chunked


def test_invocation_from_an_elixir_encoder_with_str_msg() -> None:
    doc = _plain(_invocation(msg=NOT_UTF8, content_length=len(NOT_UTF8)).encode())
    inv = Invocation.decode(msgpack.packb(doc, use_bin_type=False))
    assert inv.msg == NOT_UTF8
    assert inv.operation == "HttpServer.HandleRequest"
    assert inv.target == Entity.provider(PROVIDER, "wasmcloud:httpserver", "default")


def test_invocation_msg_as_int_array_and_nil() -> None:
    doc = _plain(_invocation().encode())
    doc["msg"] = list(b"hi")
    del doc["content_length"]
    assert Invocation.decode(msgpack.packb(doc)).msg == b"hi"
    doc["msg"] = None
    assert Invocation.decode(msgpack.packb(doc)).msg == b""


def test_invocation_trace_context_drops_nil_values() -> None:
    doc = _plain(_invocation().encode())
    doc["traceContext"] = {"traceparent": "00-x", "tracestate": None}
    assert Invocation.decode(msgpack.packb(doc)).trace_context == {"traceparent": "00-x"}


GARBAGE = [
    b"",
    b"\xc1",                                   # never-used msgpack byte
    b"this is not msgpack \xff\xfe",
    b"\x81\xa3msg",                            # truncated map
    b"\x80\x00",                               # a map followed by extra data
    msgpack.packb([1, 2, 3]),
    msgpack.packb("a string"),
    msgpack.packb(None),
    msgpack.packb(42),
    msgpack.packb({1: 2}),                     # non-string keys
]


@pytest.mark.parametrize("data", GARBAGE, ids=range(len(GARBAGE)))
def test_garbage_is_an_envelope_error(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        Invocation.decode(data)
    with pytest.raises(EnvelopeError):
        InvocationResponse.decode(data)


BAD_INVOCATION_FIELDS = [
    {"msg": 3},
    {"msg": {"a": 1}},
    {"msg": 1.5},
    {"msg": ["a"]},
    {"operation": 7},
    {"id": [1]},
    {"encoded_claims": 1.0},
    {"host_id": True},
    {"id": b"\xff\xfe"},                       # a str (Elixir style) that is not UTF-8
    {"target": {"public_key": 5}},
    {"traceContext": {"traceparent": 5}},
]


@pytest.mark.parametrize("override", BAD_INVOCATION_FIELDS,
                         ids=range(len(BAD_INVOCATION_FIELDS)))
def test_wrongly_typed_invocation_fields_are_envelope_errors(override: dict) -> None:
    doc = _plain(_invocation().encode())
    doc.update(override)
    with pytest.raises(EnvelopeError, match="Invocation"):
        Invocation.decode(msgpack.packb(doc, use_bin_type=False))


BAD_RESPONSE_FIELDS = [
    {"msg": 3},
    {"msg": {"a": 1}},
    {"msg": ["a"]},
    {"invocation_id": 7},
    {"invocation_id": b"\xff\xfe"},
    {"error": 5},
    {"error": {"reason": "x"}},
    {"traceContext": {"traceparent": 5}},
]


@pytest.mark.parametrize("override", BAD_RESPONSE_FIELDS, ids=range(len(BAD_RESPONSE_FIELDS)))
def test_wrongly_typed_response_fields_are_envelope_errors(override: dict) -> None:
    doc = {"msg": b"", "invocation_id": "i", "content_length": 0}
    doc.update(override)
    with pytest.raises(EnvelopeError, match="InvocationResponse"):
        InvocationResponse.decode(msgpack.packb(doc, use_bin_type=False))


def test_invocation_origin_that_is_not_a_map_is_an_envelope_error() -> None:
    doc = _plain(_invocation().encode())
    doc["origin"] = ACTOR
    with pytest.raises(EnvelopeError, match="entity map"):
        Invocation.decode(msgpack.packb(doc))
    del doc["origin"]
    with pytest.raises(EnvelopeError):
        Invocation.decode(msgpack.packb(doc))


def test_msg_array_with_out_of_range_ints_is_an_envelope_error() -> None:
    for value in ([256], [-1]):
        with pytest.raises(EnvelopeError):
            InvocationResponse.decode(msgpack.packb({"msg": value, "invocation_id": "i"}))
        doc = _plain(_invocation().encode())
        doc["msg"] = value
        with pytest.raises(EnvelopeError):
            Invocation.decode(msgpack.packb(doc))


# ---- property-based round trips -----------------------------------------------------------------

_text = st.text(max_size=40)
_entity = st.builds(Entity, _text, _text, _text)
_trace = st.one_of(st.none(), st.dictionaries(_text, _text, min_size=1, max_size=4))
_u64 = st.integers(min_value=0, max_value=2**64 - 1)


@st.composite
def _invocations(draw) -> Invocation:
    msg = draw(st.binary(max_size=300))
    chunked = draw(st.booleans())
    return Invocation(origin=draw(_entity), target=draw(_entity), operation=draw(_text), msg=msg,
                      id=draw(_text), encoded_claims=draw(_text), host_id=draw(_text),
                      content_length=draw(_u64) if chunked else len(msg),
                      trace_context=draw(_trace))


@settings(max_examples=150, deadline=None)
@given(_invocations())
def test_invocation_round_trip(inv: Invocation) -> None:
    data = inv.encode()
    assert Invocation.decode(data) == inv
    assert set(_plain(data)) == INVOCATION_KEYS | ({"traceContext"} if inv.trace_context else set())


@settings(max_examples=150, deadline=None)
@given(inv_id=_text, msg=st.binary(max_size=300), error=st.one_of(st.none(), _text),
       length=st.one_of(st.none(), _u64), trace=_trace)
def test_invocation_response_round_trip(inv_id, msg, error, length, trace) -> None:
    resp = InvocationResponse(inv_id, msg, error, length, trace)
    decoded = InvocationResponse.decode(resp.encode())
    assert decoded.invocation_id == inv_id
    assert decoded.msg == msg
    assert decoded.error == error
    assert decoded.content_length == (len(msg) if length is None else length)
    assert decoded.trace_context == trace


@settings(max_examples=100, deadline=None)
@given(msg=st.binary(max_size=300), error=st.one_of(st.none(), _text))
def test_elixir_style_response_decodes_to_the_same_bytes(msg: bytes, error) -> None:
    doc = {"instance_id": "x", "msg": msg, "invocation_id": "inv"}
    if error is not None:
        doc["error"] = error
    resp = InvocationResponse.decode(msgpack.packb(doc, use_bin_type=False))
    assert resp.msg == msg
    assert resp.error == error


# ---- subjects used by the envelope (§3.2) -------------------------------------------------------


def test_rpc_subjects() -> None:
    assert subjects.actor("default", ACTOR) == f"wasmbus.rpc.default.{ACTOR}"
    assert subjects.provider("default", PROVIDER, "default") == (
        f"wasmbus.rpc.default.{PROVIDER}.default")
    base = f"wasmbus.rpc.lp.{PROVIDER}.blue"
    assert subjects.provider_linkdefs_put("lp", PROVIDER, "blue") == base + ".linkdefs.put"
    assert subjects.provider_linkdefs_del("lp", PROVIDER, "blue") == base + ".linkdefs.del"
    assert subjects.provider_health("lp", PROVIDER, "blue") == base + ".health"
    assert subjects.provider_shutdown("lp", PROVIDER, "blue") == base + ".shutdown"
    assert subjects.events("lp") == "wasmbus.evt.lp"
    assert subjects.event("lp", "actor_started") == "wasmbus.evt.lp.actor_started"
    assert subjects.rpc_events("lp") == "wasmbus.rpcevt.lp"
    assert subjects.chunk_bucket("lp") == "lp"
    assert subjects.lattice_bucket("lp") == "LATTICEDATA_lp"
    assert subjects.ctl("lp", "ping", "hosts") == "wasmbus.ctl.lp.ping.hosts"
    assert subjects.CHUNK_THRESHOLD == 921_600


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "a*", "a>", "dé"])
def test_lattice_prefix_validation(bad: str) -> None:
    with pytest.raises(ValueError, match="may only contain"):
        subjects.check_lattice(bad)
    assert subjects.check_lattice("Default_lattice-1") == "Default_lattice-1"
