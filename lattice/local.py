"""An in-process host: a Runtime, a Router with the builtins, and no NATS.

It runs actors locally — ``lattice call --wasm`` and the tests use it — with exactly the same
claims checks, routing and ABI as a lattice host. Actor-to-actor calls between actors started
here go direct; provider calls fail until a link and a provider transport exist.
"""

from __future__ import annotations

from pathlib import Path

import wasmtime

from lattice.links import LinkTable
from lattice.router import Router
from lattice.runtime import Actor, ActorLoadError, Runtime, RuntimeConfig


def read_module(path: str | Path) -> bytes:
    """Bytes of a .wasm file, or of a .wat file compiled to wasm (always unsigned)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ActorLoadError(f"cannot read {path}: {exc.strerror}") from None
    if path.suffix == ".wat" or not data.startswith(b"\0asm"):
        try:
            return wasmtime.wat2wasm(data.decode())
        except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
            if path.suffix == ".wat":
                raise ActorLoadError(f"{path} is not valid WAT: {exc}") from None
            raise ActorLoadError(f"{path} is neither a WebAssembly binary nor WAT text") from None
    return data


class LocalHost:
    def __init__(self, config: RuntimeConfig | None = None, *, lattice: str = "default",
                 enforce_builtin_caps: bool = True) -> None:
        self.runtime = Runtime(config)
        self.links = LinkTable()
        self.router = Router(lattice, self.links, enforce_builtin_caps=enforce_builtin_caps)
        self.actors: dict[str, Actor] = {}

    async def start_actor(self, module: bytes | str | Path, *, allow_unsigned: bool | None = None,
                          max_instances: int | None = None, name: str | None = None) -> Actor:
        if not isinstance(module, bytes):
            name = name or Path(module).stem
            module = read_module(module)
        actor = await self.runtime.load(module, self.router, allow_unsigned=allow_unsigned,
                                        max_instances=max_instances, name=name)
        if actor.key in self.actors:
            await self.runtime.unload(actor)
            raise ActorLoadError(f"actor {actor.key} ({actor.name}) is already running here")
        self.actors[actor.key] = actor
        self.router.add_actor(actor)
        return actor

    async def stop_actor(self, actor: Actor) -> None:
        self.router.remove_actor(actor)
        self.actors.pop(actor.key, None)
        await self.runtime.unload(actor)

    async def call(self, target: str, operation: str, payload: bytes = b"") -> bytes:
        """Call an actor running here by key or call alias; raises GuestCallError on failure."""
        key = self.router.resolve_actor(target)
        actor = self.actors.get(key) if key else None
        if actor is None:
            raise LookupError(f"no actor with key or call alias '{target}' is running here")
        return await actor.call(operation, payload)

    async def close(self) -> None:
        await self.runtime.close()

    async def __aenter__(self) -> LocalHost:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
