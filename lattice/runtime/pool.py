"""A bounded, resizable pool of warm instances of one actor.

Each in-flight guest call holds one *slot*; an instance is created only while holding a slot, so
an actor never has more than ``size`` instances. Healthy instances go back to the idle list;
an instance that trapped, timed out or broke the ABI is closed and replaced lazily, because
wasmbus promises no state across calls (docs/wire.md §1.8) and a broken store must not serve again.

All bookkeeping happens on the event loop thread, so plain counters need no locks.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol

from lattice.runtime.errors import GuestCallError, seconds

log = logging.getLogger("lattice.runtime.pool")


class Instance(Protocol):
    """What the pool needs of an instance: a wasmbus module's or a component's."""

    poisoned: bool

    def call(self, operation: str, payload: bytes, timeout: float) -> bytes: ...

    def close(self) -> None: ...


class InstancePool:
    def __init__(self, factory: Callable[[], Instance], size: int,
                 executor: Executor) -> None:
        if size < 1:
            raise ValueError("an actor needs at least one instance")
        self.size = size
        self._factory = factory
        self._executor = executor
        self._in_use = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._idle: list[Instance] = []
        self._live = 0  # instances that exist (idle or serving a call)
        self._closed = False
        self.created = 0  # instances ever created (observable for tests and benches)

    @property
    def in_use(self) -> int:
        return self._in_use

    async def warm(self) -> None:
        """Create one instance now, so load-time problems surface at load and the first call
        is warm."""
        self._idle.append(await self._create())

    async def acquire(self, timeout: float) -> Instance:
        if self._closed:
            raise GuestCallError("the actor has been stopped", "busy")
        if self._in_use < self.size:
            self._in_use += 1
        else:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout)  # release() hands its slot over
            except TimeoutError:
                if not (waiter.done() and not waiter.cancelled()):
                    raise GuestCallError(
                        f"all {self.size} instances of the actor stayed busy for "
                        f"{seconds(timeout)}; scale it up or lower the load", "busy") from None
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        if self._idle:
            return self._idle.pop()
        try:
            return await self._create()
        except BaseException:
            self._in_use -= 1
            self._wake()
            raise

    def release(self, inst: Instance) -> None:
        """Return ``inst`` after a call (called on the event loop thread)."""
        self._in_use -= 1
        if inst.poisoned or self._closed or self._live > self.size:
            self._discard(inst)  # broken, stopped, or the pool shrank meanwhile
        else:
            self._idle.append(inst)
        self._wake()

    def _discard(self, inst: Instance) -> None:
        self._live -= 1
        inst.close()

    def resize(self, size: int) -> None:
        """Allow ``size`` concurrent calls; extra idle instances are closed at once and busy
        ones when they come back."""
        if size < 1:
            raise ValueError("an actor needs at least one instance")
        self.size = size
        while self._idle and self._live > size:
            self._discard(self._idle.pop())
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self._in_use < self.size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_use += 1
                waiter.set_result(None)

    async def _create(self) -> Instance:
        loop = asyncio.get_running_loop()
        inst = await loop.run_in_executor(self._executor, self._factory)
        self.created += 1
        self._live += 1
        return inst

    def close(self) -> None:
        self._closed = True
        for inst in self._idle:
            self._discard(inst)
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(GuestCallError("the actor has been stopped", "busy"))
        self._waiters.clear()
