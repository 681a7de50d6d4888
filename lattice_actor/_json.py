"""JSON helpers shared by the HTTP types."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
from typing import Any


def _default(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON; dataclasses, sets and datetimes are converted."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default).encode()


def loads(data: bytes | str) -> Any:
    return json.loads(data)
