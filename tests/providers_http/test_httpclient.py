"""httpclient (docs/contracts.md §6.2) through a real lattice: forward.wat makes HttpClient.Request
host calls, the provider talks to a real aiohttp server on a free loopback port."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

import contracts
from contracts.httpclient import HttpRequest, HttpResponse
from lattice.natsd import free_port
from lattice.provider import ProviderError
from lattice.rpc import RpcError
from providers.httpclient import parse_settings
from tests.providers_http.conftest import HTTPCLIENT

pytestmark = pytest.mark.service

OP = contracts.operation("HttpClient.Request")


async def _echo(request: web.Request) -> web.StreamResponse:
    doc = {"method": request.method, "path": request.path_qs,
           "headers": [[k.lower(), v] for k, v in request.headers.items()],
           "body": (await request.read()).decode()}
    resp = web.json_response(doc, status=int(request.query.get("status", "200")))
    resp.headers.add("X-Multi", "1")
    resp.headers.add("X-Multi", "2")
    return resp


async def _missing(request: web.Request) -> web.Response:
    return web.Response(status=404, text="nope")


async def _big(request: web.Request) -> web.StreamResponse:
    if "chunked" in request.query:  # no Content-Length: the cap applies while reading
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(4):
            await resp.write(b"z" * 512)
        await resp.write_eof()
        return resp
    return web.Response(body=b"z" * 2048)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPFound(request.query["to"])


@pytest.fixture
async def remote() -> AsyncIterator[str]:
    """A real HTTP server on a free loopback port; yields its base URL."""
    app = web.Application()
    app.router.add_route("*", "/echo", _echo)
    app.router.add_get("/missing", _missing)
    app.router.add_get("/big", _big)
    app.router.add_get("/redirect", _redirect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def client(lattice: Any, embedded: bool, **values: str) -> tuple[Any, str, str]:
    host = await lattice.host()
    key = await lattice.start_provider(host, "httpclient", embedded=embedded)
    actor = await lattice.forwarder(host, HTTPCLIENT)
    await lattice.link(actor, key, HTTPCLIENT, **values)
    return host, key, actor


async def send(lattice: Any, actor: str, req: HttpRequest) -> HttpResponse:
    return OP.decode_output(await lattice.host_call(actor, HTTPCLIENT, OP.name,
                                                    OP.encode_input(req)))


async def test_get_post_headers_and_non_2xx(lattice: Any, embedded: bool, remote: str) -> None:
    _, _, actor = await client(lattice, embedded)
    resp = await send(lattice, actor, HttpRequest(
        method="POST", url=f"{remote}/echo?x=1",
        headers={"X-Req": ["a", "b"], "bad name": ["skipped"], "X-Bad": ["a\r\nb"]},
        body=b"payload"))
    assert resp.status_code == 200
    assert resp.header["x-multi"] == ["1", "2"]  # lower-cased, multi-valued
    assert resp.header["content-type"] == ["application/json; charset=utf-8"]
    doc = json.loads(resp.body)
    assert doc["method"] == "POST" and doc["path"] == "/echo?x=1" and doc["body"] == "payload"
    assert [v for k, v in doc["headers"] if k == "x-req"] == ["a", "b"]
    assert not any(k in ("bad name", "x-bad") for k, _ in doc["headers"])
    resp = await send(lattice, actor, HttpRequest(method="GET", url=f"{remote}/echo"))
    assert json.loads(resp.body)["method"] == "GET"
    resp = await send(lattice, actor, HttpRequest(url=f"{remote}/missing"))
    assert (resp.status_code, resp.body) == (404, b"nope")  # a normal response, not an error
    resp = await send(lattice, actor, HttpRequest(url=f"{remote}/echo?status=503"))
    assert resp.status_code == 503
    resp = await send(lattice, actor, HttpRequest(url=f"{remote}/redirect?to=/echo%3Fr%3D1"))
    assert (resp.status_code, json.loads(resp.body)["path"]) == (200, "/echo?r=1")


async def test_transport_and_parameter_errors(lattice: Any, embedded: bool) -> None:
    _, _, actor = await client(lattice, embedded, connect_timeout_ms="2000")
    closed = free_port()
    with pytest.raises(RpcError, match="sending request: "):
        await send(lattice, actor, HttpRequest(url=f"http://127.0.0.1:{closed}/"))
    with pytest.raises(RpcError, match="invalid parameter: method: "):
        await send(lattice, actor, HttpRequest(method="GE T", url=f"http://127.0.0.1:{closed}/"))
    with pytest.raises(RpcError, match="invalid parameter: url: "):
        await send(lattice, actor, HttpRequest(url="not-a-url"))


async def test_allowed_hosts_and_response_cap(lattice: Any, embedded: bool, remote: str
                                              ) -> None:
    port = int(remote.rsplit(":", 1)[1])
    _, _, actor = await client(lattice, embedded, ALLOWED_HOSTS=f"example.com, 127.0.0.1:{port}",
                               Max_Response_Bytes="1024")
    resp = await send(lattice, actor, HttpRequest(url=f"{remote}/echo"))
    assert resp.status_code == 200
    with pytest.raises(RpcError, match="host not allowed: localhost"):
        await send(lattice, actor, HttpRequest(url=f"http://localhost:{port}/echo"))
    with pytest.raises(RpcError, match=r"host not allowed: 127\.0\.0\.1:1 "):
        await send(lattice, actor, HttpRequest(url="http://127.0.0.1:1/echo"))
    with pytest.raises(RpcError, match="host not allowed: localhost"):  # checked on redirects too
        await send(lattice, actor, HttpRequest(
            url=f"{remote}/redirect?to=http://localhost:{port}/echo"))
    with pytest.raises(RpcError, match="response too large: 2048 bytes"):
        await send(lattice, actor, HttpRequest(url=f"{remote}/big"))
    with pytest.raises(RpcError, match="response too large: more than 1024 bytes"):
        await send(lattice, actor, HttpRequest(url=f"{remote}/big?chunked=1"))


def test_client_settings() -> None:
    s = parse_settings({})
    assert (s.connect_timeout, s.read_timeout, s.max_response_bytes, s.allowed_hosts) == (
        5.0, 30.0, 100 * 1024 * 1024, ())
    s = parse_settings({"Connect_Timeout_Ms": "100", "READ_TIMEOUT_MS": "200",
                        "allowed_hosts": "A.example, b.example:8080, [::1]:9000, ,"})
    assert (s.connect_timeout, s.read_timeout) == (0.1, 0.2)
    assert s.allowed_hosts == (("a.example", None), ("b.example", 8080), ("::1", 9000))
    for bad, text in [({"read_timeout_ms": "0"}, "read_timeout_ms"),
                      ({"max_response_bytes": "lots"}, "max_response_bytes"),
                      ({"allowed_hosts": "a:b"}, "allowed_hosts"),
                      ({"allowed_hosts": "a", "ALLOWED_HOSTS": "b"}, "duplicate")]:
        with pytest.raises(ProviderError, match=text):
            parse_settings(bad)
