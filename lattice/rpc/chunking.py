"""Large payloads through the JetStream object store (docs/wire.md §2.6).

Bucket = the lattice prefix; request objects are named by invocation id, responses ``{id}-r``.
The reader deletes what it read; a failed delete only leaves garbage behind, never an error.
"""

from __future__ import annotations

import asyncio
import logging

from nats.aio.client import Client
from nats.js.api import ObjectStoreConfig
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from lattice.rpc.subjects import CHUNK_THRESHOLD, chunk_bucket

log = logging.getLogger("lattice.rpc.chunking")

# A chunked transfer gets extra time on top of the RPC timeout, as wasmbus-rpc does (+13 s).
CHUNKED_EXTRA_TIMEOUT = 13.0


def needs_chunking(payload: bytes) -> bool:
    return len(payload) > CHUNK_THRESHOLD


def response_object(invocation_id: str) -> str:
    return f"{invocation_id}-r"


class ChunkStore:
    def __init__(self, nc: Client, lattice: str, js_domain: str | None = None, *,
                 replicas: int = 1) -> None:
        self._js = nc.jetstream(domain=js_domain) if js_domain else nc.jetstream()
        self._bucket = chunk_bucket(lattice)
        self._replicas = replicas  # when we create the bucket; an existing one is used as is
        self._store: ObjectStore | None = None
        self._lock = asyncio.Lock()

    async def _get_store(self) -> ObjectStore:
        if self._store is None:
            async with self._lock:
                if self._store is None:
                    try:
                        self._store = await self._js.object_store(self._bucket)
                    except (BucketNotFoundError, NotFoundError):
                        self._store = await self._js.create_object_store(
                            self._bucket, config=ObjectStoreConfig(bucket=self._bucket,
                                                                   replicas=self._replicas))
        return self._store

    async def put(self, name: str, data: bytes) -> None:
        store = await self._get_store()
        await store.put(name, data)

    async def discard(self, name: str) -> None:
        """Delete ``name`` if it is there; failures only leave garbage behind."""
        try:
            store = await self._get_store()
            await store.delete(name)
        except Exception as exc:
            log.debug("could not delete chunk object", extra={"object": name, "error": str(exc)})

    async def take(self, name: str, expected: int | None = None) -> bytes:
        """Read the object ``name`` and delete it."""
        store = await self._get_store()
        try:
            result = await store.get(name)
        except (NotFoundError, ObjectNotFoundError):
            raise LookupError(f"chunked payload {name} is missing from object store "
                              f"{self._bucket}") from None
        data = result.data or b""
        if expected is not None and len(data) != expected:
            raise LookupError(f"chunked payload {name} has {len(data)} bytes, expected {expected}")
        try:
            await store.delete(name)
        except Exception as exc:  # leftover objects are harmless; losing the call is not
            log.debug("could not delete chunk object", extra={"object": name, "error": str(exc)})
        return data
