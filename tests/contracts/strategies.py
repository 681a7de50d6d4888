"""Hypothesis strategies derived generically from contract type annotations."""

import dataclasses
import types
import typing
from typing import Annotated, Any

from hypothesis import strategies as st

from contracts._codec import INT_ARRAY, FloatKind, IntKind, Timestamp

_text = st.text(max_size=12)
_blob = st.binary(max_size=24)


def strategy_for(spec: Any) -> st.SearchStrategy[Any]:
    origin = typing.get_origin(spec)
    args = typing.get_args(spec)
    if origin is Annotated:
        meta = args[1:]
        for m in meta:
            if isinstance(m, IntKind):
                # Bias towards the msgpack width boundaries as well as the range ends.
                edges = [
                    b
                    for b in (0, 127, 128, 255, 256, 65535, 65536, 2**32, -32, -33)
                    if m.lo <= b <= m.hi
                ]
                return st.one_of(st.sampled_from([m.lo, m.hi, *edges]), st.integers(m.lo, m.hi))
            if isinstance(m, FloatKind):
                return st.floats(width=m.bits, allow_nan=False)
            if m is INT_ARRAY:
                return _blob
        return strategy_for(args[0])
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in args if a is not type(None)]
        # "" is read back as None for optional strings (TinyGo tolerance), so avoid it.
        value = st.text(min_size=1, max_size=12) if inner is str else strategy_for(inner)
        return st.none() | value
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=4)
    if origin is dict:
        return st.dictionaries(_text, strategy_for(args[1]), max_size=3)
    if spec is str:
        return _text
    if spec is bytes:
        return _blob
    if spec is bool:
        return st.booleans()
    if spec is Timestamp:
        return st.builds(Timestamp, st.integers(-(2**63), 2**63 - 1), st.integers(0, 2**32 - 1))
    if dataclasses.is_dataclass(spec):
        hints = typing.get_type_hints(spec, include_extras=True)
        fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(spec)}
        return st.builds(spec, **fields)
    raise TypeError(f"no strategy for {spec!r}")
