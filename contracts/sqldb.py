"""``wasmcloud:sqldb`` (crate 0.11.0): a msgpack envelope whose ``rows`` blob is CBOR.

Field order note: ``Statement`` has no ``@n`` numbers in the Smithy model, and weld-codegen sorts
un-numbered members by name, so the Rust struct (and thus rmp_serde's key order) is
``database, parameters, sql``. It is keyword-only so that order never leaks into call sites.
"""

import json
from dataclasses import dataclass, field
from typing import Any

import cbor2

from ._codec import U32, U64, CodecError, IntArrayBytes
from ._operation import ACTOR_TO_PROVIDER, Operation

CONTRACT_ID = "wasmcloud:sqldb"

EXECUTE = "SqlDb.Execute"
QUERY = "SqlDb.Query"

# In-band error codes (the list may grow; "rpc" is used by the Rust helper too).
ERROR_CODES = ("config", "db", "io", "notFound", "encoding", "decoding", "provider", "other")


@dataclass(slots=True, kw_only=True)
class Statement:
    database: str | None = None  # ignored by both reference providers
    # Each element goes on the wire as an array of ints, not bin (Rust rejects bin here).
    parameters: list[IntArrayBytes] | None = None
    sql: str = ""


@dataclass(slots=True)
class SqlDbError:
    code: str = ""
    message: str = ""


@dataclass(slots=True)
class ExecuteResult:
    rows_affected: U64 = 0
    error: SqlDbError | None = None  # present => ignore the other fields


@dataclass(slots=True)
class Column:
    ordinal: U32 = 0  # 0-based position
    name: str = ""
    db_type: str = ""  # backend type name, e.g. int4, varchar


@dataclass(slots=True)
class QueryResult:
    num_rows: U64 = 0
    columns: list[Column] = field(default_factory=list)  # key must always be written
    rows: bytes = b""  # CBOR array of row arrays; zero-length when there are no rows
    error: SqlDbError | None = None


def encode_rows(rows: list[list[Any]]) -> bytes:
    """Rows -> the CBOR ``rows`` blob (array of arrays); no rows -> zero-length, like postgres."""
    if not rows:
        return b""
    try:
        return cbor2.dumps([list(r) for r in rows])
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise CodecError(f"QueryResult.rows: cannot CBOR-encode rows: {exc}") from None


# cbor2 5.x exports ``break_marker`` only from its C extension; the pure-Python codec (the one
# Python actors run inside wasm) keeps it in ``_types``.
_BREAK = getattr(cbor2, "break_marker", None)
if _BREAK is None:  # pragma: no cover - exercised inside components
    from cbor2._types import break_marker as _BREAK


def has_break(value: Any) -> bool:
    """Whether a decoded CBOR value holds a stray "break" code. cbor2 5.x (pinned for its
    pure-Python codec, which Python actors use) returns one as ``break_marker`` where the RFC
    says the data is invalid; 6.x raises."""
    if value is _BREAK:
        return True
    if isinstance(value, list):
        return any(has_break(v) for v in value)
    if isinstance(value, dict):
        return any(has_break(k) or has_break(v) for k, v in value.items())
    return False


def decode_rows(data: bytes) -> list[Any]:
    """The CBOR ``rows`` blob -> list of rows. Zero-length -> ``[]``.

    sqldb-dynamodb sends a CBOR *text* holding a JSON array of items; that is parsed too.
    """
    if not data:
        return []
    try:
        value = cbor2.loads(data)
        if isinstance(value, str):
            value = json.loads(value)
        elif has_break(value):
            raise ValueError("a stray break code")
    except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
        raise CodecError(f"cannot decode QueryResult.rows: invalid CBOR ({exc})") from None
    if not isinstance(value, list):
        raise CodecError(
            f"cannot decode QueryResult.rows: expected an array of rows, got {type(value).__name__}"
        )
    return value


OPERATIONS = (
    Operation(CONTRACT_ID, EXECUTE, Statement, ExecuteResult, ACTOR_TO_PROVIDER),
    Operation(CONTRACT_ID, QUERY, Statement, QueryResult, ACTOR_TO_PROVIDER),
)
