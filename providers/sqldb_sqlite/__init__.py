"""``sqldb-sqlite``: a ``wasmcloud:sqldb`` provider on SQLite files (docs/contracts.md §6.4).

The same contract as sqldb-postgres on an embedded database: each linked actor gets its own
SQLite database (link value ``path``; default ``{state_dir}/sqlite/{actor key}.db``;
``:memory:`` allowed), served by one dedicated worker thread that owns the connection, so the
event loop never blocks and statements of one actor run in order. Parameters are CBOR items
bound positionally to ``?``, ``?NNN`` or ``$NNN`` (translated to ``?NNN``). ``dbType`` is the
column's declared type, or the storage class of its values when it has none. Database errors
come back in-band as ``{code: "db"}``. See docs/providers/sqldb.md.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from contracts.sqldb import Column, ExecuteResult, QueryResult, Statement, encode_rows
from lattice import paths
from lattice.links import LinkDefinition
from lattice.provider import Context, Provider, ProviderError
from providers.sqldb_postgres import (
    ParameterError,
    decode_parameters,
    execute_error,
    not_linked,
    query_error,
)

log = logging.getLogger("providers.sqldb_sqlite")

MEMORY = ":memory:"
# How long a statement waits for another connection's lock on the same file.
BUSY_TIMEOUT = 5.0
_PROBE_VIEW = "_lattice_sqldb_probe"
_BOOLEAN_TYPES = frozenset({"BOOL", "BOOLEAN"})

T = TypeVar("T")


# ---- SQL text -----------------------------------------------------------------------------------


def _scan(sql: str, on_placeholder: Callable[[str], str]) -> str:
    """Rewrite every parameter token outside literals, quoted names and comments.

    SQLite's tokens: ``?``, ``?NNN``, ``:name``, ``@name``, ``$name`` (``$1`` included).
    """
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch in "'\"`[":
            close = "]" if ch == "[" else ch
            j = i + 1
            while j < n:
                if sql[j] == close:
                    if close != "]" and j + 1 < n and sql[j + 1] == close:  # doubled = escaped
                        j += 2
                        continue
                    break
                j += 1
            out.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            j = n if j < 0 else j
            out.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(sql[i:j])
            i = j
        elif ch == "?" or (ch in ":@$" and i + 1 < n and (sql[i + 1].isalnum()
                                                           or sql[i + 1] == "_")):
            j = i + 1
            while j < n and (sql[j].isalnum() or sql[j] == "_"):
                j += 1
            out.append(on_placeholder(sql[i:j]))
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def translate_placeholders(sql: str) -> str:
    """``$1``-style (Postgres) placeholders → SQLite's numbered ``?1``; others are kept."""
    return _scan(sql, lambda tok: "?" + tok[1:] if tok[0] == "$" and tok[1:].isdigit() else tok)


def _probe_sql(sql: str) -> str:
    # Views may not hold parameters: NULL in their place keeps the column list the same.
    body = _scan(sql, lambda _tok: "NULL").strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    return f'CREATE TEMP VIEW "{_PROBE_VIEW}" AS {body}'


def storage_class(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return "INTEGER"
    if isinstance(value, float):
        return "REAL"
    if isinstance(value, str):
        return "TEXT"
    return "BLOB"


def default_path(actor: str) -> Path:
    return paths.private_dir(paths.state_dir() / "sqlite") / f"{actor}.db"


def resolve_path(values: dict[str, str], actor: str) -> tuple[str, bool]:
    """The database to open and whether it is a ``file:`` URI. A relative path is taken
    relative to ``{state_dir}/sqlite`` (the provider's working directory is not the user's)."""
    raw = values.get("path", "").strip()
    if not raw:
        return str(default_path(actor)), False
    if raw == MEMORY or raw.startswith("file:"):
        return raw, raw.startswith("file:")
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = paths.private_dir(paths.state_dir() / "sqlite") / path
    return str(path), False


# ---- one database per link, owned by one thread -------------------------------------------------


class SqliteLink:
    """An actor's database: a connection that only its worker thread ever touches."""

    def __init__(self, actor: str, database: str, uri: bool) -> None:
        self.actor = actor
        self.database = database
        self.uri = uri
        # One worker: the sqlite3 connection stays on its thread and statements keep order.
        self.executor = ThreadPoolExecutor(max_workers=1,
                                           thread_name_prefix=f"sqlite-{actor[:8]}")
        self.conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, fn, *args)
        except RuntimeError as exc:
            if "shutdown" in str(exc):  # the link was deleted while this call was queued
                raise not_linked(self.actor) from None
            raise

    async def open(self) -> None:
        await self.run(self._open)

    def _open(self) -> None:
        # isolation_level=None: autocommit, so each statement is durable on its own and
        # explicit BEGIN/COMMIT in the SQL work as written.
        self.conn = sqlite3.connect(self.database, timeout=BUSY_TIMEOUT, isolation_level=None,
                                    uri=self.uri)
        self.conn.execute("SELECT 1").fetchall()  # fails here for a directory, a bad file, …

    async def close(self) -> None:
        try:
            await self.run(self._close)
        except ProviderError:
            pass
        finally:
            self.executor.shutdown(wait=False)

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    # -- run on the worker thread --

    def _require(self) -> sqlite3.Connection:
        if self.conn is None:
            raise not_linked(self.actor)
        return self.conn

    def execute(self, sql: str, args: list[Any]) -> int:
        conn = self._require()
        before = conn.total_changes
        try:
            cursor = conn.execute(sql, args)
        except sqlite3.ProgrammingError as exc:
            # Several statements without parameters: run them as a script, as Postgres would.
            if args or "one statement at a time" not in str(exc):
                raise
            conn.executescript(sql)
            return conn.total_changes - before
        try:
            cursor.fetchall()  # step through the whole statement (e.g. a RETURNING clause)
            return max(cursor.rowcount, 0)
        finally:
            cursor.close()

    def query(self, sql: str, args: list[Any]) -> tuple[list[Column], list[list[Any]]]:
        conn = self._require()
        cursor = conn.execute(sql, args)
        try:
            rows = [list(r) for r in cursor.fetchall()]
            names = [d[0] for d in cursor.description or ()]
        finally:
            cursor.close()
        if not rows:
            return [], []
        declared = self._declared_types(conn, sql, len(names))
        columns: list[Column] = []
        for i, column_name in enumerate(names):
            db_type = declared[i] if i < len(declared) else ""
            if not db_type:  # an expression: name the storage class of its values
                db_type = storage_class(next((r[i] for r in rows if r[i] is not None), None))
            elif db_type.upper() in _BOOLEAN_TYPES:
                # SQLite stores booleans as 0/1; give them back as the bools they were.
                for row in rows:
                    if row[i] in (0, 1) and isinstance(row[i], int):
                        row[i] = bool(row[i])
            columns.append(Column(ordinal=i, name=column_name, db_type=db_type))
        return columns, rows

    @staticmethod
    def _declared_types(conn: sqlite3.Connection, sql: str, count: int) -> list[str]:
        """Declared column types of a SELECT via a temporary view (Python's sqlite3 does not
        expose sqlite3_column_decltype); [] for statements a view cannot hold."""
        try:
            conn.execute(_probe_sql(sql))
        except sqlite3.Error:
            return []
        try:
            info = conn.execute(f'PRAGMA temp.table_info("{_PROBE_VIEW}")').fetchall()
            types = [str(row[2] or "") for row in sorted(info, key=lambda r: r[0])]
            return types if len(types) == count else []
        finally:
            conn.execute(f'DROP VIEW IF EXISTS temp."{_PROBE_VIEW}"')


