"""httpserver (docs/contracts.md §6.1) through a real lattice: real HTTP clients against the
provider, which calls real actors (echo.wat, or tap.wat relaying to a scripted TapProvider)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import logging
import socket
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from contracts.httpserver import HttpRequest, HttpResponse
from lattice.links import LinkDefinition
from lattice.natsd import free_port
from lattice.provider import ProviderError
from providers.httpserver import (
    DEFAULT_MAX_CONTENT_LEN,
    HttpServerProvider,
    parse_settings,
    parse_size,
)
from tests.harness import TapProvider, until
from tests.providers_http.conftest import (
    HTTPSERVER,
    ScriptedTap,
    tap_actor,
    wait_closed,
    wait_listening,
    wait_log,
)

pytestmark = pytest.mark.service


async def server(lattice: Any, embedded: bool) -> tuple[Any, str]:
    host = await lattice.host()
    key = await lattice.start_provider(host, "httpserver", embedded=embedded)
    return host, key


async def raw_http(port: int, request: bytes) -> tuple[int, bytes]:
    """Send exact bytes (for exact header assertions); returns (status, whole response)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    return int(data.split(b" ", 2)[1]), data


async def test_request_shape_and_response_headers(lattice: Any, embedded: bool) -> None:
    host, key = await server(lattice, embedded)
    actor = await tap_actor(lattice, host)
    ScriptedTap.http_response = HttpResponse(status_code=201, header={
        "X-Out": ["one", "two"], "bad name": ["dropped"], "x-bad-value": ["a\nb"],
        "content-type": ["text/plain"]}, body=b"tapped")
    port = free_port()
    await lattice.link(actor, key, HTTPSERVER, PORT=str(port))  # link keys: any case
    await wait_listening(f"http://127.0.0.1:{port}/warmup")
    TapProvider.calls.clear()
    status, data = await raw_http(port, (
        b"GET /p/a%20b?x=1&y=two HTTP/1.1\r\nHost: test.local\r\nX-Multi: a\r\n"
        b"X-MULTI: b\r\nX-Case: Value\r\nConnection: close\r\n\r\n"))
    assert status == 201
    assert TapProvider.calls == [(actor, "HttpServer.HandleRequest", HttpRequest(
        method="GET", path="/p/a%20b", query_string="x=1&y=two",
        header={"host": ["test.local"], "x-multi": ["a", "b"], "x-case": ["Value"],
                "connection": ["close"]}, body=b""))]
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().lower().split("\r\n")
    assert "x-out: one" in lines and "x-out: two" in lines
    assert not any(line.startswith(("bad name", "x-bad-value")) for line in lines)
    assert body == b"tapped"


async def test_echo_post_round_trip(lattice: Any, embedded: bool) -> None:
    host, key = await server(lattice, embedded)
    actor = await lattice.start_actor(host, lattice.module("echo", caps=[HTTPSERVER]))
    port = free_port()
    await lattice.link(actor, key, HTTPSERVER, port=str(port))
    await wait_listening(f"http://127.0.0.1:{port}/")
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://127.0.0.1:{port}/echo?a=1", data=b"hi\x00there") as resp:
            assert resp.status == 200
            doc = json.loads(await resp.read())
        async with http.head(f"http://127.0.0.1:{port}/x") as resp:
            assert resp.status == 200
    assert doc == {"body": list(b"hi\x00there"), "method": "POST", "path": "/echo",
                   "query_string": "a=1"}


async def test_actor_error_is_500_and_timeout_is_503(lattice: Any, embedded: bool) -> None:
    host, key = await server(lattice, embedded)
    actor = await tap_actor(lattice, host)
    port = free_port()
    await lattice.link(actor, key, HTTPSERVER, port=str(port), timeout_ms="300")
    await wait_listening(f"http://127.0.0.1:{port}/")
    url = f"http://127.0.0.1:{port}/"
    async with aiohttp.ClientSession() as http:
        ScriptedTap.fail = "boom"
        async with http.get(url) as resp:
            assert resp.status == 500
            assert await resp.read() == b""
        ScriptedTap.fail, ScriptedTap.delay = None, 1.0
        TapProvider.calls.clear()
        # The actor answers after 1 s: inside the host's 2 s default it would be a 200, so a
        # 503 means the link's 300 ms timeout_ms was applied.
        async with http.get(url) as resp:
            assert resp.status == 503
        ScriptedTap.delay = 0.0
        await until(lambda: TapProvider.calls)  # the actor (one instance) finished the slow call
        async with http.get(url) as resp:  # the listener is still healthy afterwards
            assert resp.status == 200


