"""``keyvalue-nats``: the ``wasmcloud:keyvalue`` contract on a NATS JetStream KV bucket.

Semantics are kvredis's, i.e. Redis's (docs/contracts.md §6.3), so an actor can move between this
provider and keyvalue-redis without noticing: one keyspace per bucket in which a key holds a
string, a list or a set (using it as another kind is a WRONGTYPE error), ``Increment`` counts
from 0 and keeps a TTL, ``ListRange`` is LRANGE, ``ListDel`` removes the first match, an emptied
list or set disappears.

Store layout (one KV entry per user key):

* KV key ``k.<base64url(key) without padding>`` (``k.=`` for the empty key); a key whose
  encoding would exceed 200 characters is stored as ``h.<base64url(sha256(key))>`` instead, since
  KV keys are NATS subjects (only ``[-/_=.a-zA-Z0-9]``, bounded length).
* value: JSON ``{"t": "s"|"l"|"z", "v": <str | [str, ...]>, "x": <unix expiry>?}`` — ``s`` a
  string, ``l`` a list, ``z`` a set (members sorted). A value that is not such a document (e.g.
  written with ``nats kv put``) reads as a plain string.

Expiry: nats-py has no per-key TTL on a plain KV bucket, so ``Set`` with ``expires`` > 0 stores
the wall-clock deadline in ``x`` and every operation treats a value past it as missing (the
entry itself is deleted by the next write to that key). Instances on several hosts therefore
rely on reasonably synchronised clocks.

Atomicity: every read-modify-write (Increment, ListAdd/ListDel, SetAdd/SetDel, Del and the
clears) is optimistic: read the entry and its revision, write with ``last=revision``, retry on
"wrong last sequence". A per-key asyncio lock avoids pointless retries inside one instance; the
revision check makes concurrent instances (other hosts, other link names) lose no update.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js.api import KeyValueConfig
from nats.js.kv import KeyValue

from contracts.keyvalue import (
    GetResponse,
    IncrementRequest,
    ListAddRequest,
    ListDelRequest,
    ListRangeRequest,
    SetAddRequest,
    SetDelRequest,
    SetRequest,
)
from lattice.connect import NatsOptions, connect, jetstream
from lattice.links import LinkDefinition
from lattice.provider import Context, HostData, InvalidParameter, Provider, ProviderError
from providers.kvmem import lrange

log = logging.getLogger("providers.keyvalue_nats")

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INTEGER = "ERR value is not an integer or out of range"
STRING, LIST, SET = "s", "l", "z"
BUCKET_PREFIX = "lattice_kv_"
_BUCKET_RE = re.compile(r"[A-Za-z0-9_-]+")
_INTEGER_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")  # what Redis's string2ll accepts
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_URL_SCHEMES = ("nats", "tls", "ws", "wss")
_MAX_TOKEN = 200
# Conflicts only happen between instances (the key lock serialises ours): a few ms of random
# backoff lets the other writer finish, and the bound turns a livelock into an error.
MAX_ATTEMPTS = 200
_BACKOFF_CAP = 0.02
# put_link waits this long for the bucket; a slow/unreachable NATS must not stall link handling.
OPEN_WAIT = 2.0
# JetStream's "wrong last sequence" error codes.
_WRONG_LAST = (10071, 10164)

T = TypeVar("T")


# ---- encoding -----------------------------------------------------------------------------------


def kv_key(key: str) -> str:
    """The KV key that stores the user key ``key`` (any string → a valid NATS KV key)."""
    raw = key.encode("utf-8", "surrogatepass")
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    if len(token) > _MAX_TOKEN:
        digest = base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()
        return f"h.{digest}"
    return f"k.{token or '='}"


@dataclass
class Doc:
    """One stored value: its kind, content and optional wall-clock expiry."""

    kind: str
    value: Any  # str for STRING, list[str] for LIST and SET
    expires_at: float | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {"t": self.kind, "v": self.value}
        if self.expires_at is not None:
            doc["x"] = self.expires_at
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, data: bytes) -> Doc:
        with contextlib.suppress(ValueError):
            doc = json.loads(data)
            if isinstance(doc, dict) and doc.get("t") in (STRING, LIST, SET):
                kind, value, expiry = doc["t"], doc.get("v"), doc.get("x")
                ok = (isinstance(value, str) if kind == STRING else
                      isinstance(value, list) and all(isinstance(v, str) for v in value))
                if ok:
                    return cls(kind, value, float(expiry) if isinstance(expiry, int | float)
                               else None)
        # Written by something else (e.g. `nats kv put`): a plain string, as Redis would see it.
        return cls(STRING, data.decode("utf-8", "replace"))

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _expect(doc: Doc | None, kind: str) -> Doc | None:
    if doc is not None and doc.kind != kind:
        raise ProviderError(WRONGTYPE)
    return doc


# ---- link configuration -------------------------------------------------------------------------


def _value(values: dict[str, str], name: str) -> str | None:
    # Link values are matched case-insensitively, as kvredis does for URL.
    for key, value in values.items():
        if key.lower() == name and isinstance(value, str) and value.strip():
            return value.strip()
    return None


def default_bucket(actor: str) -> str:
    return BUCKET_PREFIX + re.sub(r"[^A-Za-z0-9_-]", "_", actor)


def check_url(url: str) -> str:
    """Refuse anything that is not a NATS URL (``host:port`` alone is fine, as in HostData)."""
    parts = [p.strip() for p in url.split(",") if p.strip()]
    if not parts:
        raise ProviderError(f"invalid NATS URL {url!r}: it is empty")
    for part in parts:
        if "://" in part and part.split("://", 1)[0].lower() not in _URL_SCHEMES:
            raise ProviderError(f"invalid NATS URL {part!r}: it must start with nats://, "
                                "tls://, ws:// or wss:// (or be host:port)")
    return url


@dataclass
class LinkConfig:
    bucket: str
    url: str | None = None        # None: the lattice's own NATS connection
    js_domain: str | None = None
    replicas: int = 1             # when the bucket is created (3 in a 3-node NATS cluster)

    @classmethod
    def parse(cls, link: LinkDefinition, lattice_js_domain: str | None) -> LinkConfig:
        values = link.values
        bucket = _value(values, "bucket") or default_bucket(link.actor_id)
        if not _BUCKET_RE.fullmatch(bucket):
            raise ProviderError(f"invalid bucket name {bucket!r}: a JetStream KV bucket name may "
                                "only contain A-Z, a-z, 0-9, '_' and '-'")
        url = _value(values, "url")
        if url is not None:
            check_url(url)
        # The lattice's JetStream domain only applies to the lattice's own server.
        domain = _value(values, "js_domain") or (lattice_js_domain if url is None else None)
        replicas = _value(values, "replicas") or "1"
        if replicas not in ("1", "2", "3", "4", "5"):
            raise ProviderError(f"invalid replicas {replicas!r}: JetStream keeps 1 to 5 "
                                "replicas of a bucket")
        return cls(bucket=bucket, url=url, js_domain=domain, replicas=int(replicas))


# ---- one bucket per link ------------------------------------------------------------------------


@dataclass
class Store:
    """The bucket an actor's link points at, opened (and created) on first use."""

    actor: str
    config: LinkConfig
    lattice_nc: Callable[[], Client | None]
    nc: Client | None = None          # our own connection, only for a link with a URL
    kv: KeyValue | None = None
    closed: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def where(self) -> str:
        return f"bucket {self.config.bucket} at {self.config.url or 'the lattice NATS'}"

    async def open(self) -> KeyValue:
        if self.kv is not None:
            return self.kv
        async with self._lock:  # concurrent first calls share one connect/bind
            if self.kv is not None:
                return self.kv
            if self.closed:
                raise ProviderError(f"the link of {self.actor} was deleted")
            try:
                self.kv = await self._bind()
            except ProviderError:
                raise
            except Exception as exc:
                raise ProviderError(f"nats kv error: cannot open {self.where}: "
                                    f"{exc or type(exc).__name__}") from None
            return self.kv

    async def _bind(self) -> KeyValue:
        if self.config.url is not None:
            if self.nc is None:
                self.nc = await connect(NatsOptions(url=self.config.url),
                                        name=f"keyvalue-nats {self.config.bucket}",
                                        initial_attempts=1)
            nc = self.nc
        else:
            lattice = self.lattice_nc()
            if lattice is None:
                raise ProviderError("nats kv error: the provider has no lattice connection")
            nc = lattice
        js = jetstream(nc, self.config.js_domain)  # writes reach the domain from a leaf
        try:
            return await js.key_value(self.config.bucket)
        except nats.js.errors.BucketNotFoundError:
            pass
        try:
            # history=1: only the latest revision matters (and is what update(last=) checks).
            return await js.create_key_value(KeyValueConfig(
                bucket=self.config.bucket, history=1, replicas=self.config.replicas,
                description="wasmcloud:keyvalue data (lattice keyvalue-nats)"))
        except nats.js.errors.APIError:
            # Another instance created it with a different config in the meantime: use theirs.
            return await js.key_value(self.config.bucket)

    async def close(self) -> None:
        self.closed = True
        self.kv = None
        nc, self.nc = self.nc, None
        if nc is not None:  # never the lattice connection: that one is the bridge's
            with contextlib.suppress(Exception):
                await nc.close()


