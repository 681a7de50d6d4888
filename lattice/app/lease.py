"""One reconciler leader per lattice, elected through a JetStream KV lease (no extra service).

The bucket ``LATTICE_LEASE_{lattice}`` has a max age of ``ttl``: an entry disappears ``ttl``
seconds after its last write. The leader rewrites its entry every ``ttl / 3`` (compare-and-set on
the revision it holds); a candidate may only *create* the key, which succeeds once the previous
leader's entry has expired. So a leader that dies or hangs is replaced within ``ttl`` seconds,
and two hosts can never both hold the lease (every write is conditional).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

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
        try:
            entry = await self._kv.get(KEY)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def release(self) -> None:
        if self._revision:
            with contextlib.suppress(Exception):  # expired or taken meanwhile: nothing to do
                await self._kv.delete(KEY, last=self._revision)
            self._revision = 0
