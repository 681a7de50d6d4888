"""The builtin capabilities every host answers itself (docs/wire.md §5.6,
docs/contracts.md §6.7-6.8)."""

from __future__ import annotations

import logging
import secrets
import uuid

from contracts import CodecError, builtin_logging, builtin_numbergen
from lattice.runtime import Actor, HostCallError

LOGGING = builtin_logging.CONTRACT_ID
NUMBERGEN = builtin_numbergen.CONTRACT_ID
PREFIX = "wasmcloud:builtin:"

actor_log = logging.getLogger("lattice.actor")

_NUMBERGEN_OPS = {op.name: op for op in builtin_numbergen.OPERATIONS}

# The four documented levels, plus the two the Rust host also accepts.
_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


async def handle(actor: Actor, namespace: str, operation: str, payload: bytes) -> bytes:
    """Answer one builtin host call; raises HostCallError with the reason on failure."""
    try:
        if namespace == LOGGING:
            return _logging(actor, operation, payload)
        if namespace == NUMBERGEN:
            return _numbergen(operation, payload)
    except CodecError as exc:
        raise HostCallError(f"{operation}: cannot decode the payload: {exc}") from None
    raise HostCallError(f"unknown builtin capability {namespace}; this host provides {LOGGING} "
                        f"and {NUMBERGEN}")


def _logging(actor: Actor, operation: str, payload: bytes) -> bytes:
    # OTP's Elixir builtin also accepted the bare operation name.
    if operation not in (builtin_logging.WRITE_LOG, "WriteLog"):
        raise HostCallError(f"unknown operation {operation} for {LOGGING} "
                            f"(it has {builtin_logging.WRITE_LOG})")
    entry = builtin_logging.OPERATIONS[0].decode_input(payload)
    level = _LEVELS.get(entry.level.lower(), logging.DEBUG)  # unknown levels: debug, like OTP
    actor_log.log(level, "[%s] %s", actor.key, entry.text,
                  extra={"actor": actor.key, "actor_name": actor.name, "source": "builtin:logging"})
    return b""


def _numbergen(operation: str, payload: bytes) -> bytes:
    op = _NUMBERGEN_OPS.get(operation)
    if op is None:
        raise HostCallError(f"unknown operation {operation} for {NUMBERGEN} "
                            f"(it has {', '.join(sorted(_NUMBERGEN_OPS))})")
    if operation == builtin_numbergen.GENERATE_GUID:
        return op.encode_output(str(uuid.uuid4()))
    if operation == builtin_numbergen.RANDOM_32:
        return op.encode_output(secrets.randbits(32))
    limit = op.decode_input(payload)
    if limit.min > limit.max:
        raise HostCallError(f"{operation}: min ({limit.min}) is greater than max ({limit.max})")
    # Inclusive at both ends, like both wasmCloud hosts (docs/contracts.md §6.8).
    return op.encode_output(limit.min + secrets.randbelow(limit.max - limit.min + 1))
