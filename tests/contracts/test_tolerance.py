"""Receive-side leniency required by docs/contracts.md §2 and §11 (Rust/TinyGo peer quirks)."""

import cbor2
import msgpack
import pytest

import contracts
from contracts import Timestamp, blobstore, httpserver, keyvalue, messaging, sqldb


def mp(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def cb(*items) -> bytes:
    """0x7f + concatenated CBOR items (lets tests build the inline-Timestamp quirk)."""
    return b"\x7f" + b"".join(cbor2.dumps(i) for i in items)


# ---------------------------------------------------------------------------------- msgpack


def test_struct_as_positional_array():
    raw = mp(["POST", "/x", "q=1", {"a": ["b"]}, b"body"])
    assert contracts.decode(httpserver.HttpRequest, raw) == httpserver.HttpRequest(
        "POST", "/x", "q=1", {"a": ["b"]}, b"body"
    )


def test_positional_array_short_and_long():
    assert contracts.decode(keyvalue.SetRequest, mp(["k"])) == keyvalue.SetRequest("k", "", 0)
    long = mp(["k", "v", 9, "extra", 1])
    assert contracts.decode(keyvalue.SetRequest, long) == keyvalue.SetRequest("k", "v", 9)


def test_nested_positional_timestamp():
    raw = mp({"containerId": "c", "createdAt": [1700000000, 5]})
    meta = contracts.decode(blobstore.ContainerMetadata, raw)
    assert meta.created_at == Timestamp(1700000000, 5)


def test_msgpack_timestamp_extension_accepted():
    raw = mp({"containerId": "c", "createdAt": msgpack.Timestamp(10, 20)})
    assert contracts.decode(blobstore.ContainerMetadata, raw).created_at == Timestamp(10, 20)


def test_nil_optional_is_none():
    raw = mp({"subject": "s", "replyTo": None, "body": b"x"})
    assert contracts.decode(messaging.PubMessage, raw) == messaging.PubMessage("s", None, b"x")


def test_nil_required_takes_default():
    raw = mp({"subject": None, "body": None, "timeoutMs": None})
    assert contracts.decode(messaging.RequestMessage, raw) == messaging.RequestMessage("", b"", 0)


def test_empty_optional_string_is_none():
    raw = mp({"subject": "s", "replyTo": "", "body": b""})  # TinyGo writes "" for "unset"
    assert contracts.decode(messaging.SubMessage, raw).reply_to is None
    meta = mp({"objectId": "o", "containerId": "c", "contentLength": 1, "contentType": ""})
    assert contracts.decode(blobstore.ObjectMetadata, meta).content_type is None


def test_tinygo_statement():
    raw = mp({"sql": "select 1", "database": "", "parameters": None})
    assert contracts.decode(sqldb.Statement, raw) == sqldb.Statement(sql="select 1")


def test_sqldb_parameters_from_bin_or_ints():
    tinygo = mp({"sql": "x", "parameters": [b"\x01\xc8"]})  # TinyGo writes bin here
    rust = mp({"sql": "x", "parameters": [[1, 200]]})
    for raw in (tinygo, rust):
        assert contracts.decode(sqldb.Statement, raw).parameters == [b"\x01\xc8"]


@pytest.mark.parametrize("body", [b"hi", "hi", [104, 105]], ids=["bin", "str", "int-array"])
def test_blob_accepts_bin_str_and_int_array(body):
    raw = mp({"subject": "s", "body": body})
    assert contracts.decode(messaging.PubMessage, raw).body == b"hi"


def test_string_accepts_bin():
    assert contracts.decode(messaging.PubMessage, mp({"subject": b"abc"})).subject == "abc"
    assert contracts.decode(str, mp(b"key")) == "key"


def test_missing_keys_take_wire_defaults():
    assert contracts.decode(messaging.PubMessage, mp({})) == messaging.PubMessage("", None, b"")
    # Rust's decoder fails on a missing `header`; we are lenient on receive.
    req = contracts.decode(httpserver.HttpRequest, mp({"method": "GET"}))
    assert req.header == {} and req.body == b"" and req.path == ""
    # A missing statusCode is 0 on the wire side (what Rust would see), not the SDK default 200.
    assert contracts.decode(httpserver.HttpResponse, mp({"header": {}})).status_code == 0


def test_unknown_keys_ignored():
    raw = mp({"key": "k", "value": 3, "future": {"x": [1, 2]}, "another": None})
    assert contracts.decode(keyvalue.IncrementRequest, raw) == keyvalue.IncrementRequest("k", 3)


def test_key_order_irrelevant():
    raw = mp({"body": b"b", "header": {"h": ["v"]}, "statusCode": 404})
    resp = contracts.decode(httpserver.HttpResponse, raw)
    assert resp == httpserver.HttpResponse(404, {"h": ["v"]}, b"b")


def test_c1_prefixed_msgpack():
    payload = b"\xc1" + mp({"key": "counter", "value": -2})
    op = contracts.operation(keyvalue.INCREMENT)
    assert contracts.format_of(payload) == "msgpack"
    assert contracts.strip_prefix(payload) == payload[1:]
    assert op.decode_input(payload) == keyvalue.IncrementRequest("counter", -2)


def test_single_byte_payloads_are_legacy_msgpack():
    assert contracts.format_of(b"\x07") == "msgpack"
    assert contracts.decode(contracts.U32, b"\x07") == 7
    assert contracts.format_of(b"\x7f") == "msgpack"  # 0x7f alone is fixint 127, not a prefix
    assert contracts.decode(contracts.U32, b"\x7f") == 127
    assert contracts.decode(bool, b"\xc3") is True


def test_format_of():
    assert contracts.format_of(b"") == "empty"
    assert contracts.format_of(b"\x80") == "msgpack"
    assert contracts.format_of(b"\x7f\xa0") == "cbor"
    assert contracts.strip_prefix(b"\x7f\xa0") == b"\xa0"
    assert contracts.strip_prefix(b"\x82\x01\x02") == b"\x82\x01\x02"
    assert contracts.strip_prefix(b"") == b""


def test_nil_elements_in_collections_take_defaults():
    raw = mp({"accept": None, "x": ["a", None]})
    assert contracts.decode(httpserver.HeaderMap, raw) == {"accept": [], "x": ["a", ""]}


# ---------------------------------------------------------------------------------- CBOR


def test_cbor_chunk():
    raw = cb(["obj", "cont", b"data", 5, True])
    op = contracts.operation(blobstore.RECEIVE_CHUNK)
    assert contracts.format_of(raw) == "cbor"
    assert op.decode_input(raw) == blobstore.Chunk("obj", "cont", b"data", 5, True)
    assert op.encode_input(op.decode_input(raw), fmt="cbor") == raw


def test_cbor_chunk_as_map():
    fields = {"isLast": True, "bytes": b"x", "objectId": "o", "containerId": "c", "offset": 1}
    raw = cb({**fields, "unknown": 0})
    assert contracts.decode(blobstore.Chunk, raw) == blobstore.Chunk("o", "c", b"x", 1, True)


def test_cbor_get_object_response():
    raw = cb([True, None, ["o", "c", b"ab", 0, True], 2, "text/plain", None])
    op = contracts.operation(blobstore.GET_OBJECT)
    assert op.decode_output(raw) == blobstore.GetObjectResponse(
        success=True,
        initial_chunk=blobstore.Chunk("o", "c", b"ab", 0, True),
        content_length=2,
        content_type="text/plain",
    )
    assert op.encode_output(op.decode_output(raw), fmt="cbor") == raw


def test_cbor_inline_timestamp_quirk():
    # ContainerMetadata = array(2) but createdAt is written as two bare items: sec, nsec.
    raw = b"\x7f\x82" + cbor2.dumps("c") + cbor2.dumps(1700000000) + cbor2.dumps(5)
    meta = contracts.decode(blobstore.ContainerMetadata, raw)
    assert meta == blobstore.ContainerMetadata("c", Timestamp(1700000000, 5))
    assert contracts.encode(blobstore.ContainerMetadata, meta, fmt="cbor") == raw


def test_cbor_inline_timestamp_does_not_shift_later_fields():
    def metadata(oid, ts):
        ts_items = cbor2.dumps(None) if ts is None else cbor2.dumps(ts[0]) + cbor2.dumps(ts[1])
        return (
            b"\x86"
            + cbor2.dumps(oid)
            + cbor2.dumps("c")
            + cbor2.dumps(10)
            + ts_items
            + cbor2.dumps("text/plain")
            + cbor2.dumps(None)
        )

    objects = b"\x82" + metadata("a", (7, 8)) + metadata("b", None)
    body = b"\x83" + objects + b"\xf4" + cbor2.dumps("tok")
    resp = contracts.operation(blobstore.LIST_OBJECTS).decode_output(b"\x7f" + body)
    assert resp.is_last is False and resp.continuation == "tok"
    assert [o.object_id for o in resp.objects] == ["a", "b"]
    assert resp.objects[0].last_modified == Timestamp(7, 8)
    assert resp.objects[1].last_modified is None
    assert all(o.content_type == "text/plain" for o in resp.objects)


def test_cbor_timestamp_as_array_or_map_also_accepted():
    for ts in ([3, 4], {"sec": 3, "nsec": 4}):
        meta = contracts.decode(blobstore.ContainerMetadata, cb(["c", ts]))
        assert meta.created_at == Timestamp(3, 4)


def test_cbor_indefinite_lengths():
    # 9f .. ff indefinite array of one indefinite-length text string ("ab" in two chunks)
    raw = b"\x7f\x9f\x7f\x61a\x61b\xff\x61c\xff"
    assert contracts.operation(blobstore.REMOVE_CONTAINERS).decode_input(raw) == ["ab", "c"]


def test_cbor_tags_and_extra_fields_skipped():
    raw = cb(cbor2.CBORTag(55799, [True, {"x": [1.5, None]}]))  # self-describe tag, extra item
    assert contracts.decode(blobstore.ChunkResponse, raw) == blobstore.ChunkResponse(True)


def test_cbor_blob_as_int_array():
    raw = cb(["o", "c", [1, 2, 255], 0, False])
    assert contracts.decode(blobstore.Chunk, raw).bytes == b"\x01\x02\xff"
