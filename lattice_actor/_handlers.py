"""Decorators that make a function the actor's handler for an inbound operation.

::

    from lattice_actor import (chunk_handler, health_handler, http_handler, message_handler,
                               operation)

    @http_handler                        # HttpServer.HandleRequest
    def handle(req): return "hi"

    @message_handler                     # MessageSubscriber.HandleMessage
    def on_message(msg): ...

    @chunk_handler                       # ChunkReceiver.ReceiveChunk (blob downloads)
    def on_chunk(chunk): ...

    @health_handler                      # Actor.HealthRequest (default: always healthy)
    def health(): return True

    @operation("Pingpong.Ping")          # any actor-to-actor operation: bytes in, bytes out
    def ping(payload: bytes) -> bytes: return b"pong"

    @operation("Calc.Add", msgpack=True)  # msgpack-decoded value in, msgpack-encoded value out
    def add(args): return args["a"] + args["b"]

Each decorator registers at import time and returns the function unchanged, so it can still be
called directly in tests. A second handler for the same operation raises RegistrationError.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, overload

import msgpack as _msgpack

import contracts
from contracts import CodecError, blobstore, core, httpserver
from contracts import messaging as _messaging

from . import _registry
from ._dispatch import HEALTH
from ._http import HttpError, Request, to_response
from .messaging import Message

F = TypeVar("F", bound=Callable[..., Any])

_HTTP = contracts.operation(httpserver.HANDLE_REQUEST)
_MESSAGE = contracts.operation(_messaging.HANDLE_MESSAGE)
_CHUNK = contracts.operation(blobstore.RECEIVE_CHUNK)
_HEALTH = contracts.operation(HEALTH)


def _decode(op: contracts.Operation, payload: bytes) -> Any:
    try:
        return op.decode_input(payload)
    except CodecError as exc:
        raise ValueError(f"deserialization: {op.name}: {exc}") from None


def _bare_or_called(register: Callable[[F], F], func: F | None) -> Any:
    """Support both ``@decorator`` and ``@decorator()``."""
    return register if func is None else register(func)


# ---- HTTP --------------------------------------------------------------------------------------


@overload
def http_handler(func: F) -> F: ...
@overload
def http_handler(func: None = None) -> Callable[[F], F]: ...
def http_handler(func: F | None = None) -> Any:
    """Handle ``HttpServer.HandleRequest``: ``func(request: Request)`` returns a
    :class:`Response`, ``str`` (text/plain), ``bytes`` (application/octet-stream), ``dict`` or
    ``list`` (JSON), ``None`` (empty 200) or ``(value, status[, headers])``. Raising
    :class:`HttpError` answers with its status; any other exception fails the invocation (the
    HTTP server provider answers 500).
    """

    def register(fn: F) -> F:
        _registry.check_handler(fn, "http_handler")

        def invoke(payload: bytes) -> bytes:
            request = Request.from_wire(_decode(_HTTP, payload))
            try:
                response = to_response(fn(request))
            except HttpError as err:
                response = err.to_response()
            return _HTTP.encode_output(response.to_wire())

        _registry.register(_HTTP.name, "http", fn, invoke)
        return fn

    return _bare_or_called(register, func)


# ---- messaging ---------------------------------------------------------------------------------


@overload
def message_handler(func: F) -> F: ...
@overload
def message_handler(func: None = None) -> Callable[[F], F]: ...
def message_handler(func: F | None = None) -> Any:
    """Handle ``MessageSubscriber.HandleMessage``: ``func(msg: Message) -> None``. Answer a
    request with ``msg.reply(body)``."""

    def register(fn: F) -> F:
        _registry.check_handler(fn, "message_handler")

        def invoke(payload: bytes) -> bytes:
            result = fn(Message.from_wire(_decode(_MESSAGE, payload)))
            if result is not None:
                raise TypeError(
                    f"message handler {_registry.describe(fn)} returned "
                    f"{type(result).__name__}; it must return None (reply with msg.reply(...))")
            return b""

        _registry.register(_MESSAGE.name, "message", fn, invoke)
        return fn

    return _bare_or_called(register, func)


# ---- blob download chunks ----------------------------------------------------------------------


@overload
def chunk_handler(func: F) -> F: ...
@overload
def chunk_handler(func: None = None) -> Callable[[F], F]: ...
def chunk_handler(func: F | None = None) -> Any:
    """Handle ``ChunkReceiver.ReceiveChunk`` (a blobstore provider streaming a download):
    ``func(chunk: Chunk)`` gets ``object_id``, ``container_id``, ``bytes``, ``offset`` and
    ``is_last``; return None to keep receiving or ``ChunkResponse(cancel_download=True)`` to
    ask the provider to stop."""

    def register(fn: F) -> F:
        _registry.check_handler(fn, "chunk_handler")

        def invoke(payload: bytes) -> bytes:
            result = fn(_decode(_CHUNK, payload))
            if result is None:
                result = blobstore.ChunkResponse()
            elif not isinstance(result, blobstore.ChunkResponse):
                raise TypeError(
                    f"chunk handler {_registry.describe(fn)} returned {type(result).__name__}; "
                    "return None or ChunkResponse(cancel_download=...)")
            return _CHUNK.encode_output(result)

        _registry.register(_CHUNK.name, "chunk", fn, invoke)
        return fn

    return _bare_or_called(register, func)


# ---- health ------------------------------------------------------------------------------------


@overload
def health_handler(func: F) -> F: ...
@overload
def health_handler(func: None = None) -> Callable[[F], F]: ...
def health_handler(func: F | None = None) -> Any:
    """Answer ``Actor.HealthRequest``: ``func()`` returns ``True``/``None`` (healthy),
    ``False`` (unhealthy) or a ``HealthCheckResponse(healthy, message)``; an exception reports
    unhealthy with its text. Without a health handler the actor is always healthy."""

    def register(fn: F) -> F:
        _registry.check_handler(fn, "health_handler")

        def invoke(payload: bytes) -> bytes:  # the request is an empty struct: not decoded
            try:
                result = fn()
            except Exception as exc:
                result = core.HealthCheckResponse(healthy=False,
                                                  message=str(exc) or type(exc).__name__)
            if result is None or isinstance(result, bool):
                result = core.HealthCheckResponse(healthy=result is not False)
            elif not isinstance(result, core.HealthCheckResponse):
                raise TypeError(
                    f"health handler {_registry.describe(fn)} returned "
                    f"{type(result).__name__}; return a bool, None or a HealthCheckResponse")
            return _HEALTH.encode_output(result)

        _registry.register(HEALTH, "health", fn, invoke)
        return fn

    return _bare_or_called(register, func)


# ---- any operation -----------------------------------------------------------------------------


def operation(name: str, *, msgpack: bool = False) -> Callable[[F], F]:
    """Handle an arbitrary operation (typically actor-to-actor, e.g. ``"Pingpong.Ping"``).

    By default ``func(payload: bytes)`` returns ``bytes`` (``None`` = empty reply). With
    ``msgpack=True`` the payload is msgpack-decoded first (empty payload -> ``None``) and the
    return value msgpack-encoded (``None`` -> empty reply); see ``actors.call_msgpack``.
    """
    if callable(name):
        raise TypeError("operation needs the operation string: @operation(\"Service.Method\")")

    def register(fn: F) -> F:
        _registry.check_handler(fn, f"operation({name!r})")

        if msgpack:
            def invoke(payload: bytes) -> bytes:
                try:
                    value = unpack(payload)
                except ValueError as exc:
                    raise ValueError(f"deserialization: {name}: {exc}") from None
                return pack(fn(value))
        else:
            def invoke(payload: bytes) -> bytes:
                result = fn(payload)
                if result is None:
                    return b""
                if isinstance(result, str):
                    raise TypeError(
                        f"operation handler {_registry.describe(fn)} returned str; return bytes "
                        "(e.g. text.encode()) or use @operation(..., msgpack=True)")
                if not isinstance(result, bytes | bytearray | memoryview):
                    raise TypeError(
                        f"operation handler {_registry.describe(fn)} returned "
                        f"{type(result).__name__}; return bytes or None")
                return bytes(result)

        _registry.register(name, "operation", fn, invoke)
        return fn

    return register


def pack(value: Any) -> bytes:
    """msgpack-encode (``None`` -> empty payload, the wasmbus "no output")."""
    if value is None:
        return b""
    return _msgpack.packb(value, use_bin_type=True)


def unpack(payload: bytes) -> Any:
    """msgpack-decode (empty payload -> ``None``); malformed data raises ValueError."""
    if not payload:
        return None
    try:
        return _msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on bad input
        raise ValueError(f"invalid msgpack payload: {exc}") from None
