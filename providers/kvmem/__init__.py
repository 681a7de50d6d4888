"""``kvmem``: an in-memory ``wasmcloud:keyvalue`` provider (docs/contracts.md §6.3).

Semantics follow the reference provider kvredis, i.e. Redis: one keyspace per linked actor in
which a key holds a string, a list or a set (using a key as the wrong kind is a WRONGTYPE error),
``Set`` with ``expires`` > 0 sets a TTL, ``Increment`` counts from 0, ``ListRange`` is LRANGE
(inclusive, negative indexes from the end), ``ListDel`` removes the first match, and an emptied
list or set disappears. Actors never see each other's data; deleting a link drops the actor's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

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
from lattice.provider import Context, Provider, ProviderError

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOT_INTEGER = "ERR value is not an integer or out of range"
_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1

Value = str | list[str] | set[str]


@dataclass
class Keyspace:
    """One actor's data. ``clock`` is monotonic seconds (tests substitute their own)."""

    clock: Callable[[], float]
    data: dict[str, Value] = field(default_factory=dict)
    deadlines: dict[str, float] = field(default_factory=dict)

    def lookup(self, key: str) -> Value | None:
        deadline = self.deadlines.get(key)
        if deadline is not None and deadline <= self.clock():  # lazy expiry, as Redis does
            self.remove(key)
        return self.data.get(key)

    def remove(self, key: str) -> bool:
        self.deadlines.pop(key, None)
        return self.data.pop(key, None) is not None

    def as_string(self, key: str) -> str | None:
        value = self.lookup(key)
        if value is not None and not isinstance(value, str):
            raise ProviderError(WRONGTYPE)
        return value

    def as_list(self, key: str) -> list[str] | None:
        value = self.lookup(key)
        if value is not None and not isinstance(value, list):
            raise ProviderError(WRONGTYPE)
        return value

    def as_set(self, key: str) -> set[str] | None:
        value = self.lookup(key)
        if value is not None and not isinstance(value, set):
            raise ProviderError(WRONGTYPE)
        return value


def lrange(items: list[str], start: int, stop: int) -> list[str]:
    """Redis LRANGE: both ends inclusive, negative = from the end, out of range clamped."""
    n = len(items)
    if start < 0:
        start = max(n + start, 0)
    if stop < 0:
        stop = n + stop
    stop = min(stop, n - 1)
    if start > stop or start >= n:
        return []
    return items[start: stop + 1]


class KvMemProvider(Provider):
    contract_id = "wasmcloud:keyvalue"
    name = "kvmem"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.spaces: dict[str, Keyspace] = {}

    def _space(self, ctx: Context) -> Keyspace:
        # Created on demand too: an embedded call may race the link's put_link.
        space = self.spaces.get(ctx.actor)
        if space is None:
            space = self.spaces[ctx.actor] = Keyspace(self.clock)
        return space

    async def put_link(self, link: LinkDefinition) -> None:
        self.spaces.setdefault(link.actor_id, Keyspace(self.clock))

    async def del_link(self, link: LinkDefinition) -> None:
        self.spaces.pop(link.actor_id, None)

    async def shutdown(self) -> None:
        self.spaces.clear()

    # ---- strings --------------------------------------------------------------------------------

    async def get(self, ctx: Context, key: str) -> GetResponse:
        value = self._space(ctx).as_string(key)
        return GetResponse(value="", exists=False) if value is None else GetResponse(value, True)

    async def set(self, ctx: Context, req: SetRequest) -> None:
        space = self._space(ctx)
        space.data[req.key] = req.value  # SET replaces any type and clears the TTL
        space.deadlines.pop(req.key, None)
        if req.expires > 0:
            space.deadlines[req.key] = self.clock() + req.expires

    async def del_(self, ctx: Context, key: str) -> bool:
        space = self._space(ctx)
        return space.lookup(key) is not None and space.remove(key)

    async def contains(self, ctx: Context, key: str) -> bool:
        return self._space(ctx).lookup(key) is not None

    async def increment(self, ctx: Context, req: IncrementRequest) -> int:
        space = self._space(ctx)
        current = space.as_string(req.key)
        try:
            number = int(current) if current is not None else 0
        except ValueError:
            raise ProviderError(NOT_INTEGER) from None
        result = number + req.value
        if not _I32_MIN <= result <= _I32_MAX:  # the contract returns an i32
            raise ProviderError(f"ERR increment or decrement would overflow ({result})")
        space.data[req.key] = str(result)  # INCRBY keeps an existing TTL
        return result

    # ---- lists ----------------------------------------------------------------------------------

    async def list_add(self, ctx: Context, req: ListAddRequest) -> int:
        space = self._space(ctx)
        items = space.as_list(req.list_name)
        if items is None:
            items = space.data[req.list_name] = []
        items.append(req.value)
        return len(items)

    async def list_del(self, ctx: Context, req: ListDelRequest) -> bool:
        space = self._space(ctx)
        items = space.as_list(req.list_name)
        if not items or req.value not in items:
            return False
        items.remove(req.value)  # the first match only (LREM key 1 value)
        if not items:
            space.remove(req.list_name)
        return True

    async def list_clear(self, ctx: Context, name: str) -> bool:
        return await self.del_(ctx, name)

    async def list_range(self, ctx: Context, req: ListRangeRequest) -> list[str]:
        items = self._space(ctx).as_list(req.list_name)
        return lrange(items, req.start, req.stop) if items else []

    # ---- sets -----------------------------------------------------------------------------------

    async def set_add(self, ctx: Context, req: SetAddRequest) -> int:
        space = self._space(ctx)
        members = space.as_set(req.set_name)
        if members is None:
            members = space.data[req.set_name] = set()
        if req.value in members:
            return 0
        members.add(req.value)
        return 1

    async def set_del(self, ctx: Context, req: SetDelRequest) -> int:
        space = self._space(ctx)
        members = space.as_set(req.set_name)
        if not members or req.value not in members:
            return 0
        members.discard(req.value)
        if not members:
            space.remove(req.set_name)
        return 1

    async def set_query(self, ctx: Context, name: str) -> list[str]:
        # Unordered by contract; sorted keeps answers stable.
        return sorted(self._space(ctx).as_set(name) or ())

    async def set_union(self, ctx: Context, names: list[str]) -> list[str]:
        space = self._space(ctx)
        result: set[str] = set()
        for name in names:
            result |= space.as_set(name) or set()
        return sorted(result)

    async def set_intersection(self, ctx: Context, names: list[str]) -> list[str]:
        if not names:
            return []
        space = self._space(ctx)
        sets = [space.as_set(name) or set() for name in names]  # a missing set is empty (SINTER)
        return sorted(set.intersection(*sets))

    async def set_clear(self, ctx: Context, name: str) -> bool:
        return await self.del_(ctx, name)


PROVIDER = KvMemProvider

__all__ = ["PROVIDER", "KvMemProvider", "lrange"]
