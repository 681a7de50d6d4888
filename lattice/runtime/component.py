"""Component actors: the ``lattice:actor`` world (actors/wit/lattice-actor.wit) in wasmtime's
component model with WASI preview 2.

A :class:`ComponentInstance` is the component twin of :class:`WasmbusInstance`: one Store, one
instance, one guest call at a time on a worker thread, the same deadline (epoch), memory cap
(store limits) and host-call hand-off to the event loop. The pool, claims, routing and the
invocation path above it do not know which kind they run.

Payloads cross the boundary as Latin-1 strings (see the WIT file for why): wasmtime-py copies a
``list<u8>`` value one element at a time, a string in one go.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass

import wasmtime
from wasmtime import component as wc

from lattice.runtime.errors import (
    ActorLoadError,
    GuestCallError,
    HostCallError,
    memory_hint,
    seconds,
)
from lattice.runtime.wasmbus import (
    HostCallFn,
    InstanceLimits,
    LineLog,
    first_line,
    new_store,
    wait_host_call,
)

log = logging.getLogger("lattice.runtime.component")

PACKAGE = "lattice:actor"
VERSION = "0.1.0"
GUEST_INTERFACE = f"{PACKAGE}/guest@{VERSION}"
HOST_INTERFACE = f"{PACKAGE}/host@{VERSION}"
GUEST_FUNC = "guest-call"
HOST_FUNC = "host-call"


@dataclass
class _CallState:
    deadline: float  # time.monotonic() value
    deadline_hit: bool = False


_current = threading.local()


def _host_call(store: wasmtime.Store, binding: str, namespace: str, operation: str,
               payload: str) -> wc.Variant:
    """``lattice:actor/host.host-call``. Never raises: a Python exception here would surface as a
    trap and poison the instance, while a failed host call is an ordinary guest-visible error."""
    inst: ComponentInstance | None = getattr(_current, "instance", None)
    if inst is None or inst.state is None:
        return wc.Variant("err", "host-call is only available during a guest call")
    try:
        data = payload.encode("latin-1")
    except UnicodeEncodeError:
        return wc.Variant("err", "host call rejected: the payload must be a Latin-1 string "
                                 "(one character per byte, U+0000..U+00FF)")
    try:
        result = wait_host_call(inst.state, inst.loop, inst.host_call, binding, namespace,
                                operation, data)
        return wc.Variant("ok", result.decode("latin-1"))
    except HostCallError as exc:
        return wc.Variant("err", str(exc))
    except Exception as exc:  # a bug in a handler must fail the host call, not the host
        log.exception("host call handler failed", extra={"actor": inst.label,
                                                          "namespace": namespace})
        return wc.Variant("err", f"host error while handling {namespace} {operation}: {exc}")


def build_component_linker(engine: wasmtime.Engine) -> wc.Linker:
    """WASI preview 2 plus ``lattice:actor/host``."""
    linker = wc.Linker(engine)
    linker.add_wasip2()
    with linker.root() as root, root.add_instance(HOST_INTERFACE) as host:
        host.add_func(HOST_FUNC, _host_call)
    return linker


def check_component(component: wc.Component, engine: wasmtime.Engine, label: str) -> None:
    """Explain a component that is not a ``lattice:actor`` actor in those terms, before
    wasmtime's linker does in its own."""
    ty = component.type
    for name in ty.imports(engine):
        if name.startswith("wasi:") or name == HOST_INTERFACE:
            continue
        hint = (f"this host provides {HOST_INTERFACE}" if name.startswith(f"{PACKAGE}/")
                else "a Lattice host provides only WASI preview 2 and " + HOST_INTERFACE)
        raise ActorLoadError(f"{label} imports {name}; {hint}")
    exports = set(ty.exports(engine))
    if GUEST_INTERFACE not in exports:
        other = sorted(e for e in exports if e.startswith(f"{PACKAGE}/guest@"))
        if other:
            raise ActorLoadError(f"{label} was built for {other[0]}; this host runs "
                                 f"{GUEST_INTERFACE} (rebuild it with this version's "
                                 "`lattice build`)")
        raise ActorLoadError(
            f"{label} is a component but does not export {GUEST_INTERFACE} (it exports "
            f"{', '.join(sorted(exports)) or 'nothing'}); build actors against "
            "actors/wit/lattice-actor.wit, e.g. with `lattice build`")


