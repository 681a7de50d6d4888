"""Random numbers and GUIDs from the host (builtin ``wasmcloud:builtin:numbergen``).

::

    from lattice_actor import numbergen

    numbergen.generate_guid()          # '0f8e6f1e-3c0b-4f7a-9a51-5e3f1f1d2c3b'
    numbergen.random_in_range(1, 6)    # 1..6, both inclusive
    numbergen.random_32()              # 0..2**32-1

The actor's claims need the ``wasmcloud:builtin:numbergen`` capability.
"""

from __future__ import annotations

import contracts
from contracts import builtin_numbergen as _ng

from ._client import DEFAULT_LINK, invoke

_GUID = contracts.operation(_ng.GENERATE_GUID)
_RANGE = contracts.operation(_ng.RANDOM_IN_RANGE)
_RANDOM32 = contracts.operation(_ng.RANDOM_32)

U32_MAX = 2**32 - 1


def generate_guid() -> str:
    """A random UUID v4, lower-case and hyphenated."""
    return str(invoke(DEFAULT_LINK, _GUID))


def random_in_range(low: int, high: int) -> int:
    """A uniformly random integer with ``low <= n <= high`` (both unsigned 32-bit)."""
    if not 0 <= low <= high <= U32_MAX:
        raise ValueError(f"need 0 <= low <= high <= {U32_MAX}, got low={low}, high={high}")
    return int(invoke(DEFAULT_LINK, _RANGE, _ng.RangeLimit(min=low, max=high)))


def random_32() -> int:
    """A uniformly random unsigned 32-bit integer."""
    return int(invoke(DEFAULT_LINK, _RANDOM32))


__all__ = ["generate_guid", "random_32", "random_in_range"]
