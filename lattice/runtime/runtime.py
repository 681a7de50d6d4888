"""The Runtime: one wasmtime Engine, module cache, epoch clock and worker threads, shared by every
actor it loads. Create one per process (a host), load actors into it, close it at shutdown."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from lattice import claims as claims_mod
from lattice.keys import KeyPair, KeyRole
from lattice.paths import cache_dir
from lattice.runtime.actor import Actor, ActorIdentity, HostCallHandler
from lattice.runtime.cache import ModuleCache
from lattice.runtime.component import (
    ComponentInstance,
    build_component_linker,
    check_component,
)
from lattice.runtime.engine import EpochTicker, make_engine
from lattice.runtime.errors import ActorLoadError, GuestCallError, HostCallError
from lattice.runtime.pool import Instance, InstancePool
from lattice.runtime.wasmbus import (
    _IMPORTS,
    IMPORT_MODULES,
    HostCallFn,
    InstanceLimits,
    WasmbusInstance,
    build_linker,
)
from lattice.wasm import WasmFormatError, is_component

log = logging.getLogger("lattice.runtime")

_WASI = "wasi_snapshot_preview1"


@dataclass(frozen=True)
class RuntimeConfig:
    call_timeout: float = 10.0          # seconds a guest call may take, host calls included
    memory_limit: int = 64 * 1024 * 1024  # bytes of linear memory per wasmbus instance
    # Per component instance: CPython itself takes ~15 MiB before any request, and a request
    # body exists about four times while it is decoded (UTF-8 in the canonical ABI, str, bytes,
    # msgpack), so a 10 MB upload needs ~60 MiB on top.
    component_memory_limit: int = 128 * 1024 * 1024
    max_instances: int = 1              # default pool size per actor (a host sets it per actor)
    cache_dir: Path | None = None       # None: the user cache dir; see disk_cache
    disk_cache: bool = True             # keep compiled modules on disk between runs
    allow_unsigned: bool = False        # development only: run unsigned or tampered modules
    epoch_tick: float = 0.01            # deadline resolution in seconds
    worker_threads: int = 64            # guest calls in flight at once (nested calls hold one each)


async def _no_host_calls(actor: Actor, binding: str, namespace: str, operation: str,
                         payload: bytes) -> bytes:
    raise HostCallError(f"this runtime handles no host calls ({namespace} {operation})")


class Runtime:
    def __init__(self, config: RuntimeConfig | None = None) -> None:
        self.config = config or RuntimeConfig()
        self.engine = make_engine()
        directory = None
        if self.config.disk_cache:
            directory = self.config.cache_dir or (cache_dir() / "modules")
        self.cache = ModuleCache(self.engine, directory)
        self._linker = build_linker(self.engine)
        self._component_linker = build_component_linker(self.engine)
        self._ticker = EpochTicker(self.engine, self.config.epoch_tick)
        self._executor = ThreadPoolExecutor(self.config.worker_threads,
                                            thread_name_prefix="lattice-wasm")
        self._actors: set[Actor] = set()

    async def load(self, wasm: bytes, host_call: HostCallHandler | None = None, *,
                   allow_unsigned: bool | None = None, max_instances: int | None = None,
                   name: str | None = None, memory_limit: int | None = None) -> Actor:
        """Verify, compile (or fetch from cache) and warm up an actor. Raises ActorLoadError.

        ``memory_limit`` (bytes per instance) overrides the config's cap for this actor."""
        if memory_limit is not None and memory_limit < (1 << 16):
            raise ActorLoadError(f"a memory limit of {memory_limit} bytes is below one "
                                 "WebAssembly page (64 KiB)")
        allow = self.config.allow_unsigned if allow_unsigned is None else allow_unsigned
        identity = _identify(wasm, allow, name)
        loop = asyncio.get_running_loop()
        component = is_component(wasm)
        try:
            compiled = await loop.run_in_executor(
                self._executor, lambda: self.cache.get(identity.module_hash, wasm,
                                                       component=component))
        except wasmtime.WasmtimeError as exc:
            what = "component" if component else "module"
            raise ActorLoadError(f"{identity.name}: not a valid WebAssembly {what}: "
                                 f"{str(exc).splitlines()[0]}") from None

        handler = host_call or _no_host_calls
        limits = InstanceLimits(memory_limit or self.config.memory_limit, self._ticker.ticks_for)
        timeout = self.config.call_timeout
        if component:
            assert isinstance(compiled, wc.Component)
            check_component(compiled, self.engine, identity.name)
            linker, comp = self._component_linker, compiled
            limits = InstanceLimits(memory_limit or self.config.component_memory_limit,
                                    self._ticker.ticks_for)

            def make(label: str, hc: HostCallFn) -> Instance:
                return ComponentInstance(self.engine, linker, comp, label, limits, hc, loop,
                                         timeout)
            pure = False
        else:
            assert isinstance(compiled, wasmtime.Module)
            _check_shape(compiled, identity.name)
            try:
                pre = self._linker.instantiate_pre(compiled)
            except wasmtime.WasmtimeError as exc:
                raise ActorLoadError(f"{identity.name}: cannot link the module: {exc}") from None

            def make(label: str, hc: HostCallFn) -> Instance:
                return WasmbusInstance(self.engine, pre, label, limits, hc, loop, timeout)
            pure = not any(imp.name == "__host_call" for imp in compiled.imports)

        def pool_for(actor: Actor) -> InstancePool:
            async def hc(binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
                return await handler(actor, binding, namespace, operation, payload)

            label = f"{actor.name}/{actor.key[:8]}"
            return InstancePool(lambda: make(label, hc),
                                max_instances or self.config.max_instances, self._executor)

        actor = Actor(identity, pool_for, self._executor, timeout, pure=pure)
        try:
            await actor.pool.warm()
        except GuestCallError as exc:
            actor.pool.close()
            raise ActorLoadError(f"{identity.name}: failed to start: {exc}") from None
        self._actors.add(actor)
        log.info("actor loaded", extra={"actor": identity.key, "actor_name": identity.name,
                                        "cache": self.cache.last_source})
        return actor

    async def unload(self, actor: Actor) -> None:
        self._actors.discard(actor)
        await actor.close()

    async def close(self) -> None:
        for actor in list(self._actors):
            await self.unload(actor)
        self._ticker.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _identify(wasm: bytes, allow_unsigned: bool, name: str | None) -> ActorIdentity:
    """Who this module is, from its verified claims (docs/wire.md §5.2)."""
    label = name or "actor"
    try:
        is_component(wasm)
    except WasmFormatError as exc:
        raise ActorLoadError(f"{label}: {exc}") from None
    try:  # read the sections first: a broken file is broken whatever its claims say
        module_hash = claims_mod.module_hash(wasm)
    except WasmFormatError as exc:
        raise ActorLoadError(f"{label}: not a valid WebAssembly file: {exc}") from None
    try:
        claims = claims_mod.verify_module(wasm)
        for warning in claims.warnings:
            log.warning(warning, extra={"actor": claims.subject, "actor_name": claims.name})
    except claims_mod.ClaimsError as exc:
        if not allow_unsigned:
            raise ActorLoadError(
                f"refusing to run {label}: {exc}. Sign it with `lattice claims sign`, or for "
                "local development only pass --allow-unsigned") from None
        claims = _claims_anyway(wasm)
        log.warning("running an unverified module (development mode)",
                    extra={"actor_name": label, "reason": str(exc)})
    if claims is None:
        # A stable pseudo-identity, so the same unsigned module keeps one key across runs.
        seed = hashlib.sha256(b"lattice-unsigned:" + module_hash.encode()).digest()
        key = KeyPair.from_raw_seed(KeyRole.MODULE, seed).public_key
        return ActorIdentity(key, name or f"unsigned-{module_hash[:8].lower()}", module_hash,
                             None, None, None)
    return ActorIdentity(claims.subject, claims.name or name or claims.subject[:8], module_hash,
                         claims, frozenset(claims.caps), claims.call_alias or None)


def _claims_anyway(wasm: bytes) -> claims_mod.ActorClaims | None:
    try:
        return claims_mod.extract_claims(wasm)
    except claims_mod.ClaimsError:
        return None


def _check_shape(module: wasmtime.Module, label: str) -> None:
    """Explain import/export problems in ABI terms before wasmtime's linker does."""
    for imp in module.imports:
        if imp.module in IMPORT_MODULES:
            if imp.name not in _IMPORTS:
                raise ActorLoadError(f"{label} imports {imp.module}::{imp.name}, which is not part "
                                     "of the wasmbus ABI")
        elif imp.module != _WASI:
            raise ActorLoadError(
                f"{label} imports {imp.module}::{imp.name}; a wasmCloud host provides only the "
                f"wasmbus ABI (modules `wasmbus`/`wapc`) and {_WASI}")
    exports = {exp.name for exp in module.exports}
    missing = [n for n in ("__guest_call", "memory") if n not in exports]
    if missing:
        raise ActorLoadError(f"{label} does not export {' and '.join(missing)}: it is not a "
                             "wasmbus actor (build it with wasmbus-rpc or the TinyGo actor SDK)")
