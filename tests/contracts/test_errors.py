"""CodecError messages name the message type, the field path and what was wrong."""

import re

import msgpack
import pytest

import contracts
from contracts import U16, U32, CodecError, blobstore, httpserver, keyvalue, messaging, sqldb


def mp(obj) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def message(exc_info) -> str:
    return str(exc_info.value)


def raises(text: str, exc: type[Exception] = CodecError):
    """pytest.raises matching ``text`` literally (messages contain dots and parentheses)."""
    return pytest.raises(exc, match=re.escape(text))


def test_is_value_error():
    assert issubclass(CodecError, ValueError)


def test_out_of_range_on_encode():
    with pytest.raises(CodecError) as err:
        contracts.encode(httpserver.HttpResponse, httpserver.HttpResponse(status_code=70000))
    assert message(err) == "HttpResponse.status_code: 70000 does not fit U16 (0..65535)"
    assert err.value.type_name == "HttpResponse"
    assert err.value.path == ".status_code"


@pytest.mark.parametrize(
    ("spec", "value", "text"),
    [
        (U32, -1, "-1 does not fit U32 (0..4294967295)"),
        (contracts.I32, 2**31, "2147483648 does not fit I32 (-2147483648..2147483647)"),
        (contracts.U64, 2**64, "does not fit U64"),
        (contracts.I8, -129, "does not fit I8 (-128..127)"),
    ],
)
def test_int_ranges(spec, value, text):
    with pytest.raises(CodecError, match=text.replace("(", r"\(").replace(")", r"\)")):
        contracts.encode(spec, value)


def test_out_of_range_on_decode():
    with pytest.raises(CodecError) as err:
        contracts.decode(httpserver.HttpResponse, mp({"statusCode": 70000, "header": {}}))
    assert message(err) == (
        "cannot decode HttpResponse.status_code: 70000 does not fit U16 (0..65535)"
    )


def test_wrong_top_level_type_on_decode():
    with pytest.raises(CodecError) as err:
        contracts.decode(httpserver.HttpRequest, mp(5))
    assert message(err) == "cannot decode HttpRequest: expected a msgpack map, got int"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (messaging.PubMessage(body="text"), "PubMessage.body: expected bytes, got str"),
        (messaging.PubMessage(subject=b"s"), "PubMessage.subject: expected str, got bytes"),
        (messaging.PubMessage(subject=None), "PubMessage.subject: expected str, got None"),
        (messaging.PubMessage(reply_to=5), "PubMessage.reply_to: expected str, got int"),
    ],
)
def test_wrong_types_on_encode(value, text):
    with pytest.raises(CodecError) as err:
        contracts.encode(messaging.PubMessage, value)
    assert message(err) == text


def test_bool_is_not_an_int():
    with raises("RequestMessage.timeout_ms: expected int (U32), got bool"):
        contracts.encode(messaging.RequestMessage, messaging.RequestMessage(timeout_ms=True))
    with pytest.raises(CodecError, match="expected an integer"):
        contracts.decode(U32, mp(True))


def test_int_is_not_a_bool():
    with raises("GetResponse.exists: expected bool, got int"):
        contracts.encode(keyvalue.GetResponse, keyvalue.GetResponse(exists=1))


def test_wrong_struct_type():
    with pytest.raises(CodecError, match="HttpRequest: expected HttpRequest, got HttpResponse"):
        contracts.encode(httpserver.HttpRequest, httpserver.HttpResponse())


def test_nested_paths():
    bad = sqldb.QueryResult(columns=[sqldb.Column(0, "a", "int4"), sqldb.Column(-1, "b", "x")])
    with pytest.raises(CodecError) as err:
        contracts.encode(sqldb.QueryResult, bad)
    assert message(err) == "QueryResult.columns[1].ordinal: -1 does not fit U32 (0..4294967295)"

    raw = mp({"method": "GET", "header": {"accept": ["a", 7]}})
    with pytest.raises(CodecError) as err:
        contracts.decode(httpserver.HttpRequest, raw)
    assert message(err) == "cannot decode HttpRequest.header['accept'][1]: expected a str, got int"

    chunk = blobstore.PutObjectRequest(chunk=blobstore.Chunk(offset=-5))
    with pytest.raises(CodecError, match=r"^PutObjectRequest\.chunk\.offset: -5 does not fit U64"):
        contracts.encode(blobstore.PutObjectRequest, chunk)


def test_dict_key_must_be_str():
    with raises("HttpRequest.header: map key 1 must be str, got int"):
        contracts.encode(httpserver.HttpRequest, httpserver.HttpRequest(header={1: ["x"]}))


def test_bad_int_array_element():
    with pytest.raises(CodecError, match=r"Statement.parameters\[0\]: array element \[1\] = 300"):
        contracts.encode(sqldb.Statement, sqldb.Statement(parameters=[[1, 300]]))


def test_scalar_op_errors_name_the_operation():
    op = contracts.operation(keyvalue.INCREMENT)
    with pytest.raises(CodecError) as err:
        op.decode_output(mp("seven"))
    assert message(err) == (
        "cannot decode KeyValue.Increment output: expected an integer (I32), got str"
    )
    with raises("KeyValue.Get input: expected str, got int"):
        contracts.operation(keyvalue.GET).encode_input(5)


@pytest.mark.parametrize("first", [0x00, 0x05, 0x7E, 0xC0])
def test_invalid_encoding_prefix(first):
    payload = bytes([first, 0x01])
    with raises(f"invalid encoding (reserved first byte 0x{first:02x})"):
        contracts.format_of(payload)
    with pytest.raises(CodecError) as err:
        contracts.operation(httpserver.HANDLE_REQUEST).decode_input(payload)
    assert message(err).startswith("cannot decode HttpRequest: invalid encoding")


def test_truncated_and_trailing_msgpack():
    good = mp({"key": "k", "value": 1})
    with pytest.raises(CodecError, match=r"cannot decode IncrementRequest: invalid msgpack"):
        contracts.decode(keyvalue.IncrementRequest, good[:-1])
    with pytest.raises(CodecError, match="trailing bytes after the msgpack value"):
        contracts.decode(keyvalue.IncrementRequest, good + b"\x01")


def test_truncated_cbor():
    with raises("cannot decode Chunk.container_id: truncated CBOR data"):
        contracts.decode(blobstore.Chunk, b"\x7f\x85\x61o")


def test_empty_payload_where_value_expected():
    with raises("cannot decode GetResponse: empty payload"):
        contracts.operation(keyvalue.GET).decode_output(b"")
    with raises("cannot decode KeyValue.Del output: empty payload"):
        contracts.operation(keyvalue.DEL).decode_output(b"")


def test_value_for_operation_without_input():
    with raises("NumberGen.Random32 input: takes no payload, got str"):
        contracts.operation("NumberGen.Random32").encode_input("x")


def test_invalid_utf8_string():
    with pytest.raises(CodecError, match="not valid UTF-8"):
        contracts.decode(str, b"\xa2\xff\xfe")


def test_unsupported_type_spec():
    with pytest.raises(TypeError, match="unsupported"):
        contracts.encode(set[int], {1})
    with raises("only `T | None`", TypeError):
        contracts.encode(int | str, 1)


def test_cbor_wrong_type():
    with raises("cannot decode Chunk.offset: expected an integer (U64), got CBOR text string"):
        contracts.decode(blobstore.Chunk, b"\x7f\x85\x61o\x61c\x40\x61x\xf5")


def test_unknown_format_argument():
    with pytest.raises(ValueError, match="unknown payload format"):
        contracts.encode(U16, 1, fmt="json")
