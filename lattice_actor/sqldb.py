"""``wasmcloud:sqldb`` client: run statements, get rows back as dicts.

::

    from lattice_actor import sqldb

    sqldb.execute("CREATE TABLE IF NOT EXISTS todo (id INTEGER, title TEXT)")
    sqldb.execute("INSERT INTO todo VALUES ($1, $2)", [1, "write docs"])   # -> rows affected
    rows = sqldb.query("SELECT id, title FROM todo WHERE id > $1", [0])
    # [{'id': 1, 'title': 'write docs'}]
    sqldb.query_one("SELECT count(*) AS n FROM todo")                     # {'n': 1} or None

    reports = sqldb.SqlDb("reports")        # the actor's link named "reports"

Parameters are bound positionally (``$1``, ``$2``, ... on both Lattice providers; sqlite also
takes ``?``); each travels CBOR-encoded, so use int, float, str, bytes, bool or None. A database
error raises :class:`SqlError` (a :class:`~lattice_actor.HostError`) with the provider's
``code`` and ``message``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cbor2

import contracts
from contracts import CodecError
from contracts import sqldb as _sql

from ._client import DEFAULT_LINK, check_link, invoke
from ._errors import HostError

_EXECUTE = contracts.operation(_sql.EXECUTE)
_QUERY = contracts.operation(_sql.QUERY)

Row = dict[str, Any]


class SqlError(HostError):
    """The database refused a statement (the provider's in-band ``SqlDbError``).

    ``code`` is e.g. ``"db"``, ``"decoding"``, ``"notFound"``; ``str(err)`` is
    ``"{code}: {message}"``."""

    def __init__(self, code: str, message: str, *, binding: str | None = None,
                 operation: str | None = None) -> None:
        super().__init__(f"{code}: {message}" if code else message, binding=binding,
                         namespace=_sql.CONTRACT_ID, operation=operation)
        self.code = code
        self.sql_message = message


def encode_params(params: Sequence[Any] | None) -> list[bytes] | None:
    """Each parameter as one CBOR item (the Smithy ``Parameters`` convention)."""
    if params is None:
        return None
    if isinstance(params, str | bytes | bytearray) or not isinstance(params, Sequence):
        raise TypeError(f"params must be a list or tuple of values, got {type(params).__name__}")
    out: list[bytes] = []
    for index, value in enumerate(params):
        try:
            out.append(cbor2.dumps(value))
        except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
            raise TypeError(f"parameter ${index + 1} ({type(value).__name__}) cannot be sent: "
                            f"{exc}") from None
    return out


def rows_as_dicts(result: _sql.QueryResult) -> list[Row]:
    """Decode the CBOR ``rows`` blob of a QueryResult into dicts keyed by column name."""
    try:
        rows = _sql.decode_rows(result.rows)
    except CodecError as exc:
        raise HostError(str(exc), namespace=_sql.CONTRACT_ID, operation=_QUERY.name) from None
    names = [c.name for c in sorted(result.columns, key=lambda c: c.ordinal)]
    out: list[Row] = []
    for row in rows:
        if isinstance(row, dict):  # e.g. sqldb-dynamodb: items are already objects
            out.append(row)
            continue
        if not isinstance(row, list):
            raise HostError(f"cannot decode QueryResult.rows: a row is {type(row).__name__}, "
                            "expected an array", namespace=_sql.CONTRACT_ID,
                            operation=_QUERY.name)
        keys = names + [str(i) for i in range(len(names), len(row))]
        out.append(dict(zip(keys, row, strict=False)))
    return out


class SqlDb:
    """SQL over one link (the module functions use ``SqlDb("default")``)."""

    def __init__(self, link_name: str = DEFAULT_LINK, *, database: str | None = None) -> None:
        self.link_name = check_link(link_name)
        self.database = database  # Statement.database; ignored by the Lattice providers

    def _statement(self, sql: str, params: Sequence[Any] | None) -> _sql.Statement:
        if not isinstance(sql, str) or not sql.strip():
            raise ValueError("sql must be a non-empty string")
        return _sql.Statement(database=self.database, parameters=encode_params(params), sql=sql)

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> int:
        """Run a statement that returns no rows; the number of rows affected."""
        result = invoke(self.link_name, _EXECUTE, self._statement(sql, params))
        if result.error is not None:
            raise SqlError(result.error.code, result.error.message, binding=self.link_name,
                           operation=_EXECUTE.name)
        return int(result.rows_affected)

    def query_result(self, sql: str, params: Sequence[Any] | None = None) -> _sql.QueryResult:
        """The raw ``QueryResult`` (columns, num_rows, CBOR rows); errors raise SqlError."""
        result = invoke(self.link_name, _QUERY, self._statement(sql, params))
        if result.error is not None:
            raise SqlError(result.error.code, result.error.message, binding=self.link_name,
                           operation=_QUERY.name)
        return result

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        """Run a query; each row a dict keyed by column name (in column order)."""
        return rows_as_dicts(self.query_result(sql, params))

    def query_one(self, sql: str, params: Sequence[Any] | None = None) -> Row | None:
        """The first row of a query, or None when it returns no rows."""
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def __repr__(self) -> str:
        return f"SqlDb({self.link_name!r})"


_default = SqlDb()
execute = _default.execute
query = _default.query
query_one = _default.query_one
query_result = _default.query_result

__all__ = ["Row", "SqlDb", "SqlError", "encode_params", "execute", "query", "query_one",
           "query_result", "rows_as_dicts"]
