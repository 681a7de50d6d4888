"""The handler registry: operation string -> the function that answers it.

Decorators (``http_handler``, ``operation``, ...) register at import time; the registry is
process-global, like the actor itself. Tests call :func:`reset` between cases.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._errors import RegistrationError

Invoke = Callable[[bytes], bytes]


@dataclass(frozen=True, slots=True)
class Entry:
    operation: str
    kind: str  # "http", "message", "chunk", "health", "operation"
    func: Callable[..., Any]  # the user's function
    invoke: Invoke  # payload bytes -> reply bytes


_HANDLERS: dict[str, Entry] = {}


def describe(func: Callable[..., Any]) -> str:
    """``module.qualname (file:line)`` for error messages."""
    name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"
    code = getattr(inspect.unwrap(func), "__code__", None)
    if code is not None:
        name += f" ({code.co_filename}:{code.co_firstlineno})"
    return name


def check_handler(func: Any, what: str) -> None:
    if not callable(func):
        raise RegistrationError(f"{what} must decorate a function, got {type(func).__name__}")
    if inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func):
        raise RegistrationError(
            f"{what}: {describe(func)} is async; actor handlers are plain functions "
            "(host calls are synchronous inside a component)")


def register(operation: str, kind: str, func: Callable[..., Any], invoke: Invoke) -> None:
    service, _, method = operation.rpartition(".") if isinstance(operation, str) else ("", "", "")
    if not service or not method or operation != operation.strip():
        raise RegistrationError(
            f"operation {operation!r} must look like 'Service.Method', e.g. 'Pingpong.Ping'")
    existing = _HANDLERS.get(operation)
    if existing is not None:
        raise RegistrationError(
            f"a second handler for operation {operation!r}: {describe(func)} — "
            f"{describe(existing.func)} already handles it (one handler per operation)")
    _HANDLERS[operation] = Entry(operation, kind, func, invoke)


def lookup(operation: str) -> Entry | None:
    return _HANDLERS.get(operation)


def registered() -> dict[str, Entry]:
    """A copy of the registry."""
    return dict(_HANDLERS)


def reset() -> None:
    """Forget every handler (for tests)."""
    _HANDLERS.clear()
