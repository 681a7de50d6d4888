"""Inbound operations: every handler kind, return conversions, registry rules, dispatch errors."""

from __future__ import annotations

import json

import msgpack
import pytest

import contracts
import lattice_actor as la
from contracts import blobstore, core, httpserver
from contracts import messaging as cm
from lattice_actor import (
    HttpError,
    OperationNotHandled,
    RegistrationError,
    Request,
    Response,
    testing,
)
from lattice_actor._dispatch import dispatch

HTTP = contracts.operation(httpserver.HANDLE_REQUEST)
MSG = contracts.operation(cm.HANDLE_MESSAGE)
CHUNK = contracts.operation(blobstore.RECEIVE_CHUNK)
HEALTH = contracts.operation(core.HEALTH_REQUEST)


def http(method="GET", path="/", query_string="", header=None, body=b""):
    req = httpserver.HttpRequest(method=method, path=path, query_string=query_string,
                                 header=header or {}, body=body)
    return HTTP.decode_output(dispatch(HTTP.name, HTTP.encode_input(req)))


# ---- HTTP ----------------------------------------------------------------------------------


def test_http_request_fields_and_text_reply():
    seen = {}

    @la.http_handler
    def handle(req: Request):
        seen.update(method=req.method, path=req.path, qs=req.query_string, query=req.query,
                    query_all=req.query_all, ct=req.headers["CONTENT-TYPE"],
                    multi=req.headers.get_all("x-multi"), joined=req.headers["x-multi"],
                    has=("X-Multi" in req.headers), body=req.body, text=req.text, url=req.url,
                    json=req.json())
        return "héllo"

    resp = http("POST", "/items", "a=1&a=2&b=&c=x%20y",
                {"content-type": ["application/json"], "x-multi": ["1", "2"]},
                b'{"k": [1, 2]}')
    assert resp.status_code == 200
    assert resp.body == "héllo".encode()
    assert resp.header == {"content-type": ["text/plain; charset=utf-8"]}
    assert seen == {
        "method": "POST", "path": "/items", "qs": "a=1&a=2&b=&c=x%20y",
        "query": {"a": "1", "b": "", "c": "x y"},
        "query_all": {"a": ["1", "2"], "b": [""], "c": ["x y"]},
        "ct": "application/json", "multi": ["1", "2"], "joined": "1, 2", "has": True,
        "body": b'{"k": [1, 2]}', "text": '{"k": [1, 2]}', "url": "/items?a=1&a=2&b=&c=x%20y",
        "json": {"k": [1, 2]},
    }
    assert handle.__name__ == "handle"  # the decorator returns the function itself


@pytest.mark.parametrize(("result", "status", "ctype", "body"), [
    ("text", 200, "text/plain; charset=utf-8", b"text"),
    (b"\x00\xff", 200, "application/octet-stream", b"\x00\xff"),
    (bytearray(b"ab"), 200, "application/octet-stream", b"ab"),
    ({"a": 1, "é": [True, None]}, 200, "application/json", '{"a":1,"é":[true,null]}'.encode()),
    ([1, 2], 200, "application/json", b"[1,2]"),
    (None, 200, None, b""),
    (("created", 201), 201, "text/plain; charset=utf-8", b"created"),
    (({"id": 7}, 202, {"x-id": "7"}), 202, "application/json", b'{"id":7}'),
    (Response.json({"x": 1}, status=418), 418, "application/json", b'{"x":1}'),
    (Response.not_found(), 404, "text/plain; charset=utf-8", b"Not Found"),
    (Response.bad_request("no id"), 400, "text/plain; charset=utf-8", b"no id"),
    (Response.internal_error(), 500, "text/plain; charset=utf-8", b"Internal Server Error"),
    (Response.error(429), 429, "text/plain; charset=utf-8", b"Too Many Requests"),
    (Response.html("<p>x</p>"), 200, "text/html; charset=utf-8", b"<p>x</p>"),
    (Response.no_content(), 204, None, b""),
    (Response("plain str body"), 200, "text/plain; charset=utf-8", b"plain str body"),
    (Response(b"raw", 200, {"content-type": "image/png"}), 200, "image/png", b"raw"),
    (httpserver.HttpResponse(203, {"a": ["b"]}, b"wire"), 203, None, b"wire"),
])
def test_http_return_values(result, status, ctype, body):
    la.http_handler(lambda req: result)
    resp = http()
    assert resp.status_code == status
    assert resp.body == body
    assert resp.header.get("content-type") == ([ctype] if ctype else None)


def test_http_tuple_headers_and_redirect():
    la.http_handler(lambda req: ({"id": 7}, 202, {"X-Id": "7", "set-cookie": ["a=1", "b=2"]}))
    resp = http()
    assert resp.header["X-Id"] == ["7"] and resp.header["set-cookie"] == ["a=1", "b=2"]
    testing.reset()
    la.http_handler(lambda req: Response.redirect("/login"))
    resp = http()
    assert (resp.status_code, resp.header) == (302, {"location": ["/login"]})


