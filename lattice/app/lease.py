"""One reconciler leader per lattice, elected through a JetStream KV lease (no extra service).

The bucket ``LATTICE_LEASE_{lattice}`` has a max age of ``ttl``: an entry disappears ``ttl``
seconds after its last write. The leader rewrites its entry every ``ttl / 3`` (compare-and-set on
the revision it holds); a candidate may only *create* the key, which succeeds once the previous
leader's entry has expired, or *take it over* from a holder it has seen die
(:meth:`Lease.take_over`, a compare-and-set on the dead holder's revision: if the holder renewed
meanwhile, the take-over fails). So a leader that dies is replaced as soon as a follower notices
(lattice/host/reconciler.py), one that hangs within ``ttl`` seconds, and two hosts can never both
hold the lease (every write is conditional).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError

from lattice.app.store import bind_or_create

log = logging.getLogger("lattice.app.lease")

BUCKET = "LATTICE_LEASE_{lattice}"
KEY = "reconciler"


class Lease:
    def __init__(self, js: Any, lattice: str, holder: str, ttl: float = 6.0, *,
                 replicas: int = 1) -> None:
        self._js = js
        self.replicas = replicas
        self.bucket = BUCKET.format(lattice=lattice)
        self.holder = holder
        self.ttl = ttl
        self._kv: Any = None
        self._revision = 0

    @property
    def held(self) -> bool:
        return self._revision > 0

    async def open(self) -> Lease:
        self._kv = await bind_or_create(self._js, self.bucket, history=1, ttl=self.ttl,
                                        replicas=self.replicas)
        return self

    async def refresh(self) -> bool:
        """Renew the lease if held, else try to take it; whether we hold it now."""
        value = self.holder.encode()
        try:
            if self._revision:
                self._revision = await self._kv.update(KEY, value, last=self._revision)
            else:
                self._revision = await self._kv.create(KEY, value)
                log.info("reconciler lease taken", extra={"holder": self.holder})
        except KeyWrongLastSequenceError:
            if self._revision:
                log.warning("reconciler lease lost", extra={"holder": self.holder})
            self._revision = 0
        except Exception as exc:  # NATS trouble: we cannot prove we hold it, so we do not
            if self._revision:
                log.warning("reconciler lease could not be renewed",
                            extra={"holder": self.holder, "error": str(exc)})
            self._revision = 0
        return self.held

    async def leader(self) -> str | None:
        current = await self.current()
        return current[0] if current else None

    async def current(self) -> tuple[str, int] | None:
        """``(holder, revision)`` of the lease as stored now, ``None`` when nobody holds it."""
        try:
            entry = await self._kv.get(KEY)
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        return entry.value.decode(), entry.revision

    async def take_over(self, revision: int) -> bool:
        """Take the lease from a holder known to be gone, at the revision it was seen with;
        fails (``False``) when the entry changed since — the holder renewed, or another host
        was faster — or expired (then :meth:`refresh` creates it)."""
        try:
            self._revision = await self._kv.update(KEY, self.holder.encode(), last=revision)
        except Exception:  # wrong last sequence, or NATS trouble: not ours
            self._revision = 0
            return False
        log.info("reconciler lease taken over", extra={"holder": self.holder})
        return True

    async def release(self) -> None:
        if self._revision:
            with contextlib.suppress(Exception):  # expired or taken meanwhile: nothing to do
                await self._kv.delete(KEY, last=self._revision)
            self._revision = 0


async def lease_holder(js: Any, lattice: str) -> str | None:
    """Who holds the reconciler lease of ``lattice`` now (read only: creates nothing)."""
    try:
        kv = await js.key_value(BUCKET.format(lattice=lattice))
        entry = await kv.get(KEY)
    except (BucketNotFoundError, KeyNotFoundError):
        return None
    return entry.value.decode() if entry.value else None
