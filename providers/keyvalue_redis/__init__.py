"""``keyvalue-redis``: the ``wasmcloud:keyvalue`` contract on Redis (docs/contracts.md §6.3).

A Python counterpart of wasmCloud's ``kvredis``: every operation is the one Redis command kvredis
sends (Get→GET, Set→SET/SETEX, Del/ListClear/SetClear→DEL, Contains→EXISTS, Increment→INCRBY,
ListAdd→RPUSH, ListDel→LREM key 1 value, ListRange→LRANGE, SetAdd→SADD, SetDel→SREM,
SetQuery→SMEMBERS, SetUnion→SUNION, SetIntersection→SINTER), so semantics, atomicity and error
texts are Redis's own. Each linked actor gets its own connection pool, built from the link's
``URL`` value (key matched case-insensitively), else the provider default from ``config_json``
(``{"url": ...}``), else ``redis://127.0.0.1:6379/``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

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
from lattice.links import LinkDefinition
from lattice.provider import Context, HostData, InvalidParameter, Provider, ProviderError

log = logging.getLogger("providers.keyvalue_redis")

DEFAULT_URL = "redis://127.0.0.1:6379/"
SCHEMES = ("redis", "rediss", "unix")
# put_link only probes the server: an unreachable one must not hold up link processing.
PROBE_TIMEOUT = 2.0
# Bounds a call on a dead server below the caller's RPC timeout, so it gets our error text.
SOCKET_TIMEOUT = 5.0
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1
_CREDENTIALS = re.compile(r"(?<=://)[^@/]*@")

T = TypeVar("T")


def redact(url: str) -> str:
    """The URL without ``user:password@`` — safe to log and to put in error messages."""
    return _CREDENTIALS.sub("***@", url)


def url_value(values: dict[str, str]) -> str | None:
    """The ``URL`` link/config value, whatever its case (``url``, ``Url`` …), as kvredis does."""
    for key, value in values.items():
        if key.lower() == "url" and isinstance(value, str) and value.strip():
            return value.strip()
    return None


def default_url(config_json: str | None) -> str:
    """The provider-wide default: ``config_json`` ``{"url": ...}`` or the local Redis."""
    if not config_json or not config_json.strip():
        return DEFAULT_URL
    try:
        doc = json.loads(config_json)
    except ValueError as exc:
        raise ProviderError(f"keyvalue-redis config_json is not valid JSON ({exc}); expected "
                            '{"url": "redis://host:port/db"}') from None
    if not isinstance(doc, dict):
        raise ProviderError('keyvalue-redis config_json must be a JSON object like '
                            '{"url": "redis://host:port/db"}')
    return url_value({str(k): v for k, v in doc.items()}) or DEFAULT_URL


def make_client(url: str) -> aioredis.Redis:
    """A client with its own pool for ``url``; raises ProviderError naming a bad URL."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ProviderError(f"invalid Redis URL {redact(url)!r}: it must start with redis://, "
                            "rediss:// or unix://")
    try:
        return aioredis.Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT,
                                       socket_timeout=SOCKET_TIMEOUT)
    except (ValueError, TypeError) as exc:
        raise ProviderError(f"invalid Redis URL {redact(url)!r}: {exc}") from None


def _text(value: Any) -> str:
    # Values written by other clients may not be UTF-8; the contract only carries strings.
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _texts(values: Any) -> list[str]:
    # The contract says unordered; sorting keeps answers stable (and equal to keyvalue-nats').
    return sorted(_text(v) for v in values)


