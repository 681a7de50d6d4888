"""Run a Python actor's built component in tests.

::

    from lattice.testing import load_actor

    async def test_greeting():
        async with load_actor("actors/hello") as actor:      # builds (cached) and starts it
            response = await actor.http("GET", "/?name=you")
            assert response.status_code == 200 and response.body == b"Hello, you!"

``load_actor`` takes an actor directory (built with :func:`lattice.build.build_actor`; the
unsigned component is cached by source hash, so only the first run pays for componentize-py) or
a signed ``.wasm``, and runs it in an in-process :class:`lattice.local.LocalHost`: the real
runtime, claims checks and builtins (logging, numbergen), no providers. For fast native unit
tests of handlers without any build, see :mod:`lattice_actor.testing`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import contracts
from contracts.httpserver import HANDLE_REQUEST, HttpRequest, HttpResponse
from lattice.build import BuildResult, build_actor
from lattice.local import LocalHost
from lattice.runtime import Actor, RuntimeConfig

__all__ = ["LoadedActor", "load_actor"]

HeaderValues = Mapping[str, "str | Iterable[str]"]


class LoadedActor:
    """An actor running in a :class:`LocalHost` for the duration of ``load_actor``."""

    def __init__(self, host: LocalHost, actor: Actor, build: BuildResult | None) -> None:
        self.host = host
        self.actor = actor
        self.build = build  # None when a .wasm file was loaded as it was

    @property
    def key(self) -> str:
        return self.actor.key

    @property
    def name(self) -> str:
        return self.actor.name

    async def call(self, operation: str, payload: bytes = b"") -> bytes:
        """Invoke ``operation`` with a raw payload; the raw reply (GuestCallError on failure)."""
        return await self.actor.call(operation, payload)

    async def http(self, method: str = "GET", path: str = "/", body: bytes | str = b"",
                   headers: HeaderValues | None = None, *,
                   query_string: str = "") -> HttpResponse:
        """Send ``HttpServer.HandleRequest`` as the httpserver provider would. A query may be
        part of ``path`` (``"/hello?name=you"``) or given as ``query_string``."""
        path, _, query = path.partition("?")
        request = HttpRequest(
            method=method.upper(), path=path or "/", query_string=query_string or query,
            header=_header_map(headers),
            body=body.encode("utf-8") if isinstance(body, str) else bytes(body))
        op = contracts.operation(HANDLE_REQUEST)
        reply = await self.call(HANDLE_REQUEST, op.encode_input(request))
        response: HttpResponse = op.decode_output(reply)
        return response


def _header_map(headers: HeaderValues | None) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for name, value in (headers or {}).items():
        values = [value] if isinstance(value, str) else list(value)
        result.setdefault(name.lower(), []).extend(values)  # lower-case, like the provider
    return result


@contextlib.asynccontextmanager
async def load_actor(directory_or_wasm: str | Path, *, config: RuntimeConfig | None = None,
                     enforce_builtin_caps: bool = True,
                     **build_kwargs: Any) -> AsyncIterator[LoadedActor]:
    """Build (cached) the actor directory, or take the ``.wasm`` as it is, and run it in a
    fresh :class:`LocalHost` until the block ends. ``build_kwargs`` go to
    :func:`lattice.build.build_actor` (``output``, ``cache_dir``, ``use_cache``, ``progress``,
    ``issuer``, …); ``config`` tunes the runtime (timeouts, memory)."""
    source = Path(directory_or_wasm)
    build: BuildResult | None = None
    if source.is_dir():
        # componentize-py runs in a subprocess; keep the event loop free meanwhile.
        build = await asyncio.to_thread(build_actor, source, **build_kwargs)
        wasm = build.path
    elif build_kwargs:
        raise TypeError(f"build options ({', '.join(build_kwargs)}) only apply to an actor "
                        f"directory, and {source} is not one")
    else:
        wasm = source
    async with LocalHost(config, enforce_builtin_caps=enforce_builtin_caps) as host:
        actor = await host.start_actor(wasm)
        try:
            yield LoadedActor(host, actor, build)
        finally:
            await host.stop_actor(actor)
