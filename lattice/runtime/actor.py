"""A loaded actor: identity from its claims, a compiled module, and a pool of instances."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lattice.runtime.errors import GuestCallError
from lattice.runtime.pool import InstancePool

if TYPE_CHECKING:
    from lattice.claims import ActorClaims

log = logging.getLogger("lattice.runtime.actor")

# async (actor, binding, namespace, operation, payload) -> result bytes
HostCallHandler = Callable[["Actor", str, str, str, bytes], Awaitable[bytes]]

# A pure actor (one that cannot make host calls) runs on the event loop thread for at most this
# long per call before the call is moved to a worker thread; see Actor.call.
INLINE_BUDGET = 0.01


@dataclass(frozen=True)
class ActorIdentity:
    key: str                 # the module key (M…) from the claims, or a stable pseudo-key
    name: str
    module_hash: str
    claims: ActorClaims | None  # None only for unsigned modules run with allow_unsigned
    caps: frozenset[str] | None  # None: unsigned development module, capabilities not enforced
    call_alias: str | None


class Actor:
    """Call it with :meth:`call`; stop it with :meth:`close`. Safe for concurrent calls."""

    def __init__(self, identity: ActorIdentity, pool_factory: Callable[[Actor], InstancePool],
                 executor: Executor, call_timeout: float, *, pure: bool = False) -> None:
        self.identity = identity
        self.call_timeout = call_timeout
        self._executor = executor
        self.pool = pool_factory(self)
        # Pure actors (no __host_call import) cannot call back into the event loop, so running
        # them on it cannot deadlock and saves the thread hand-off (most of a small call's cost).
        self.inline = pure

    key = property(lambda self: self.identity.key)
    name = property(lambda self: self.identity.name)
    claims = property(lambda self: self.identity.claims)
    caps = property(lambda self: self.identity.caps)
    call_alias = property(lambda self: self.identity.call_alias)

    def has_capability(self, contract_id: str) -> bool:
        return self.identity.caps is None or contract_id in self.identity.caps

    async def call(self, operation: str, payload: bytes, timeout: float | None = None) -> bytes:
        """Run one guest call; raises :class:`GuestCallError` when it fails."""
        timeout = self.call_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        started = loop.time()
        inst = await self.pool.acquire(timeout)
        remaining = max(0.001, timeout - (loop.time() - started))
        if self.inline and remaining > INLINE_BUDGET:
            try:
                result = inst.call(operation, payload, INLINE_BUDGET)
            except GuestCallError as exc:
                self.pool.release(inst)
                if exc.kind != "timeout":
                    raise
                # Too slow to run on the loop: it was stopped after INLINE_BUDGET. A pure call
                # has no side effects to repeat, so run it again on a worker thread, and keep
                # this actor off the loop from now on.
                self.inline = False
                log.info("actor is compute-heavy; its calls now run on worker threads",
                         extra={"actor": self.key})
                return await self.call(operation, payload, timeout - (loop.time() - started))
            self.pool.release(inst)
            return result
        future = loop.run_in_executor(self._executor, inst.call, operation, payload, remaining)
        # The instance goes back when the worker thread is done with it, even if our caller was
        # cancelled meanwhile (the thread cannot be; the deadline bounds it).
        future.add_done_callback(lambda f: self._finished(inst, f))
        return await asyncio.shield(future)

    def _finished(self, inst, future: asyncio.Future) -> None:
        self.pool.release(inst)
        if not future.cancelled():
            future.exception()  # retrieved here so an abandoned failure is not reported as lost

    def __repr__(self) -> str:
        return f"<Actor {self.name} {self.key}>"

    async def close(self) -> None:
        self.pool.close()