async def test_limits_cache_control_and_cors(lattice: Any, embedded: bool) -> None:
    host, key = await server(lattice, embedded)
    actor = await tap_actor(lattice, host)
    port = free_port()
    settings = {"cors": {"allowed_origins": ["https://app.example"],
                         "allowed_methods": ["GET", "POST"], "max_age_secs": 60,
                         "exposed_headers": ["x-out"]},
                "cache_control": "no-store"}
    await lattice.link(actor, key, HTTPSERVER, port=str(port), max_content_len="1K",
                       config_b64=base64.b64encode(json.dumps(settings).encode()).decode())
    url = f"http://127.0.0.1:{port}/up"
    await wait_listening(url)
    TapProvider.calls.clear()
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=b"x" * 4096) as resp:
            assert resp.status == 413
        async with http.post(url, data=b"x" * 1024) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
            assert "Access-Control-Allow-Origin" not in resp.headers
        # A chunked upload has no Content-Length: the limit is enforced while reading.
        async def gen() -> Any:
            for _ in range(8):
                yield b"y" * 512
        async with http.post(url, data=gen()) as resp:
            assert resp.status == 413
        preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "Content-Type"}
        async with http.options(url, headers=preflight) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert resp.headers["Access-Control-Max-Age"] == "60"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert "content-type" in resp.headers["Access-Control-Allow-Headers"]
        async with http.options(url, headers={**preflight,
                                              "Access-Control-Request-Method": "DELETE"}) as resp:
            assert resp.status == 403
        async with http.options(url, headers={**preflight, "Origin": "https://evil.example"}
                                ) as resp:
            assert resp.status == 403
        async with http.get(url, headers={"Origin": "https://app.example"}) as resp:
            assert resp.status == 200
            assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
            assert resp.headers["Access-Control-Expose-Headers"] == "x-out"
    # Only the two accepted requests reached the actor: 413, 403 and preflights did not.
    assert [c[2].method for c in TapProvider.calls] == ["POST", "GET"]
    assert TapProvider.calls[0][2].body == b"x" * 1024


async def test_readonly_mode(lattice: Any, embedded: bool) -> None:
    host, key = await server(lattice, embedded)
    actor = await tap_actor(lattice, host)
    port = free_port()
    await lattice.link(actor, key, HTTPSERVER,
                       config_json=json.dumps({"address": f"127.0.0.1:{port}",
                                               "readonly_mode": True}))
    url = f"http://127.0.0.1:{port}/"
    await wait_listening(url)
    TapProvider.calls.clear()
    async with aiohttp.ClientSession() as http:
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            async with http.request(method, url, data=b"x") as resp:
                assert resp.status == 405, method
        async with http.get(url) as resp:
            assert resp.status == 200
        async with http.head(url) as resp:
            assert resp.status == 200
    assert [c[2].method for c in TapProvider.calls] == ["GET", "HEAD"]


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


async def test_tls(lattice: Any, embedded: bool, tmp_path: Path) -> None:
    cert_file, key_file = _self_signed(tmp_path)
    host, key = await server(lattice, embedded)
    actor = await lattice.start_actor(host, lattice.module("echo", caps=[HTTPSERVER]))
    port = free_port()
    await lattice.link(actor, key, HTTPSERVER, port=str(port), config_json=json.dumps(
        {"tls": {"cert_file": str(cert_file), "priv_key_file": str(key_file)}}))
    trust = ssl.create_default_context(cafile=str(cert_file))
    await wait_listening(f"https://127.0.0.1:{port}/", ssl=trust)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"https://127.0.0.1:{port}/secure?q=1", ssl=trust) as resp:
            assert resp.status == 200
            assert json.loads(await resp.read())["path"] == "/secure"
        with pytest.raises(aiohttp.ClientConnectionError):  # plain HTTP is not served
            async with http.get(f"http://127.0.0.1:{port}/") as resp:
                await resp.read()


