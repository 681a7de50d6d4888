"""Shared pieces of the HTTP provider tests: run mode, a scriptable tap, HTTP waiting helpers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, ClassVar

import aiohttp
import pytest

from contracts.httpserver import HttpResponse
from lattice.provider import Context, ProviderError
from tests.harness import TAP_CONTRACT, TapProvider

HTTPSERVER = "wasmcloud:httpserver"
HTTPCLIENT = "wasmcloud:httpclient"


@pytest.fixture(params=["process", "embedded"])
def embedded(request: pytest.FixtureRequest) -> bool:
    """Every integration test runs against the provider process and the embedded provider."""
    return request.param == "embedded"


class ScriptedTap(TapProvider):
    """TapProvider whose answer to HttpServer.HandleRequest a test can script."""

    delay: ClassVar[float] = 0.0
    fail: ClassVar[str | None] = None
    http_response: ClassVar[HttpResponse] = HttpResponse(status_code=200, body=b"tapped")

    async def handle_request(self, ctx: Context, request: Any) -> HttpResponse:
        if self.fail is not None:
            raise ProviderError(self.fail)
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().handle_request(ctx, request)


@pytest.fixture(autouse=True)
def _reset_tap() -> Any:
    yield
    ScriptedTap.delay, ScriptedTap.fail = 0.0, None
    ScriptedTap.http_response = HttpResponse(status_code=200, body=b"tapped")


async def tap_actor(lattice: Any, host: Any) -> str:
    """A tap.wat actor allowed to receive HTTP, linked to a (scripted) tap provider."""
    tap_key = await lattice.start_provider(host, "tap", provider_cls=ScriptedTap)
    actor = await lattice.start_actor(host, lattice.module(
        "tap", caps=[HTTPSERVER, TAP_CONTRACT]))
    await lattice.link(actor, tap_key, TAP_CONTRACT)
    return actor


async def wait_listening(url: str, timeout: float = 15.0, **kw: Any) -> None:
    """Until something answers HTTP at ``url`` (links reach a provider asynchronously)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url, **kw) as resp:
                    await resp.read()
                    return
            except aiohttp.ClientConnectionError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)


async def wait_closed(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            return
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        if time.monotonic() > deadline:
            raise AssertionError(f"port {port} still accepts connections")
        await asyncio.sleep(0.05)


async def wait_log(caplog: pytest.LogCaptureFixture, text: str, timeout: float = 15.0
                   ) -> logging.LogRecord:
    """The first captured record whose message or ``error`` field contains ``text``."""
    deadline = time.monotonic() + timeout
    while True:
        for record in caplog.records:
            if text in record.getMessage() or text in str(record.__dict__.get("error", "")):
                return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no log record mentioning {text!r}")
        await asyncio.sleep(0.05)