class _KeyLocks:
    """One asyncio.Lock per (bucket, key) in use, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class _Keep:
    """Sentinel: the mutation decided not to write."""


KEEP = _Keep()
DELETE = None  # a mutation returning DELETE removes the key

Change = Callable[[Doc | None], tuple[Doc | _Keep | None, T]]


# ---- the provider -------------------------------------------------------------------------------


class KeyValueNatsProvider(Provider):
    contract_id = "wasmcloud:keyvalue"
    name = "keyvalue-nats"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # wall clock: expiry deadlines are shared between hosts
        self.js_domain: str | None = None
        self.stores: dict[str, Store] = {}  # actor → its bucket
        self.locks = _KeyLocks()
        self._opening: set[asyncio.Task[Any]] = set()

    def _lattice_nc(self) -> Client | None:
        return self.bridge.nc if self.bridge is not None else None

    async def init(self, host_data: HostData) -> None:
        self.js_domain = host_data.js_domain

    async def put_link(self, link: LinkDefinition) -> None:
        config = LinkConfig.parse(link, self.js_domain)  # bad values refuse the link here
        old = self.stores.pop(link.actor_id, None)
        if old is not None:
            await old.close()
        store = Store(link.actor_id, config, self._lattice_nc)
        self.stores[link.actor_id] = store
        fields = {"provider_name": self.name, "actor": link.actor_id,
                  "bucket": config.bucket, "url": config.url or "lattice"}
        # Open in a task we only wait for briefly: an unreachable server accepts the link
        # (like kvredis) and calls retry the open, reporting the error.
        task = asyncio.ensure_future(store.open())
        self._opening.add(task)
        task.add_done_callback(self._opened)
        done, _ = await asyncio.wait({task}, timeout=OPEN_WAIT)
        if task in done and task.exception() is None:
            log.info("NATS KV link ready", extra=fields)
        else:
            error = task.exception() if task in done else "still connecting"
            log.warning("NATS KV bucket is not available for a new link; calls will fail until "
                        "it is", extra={**fields, "error": str(error)})

    def _opened(self, task: asyncio.Task[Any]) -> None:
        self._opening.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: calls report the failure themselves

    async def del_link(self, link: LinkDefinition) -> None:
        store = self.stores.pop(link.actor_id, None)
        if store is not None:
            await store.close()

    async def health(self) -> tuple[bool, str | None]:
        return True, None

    async def shutdown(self) -> None:
        for task in list(self._opening):
            task.cancel()
        stores = list(self.stores.values())
        self.stores.clear()
        for store in stores:
            await store.close()

    # ---- plumbing -------------------------------------------------------------------------------

    def _store(self, ctx: Context) -> Store:
        store = self.stores.get(ctx.actor)
        if store is None:
            raise InvalidParameter(f"No NATS KV bucket found for {ctx.actor}. Please ensure the "
                                   "link definition has a valid bucket name and NATS URL")
        return store

    async def _nats(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except ProviderError:
            raise
        except (nats.errors.Error, OSError) as exc:
            raise ProviderError(f"nats kv error: {exc or type(exc).__name__}") from None

    async def _read(self, kv: KeyValue, name: str) -> tuple[Doc | None, int, bool]:
        """(live doc or None, revision to write against — 0 if none —, expired?)."""
        try:
            entry = await kv.get(name)
        except nats.js.errors.KeyNotFoundError as exc:
            # After a delete the tombstone is the revision a conditional write must name.
            return None, (exc.entry.revision if exc.entry is not None else 0) or 0, False
        doc = Doc.decode(entry.value or b"")
        if doc.expired(self.clock()):
            return None, entry.revision or 0, True
        return doc, entry.revision or 0, False

    async def _load(self, ctx: Context, key: str) -> Doc | None:
        kv = await self._store(ctx).open()
        doc, _, _ = await self._nats(self._read(kv, kv_key(key)))
        return doc

    async def _mutate(self, ctx: Context, key: str, change: Change[T]) -> T:
        store = self._store(ctx)
        kv = await store.open()
        name = kv_key(key)
        async with self.locks.hold((store.config.bucket, name)):
            for attempt in range(MAX_ATTEMPTS):
                doc, revision, expired = await self._nats(self._read(kv, name))
                new, result = change(doc)
                try:
                    if isinstance(new, _Keep):
                        if expired:  # tidy up; losing this race is harmless
                            with contextlib.suppress(Exception):
                                await kv.delete(name, last=revision)
                        return result
                    if new is None:
                        if revision and (doc is not None or expired):
                            await kv.delete(name, last=revision)
                        return result
                    await kv.update(name, new.encode(), last=revision)
                    return result
                except nats.js.errors.KeyWrongLastSequenceError:
                    pass  # update() raises this (it carries no err_code)
                except nats.js.errors.APIError as exc:
                    # delete(last=) surfaces the same conflict as a plain APIError.
                    if getattr(exc, "err_code", None) not in _WRONG_LAST:
                        raise ProviderError(f"nats kv error: {exc}") from None
                except (nats.errors.Error, OSError) as exc:
                    raise ProviderError(f"nats kv error: {exc or type(exc).__name__}") from None
                # Someone else wrote first: read again and reapply.
                await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, 0.001 * 2**attempt)))
        raise ProviderError(f"nats kv error: {key!r} changed concurrently {MAX_ATTEMPTS} times "
                            "in a row; try again")

    # ---- strings --------------------------------------------------------------------------------

    async def get(self, ctx: Context, key: str) -> GetResponse:
        doc = _expect(await self._load(ctx, key), STRING)
        return GetResponse(value="", exists=False) if doc is None else GetResponse(doc.value, True)

    async def set(self, ctx: Context, req: SetRequest) -> None:
        kv = await self._store(ctx).open()
        # SET replaces any kind of value and any TTL: an unconditional put is exactly that.
        expires_at = self.clock() + req.expires if req.expires > 0 else None
        await self._nats(kv.put(kv_key(req.key), Doc(STRING, req.value, expires_at).encode()))

    async def del_(self, ctx: Context, key: str) -> bool:
        return await self._mutate(ctx, key, lambda doc: (DELETE, True) if doc else (KEEP, False))

    async def contains(self, ctx: Context, key: str) -> bool:
        return await self._load(ctx, key) is not None

    async def increment(self, ctx: Context, req: IncrementRequest) -> int:
        def change(doc: Doc | None) -> tuple[Doc, int]:
            current = _expect(doc, STRING)
            text = current.value if current is not None else "0"
            if not _INTEGER_RE.fullmatch(text):
                raise ProviderError(NOT_INTEGER)
            result = int(text) + req.value
            if not _I32_MIN <= result <= _I32_MAX:  # the contract answers an i32
                raise ProviderError(f"ERR increment or decrement would overflow ({result})")
            # INCRBY keeps an existing TTL.
            return Doc(STRING, str(result), current.expires_at if current else None), result

        return await self._mutate(ctx, req.key, change)

    # ---- lists ----------------------------------------------------------------------------------

    async def list_add(self, ctx: Context, req: ListAddRequest) -> int:
        def change(doc: Doc | None) -> tuple[Doc, int]:
            current = _expect(doc, LIST)
            items = [*(current.value if current else []), req.value]
            return Doc(LIST, items), len(items)

        return await self._mutate(ctx, req.list_name, change)

    async def list_del(self, ctx: Context, req: ListDelRequest) -> bool:
        def change(doc: Doc | None) -> tuple[Doc | _Keep | None, bool]:
            current = _expect(doc, LIST)
            if current is None or req.value not in current.value:
                return KEEP, False
            items = list(current.value)
            items.remove(req.value)  # the first match only (LREM key 1 value)
            return (Doc(LIST, items) if items else DELETE), True  # an empty list disappears

        return await self._mutate(ctx, req.list_name, change)

    async def list_clear(self, ctx: Context, name: str) -> bool:
        return await self.del_(ctx, name)

    async def list_range(self, ctx: Context, req: ListRangeRequest) -> list[str]:
        doc = _expect(await self._load(ctx, req.list_name), LIST)
        return lrange(doc.value, req.start, req.stop) if doc else []

    # ---- sets -----------------------------------------------------------------------------------

    async def set_add(self, ctx: Context, req: SetAddRequest) -> int:
        def change(doc: Doc | None) -> tuple[Doc | _Keep, int]:
            current = _expect(doc, SET)
            members = set(current.value) if current else set()
            if req.value in members:
                return KEEP, 0
            return Doc(SET, sorted(members | {req.value})), 1

        return await self._mutate(ctx, req.set_name, change)

    async def set_del(self, ctx: Context, req: SetDelRequest) -> int:
        def change(doc: Doc | None) -> tuple[Doc | _Keep | None, int]:
            current = _expect(doc, SET)
            if current is None or req.value not in current.value:
                return KEEP, 0
            members = sorted(set(current.value) - {req.value})
            return (Doc(SET, members) if members else DELETE), 1

        return await self._mutate(ctx, req.set_name, change)

    async def _members(self, ctx: Context, name: str) -> set[str]:
        doc = _expect(await self._load(ctx, name), SET)
        return set(doc.value) if doc else set()

    async def set_query(self, ctx: Context, name: str) -> list[str]:
        return sorted(await self._members(ctx, name))

    async def set_union(self, ctx: Context, names: list[str]) -> list[str]:
        result: set[str] = set()
        for name in names:
            result |= await self._members(ctx, name)
        return sorted(result)

    async def set_intersection(self, ctx: Context, names: list[str]) -> list[str]:
        if not names:
            return []
        sets = [await self._members(ctx, name) for name in names]  # missing = empty (SINTER)
        return sorted(set.intersection(*sets))

    async def set_clear(self, ctx: Context, name: str) -> bool:
        return await self.del_(ctx, name)


PROVIDER = KeyValueNatsProvider

__all__ = ["PROVIDER", "Doc", "KeyValueNatsProvider", "LinkConfig", "check_url",
           "default_bucket", "kv_key"]