def test_http_error_and_invalid_json_become_statuses():
    @la.http_handler
    def handle(req):
        if req.path == "/json":
            return req.json()
        raise HttpError(403, "members only", {"www-authenticate": "Basic"})

    resp = http(path="/secret")
    assert (resp.status_code, resp.body) == (403, b"members only")
    assert resp.header["www-authenticate"] == ["Basic"]
    resp = http(path="/json", body=b"{nope")
    assert resp.status_code == 400 and resp.body.startswith(b"invalid JSON body")
    with pytest.raises(ValueError, match="invalid JSON body"):  # catchable as a ValueError
        Request(body=b"{nope").json()
    assert HttpError(404).message == "Not Found" and str(HttpError(404)) == "404 Not Found"


def test_http_handler_exception_and_bad_return_propagate():
    @la.http_handler()  # the called form works too
    def handle(req):
        if req.path == "/boom":
            raise KeyError("missing")
        return 42

    with pytest.raises(KeyError):
        http(path="/boom")
    with pytest.raises(TypeError, match=r"returned int"):
        http()
    with pytest.raises(TypeError, match=r"tuple of 4"):
        testing.reset()
        la.http_handler(lambda req: (1, 2, 3, 4))
        http()


def test_http_undecodable_request_names_the_problem():
    la.http_handler(lambda req: "x")
    with pytest.raises(ValueError, match=r"deserialization: HttpServer.HandleRequest"):
        dispatch(HTTP.name, b"\xc1\xc1")


def test_response_validation_and_headers():
    with pytest.raises(ValueError, match=r"100..999"):
        Response(b"", 42)
    with pytest.raises(ValueError):
        Response(b"", True)  # type: ignore[arg-type]
    headers = la.Headers({"A": "1"}, x_custom="y")
    headers.add("a", "2")
    assert headers.get_all("a") == ["1", "2"] and headers["x-custom"] == "y"
    assert headers.to_wire() == {"A": ["1", "2"], "x-custom": ["y"]}
    del headers["A"]
    assert "a" not in headers and len(headers) == 1 and list(headers) == ["x-custom"]
    with pytest.raises(TypeError):
        headers.add("n", 5)  # type: ignore[arg-type]
    assert Request(body="é").body == "é".encode()
    assert repr(Response.json([])) == "<Response 200 (2 bytes)>"


def test_response_json_converts_dataclasses_sets_and_dates():
    import datetime as dt

    from contracts.keyvalue import SetRequest

    la.http_handler(lambda req: Response.json({
        "req": SetRequest(key="k", value="v"), "tags": {"a"}, "when": dt.date(2024, 1, 2)}))
    assert json.loads(http().body) == {"req": {"key": "k", "value": "v", "expires": 0},
                                       "tags": ["a"], "when": "2024-01-02"}
    with pytest.raises(TypeError, match=r"bytes is not JSON serializable"):
        Response.json({"b": b"x"})


# ---- messages --------------------------------------------------------------------------------


def test_message_handler_and_reply(host):
    host.on("Messaging.Publish", lambda msg: None)
    got = []

    @la.message_handler
    def on_message(msg: la.Message):
        got.append(msg)
        msg.reply(msg.text.upper())

    payload = MSG.encode_input(cm.SubMessage(subject="in", reply_to="_INBOX.1", body=b"hi"))
    assert dispatch(MSG.name, payload) == b""
    assert got == [la.Message("in", b"hi", "_INBOX.1")]
    call = host.last
    assert (call.binding, call.namespace, call.operation) == (
        "default", "wasmcloud:messaging", "Messaging.Publish")
    assert call.value == cm.PubMessage(subject="_INBOX.1", reply_to=None, body=b"HI")


def test_message_handler_must_return_none_and_reply_needs_reply_to():
    la.message_handler(lambda msg: "oops")
    payload = MSG.encode_input(cm.SubMessage(subject="in", body=b"x"))
    with pytest.raises(TypeError, match=r"msg.reply"):
        dispatch(MSG.name, payload)
    with pytest.raises(ValueError, match=r"no reply_to"):
        la.Message("in", b"x").reply(b"y")


# ---- blob chunks -----------------------------------------------------------------------------


def test_chunk_handler_continue_and_cancel():
    received = []

    @la.chunk_handler
    def on_chunk(chunk: la.Chunk):
        received.append((chunk.object_id, chunk.offset, chunk.bytes, chunk.is_last))
        return la.ChunkResponse(cancel_download=True) if chunk.offset else None

    def send(offset, last):
        payload = CHUNK.encode_input(blobstore.Chunk("o", "c", b"data", offset, last))
        return CHUNK.decode_output(dispatch(CHUNK.name, payload))

    assert send(0, False) == blobstore.ChunkResponse(cancel_download=False)
    assert send(4, True) == blobstore.ChunkResponse(cancel_download=True)
    assert received == [("o", 0, b"data", False), ("o", 4, b"data", True)]


def test_chunk_handler_bad_return():
    la.chunk_handler(lambda chunk: True)
    with pytest.raises(TypeError, match=r"ChunkResponse"):
        dispatch(CHUNK.name, CHUNK.encode_input(blobstore.Chunk("o", "c")))


