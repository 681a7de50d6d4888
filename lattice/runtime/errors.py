"""Errors raised by the actor runtime, as plain data the caller can report or route on."""

from __future__ import annotations


def seconds(value: float) -> str:
    """A duration for people: "10 s", "2.5 s", "300 ms" (a remaining deadline such as
    9.98077 s reads as 10 s)."""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f}".removesuffix(".0") + " s"


def memory_hint(host_flag: str = "--memory-limit") -> str:
    """How to give an actor more memory, for the errors that say it ran out."""
    return (f"with `lattice host {host_flag} MIB`, per actor with `lattice start actor "
            "--memory-limit MIB` or an app manifest's `memory_limit_mib`, or send it smaller "
            "payloads")


class ActorLoadError(Exception):
    """The module cannot become a running actor (not wasm, bad claims, missing exports…).

    The message says what is wrong and what to do about it.
    """


class HostCallError(Exception):
    """Raised by a host-call handler to fail one ``__host_call``.

    Its text is what the guest reads through ``__host_error``; the guest decides what to do next.
    """


class GuestCallError(Exception):
    """One guest call failed. ``kind`` says why, so callers can map it (e.g. timeout → 503):

    * ``guest``   the actor returned failure (its own error text is the message)
    * ``trap``    the actor trapped (the instance is discarded)
    * ``timeout`` the call ran past its deadline (the instance is discarded)
    * ``memory``  the actor trapped at its memory limit (the instance is discarded)
    * ``abi``     the actor broke the wasmbus ABI, e.g. a pointer outside its memory
    * ``busy``    no instance became free before the deadline
    """

    def __init__(self, message: str, kind: str = "guest") -> None:
        super().__init__(message)
        self.kind = kind
