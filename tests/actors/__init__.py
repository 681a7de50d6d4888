"""Hand-written WAT test actors, compiled (and signed) at test time.

Each ``NAME.wat`` here starts with a comment saying what it does and what it proves. Use::

    wat("echo")                                    # compiled, unsigned module bytes (cached)
    signed("forward", caps=["wasmcloud:keyvalue"]) # signed with fresh account/module keys

``echo.wat`` is also the project's bundled wasmbus actor (``actors/echo-wasmbus/echo.wat``); a
test keeps the two copies identical.

Payload builders for ``forward.wat``: :func:`forward_payload` and :func:`forward_many`.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Iterable
from pathlib import Path

import wasmtime

HERE = Path(__file__).resolve().parent

# The test actors, by name (without .wat).
NAMES = ("echo", "kvcounter", "forward", "loop", "hog", "trap", "misuse", "fuzz", "starts",
         "wasi", "tap", "fwdtap")


def source(name: str) -> Path:
    path = HERE / f"{name}.wat"
    if not path.is_file():
        raise FileNotFoundError(f"no test actor {name!r} (expected {path})")
    return path


@functools.cache
def wat(name: str) -> bytes:
    """The compiled module of ``tests/actors/{name}.wat`` (unsigned)."""
    return bytes(wasmtime.wat2wasm(source(name).read_text()))


def signed(
    name: str,
    *,
    caps: Iterable[str] = (),
    name_claim: str | None = None,
    call_alias: str | None = None,
    tags: Iterable[str] = (),
    rev: int | None = None,
    ver: str | None = None,
    expires: int | None = None,
    not_before: int | None = None,
    now: float | None = None,
    issuer=None,
    subject=None,
    module: bytes | None = None,
) -> bytes:
    """``wat(name)`` (or ``module``) signed with fresh keys unless ``issuer``/``subject`` are
    given (a ``KeyPair`` of role ACCOUNT / MODULE). The claim name defaults to ``name``."""
    from lattice.claims import sign_actor
    from lattice.keys import KeyPair, KeyRole

    return sign_actor(
        wat(name) if module is None else module,
        issuer=issuer or KeyPair.generate(KeyRole.ACCOUNT),
        subject=subject or KeyPair.generate(KeyRole.MODULE),
        name=name_claim or name,
        caps=tuple(caps),
        tags=tuple(tags),
        rev=rev,
        ver=ver,
        call_alias=call_alias,
        expires=expires,
        not_before=not_before,
        now=now,
    )


def forward_payload(binding: str, namespace: str, body: bytes = b"") -> bytes:
    """Guest payload telling ``forward.wat`` to make one host call."""
    return binding.encode() + b"\n" + namespace.encode() + b"\n" + body


def forward_many(*calls: bytes) -> bytes:
    """Guest payload telling ``forward.wat`` to make several host calls (each built with
    :func:`forward_payload`) in one guest call; the last one decides the outcome."""
    return b"\x00" + b"".join(struct.pack("<I", len(c)) + c for c in calls)
