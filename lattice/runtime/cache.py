"""Compile each module or component once: an in-memory table backed by serialized artifacts on
disk.

Keyed by the module hash (SHA-256 of the module without its claims section), so re-signing an
actor does not recompile it. Disk artifacts live under a directory named after the wasmtime
version and engine settings; a stale or corrupt artifact is recompiled and replaced.

Deserializing a compiled artifact trusts it as native code, so the directory is created 0700
and only this process writes it (atomically, via rename).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from lattice.paths import private_dir
from lattice.runtime.engine import engine_fingerprint

log = logging.getLogger("lattice.runtime.cache")

Compiled = wasmtime.Module | wc.Component


class ModuleCache:
    def __init__(self, engine: wasmtime.Engine, directory: Path | None) -> None:
        self._engine = engine
        self._modules: dict[str, Compiled] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._dir: Path | None = None
        if directory is not None:
            tag = hashlib.sha256(engine_fingerprint().encode()).hexdigest()[:16]
            self._dir = directory / tag
        # Where the last get() found its module: "memory", "disk" or "compiled" (for benches/logs).
        self.last_source = ""

    def get(self, key: str, wasm: bytes, *, component: bool = False) -> Compiled:
        """Return the compiled module (or component) for ``wasm``, whose module hash is ``key``.

        Blocking (compilation can take seconds; a Python actor's component about ten): call it
        from a worker thread.
        """
        if component:
            key = f"{key}.component"  # never deserialize one kind as the other
        with self._guard:
            module = self._modules.get(key)
            if module is not None:
                self.last_source = "memory"
                return module
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # one compilation per key, however many callers race for it
            module = self._modules.get(key)
            if module is None:
                module = self._load_or_compile(key, wasm, component)
                with self._guard:
                    self._modules[key] = module
            else:
                self.last_source = "memory"
        return module

    def _path(self, key: str) -> Path | None:
        return None if self._dir is None else self._dir / f"{key}.cwasm"

    def _load_or_compile(self, key: str, wasm: bytes, component: bool) -> Compiled:
        kind = wc.Component if component else wasmtime.Module
        path = self._path(key)
        if path is not None and path.exists():
            try:
                module = kind.deserialize_file(self._engine, str(path))
                self.last_source = "disk"
                return module
            except wasmtime.WasmtimeError as exc:
                log.warning("discarding unusable cached module", extra={"path": str(path),
                                                                         "error": str(exc)})
        module = kind(self._engine, wasm)
        self.last_source = "compiled"
        if path is not None:
            self._store(path, module)
        return module

    def _store(self, path: Path, module: Compiled) -> None:
        try:
            private_dir(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as fh:
                fh.write(module.serialize())
            os.replace(tmp, path)
        except OSError as exc:  # a read-only or full disk only costs us the cache
            log.warning("cannot write module cache", extra={"path": str(path),
                                                            "error": str(exc)})
