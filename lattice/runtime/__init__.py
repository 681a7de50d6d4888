"""Run actors in wasmtime: wasmbus modules (docs/wire.md §1) and lattice:actor components
(actors/wit/lattice-actor.wit, the Python actor SDK's target).

Public API::

    runtime = Runtime(RuntimeConfig(call_timeout=10.0, memory_limit=64 << 20))
    actor = await runtime.load(wasm_bytes, host_call=handler)   # module or component; verifies
                                                                # claims, compiles once
    result = await actor.call("HttpServer.HandleRequest", payload)
    await runtime.close()

Lifetimes: a Runtime owns the Engine, the module cache, the epoch clock and the worker threads;
an Actor owns a pool of instances (each its own Store) and must be used from the event loop that
loaded it. Guest calls run on worker threads; host calls run on that event loop.
"""

from lattice.runtime.actor import Actor, ActorIdentity, HostCallHandler
from lattice.runtime.errors import ActorLoadError, GuestCallError, HostCallError
from lattice.runtime.runtime import Runtime, RuntimeConfig

__all__ = [
    "Actor",
    "ActorIdentity",
    "ActorLoadError",
    "GuestCallError",
    "HostCallError",
    "HostCallHandler",
    "Runtime",
    "RuntimeConfig",
]
