"""Calling other actors (wasmbus actor-to-actor: binding ``""``, namespace = the target's
public key ``M…`` or its call alias).

::

    from lattice_actor import actors

    reply = actors.call("wasmcloud/ponger", "Pingpong.Ping", b"ping")          # bytes
    total = actors.call_msgpack("calc", "Calc.Add", {"a": 1, "b": 2})          # 3

    ponger = actors.Actor("MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5")
    ponger.call("Pingpong.Ping")

The target answers with an operation handler (``@operation("Pingpong.Ping")`` in a Python
actor); calling another actor needs no capability claim.
"""

from __future__ import annotations

from typing import Any

from ._errors import HostError
from ._handlers import pack, unpack
from ._host import host_call

ACTOR_BINDING = ""  # what wasmbus-rpc and actor-tinygo send for actor-to-actor calls


class Actor:
    """A target actor, by public key or call alias."""

    def __init__(self, target: str) -> None:
        if not isinstance(target, str) or not target.strip():
            raise ValueError(f"target must be an actor key or call alias, got {target!r}")
        self.target = target

    def call(self, operation: str, payload: bytes = b"") -> bytes:
        """Invoke ``operation`` with raw ``payload``; the raw reply (HostError on failure)."""
        return host_call(ACTOR_BINDING, self.target, operation, payload)

    def call_msgpack(self, operation: str, value: Any = None) -> Any:
        """msgpack-encode ``value`` (None -> empty payload), call, msgpack-decode the reply
        (empty -> None). Pairs with ``@operation(..., msgpack=True)``."""
        reply = self.call(operation, pack(value))
        try:
            return unpack(reply)
        except ValueError as exc:
            raise HostError(f"deserialization: {exc}", binding=ACTOR_BINDING,
                            namespace=self.target, operation=operation) from None

    def __repr__(self) -> str:
        return f"Actor({self.target!r})"


def call(target: str, operation: str, payload: bytes = b"") -> bytes:
    """Invoke ``operation`` on the actor ``target`` (key or call alias) with raw bytes."""
    return Actor(target).call(operation, payload)


def call_msgpack(target: str, operation: str, value: Any = None) -> Any:
    """Like :func:`call` with msgpack-encoded value and reply."""
    return Actor(target).call_msgpack(operation, value)


__all__ = ["ACTOR_BINDING", "Actor", "call", "call_msgpack"]
