"""Routing one inbound invocation to the handler registered for its operation."""

from __future__ import annotations

import contracts
from contracts import core

from . import _registry
from ._errors import OperationNotHandled

HEALTH = core.HEALTH_REQUEST
_HEALTH_OP = contracts.operation(HEALTH)
_HEALTHY = _HEALTH_OP.encode_output(core.HealthCheckResponse(healthy=True))


def handled_operations() -> list[str]:
    """Every operation this actor answers, sorted (``Actor.HealthRequest`` always included)."""
    return sorted({*_registry.registered(), HEALTH})


def dispatch(operation: str, payload: bytes) -> bytes:
    """Run the handler for ``operation`` on ``payload`` and return its reply payload.

    Raises whatever the handler raises; an operation without a handler raises
    :class:`OperationNotHandled` naming the operation and listing the ones this actor handles.
    """
    entry = _registry.lookup(operation)
    if entry is not None:
        reply = entry.invoke(payload)
        return reply if isinstance(reply, bytes) else bytes(reply)
    if operation == HEALTH:  # every actor answers health checks, healthy by default
        return _HEALTHY
    raise OperationNotHandled(
        f"method not handled: {operation!r}; this actor handles "
        + ", ".join(handled_operations()))