# ---- health ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"\x80", b"\x90"])
def test_default_health_is_healthy(payload):
    assert HEALTH.decode_output(dispatch(HEALTH.name, payload)) == core.HealthCheckResponse(True)
    assert la.handled_operations() == ["Actor.HealthRequest"]


@pytest.mark.parametrize(("result", "expected"), [
    (True, core.HealthCheckResponse(True)),
    (None, core.HealthCheckResponse(True)),
    (False, core.HealthCheckResponse(False)),
    (core.HealthCheckResponse(False, "db down"), core.HealthCheckResponse(False, "db down")),
])
def test_health_handler_results(result, expected):
    la.health_handler(lambda: result)
    assert HEALTH.decode_output(dispatch(HEALTH.name, b"\x80")) == expected


def test_health_handler_exception_reports_unhealthy():
    @la.health_handler
    def health():
        raise ConnectionError("no database")

    assert HEALTH.decode_output(dispatch(HEALTH.name, b"")) == core.HealthCheckResponse(
        False, "no database")
    testing.reset()
    la.health_handler(lambda: "fine")
    with pytest.raises(TypeError, match=r"HealthCheckResponse"):
        dispatch(HEALTH.name, b"")


# ---- generic operations ----------------------------------------------------------------------


def test_raw_operation():
    @la.operation("Pingpong.Ping")
    def ping(payload: bytes) -> bytes:
        return b"pong:" + payload

    la.operation("Pingpong.Quiet")(lambda payload: None)
    la.operation("Pingpong.Text")(lambda payload: "text")
    la.operation("Pingpong.Int")(lambda payload: 3)
    assert dispatch("Pingpong.Ping", b"\x00\xff") == b"pong:\x00\xff"
    assert dispatch("Pingpong.Quiet", b"x") == b""
    with pytest.raises(TypeError, match=r"returned str"):
        dispatch("Pingpong.Text", b"")
    with pytest.raises(TypeError, match=r"returned int"):
        dispatch("Pingpong.Int", b"")
    assert ping(b"direct") == b"pong:direct"


def test_msgpack_operation():
    @la.operation("Calc.Add", msgpack=True)
    def add(args):
        if args is None:
            return None
        return {"sum": args["a"] + args["b"], "blob": b"\x01"}

    reply = dispatch("Calc.Add", msgpack.packb({"a": 1, "b": 2}))
    assert msgpack.unpackb(reply) == {"sum": 3, "blob": b"\x01"}
    assert reply == msgpack.packb({"sum": 3, "blob": b"\x01"}, use_bin_type=True)
    assert dispatch("Calc.Add", b"") == b""
    with pytest.raises(ValueError, match=r"deserialization: Calc.Add"):
        dispatch("Calc.Add", b"\xc1")


# ---- registry and dispatch rules -------------------------------------------------------------


def test_duplicate_registration_is_an_error_naming_both():
    @la.http_handler
    def first(req):
        return "1"

    with pytest.raises(RegistrationError) as info:
        @la.http_handler
        def second(req):
            return "2"
    text = str(info.value)
    assert "HttpServer.HandleRequest" in text and "first" in text and "second" in text
    # the same operation string through the generic decorator collides too
    with pytest.raises(RegistrationError):
        la.operation("HttpServer.HandleRequest")(lambda payload: b"")
    la.health_handler(lambda: True)
    with pytest.raises(RegistrationError):
        la.operation("Actor.HealthRequest")(lambda payload: b"")


@pytest.mark.parametrize("name", ["NoDot", ".Method", "Service.", " A.B", ""])
def test_bad_operation_names(name):
    with pytest.raises(RegistrationError, match=r"Service.Method"):
        la.operation(name)(lambda payload: b"")


def test_handlers_must_be_plain_functions():
    async def handler(req):
        return "x"

    with pytest.raises(RegistrationError, match=r"async"):
        la.http_handler(handler)
    with pytest.raises(RegistrationError, match=r"decorate a function"):
        la.http_handler("not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"operation string"):
        la.operation(lambda payload: b"")  # type: ignore[arg-type]


def test_unknown_operation_lists_what_the_actor_handles():
    la.http_handler(lambda req: "x")
    la.operation("Pingpong.Ping")(lambda payload: b"")
    with pytest.raises(OperationNotHandled) as info:
        dispatch("Pingpong.Pong", b"")
    assert str(info.value) == ("method not handled: 'Pingpong.Pong'; this actor handles "
                               "Actor.HealthRequest, HttpServer.HandleRequest, Pingpong.Ping")
    assert la.handled_operations() == ["Actor.HealthRequest", "HttpServer.HandleRequest",
                                       "Pingpong.Ping"]


def test_reset_forgets_handlers():
    la.http_handler(lambda req: "x")
    testing.reset()
    with pytest.raises(OperationNotHandled):
        dispatch(HTTP.name, HTTP.encode_input(httpserver.HttpRequest()))
    la.http_handler(lambda req: "again")  # no duplicate error after reset
