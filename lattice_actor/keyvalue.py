"""``wasmcloud:keyvalue`` client: string values, counters, lists and sets.

::

    from lattice_actor import keyvalue

    keyvalue.set("greeting", "hello", expires=60)   # seconds; 0 = never
    keyvalue.get("greeting")                        # 'hello' (None when missing)
    hits = keyvalue.increment("hits")               # new value; by=-1 to decrement
    keyvalue.list_add("log", "started")
    keyvalue.list_range("log")                      # whole list; start/stop are inclusive
    keyvalue.set_add("tags", "blue")
    keyvalue.set_union("tags", "more-tags")

    cache = keyvalue.KeyValue("cache")              # the actor's link named "cache"
    cache.delete("greeting")
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import contracts
from contracts import keyvalue as _kv

from ._client import DEFAULT_LINK, check_link, invoke

_OPS = {name: contracts.operation(name) for name in (
    _kv.GET, _kv.SET, _kv.DEL, _kv.CONTAINS, _kv.INCREMENT, _kv.LIST_ADD, _kv.LIST_DEL,
    _kv.LIST_CLEAR, _kv.LIST_RANGE, _kv.SET_ADD, _kv.SET_DEL, _kv.SET_QUERY, _kv.SET_UNION,
    _kv.SET_INTERSECTION, _kv.SET_CLEAR)}


def _names(names: tuple[str | Iterable[str], ...]) -> list[str]:
    """``f("a", "b")`` and ``f(["a", "b"])`` both mean the sets a and b."""
    if len(names) == 1 and not isinstance(names[0], str):
        return list(names[0])
    return list(names)  # type: ignore[arg-type]


class KeyValue:
    """Key-value operations over one link (the module functions use ``KeyValue("default")``)."""

    def __init__(self, link_name: str = DEFAULT_LINK) -> None:
        self.link_name = check_link(link_name)

    def _call(self, name: str, value: Any) -> Any:
        return invoke(self.link_name, _OPS[name], value)

    # ---- values ----------------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None when it does not exist."""
        resp = self._call(_kv.GET, key)
        assert isinstance(resp, _kv.GetResponse)
        return resp.value if resp.exists else None

    def set(self, key: str, value: str, expires: int = 0) -> None:
        """Store ``value`` (a str) under ``key``; ``expires`` seconds (0 = never)."""
        self._call(_kv.SET, _kv.SetRequest(key=key, value=value, expires=expires))

    def delete(self, key: str) -> bool:
        """Delete ``key``; True if something was deleted."""
        return bool(self._call(_kv.DEL, key))

    def contains(self, key: str) -> bool:
        return bool(self._call(_kv.CONTAINS, key))

    def increment(self, key: str, by: int = 1) -> int:
        """Add ``by`` (may be negative) to the integer at ``key`` (missing = 0); the new value."""
        return int(self._call(_kv.INCREMENT, _kv.IncrementRequest(key=key, value=by)))

    # ---- lists -----------------------------------------------------------------------------

    def list_add(self, list_name: str, value: str) -> int:
        """Append ``value``; the list's new length."""
        return int(self._call(_kv.LIST_ADD, _kv.ListAddRequest(list_name=list_name, value=value)))

    def list_del(self, list_name: str, value: str) -> bool:
        """Remove the first item equal to ``value``; True if one was removed."""
        return bool(self._call(_kv.LIST_DEL, _kv.ListDelRequest(list_name=list_name,
                                                                value=value)))

    def list_clear(self, list_name: str) -> bool:
        """Delete the whole list; True if it existed."""
        return bool(self._call(_kv.LIST_CLEAR, list_name))

    def list_range(self, list_name: str, start: int = 0, stop: int = -1) -> list[str]:
        """Items ``start`` through ``stop``, both inclusive, 0-based; negative counts from the
        end (Redis LRANGE), so the defaults give the whole list."""
        return list(self._call(_kv.LIST_RANGE, _kv.ListRangeRequest(
            list_name=list_name, start=start, stop=stop)))

    # ---- sets ------------------------------------------------------------------------------

    def set_add(self, set_name: str, value: str) -> bool:
        """Add ``value``; True if it was not there yet."""
        return bool(self._call(_kv.SET_ADD, _kv.SetAddRequest(set_name=set_name, value=value)))

    def set_del(self, set_name: str, value: str) -> bool:
        """Remove ``value``; True if it was there."""
        return bool(self._call(_kv.SET_DEL, _kv.SetDelRequest(set_name=set_name, value=value)))

    def set_query(self, set_name: str) -> list[str]:
        """All members (unordered)."""
        return list(self._call(_kv.SET_QUERY, set_name))

    def set_union(self, *set_names: str | Iterable[str]) -> list[str]:
        """Members of any of the named sets: ``set_union("a", "b")``."""
        return list(self._call(_kv.SET_UNION, _names(set_names)))

    def set_intersection(self, *set_names: str | Iterable[str]) -> list[str]:
        """Members of all of the named sets: ``set_intersection("a", "b")``."""
        return list(self._call(_kv.SET_INTERSECTION, _names(set_names)))

    def set_clear(self, set_name: str) -> bool:
        """Delete the whole set; True if it existed."""
        return bool(self._call(_kv.SET_CLEAR, set_name))

    def __repr__(self) -> str:
        return f"KeyValue({self.link_name!r})"


_default = KeyValue()
get = _default.get
set = _default.set
delete = _default.delete
contains = _default.contains
increment = _default.increment
list_add = _default.list_add
list_del = _default.list_del
list_clear = _default.list_clear
list_range = _default.list_range
set_add = _default.set_add
set_del = _default.set_del
set_query = _default.set_query
set_union = _default.set_union
set_intersection = _default.set_intersection
set_clear = _default.set_clear

__all__ = [
    "KeyValue", "contains", "delete", "get", "increment", "list_add", "list_clear", "list_del",
    "list_range", "set", "set_add", "set_clear", "set_del", "set_intersection", "set_query",
    "set_union",
]