class ComponentInstance:
    """One instantiated component actor with its Store."""

    def __init__(self, engine: wasmtime.Engine, linker: wc.Linker, component: wc.Component,
                 label: str, limits: InstanceLimits, host_call: HostCallFn,
                 loop: asyncio.AbstractEventLoop, start_timeout: float) -> None:
        self.label = label
        self.state: _CallState | None = None
        self.poisoned = False
        self.loop = loop
        self.host_call = host_call
        self._limits = limits
        self._stdout = LineLog(label, "stdout")
        self._stderr = LineLog(label, "stderr")

        store = new_store(engine, limits, "actor.wasm", self._stdout, self._stderr)
        store.set_epoch_deadline(limits.ticks_for(start_timeout))
        self.store = store
        try:
            instance = linker.instantiate(store, component)
        except wasmtime.Trap as trap:
            store.close()
            raise GuestCallError(f"instantiating the actor trapped: {first_line(trap)}",
                                 "trap") from trap
        except wasmtime.WasmtimeError as exc:
            store.close()
            kind = "memory" if "memory" in str(exc).lower() else "trap"
            raise GuestCallError(f"cannot instantiate the actor: {first_line(exc)}",
                                 kind) from None
        finally:
            self._stdout.flush()
            self._stderr.flush()
        iface = instance.get_export_index(store, GUEST_INTERFACE)
        index = instance.get_export_index(store, GUEST_FUNC, iface) if iface else None
        func = instance.get_func(store, index) if index else None
        if func is None:
            store.close()
            raise GuestCallError(f"the actor does not export {GUEST_INTERFACE}.{GUEST_FUNC}",
                                 "abi")
        self._guest_call: wc.Func = func

    def call(self, operation: str, payload: bytes, timeout: float) -> bytes:
        """One guest call. Blocking; raises GuestCallError on any failure."""
        self.state = _CallState(time.monotonic() + timeout)
        self._stderr.recent.clear()
        _current.instance = self
        self.store.set_epoch_deadline(self._limits.ticks_for(timeout))
        try:
            result = self._guest_call(self.store, operation, payload.decode("latin-1"))
            self._guest_call.post_return(self.store)
        except wasmtime.Trap as trap:
            self.poisoned = True
            raise self._trap_error(trap, operation, timeout) from None
        except wasmtime.WasmtimeError as exc:
            self.poisoned = True
            raise self._trap_error(exc, operation, timeout) from None
        finally:
            _current.instance = None
            self._stdout.flush()
            self._stderr.flush()
        state, self.state = self.state, None
        if state.deadline_hit:
            self.poisoned = True
            raise GuestCallError(f"{operation} did not finish within its "
                                 f"{seconds(timeout)} deadline (a host call was still waiting)",
                                 "timeout")
        if not isinstance(result, wc.Variant) or not isinstance(result.payload, str):
            self.poisoned = True
            raise GuestCallError(f"the actor returned {type(result).__name__} from "
                                 f"{GUEST_FUNC}", "abi")
        if result.tag == "err":
            raise GuestCallError(result.payload, "guest")
        try:
            return result.payload.encode("latin-1")
        except UnicodeEncodeError:
            raise GuestCallError(f"the actor's reply to {operation} is not a Latin-1 string "
                                 "(one character per byte): see actors/wit/lattice-actor.wit",
                                 "abi") from None

    def _trap_error(self, exc: Exception, operation: str, timeout: float) -> GuestCallError:
        # The component API reports traps as WasmtimeError whose text ends in the trap message.
        text = str(exc)
        if "wasm trap: interrupt" in text:
            return GuestCallError(f"{operation} did not finish within its "
                                  f"{seconds(timeout)} deadline; the actor instance was stopped",
                                  "timeout")
        # componentize-py aborts the instance when Python code raises past guest-call; what it
        # raised is on the actor's stderr (logged), so name it here too.
        stderr = "\n".join(self._stderr.recent)
        if "MemoryError" in stderr or "memory allocation of" in stderr:
            return GuestCallError(
                f"{operation}: the actor ran out of memory (the limit is "
                f"{self._limits.memory_limit >> 20} MiB per instance). Raise it "
                f"{memory_hint('--component-memory-limit')}", "memory")
        if "unexpected exception" in stderr:
            raised = _raised(stderr)
            return GuestCallError(
                f"{operation} failed: the actor raised {raised or 'an exception'} that nothing "
                "caught, which aborts a Python component (its traceback is in the log); "
                "the instance was replaced", "trap")
        return GuestCallError(f"{operation} trapped: {first_line(exc)}", "trap")

    def close(self) -> None:
        self.store.close()


def _raised(stderr: str) -> str:
    """The exception type named in a CPython fatal-error dump or traceback on stderr."""
    for line in reversed(stderr.splitlines()):
        if line.startswith("object type name:"):
            return line.split(":", 1)[1].strip()
        head = line.split(":", 1)[0].strip()
        if head.isidentifier() and (head.endswith("Error") or head.endswith("Exception")):
            return head
    return ""