class KeyValueRedisProvider(Provider):
    contract_id = "wasmcloud:keyvalue"
    name = "keyvalue-redis"

    def __init__(self) -> None:
        self.default_url = DEFAULT_URL
        self.clients: dict[str, aioredis.Redis] = {}  # actor → its own pool
        self.urls: dict[str, str] = {}

    async def init(self, host_data: HostData) -> None:
        self.default_url = default_url(host_data.config_json)

    async def put_link(self, link: LinkDefinition) -> None:
        url = url_value(link.values) or self.default_url
        client = make_client(url)  # a malformed URL refuses the link right here
        old = self.clients.pop(link.actor_id, None)
        if old is not None:
            await old.aclose()
        self.clients[link.actor_id] = client
        self.urls[link.actor_id] = url
        fields = {"provider_name": self.name, "actor": link.actor_id, "url": redact(url)}
        try:
            await asyncio.wait_for(client.ping(), PROBE_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            # kvredis accepts the link anyway: the server may come up later; calls report it.
            log.warning("Redis is not reachable for a new link; calls will fail until it is",
                        extra={**fields, "error": str(exc) or type(exc).__name__})
            return
        log.info("Redis link ready", extra=fields)

    async def del_link(self, link: LinkDefinition) -> None:
        self.urls.pop(link.actor_id, None)
        client = self.clients.pop(link.actor_id, None)
        if client is not None:
            await client.aclose()

    async def health(self) -> tuple[bool, str | None]:
        return True, None

    async def shutdown(self) -> None:
        clients = list(self.clients.values())
        self.clients.clear()
        self.urls.clear()
        for client in clients:
            try:
                await client.aclose()
            except Exception as exc:  # one broken pool must not keep the others open
                log.debug("closing a Redis pool failed", extra={"provider_name": self.name,
                                                                 "error": str(exc)})

    # ---- plumbing -------------------------------------------------------------------------------

    def _client(self, ctx: Context) -> aioredis.Redis:
        client = self.clients.get(ctx.actor)
        if client is None:
            raise InvalidParameter(
                f"No Redis connection found for {ctx.actor}. Please ensure the URL supplied in "
                "the link definition is a valid Redis URL")
        return client

    async def _run(self, command: Awaitable[T]) -> T:
        try:
            return await command
        except RedisError as exc:
            raise ProviderError(f"redis error: {exc}") from None
        except OSError as exc:
            raise ProviderError(f"redis error: {exc.strerror or exc}") from None

    # ---- strings --------------------------------------------------------------------------------

    async def get(self, ctx: Context, key: str) -> GetResponse:
        value = await self._run(self._client(ctx).get(key))
        return GetResponse(value="", exists=False) if value is None else GetResponse(
            _text(value), True)

    async def set(self, ctx: Context, req: SetRequest) -> None:
        # SET key value EX n is SETEX (redis-py deprecates its setex helper).
        expires = req.expires if req.expires > 0 else None
        await self._run(self._client(ctx).set(req.key, req.value, ex=expires))

    async def del_(self, ctx: Context, key: str) -> bool:
        return int(await self._run(self._client(ctx).delete(key))) > 0

    async def contains(self, ctx: Context, key: str) -> bool:
        return int(await self._run(self._client(ctx).exists(key))) > 0

    async def increment(self, ctx: Context, req: IncrementRequest) -> int:
        result = int(await self._run(self._client(ctx).incrby(req.key, req.value)))
        if not _I32_MIN <= result <= _I32_MAX:  # the contract answers an i32 (kvredis too)
            raise ProviderError(f"redis error: the new value {result} of {req.key!r} does not "
                                "fit in an i32")
        return result

    # ---- lists ----------------------------------------------------------------------------------

    async def list_add(self, ctx: Context, req: ListAddRequest) -> int:
        return int(await self._run(self._client(ctx).rpush(req.list_name, req.value)))

    async def list_del(self, ctx: Context, req: ListDelRequest) -> bool:
        return int(await self._run(self._client(ctx).lrem(req.list_name, 1, req.value))) > 0

    async def list_clear(self, ctx: Context, name: str) -> bool:
        return await self.del_(ctx, name)

    async def list_range(self, ctx: Context, req: ListRangeRequest) -> list[str]:
        items = await self._run(self._client(ctx).lrange(req.list_name, req.start, req.stop))
        return [_text(item) for item in items]

    # ---- sets -----------------------------------------------------------------------------------

    async def set_add(self, ctx: Context, req: SetAddRequest) -> int:
        return int(await self._run(self._client(ctx).sadd(req.set_name, req.value)))

    async def set_del(self, ctx: Context, req: SetDelRequest) -> int:
        return int(await self._run(self._client(ctx).srem(req.set_name, req.value)))

    async def set_query(self, ctx: Context, name: str) -> list[str]:
        return _texts(await self._run(self._client(ctx).smembers(name)))

    async def set_union(self, ctx: Context, names: list[str]) -> list[str]:
        if not names:  # SUNION needs a key; the union of nothing is empty
            return []
        return _texts(await self._run(self._client(ctx).sunion(names)))

    async def set_intersection(self, ctx: Context, names: list[str]) -> list[str]:
        if not names:
            return []
        return _texts(await self._run(self._client(ctx).sinter(names)))

    async def set_clear(self, ctx: Context, name: str) -> bool:
        return await self.del_(ctx, name)


PROVIDER = KeyValueRedisProvider

__all__ = ["DEFAULT_URL", "PROVIDER", "KeyValueRedisProvider", "default_url", "make_client",
           "redact", "url_value"]