async def test_unlink_frees_the_port_and_a_busy_port_rejects_the_link(
        lattice: Any, embedded: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    host, key = await server(lattice, embedded)
    first = await lattice.start_actor(host, lattice.module("echo", caps=[HTTPSERVER]))
    second = await lattice.start_actor(host, lattice.module("echo", caps=[HTTPSERVER]))
    port, busy = free_port(), free_port()
    await lattice.link(first, key, HTTPSERVER, port=str(port))
    await wait_listening(f"http://127.0.0.1:{port}/")
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", busy))
        blocker.listen()
        await lattice.link(second, key, HTTPSERVER, port=str(busy))
        record = await wait_log(caplog, f"127.0.0.1:{busy}")
        assert "link refused" in record.getMessage()
        assert f"port {busy}" in str(record.__dict__["error"])
        async with aiohttp.ClientSession() as http, http.get(  # the other link still serves
                f"http://127.0.0.1:{port}/still") as resp:
            assert resp.status == 200
    await lattice.unlink(first, HTTPSERVER)
    await wait_closed(port)
    with socket.socket() as again:  # the port is really free: another server can bind it
        # SO_REUSEADDR, as any server sets: our HTTP request may leave a TIME_WAIT on the port,
        # which blocks a plain bind but not a server (a live listener would still block it).
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


# ---- settings and the provider alone (no lattice) -----------------------------------------------


def test_settings_parsing() -> None:
    s = parse_settings({})
    assert (s.host, s.port, s.max_content_len, s.readonly_mode, s.tls) == (
        "127.0.0.1", 8000, DEFAULT_MAX_CONTENT_LEN, False, False)
    s = parse_settings({"ADDRESS": "0.0.0.0:9000", "Cache_Control": "max-age=5",
                        "readonly_mode": "TRUE", "Timeout_MS": "250"})
    assert (s.host, s.port, s.cache_control, s.readonly_mode, s.timeout) == (
        "0.0.0.0", 9000, "max-age=5", True, 0.25)
    # port wins over address and binds loopback; config_json is merged after config_b64
    b64 = base64.b64encode(b'{"address": "10.0.0.1:1", "max_content_len": "2K"}').decode()
    s = parse_settings({"address": "[::1]:81", "port": "8123", "config_b64": b64.rstrip("="),
                        "config_json": '{"cors": {"allowed_origins": ["HTTP://A.example/"]}}'})
    assert (s.host, s.port, s.max_content_len) == ("127.0.0.1", 8123, 2048)
    assert s.cors.origin_allowed("http://a.example") and not s.cors.origin_allowed("http://b")
    assert parse_settings({"address": "[::1]:81"}).host == "::1"
    assert [parse_size(v) for v in ("20M", "512K", "1G", "2048", "3MiB", 7)] == [
        20 * 2**20, 512 * 2**10, 2**30, 2048, 3 * 2**20, 7]
    for bad, text in [({"port": "70000"}, "invalid port"), ({"address": "nohost"}, "address"),
                      ({"max_content_len": "2T"}, "max_content_len"),
                      ({"max_content_len": "2G"}, "between"),
                      ({"port": "1", "PORT": "2"}, "duplicate"),
                      ({"config_json": "[1]"}, "config_json"),
                      ({"config_json": '{"tls": {"cert_file": "x"}}'}, "priv_key_file"),
                      ({"config_json": '{"cors": {"allowed_origins": ["a.example"]}}'},
                       "allowed_origins"),
                      ({"readonly_mode": "maybe"}, "readonly_mode"),
                      ({"timeout_ms": "soon"}, "timeout_ms")]:
        with pytest.raises(ProviderError, match=text):
            parse_settings(bad)


async def test_busy_port_message_and_shutdown() -> None:
    provider = HttpServerProvider()
    port = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
        with pytest.raises(ProviderError) as info:
            await provider.put_link(LinkDefinition("MACTOR", "VPROV", HTTPSERVER,
                                                   values={"port": str(port)}))
    text = str(info.value)
    assert f"127.0.0.1:{port}" in text and f"port {port}" in text and "MACTOR" in text
    assert provider.listeners == {}
    ports = [free_port(), free_port()]
    for i, p in enumerate(ports):
        await provider.put_link(LinkDefinition(f"MA{i}", "VPROV", HTTPSERVER,
                                               values={"port": str(p)}))
    assert await provider.health() == (True, "2 listener(s)")
    await provider.shutdown()
    assert provider.listeners == {}
    for p in ports:
        await wait_closed(p)
