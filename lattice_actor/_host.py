"""The one way out of the actor: ``host_call``.

Inside a component it goes through the ``lattice:actor/host`` import (payloads cross as Latin-1
strings, see actors/wit/lattice-actor.wit), whose bindings (``wit_world.imports.host``) are
imported with this module but only when running as a component. In native unit tests it goes
to the function installed with :func:`lattice_actor.testing.set_host`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from ._errors import HostError

HostFn = Callable[[str, str, str, bytes], bytes]

NOT_IN_COMPONENT = (
    "not running inside a component; in unit tests install a host with "
    "lattice_actor.testing.set_host"
)

_test_host: HostFn | None = None


def in_component() -> bool:
    """True when running as a WebAssembly component (CPython compiled to wasm32-wasi)."""
    return sys.platform == "wasi"


# Inside a component only the modules imported while componentize-py pre-initializes the app
# (at build time) exist at run time: an import inside a function fails there. So the bindings
# are imported now, when this module is imported, and only inside a component.
_wit_host: Any = None
_Err: Any = None
_wit_error: str | None = None
if in_component():
    try:
        from componentize_py_types import Err as _Err
        from wit_world.imports import host as _wit_host
    except ImportError as _exc:  # built without the lattice:actor world?
        _wit_error = f"the component has no lattice:actor host import ({_exc})"


def install(fn: HostFn | None) -> None:
    """Install (or with None remove) the native host function; see lattice_actor.testing."""
    global _test_host
    if fn is not None and not callable(fn):
        raise TypeError(f"a host must be callable, got {type(fn).__name__}")
    _test_host = fn


def host_call(binding: str, namespace: str, operation: str, payload: bytes = b"") -> bytes:
    """Call the host: a capability provider (binding = link name, namespace = contract id),
    a builtin (``wasmcloud:builtin:*``) or another actor (binding ``""``, namespace = actor key
    or call alias). Returns the reply payload; raises :class:`HostError` when the call fails.
    """
    if not isinstance(payload, bytes):
        payload = bytes(payload)
    fn = _test_host
    if fn is not None:
        try:
            reply = fn(binding, namespace, operation, payload)
        except HostError:
            raise
        except Exception as exc:
            raise HostError(str(exc) or type(exc).__name__, binding=binding,
                            namespace=namespace, operation=operation) from exc
        if reply is None:
            return b""
        if not isinstance(reply, bytes | bytearray | memoryview):
            raise TypeError(f"the installed host returned {type(reply).__name__} for {operation}; "
                            "it must return bytes")
        return bytes(reply)
    if not in_component():
        raise RuntimeError(NOT_IN_COMPONENT)
    return _component_call(binding, namespace, operation, payload)


def _component_call(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
    if _wit_host is None:
        raise RuntimeError(_wit_error or "the lattice:actor host bindings are not loaded")
    try:
        reply = _wit_host.host_call(binding, namespace, operation, payload.decode("latin-1"))
    except _Err as err:
        text = err.value if isinstance(err.value, str) else str(err.value)
        raise HostError(text, binding=binding, namespace=namespace,
                        operation=operation) from None
    return reply.encode("latin-1")
