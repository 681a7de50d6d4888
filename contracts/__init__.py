"""wasmCloud 0.x capability contracts: operation names, typed messages and exact msgpack codecs.

Spec: docs/contracts.md. Typical use::

    op = contracts.operation("KeyValue.Increment")
    payload = op.encode_input(contracts.keyvalue.IncrementRequest(key="counter", value=1))
    new_value = op.decode_output(reply_bytes)
"""

import difflib

from . import (
    blobstore,
    builtin_logging,
    builtin_numbergen,
    core,
    httpclient,
    httpserver,
    keyvalue,
    messaging,
    sqldb,
)
from ._codec import (
    F32,
    F64,
    I8,
    I16,
    I32,
    I64,
    U8,
    U16,
    U32,
    U64,
    WIRE,
    Blob,
    CodecError,
    IntArrayBytes,
    Timestamp,
    decode,
    encode,
    format_of,
    from_json,
    strip_prefix,
    to_jsonable,
    type_name,
)
from ._operation import (
    ACTOR_TO_HOST,
    ACTOR_TO_PROVIDER,
    DIRECTIONS,
    HOST_TO_ACTOR,
    PROVIDER_TO_ACTOR,
    Operation,
    UnknownOperation,
)

__all__ = [
    "ACTOR_TO_HOST",
    "ACTOR_TO_PROVIDER",
    "CONTRACTS",
    "DIRECTIONS",
    "F32",
    "F64",
    "HOST_TO_ACTOR",
    "I8",
    "I16",
    "I32",
    "I64",
    "OPERATIONS",
    "PROVIDER_TO_ACTOR",
    "U8",
    "U16",
    "U32",
    "U64",
    "WIRE",
    "Blob",
    "CodecError",
    "IntArrayBytes",
    "Operation",
    "Timestamp",
    "UnknownOperation",
    "blobstore",
    "builtin_logging",
    "builtin_numbergen",
    "core",
    "decode",
    "encode",
    "format_of",
    "from_json",
    "httpclient",
    "httpserver",
    "keyvalue",
    "messaging",
    "operation",
    "sqldb",
    "strip_prefix",
    "to_jsonable",
    "type_name",
]

_MODULES = (
    httpserver,
    httpclient,
    keyvalue,
    sqldb,
    blobstore,
    messaging,
    builtin_logging,
    builtin_numbergen,
    core,
)

CONTRACTS: dict[str, tuple[Operation, ...]] = {m.CONTRACT_ID: m.OPERATIONS for m in _MODULES}

OPERATIONS: dict[str, Operation] = {}
for _op in (op for m in _MODULES for op in m.OPERATIONS):
    if _op.name in OPERATIONS:  # the op string alone routes a call, so it must be unique
        raise RuntimeError(f"duplicate operation string {_op.name!r}")
    OPERATIONS[_op.name] = _op
del _op


def operation(name: str) -> Operation:
    """Look up an operation by its wire string, e.g. ``"KeyValue.Get"``."""
    try:
        return OPERATIONS[name]
    except (KeyError, TypeError):
        pass
    text = str(name)
    folded = [n for n in OPERATIONS if n.lower() == text.lower()]
    close = folded or difflib.get_close_matches(text, OPERATIONS, n=3, cutoff=0.6)
    msg = f"unknown operation {name!r}"
    if len(close) == 1:
        msg += f"; did you mean {close[0]!r}?"
    elif close:
        msg += "; did you mean one of " + ", ".join(repr(c) for c in close) + "?"
    elif "." not in text:
        msg += "; operation strings look like 'Service.Method', e.g. 'KeyValue.Get'"
    raise UnknownOperation(msg)
