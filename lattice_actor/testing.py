"""Unit-testing actors natively, without building a component.

::

    from contracts.keyvalue import IncrementRequest
    from lattice_actor import testing
    import app                                   # registers the actor's handlers

    def test_counter():
        host = testing.FakeHost()
        host.on("KeyValue.Increment", lambda req: 41 + req.value)   # decoded request -> reply
        testing.set_host(host)
        resp = testing.http_request("GET", "/hits")
        assert resp.status == 200 and resp.json() == {"hits": 42}
        assert host.calls[0].value == IncrementRequest(key="hits", value=1)

``set_host(fn)`` installs any ``fn(binding, namespace, operation, payload: bytes) -> bytes``
(raising = the host call fails with that text); ``call`` runs an inbound invocation through the
actor's dispatch exactly as the component would; ``reset()`` forgets registered handlers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import contracts
from contracts import httpserver
from contracts import messaging as _messaging

from . import _host, _registry
from ._dispatch import dispatch
from ._host import HostFn
from ._http import HeaderInput, Headers
from .httpclient import ClientResponse

__all__ = ["FakeHost", "HostCall", "call", "clear_host", "http_request", "reset",
           "send_message", "set_host"]


def set_host(fn: HostFn) -> None:
    """Answer the actor's host calls with ``fn(binding, namespace, operation, payload)``."""
    _host.install(fn)


def clear_host() -> None:
    """Remove the installed host (host calls raise RuntimeError again)."""
    _host.install(None)


def reset() -> None:
    """Forget every registered handler (and the installed host)."""
    _registry.reset()
    clear_host()


def call(operation: str, payload: bytes = b"") -> bytes:
    """Invoke the actor natively, as the host would: the reply payload, or the exception."""
    return dispatch(operation, payload)


def http_request(method: str = "GET", path: str = "/", *, query_string: str = "",
                 headers: HeaderInput = None, body: bytes | str = b"") -> ClientResponse:
    """Run the actor's HTTP handler on a request; the decoded response."""
    if "?" in path and not query_string:
        path, query_string = path.split("?", 1)
    op = contracts.operation(httpserver.HANDLE_REQUEST)
    request = httpserver.HttpRequest(
        method=method.upper(), path=path, query_string=query_string,
        header=Headers(headers).to_wire(),
        body=body.encode("utf-8") if isinstance(body, str) else bytes(body))
    return ClientResponse.from_wire(op.decode_output(call(op.name, op.encode_input(request))))


def send_message(subject: str, body: bytes | str = b"", reply_to: str | None = None) -> None:
    """Deliver a message to the actor's message handler."""
    op = contracts.operation(_messaging.HANDLE_MESSAGE)
    call(op.name, op.encode_input(_messaging.SubMessage(
        subject=subject, reply_to=reply_to,
        body=body.encode("utf-8") if isinstance(body, str) else bytes(body))))


@dataclass(slots=True)
class HostCall:
    """One host call the actor made: the raw arguments and the decoded request value."""

    binding: str
    namespace: str
    operation: str
    payload: bytes
    value: Any  # decoded with the contract's codec; the raw payload for unknown operations


class FakeHost:
    """A host that answers by operation name with plain Python functions.

    ``on(operation, fn)``: for a contract operation ``fn`` gets the decoded request (``None``
    when it has no input) and returns the reply value, encoded with the contract's codec; for
    any other operation (actor-to-actor) ``fn`` gets and returns bytes. Raising an exception
    fails the host call with its text; ``fail(operation, text)`` does that for you. Every call
    is recorded in ``calls``. Unanswered operations fail with a clear text.
    """

    def __init__(self) -> None:
        self.calls: list[HostCall] = []
        self._answers: dict[str, Callable[[Any], Any]] = {}

    def on(self, operation: str, fn: Callable[[Any], Any]) -> FakeHost:
        self._answers[operation] = fn
        return self

    def fail(self, operation: str, text: str) -> FakeHost:
        def raise_(_value: Any) -> Any:
            raise RuntimeError(text)

        return self.on(operation, raise_)

    def calls_to(self, operation: str) -> list[HostCall]:
        return [c for c in self.calls if c.operation == operation]

    def __call__(self, binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        op = contracts.OPERATIONS.get(operation)
        value = op.decode_input(payload) if op is not None else payload
        self.calls.append(HostCall(binding, namespace, operation, payload, value))
        fn = self._answers.get(operation)
        if fn is None:
            raise RuntimeError(f"FakeHost has no answer for {operation} "
                               f"(binding {binding!r}, namespace {namespace!r}); "
                               f"add one with host.on({operation!r}, fn)")
        result = fn(value)
        if op is not None:
            return op.encode_output(result)
        return b"" if result is None else bytes(result)
