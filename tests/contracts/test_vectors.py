"""Byte-exact payloads recorded from real wasmCloud actors
(tests/data/vectors/wasmbus-recorded.json)."""

import pytest

import contracts
from contracts import httpserver, keyvalue

HANDLE = contracts.operation(httpserver.HANDLE_REQUEST)
INCREMENT = contracts.operation(keyvalue.INCREMENT)

EXPECTED_REQUEST = httpserver.HttpRequest(
    method="GET", path="/foo", query_string="a=1", header={"accept": ["*/*"]}, body=b"hello"
)


@pytest.mark.parametrize("case", ["kvcounter", "echo"])
def test_request_decodes_and_reencodes(recorded, case):
    vector = recorded[case]
    assert vector["operation"] == httpserver.HANDLE_REQUEST
    raw = bytes.fromhex(vector["request_hex"])
    request = HANDLE.decode_input(raw)
    assert request == EXPECTED_REQUEST
    assert HANDLE.encode_input(request) == raw


def test_kvcounter_host_call(recorded):
    (call,) = recorded["kvcounter"]["host_calls"]
    assert (call["binding"], call["namespace"]) == ("default", keyvalue.CONTRACT_ID)
    op = contracts.operation(call["operation"])
    assert op is INCREMENT
    raw = bytes.fromhex(call["payload_hex"])
    request = op.decode_input(raw)
    assert request == keyvalue.IncrementRequest(key="counter::foo", value=1)
    assert op.encode_input(request) == raw


def test_kvcounter_host_reply(recorded):
    reply = bytes.fromhex(recorded["kvcounter"]["host_reply_hex"])
    assert INCREMENT.decode_output(reply) == 7
    assert INCREMENT.encode_output(7) == reply


def test_kvcounter_response(recorded):
    # This actor wrote its keys as body, header, statusCode: decoding must not care.
    raw = bytes.fromhex(recorded["kvcounter"]["response_hex"])
    assert raw[1:6] == b"\xa4body"
    response = HANDLE.decode_output(raw)
    assert response == httpserver.HttpResponse(status_code=200, header={}, body=b'{"counter":7}')


def test_echo_response(recorded):
    raw = bytes.fromhex(recorded["echo"]["response_hex"])
    response = HANDLE.decode_output(raw)
    assert response.status_code == 200
    assert response.header == {}
    assert response.body == (
        b'{"body":[104,101,108,108,111],"method":"GET","path":"/foo","query_string":"a=1"}'
    )
    assert HANDLE.encode_output(response) == raw  # our canonical order is the Rust order


def test_echo_made_no_host_calls(recorded):
    assert recorded["echo"]["host_calls"] == []
    assert recorded["echo"]["guest_call_return"] == 1
