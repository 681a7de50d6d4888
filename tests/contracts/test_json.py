"""JSON <-> typed values (what `lattice call` reads and prints)."""

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts
from contracts import CodecError, Timestamp, blobstore, httpserver, keyvalue, messaging, sqldb

from .strategies import strategy_for


def test_string_becomes_bytes_for_blob_fields():
    op = contracts.operation(messaging.PUBLISH)
    assert op.input_from_json({"subject": "s", "body": "héllo"}) == messaging.PubMessage(
        subject="s", body="héllo".encode()
    )


def test_blob_from_int_list_and_base64():
    op = contracts.operation(messaging.PUBLISH)
    assert op.input_from_json({"body": [1, 2, 255]}).body == b"\x01\x02\xff"
    encoded = base64.b64encode(b"\x00\xff").decode()
    assert op.input_from_json({"body": {"base64": encoded}}).body == b"\x00\xff"
    with pytest.raises(CodecError, match="invalid base64"):
        op.input_from_json({"body": {"base64": "@@@"}})


def test_wire_or_snake_keys():
    op = contracts.operation(httpserver.HANDLE_REQUEST)
    wire = op.input_from_json({"queryString": "a=1", "path": "/p"})
    snake = op.input_from_json({"query_string": "a=1", "path": "/p"})
    assert wire == snake == httpserver.HttpRequest(path="/p", query_string="a=1")


def test_missing_fields_take_dataclass_defaults():
    op = contracts.operation(httpserver.HANDLE_REQUEST)
    assert op.output_from_json({}) == httpserver.HttpResponse(status_code=200, header={}, body=b"")
    assert op.output_from_json({"body": "x"}).status_code == 200


def test_nested_structs_and_timestamps():
    op = contracts.operation(blobstore.PUT_OBJECT)
    value = op.input_from_json(
        {"chunk": {"objectId": "o", "container_id": "c", "bytes": "data", "isLast": True}}
    )
    assert value == blobstore.PutObjectRequest(
        chunk=blobstore.Chunk(object_id="o", container_id="c", bytes=b"data", is_last=True)
    )
    meta = contracts.operation(blobstore.GET_CONTAINER_INFO).output_from_json(
        {"containerId": "c", "createdAt": {"sec": 1, "nsec": 2}}
    )
    assert meta.created_at == Timestamp(1, 2)


def test_sqldb_parameters_from_strings():
    op = contracts.operation(sqldb.EXECUTE)
    stmt = op.input_from_json({"sql": "insert", "parameters": ['{"S":"abc"}', [1, 200]]})
    assert stmt == sqldb.Statement(sql="insert", parameters=[b'{"S":"abc"}', b"\x01\xc8"])


def test_scalar_and_list_inputs():
    assert contracts.operation(keyvalue.GET).input_from_json("key") == "key"
    assert contracts.operation(keyvalue.SET_UNION).input_from_json(["a", "b"]) == ["a", "b"]
    assert contracts.operation(keyvalue.INCREMENT).output_from_json(7) == 7


def test_no_input_operations():
    op = contracts.operation("NumberGen.GenerateGuid")
    assert op.input_from_json(None) is None
    assert op.input_from_json({}) is None
    with pytest.raises(CodecError, match="takes no input"):
        op.input_from_json({"x": 1})


def test_unknown_field_lists_valid_names():
    op = contracts.operation(keyvalue.LIST_ADD)
    with pytest.raises(CodecError) as err:
        op.input_from_json({"list": "l", "value": "v"})
    assert str(err.value) == (
        "cannot convert JSON to ListAddRequest: unknown field 'list'; "
        "valid fields: listName (list_name), value; did you mean 'listName'?"
    )
    with pytest.raises(CodecError, match="did you mean 'listName'"):
        op.input_from_json({"listname": "l"})


def test_type_errors_in_json():
    op = contracts.operation(keyvalue.INCREMENT)
    with pytest.raises(CodecError, match=r"IncrementRequest\.value: expected an integer \(I32\)"):
        op.input_from_json({"key": "k", "value": "1"})
    with pytest.raises(CodecError, match="does not fit I32"):
        op.input_from_json({"key": "k", "value": 2**40})
    with pytest.raises(CodecError, match="expected a JSON object for IncrementRequest, got array"):
        op.input_from_json([1])


def test_empty_optional_string_from_json_is_none():
    op = contracts.operation(messaging.PUBLISH)
    assert op.input_from_json({"subject": "s", "replyTo": ""}).reply_to is None
    assert op.input_from_json({"subject": "s", "replyTo": None}).reply_to is None


def test_to_jsonable():
    resp = blobstore.GetObjectResponse(
        success=True,
        initial_chunk=blobstore.Chunk("o", "c", b"\xff\x00", 0, True),
        content_length=2,
    )
    assert contracts.to_jsonable(resp) == {
        "success": True,
        "initialChunk": {
            "objectId": "o",
            "containerId": "c",
            "bytes": {"base64": "/wA="},
            "offset": 0,
            "isLast": True,
        },
        "contentLength": 2,
    }
    assert contracts.to_jsonable(httpserver.HttpResponse(body=b"ok")) == {
        "statusCode": 200,
        "header": {},
        "body": "ok",
    }
    meta = blobstore.ContainerMetadata("c", Timestamp(5, 6))
    assert contracts.to_jsonable(meta) == {"containerId": "c", "createdAt": {"sec": 5, "nsec": 6}}
    assert contracts.to_jsonable([b"a", None, 3]) == ["a", None, 3]


SIDES = [
    pytest.param(op, side, id=f"{name}-{side}")
    for name, op in contracts.OPERATIONS.items()
    for side in ("input", "output")
    if getattr(op, side) is not None
]


@pytest.mark.parametrize(("op", "side"), SIDES)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_to_jsonable_then_from_json_round_trips(op, side, data):
    spec = getattr(op, side)
    value = data.draw(strategy_for(spec))
    convert = op.input_from_json if side == "input" else op.output_from_json
    assert convert(contracts.to_jsonable(value)) == value