# ---- the provider -------------------------------------------------------------------------------


_DB_ERRORS = (sqlite3.Error, OverflowError, ValueError, TypeError, MemoryError)


class SqlDbSqliteProvider(Provider):
    contract_id = "wasmcloud:sqldb"
    name = "sqldb-sqlite"

    def __init__(self) -> None:
        self.dbs: dict[str, SqliteLink] = {}

    async def put_link(self, link: LinkDefinition) -> None:
        try:
            database, uri = resolve_path(dict(link.values), link.actor_id)
        except OSError as exc:
            raise ProviderError(f"cannot prepare the SQLite directory: {exc}") from None
        db = SqliteLink(link.actor_id, database, uri)
        try:
            await db.open()
        except (sqlite3.Error, OSError) as exc:
            await db.close()
            raise ProviderError(f"cannot open SQLite database {database}: {exc}") from None
        old = self.dbs.pop(link.actor_id, None)
        self.dbs[link.actor_id] = db
        if old is not None:
            await old.close()
        log.info("sqlite database open", extra={
            "provider_name": self.name, "actor": link.actor_id, "path": database})

    async def del_link(self, link: LinkDefinition) -> None:
        db = self.dbs.pop(link.actor_id, None)
        if db is not None:
            await db.close()

    async def health(self) -> tuple[bool, str | None]:
        return True, f"{len(self.dbs)} database(s)"

    async def shutdown(self) -> None:
        dbs = list(self.dbs.values())
        self.dbs.clear()
        if dbs:
            await asyncio.gather(*(db.close() for db in dbs))

    def _db(self, actor: str) -> SqliteLink:
        db = self.dbs.get(actor)
        if db is None:
            raise not_linked(actor)
        return db

    async def execute(self, ctx: Context, statement: Statement) -> ExecuteResult:
        db = self._db(ctx.actor)
        try:
            args = decode_parameters(statement.parameters)
        except ParameterError as exc:
            return execute_error("decoding", str(exc))
        try:
            count = await db.run(db.execute, translate_placeholders(statement.sql), args)
        except _DB_ERRORS as exc:
            return execute_error("db", str(exc) or type(exc).__name__)
        return ExecuteResult(rows_affected=count)

    async def query(self, ctx: Context, statement: Statement) -> QueryResult:
        db = self._db(ctx.actor)
        try:
            args = decode_parameters(statement.parameters)
        except ParameterError as exc:
            return query_error("decoding", str(exc))
        try:
            columns, rows = await db.run(db.query, translate_placeholders(statement.sql), args)
        except _DB_ERRORS as exc:
            return query_error("db", str(exc) or type(exc).__name__)
        if not rows:
            return QueryResult(num_rows=0, columns=[], rows=b"")
        try:
            blob = encode_rows(rows)
        except Exception as exc:
            return query_error("encoding", str(exc))
        return QueryResult(num_rows=len(rows), columns=columns, rows=blob)


PROVIDER = SqlDbSqliteProvider

__all__ = ["PROVIDER", "SqlDbSqliteProvider", "SqliteLink", "default_path",
           "translate_placeholders"]
