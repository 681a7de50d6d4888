"""The wasmbus ABI (docs/wire.md §1): host imports, per-call state, and one live instance.

A :class:`WasmbusInstance` owns one wasmtime Store and instance. Stores are single-threaded, so
an instance serves one guest call at a time, always on a worker thread (never the event loop):
the guest runs synchronously inside wasmtime, and its ``__host_call`` hands the real work back
to the event loop and blocks that worker thread until the answer (or the deadline) arrives.

Imports find "their" instance through a thread-local: exactly one guest call runs on a worker
thread at any moment, so the instance executing on this thread is the one being called.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import wasmtime
from wasmtime import FuncType, ValType

from lattice.runtime.errors import GuestCallError, HostCallError, memory_hint, seconds

log = logging.getLogger("lattice.runtime.wasmbus")
guest_log = logging.getLogger("lattice.actor")

# The waPC dialect was published under two import module names (docs/wire.md §1.1).
IMPORT_MODULES = ("wasmbus", "wapc")
# Start functions, in the order they run, each at most once per instance (docs/wire.md §1.3).
START_FUNCTIONS = ("_start", "wapc_init", "start")

_MASK32 = 0xFFFFFFFF

# (binding, namespace, operation, payload) -> result bytes; raises HostCallError to fail.
HostCallFn = Callable[[str, str, str, bytes], Awaitable[bytes]]


class AbiViolation(Exception):
    """The guest broke the ABI (e.g. pointed outside its memory). Aborts the guest call."""


@dataclass
class CallState:
    """Everything one guest call may touch; a fresh one per call, so nothing leaks between calls."""

    operation: bytes
    payload: bytes
    deadline: float  # time.monotonic() value
    response: bytes | None = None
    error: bytes | None = None
    host_response: bytes | None = None
    host_error: bytes | None = None
    host_calls: int = field(default=0)
    deadline_hit: bool = False  # a host call gave up on the deadline: the call has timed out


_current = threading.local()


def _instance(need_call: bool = True) -> WasmbusInstance:
    inst = getattr(_current, "instance", None)
    if inst is None or (need_call and inst.state is None):
        # A host function called outside a guest call: only possible from a start function.
        raise AbiViolation("wasmbus function called outside of a guest call (e.g. from _start)")
    return inst


# ---- the host functions -------------------------------------------------------------------------
# Each takes the wasmtime Caller first; pointers and lengths are unsigned 32-bit
# (docs/wire.md §1.2).


def _guest_request(caller: wasmtime.Caller, op_ptr: int, payload_ptr: int) -> None:
    inst = _instance()
    inst.write(caller, op_ptr, inst.state.operation, "__guest_request (operation)")
    inst.write(caller, payload_ptr, inst.state.payload, "__guest_request (payload)")


def _guest_response(caller: wasmtime.Caller, ptr: int, length: int) -> None:
    inst = _instance()
    inst.state.response = inst.read(caller, ptr, length, "__guest_response")


def _guest_error(caller: wasmtime.Caller, ptr: int, length: int) -> None:
    inst = _instance()
    inst.state.error = inst.read(caller, ptr, length, "__guest_error")


def _host_call(caller: wasmtime.Caller, bd_ptr: int, bd_len: int, ns_ptr: int, ns_len: int,
               op_ptr: int, op_len: int, msg_ptr: int, msg_len: int) -> int:
    inst = _instance()
    state = inst.state
    # Host-call results are per host call: a guest that recovers from one failure must not see
    # the stale error on its next call (docs/wire.md §1.4 recommendation).
    state.host_response = state.host_error = None
    state.host_calls += 1
    binding = inst.read(caller, bd_ptr, bd_len, "__host_call (binding)")
    namespace = inst.read(caller, ns_ptr, ns_len, "__host_call (namespace)")
    operation = inst.read(caller, op_ptr, op_len, "__host_call (operation)")
    payload = inst.read(caller, msg_ptr, msg_len, "__host_call (payload)")
    try:
        names = binding.decode(), namespace.decode(), operation.decode()
    except UnicodeDecodeError:
        state.host_error = b"host call rejected: binding, namespace and operation must be UTF-8"
        return 0
    try:
        state.host_response = inst.run_host_call(*names, payload)
        return 1
    except HostCallError as exc:
        state.host_error = str(exc).encode()
    except Exception as exc:  # a bug in a handler must fail the host call, not the host
        log.exception("host call handler failed", extra={"actor": inst.label,
                                                          "namespace": names[1]})
        state.host_error = f"host error while handling {names[1]} {names[2]}: {exc}".encode()
    return 0


def wait_host_call(state: Any, loop: asyncio.AbstractEventLoop, host_call: HostCallFn,
                   binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
    """Run the async host-call handler on ``loop`` and block this worker thread for the answer,
    within ``state.deadline``; sets ``state.deadline_hit`` when the deadline ran out."""
    remaining = state.deadline - time.monotonic()
    if remaining <= 0:
        state.deadline_hit = True
        raise HostCallError("deadline exceeded before the host call could start")
    future = asyncio.run_coroutine_threadsafe(host_call(binding, namespace, operation, payload),
                                              loop)
    try:
        return future.result(timeout=remaining)
    except concurrent.futures.TimeoutError:
        future.cancel()
        state.deadline_hit = True
        raise HostCallError(f"deadline exceeded waiting for {namespace} {operation}") from None
    except concurrent.futures.CancelledError:
        raise HostCallError(f"host call to {namespace} {operation} was cancelled") from None


def _host_response_len(caller: wasmtime.Caller) -> int:
    return len(_instance().state.host_response or b"")


def _host_response(caller: wasmtime.Caller, ptr: int) -> None:
    inst = _instance()
    if inst.state.host_response:
        inst.write(caller, ptr, inst.state.host_response, "__host_response")


def _host_error_len(caller: wasmtime.Caller) -> int:
    return len(_instance().state.host_error or b"")


def _host_error(caller: wasmtime.Caller, ptr: int) -> None:
    inst = _instance()
    if inst.state.host_error:
        inst.write(caller, ptr, inst.state.host_error, "__host_error")


def _console_log(caller: wasmtime.Caller, ptr: int, length: int) -> None:
    inst = _instance(need_call=False)  # logging from a start function is fine
    text = inst.read(caller, ptr, length, "__console_log").decode(errors="replace")
    guest_log.info(text, extra={"actor": inst.label, "source": "console_log"})


# name -> (parameter count, has an i32 result, implementation); every value is an i32.
_IMPORTS: dict[str, tuple[int, bool, Callable[..., object]]] = {
    "__guest_request": (2, False, _guest_request),
    "__guest_response": (2, False, _guest_response),
    "__guest_error": (2, False, _guest_error),
    "__host_call": (8, True, _host_call),
    "__host_response_len": (0, True, _host_response_len),
    "__host_response": (1, False, _host_response),
    "__host_error_len": (0, True, _host_error_len),
    "__host_error": (1, False, _host_error),
    "__console_log": (2, False, _console_log),
}


def build_linker(engine: wasmtime.Engine) -> wasmtime.Linker:
    """A linker with WASI preview 1 and the full wasmbus import set under both module names."""
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    for module in IMPORT_MODULES:
        for name, (params, returns, fn) in _IMPORTS.items():
            # FuncTypes are made per linker: wasmtime binds a type to the first engine using it.
            ty = FuncType([ValType.i32()] * params, [ValType.i32()] if returns else [])
            linker.define_func(module, name, ty, fn, access_caller=True)
    return linker


class LineLog:
    """Collects a WASI output stream and logs it line by line, tagged with the actor."""

    def __init__(self, label: str, stream: str) -> None:
        self._label, self._stream, self._buf = label, stream, b""
        self.recent: collections.deque[str] = collections.deque(maxlen=32)  # for trap reports

    def write(self, data: bytes) -> int:
        self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            self._emit(line)
        if len(self._buf) > 64 * 1024:  # a guest that never writes a newline
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf = b""

    def _emit(self, line: bytes) -> None:
        text = line.decode(errors="replace")
        self.recent.append(text)
        guest_log.info(text, extra={"actor": self._label, "source": self._stream})


@dataclass
class InstanceLimits:
    memory_limit: int
    ticks_for: Callable[[float], int]


def new_store(engine: wasmtime.Engine, limits: InstanceLimits, argv0: str, stdout: LineLog,
              stderr: LineLog) -> wasmtime.Store:
    """A Store for one actor instance: memory cap, WASI with output to the log and nothing
    else (no environment, preopened directories or sockets)."""
    store = wasmtime.Store(engine)
    store.set_limits(memory_size=limits.memory_limit)
    wasi = wasmtime.WasiConfig()
    wasi.argv = [argv0]
    wasi.stdout_custom = stdout.write
    wasi.stderr_custom = stderr.write
    store.set_wasi(wasi)
    return store


class WasmbusInstance:
    """One instantiated actor: its Store, exports and the state of the call in progress."""

    def __init__(self, engine: wasmtime.Engine, pre: wasmtime.InstancePre, label: str,
                 limits: InstanceLimits, host_call: HostCallFn,
                 loop: asyncio.AbstractEventLoop, start_timeout: float) -> None:
        self.label = label
        self.state: CallState | None = None
        self.poisoned = False
        self._limits = limits
        self._host_call = host_call
        self._loop = loop
        self._stdout = LineLog(label, "stdout")
        self._stderr = LineLog(label, "stderr")
        # argv as the 0.62+ hosts do; no env, no preopens (docs/wire.md §1.7)
        store = new_store(engine, limits, "main.wasm", self._stdout, self._stderr)
        self.store = store
        store.set_epoch_deadline(limits.ticks_for(start_timeout))
        try:
            instance = pre.instantiate(store)
        except wasmtime.Trap as trap:
            raise GuestCallError(f"instantiating the actor trapped: {first_line(trap)}",
                                 "trap") from trap
        except wasmtime.WasmtimeError as exc:  # e.g. its initial memory is over the limit
            kind = "memory" if "memory" in str(exc).lower() else "trap"
            raise GuestCallError(f"cannot instantiate the actor: {first_line(exc)}",
                                 kind) from None
        exports = instance.exports(store)
        memory = exports.get("memory")
        guest_call = exports.get("__guest_call")
        if not isinstance(memory, wasmtime.Memory) or not isinstance(guest_call, wasmtime.Func):
            raise GuestCallError("the actor does not export `memory` and `__guest_call`", "abi")
        self.memory: wasmtime.Memory = memory
        self._guest_call: wasmtime.Func = guest_call
        self._run_start_functions(exports, start_timeout)

    # ---- memory access with the ABI's bounds rules ---------------------------------------------

    def read(self, caller: wasmtime.Caller, ptr: int, length: int, what: str) -> bytes:
        ptr &= _MASK32
        length &= _MASK32
        size = self.memory.data_len(caller)
        if ptr + length > size:
            raise AbiViolation(f"{what}: {length} bytes at offset {ptr} lie outside the actor's "
                               f"{size}-byte memory")
        return bytes(self.memory.read(caller, ptr, ptr + length)) if length else b""

    def write(self, caller: wasmtime.Caller, ptr: int, data: bytes, what: str) -> None:
        ptr &= _MASK32
        size = self.memory.data_len(caller)
        if ptr + len(data) > size:
            raise AbiViolation(f"{what}: writing {len(data)} bytes at offset {ptr} would pass the "
                               f"end of the actor's {size}-byte memory")
        if data:
            self.memory.write(caller, data, ptr)

    # ---- calls ----------------------------------------------------------------------------------

    def run_host_call(self, binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        assert self.state is not None
        return wait_host_call(self.state, self._loop, self._host_call, binding, namespace,
                              operation, payload)

    def call(self, operation: str, payload: bytes, timeout: float) -> bytes:
        """One guest call (docs/wire.md §1.4). Blocking; raises GuestCallError on any failure."""
        op = operation.encode()
        self.state = CallState(op, payload, time.monotonic() + timeout)
        _current.instance = self
        self.store.set_epoch_deadline(self._limits.ticks_for(timeout))
        try:
            rc = self._guest_call(self.store, len(op), len(payload))
        except AbiViolation as exc:
            self.poisoned = True
            raise GuestCallError(f"the actor broke the wasmbus ABI: {exc}", "abi") from None
        except wasmtime.ExitTrap as exc:
            self.poisoned = True
            raise GuestCallError(f"the actor called proc_exit({exc.code}) during {operation}",
                                 "trap") from None
        except wasmtime.Trap as trap:
            self.poisoned = True
            raise self._trap_error(trap, operation, timeout) from None
        except wasmtime.WasmtimeError as exc:
            self.poisoned = True
            raise GuestCallError(f"the actor failed in {operation}: {first_line(exc)}",
                                 "trap") from None
        finally:
            _current.instance = None
            self._stdout.flush()
            self._stderr.flush()
        state, self.state = self.state, None
        if state.deadline_hit:
            # Whatever the guest made of its failed host call, the caller's deadline has passed;
            # report it as a timeout (e.g. HTTP 503, not 500) and start the next call afresh.
            self.poisoned = True
            raise GuestCallError(f"{operation} did not finish within its "
                                 f"{seconds(timeout)} deadline (a host call was still waiting)",
                                 "timeout")
        if rc == 1:
            return state.response or b""
        if state.error and state.error.strip():  # an empty text gets the message below
            raise GuestCallError(state.error.decode(errors="replace")
                                 + self._too_big(len(op) + len(payload)), "guest")
        raise GuestCallError(f"the actor returned {rc} from __guest_call for {operation} "
                             "without an error message", "guest")

    def _too_big(self, request: int) -> str:
        """Why a failed call could never have worked: the guest must copy the whole request
        into its linear memory (``__guest_request``), and this one is larger than the cap."""
        limit = self._limits.memory_limit
        if request <= limit:
            return ""
        return (f" (the request, {request / 1e6:.1f} MB, is larger than the actor's "
                f"{limit >> 20} MiB memory limit per instance: raise it {memory_hint()})")

    def _trap_error(self, trap: wasmtime.Trap, operation: str, timeout: float) -> GuestCallError:
        if trap.trap_code == wasmtime.TrapCode.INTERRUPT:
            return GuestCallError(f"{operation} did not finish within its "
                                  f"{seconds(timeout)} deadline; the actor instance was stopped",
                                  "timeout")
        state = self.state
        too_big = self._too_big(len(state.operation) + len(state.payload)) if state else ""
        if too_big:
            return GuestCallError(f"{operation} trapped: {first_line(trap)}{too_big}", "memory")
        used = self.memory.data_len(self.store)
        limit = self._limits.memory_limit
        # wasmtime refuses memory.grow past the limit (grow returns -1); a guest allocator then
        # aborts with a trap. A trap near the cap is almost certainly that, and so is an abort
        # (`unreachable`, how Rust and TinyGo fail an allocation) once half the cap is in use:
        # a growing buffer asks for as much again as it holds (a 1.9 MiB body in the echo actor
        # trapped with 33 of 64 MiB in use).
        near_cap = used + max(1 << 20, limit // 16) >= limit
        aborted_big = trap.trap_code == wasmtime.TrapCode.UNREACHABLE and used * 2 >= limit
        if near_cap or aborted_big:
            return GuestCallError(
                f"{operation}: the actor ran out of memory ({used >> 20} MiB in use of its "
                f"{limit >> 20} MiB limit per instance; trap: {first_line(trap)}). Raise the "
                f"limit {memory_hint()}", "memory")
        return GuestCallError(f"{operation} trapped: {first_line(trap)}", "trap")

    def _run_start_functions(self, exports: Any,
                             timeout: float) -> None:
        names = [n for n in START_FUNCTIONS if isinstance(exports.get(n), wasmtime.Func)]
        if not names and isinstance(exports.get("_initialize"), wasmtime.Func):
            names = ["_initialize"]  # WASI reactor modules (not done by 0.x hosts; harmless)
        _current.instance = self
        for name in names:
            func = exports.get(name)
            assert isinstance(func, wasmtime.Func)
            if func.type(self.store).params or func.type(self.store).results:
                continue  # not a start function after all
            self.store.set_epoch_deadline(self._limits.ticks_for(timeout))
            try:
                func(self.store)
            except wasmtime.ExitTrap as exc:
                if exc.code != 0:  # TinyGo's main may exit(0) once handlers are registered
                    raise GuestCallError(f"{name} exited with status {exc.code}", "trap") from None
            except AbiViolation as exc:
                raise GuestCallError(f"{name} broke the wasmbus ABI: {exc}", "abi") from None
            except wasmtime.Trap as trap:
                if trap.trap_code == wasmtime.TrapCode.INTERRUPT:
                    raise GuestCallError(f"{name} did not finish within {seconds(timeout)}",
                                         "timeout") from None
                raise GuestCallError(f"{name} trapped: {first_line(trap)}", "trap") from None
            finally:
                _current.instance = None
                self._stdout.flush()
                self._stderr.flush()

    def close(self) -> None:
        self.store.close()


def first_line(exc: BaseException) -> str:
    """wasmtime messages carry a backtrace; the cause line is what a user needs."""
    text = str(exc)
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("wasm trap:"):
            return line.removeprefix("wasm trap:").strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1] if lines else type(exc).__name__
