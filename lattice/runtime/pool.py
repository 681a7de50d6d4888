"""A bounded pool of warm instances of one actor.

Each in-flight guest call holds one *slot*; an instance is created only while holding a slot, so
an actor never has more than ``size`` instances. Healthy instances go back to the idle list;
an instance that trapped, timed out or broke the ABI is closed and replaced lazily, because
wasmbus promises no state across calls (WIRE.md §1.8) and a broken store must not serve again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from lattice.runtime.errors import GuestCallError
from lattice.runtime.wasmbus import WasmbusInstance

log = logging.getLogger("lattice.runtime.pool")


class InstancePool:
    def __init__(self, factory: Callable[[], WasmbusInstance], size: int,
                 executor: Executor) -> None:
        if size < 1:
            raise ValueError("an actor needs at least one instance")
        self.size = size
        self._factory = factory
        self._executor = executor
        self._slots = asyncio.Semaphore(size)
        self._idle: list[WasmbusInstance] = []
        self._closed = False
        self.created = 0  # instances ever created (observable for tests and benches)

    async def warm(self) -> None:
        """Create one instance now, so load-time problems surface at load and the first call
        is warm."""
        async with self._slots:
            self._idle.append(await self._create())

    async def acquire(self, timeout: float) -> WasmbusInstance:
        if self._closed:
            raise GuestCallError("the actor has been stopped", "busy")
        try:
            if self._slots.locked():  # only pay for a timer when we really have to wait
                await asyncio.wait_for(self._slots.acquire(), timeout)
            else:
                await self._slots.acquire()
        except TimeoutError:
            raise GuestCallError(f"all {self.size} instances of the actor stayed busy for "
                                 f"{timeout:g} s; scale it up or lower the load", "busy") from None
        if self._idle:
            return self._idle.pop()
        try:
            return await self._create()
        except BaseException:
            self._slots.release()
            raise

    def release(self, inst: WasmbusInstance) -> None:
        """Return ``inst`` after a call (called on the event loop thread)."""
        if inst.poisoned or self._closed:
            inst.close()
        else:
            self._idle.append(inst)
        self._slots.release()

    async def _create(self) -> WasmbusInstance:
        loop = asyncio.get_running_loop()
        inst = await loop.run_in_executor(self._executor, self._factory)
        self.created += 1
        return inst

    def close(self) -> None:
        self._closed = True
        for inst in self._idle:
            inst.close()
        self._idle.clear()
