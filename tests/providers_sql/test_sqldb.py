"""sqldb-postgres and sqldb-sqlite through the lattice (docs/contracts.md §6.4).

One suite, parametrised over both providers, each as a separate process and embedded in the
host: a forward.wat actor signed with ``wasmcloud:sqldb`` makes exactly one host call per
statement, so every byte goes through the host, the link and the provider's codecs. Real
PostgreSQL (the ``postgres_dsn`` fixture) and real SQLite files; no mocks.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import cbor2
import pytest

import contracts
from contracts.sqldb import ExecuteResult, QueryResult, Statement, decode_rows
from lattice import paths
from lattice.rpc import RpcError
from providers.sqldb_postgres import MISSING_URI
from tests.harness import Lattice, eventually, until

pytestmark = pytest.mark.service

SQLDB = "wasmcloud:sqldb"
EXECUTE = contracts.operation("SqlDb.Execute")
QUERY = contracts.operation("SqlDb.Query")


def params(*values: Any) -> list[bytes]:
    """Statement.parameters: one CBOR item per value."""
    return [cbor2.dumps(v) for v in values]


@dataclass
class Db:
    """One forward.wat actor's view of its sqldb link."""

    lattice: Lattice
    actor: str

    async def execute(self, sql: str, *values: Any) -> ExecuteResult:
        body = EXECUTE.encode_input(Statement(sql=sql, parameters=params(*values) or None))
        out = await self.lattice.host_call(self.actor, SQLDB, EXECUTE.name, body)
        return EXECUTE.decode_output(out)

    async def query(self, sql: str, *values: Any) -> QueryResult:
        body = QUERY.encode_input(Statement(sql=sql, parameters=params(*values) or None))
        out = await self.lattice.host_call(self.actor, SQLDB, QUERY.name, body)
        return QUERY.decode_output(out)

    async def ok(self, sql: str, *values: Any) -> int:
        result = await self.execute(sql, *values)
        assert result.error is None, result.error
        return result.rows_affected

    async def rows(self, sql: str, *values: Any) -> list[list[Any]]:
        result = await self.query(sql, *values)
        assert result.error is None, result.error
        rows = decode_rows(result.rows)
        assert result.num_rows == len(rows)
        return rows


@dataclass
class Backend:
    provider: str        # the provider package as started by the host
    embedded: bool
    tmp: Path
    dsn: str = ""        # postgres only
    extra_dbs: list[str] = field(default_factory=list)
    override: dict[str, str] | None = None  # link values to use instead of values()

    @property
    def postgres(self) -> bool:
        return self.provider == "sqldb-postgres"

    def values(self, label: str = "a") -> dict[str, str]:
        """Link values giving actor ``label`` a database of its own."""
        if self.override is not None:
            return self.override
        if self.postgres:
            return {"uri": self.dsn if label == "a" else self.extra_dbs[0]}
        return {"path": str(self.tmp / f"{label}.db")}

    # Dialect bits the suite needs.
    def ddl(self) -> str:
        if self.postgres:
            return ("CREATE TABLE t (id integer PRIMARY KEY, name text, ok boolean, "
                    "score double precision, data bytea, note text)")
        return ("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, ok BOOLEAN, score REAL, "
                "data BLOB, note TEXT)")

    def column_types(self) -> list[str]:
        if self.postgres:
            return ["int4", "text", "bool", "float8", "bytea", "text"]
        return ["INTEGER", "TEXT", "BOOLEAN", "REAL", "BLOB", "TEXT"]


async def _create_database(base_dsn: str) -> str:
    """A second fresh database next to ``base_dsn`` (for per-actor isolation)."""
    base, _, _ = base_dsn.rpartition("/")
    name = f"lattice_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(f"{base}/postgres", timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{base}/{name}"


async def _drop_database(dsn: str) -> None:
    base, _, name = dsn.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres", timeout=5)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


MODES = [
    pytest.param(("sqldb-postgres", False), id="postgres-process"),
    pytest.param(("sqldb-postgres", True), id="postgres-embedded"),
    pytest.param(("sqldb-sqlite", False), id="sqlite-process"),
    pytest.param(("sqldb-sqlite", True), id="sqlite-embedded"),
]


@pytest.fixture(params=MODES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    provider, embedded = request.param
    b = Backend(provider, embedded, tmp_path)
    if b.postgres:
        # Only the postgres variants need the server (sqlite ones run without it).
        b.dsn = request.getfixturevalue("postgres_dsn")
    return b


@pytest.fixture
async def extra_databases(backend: Backend) -> AsyncIterator[Backend]:
    """``backend``, dropping the databases a test added to ``backend.extra_dbs``."""
    yield backend
    for dsn in backend.extra_dbs:
        await _drop_database(dsn)


async def _setup(lattice: Lattice, backend: Backend, actors: int = 1
                 ) -> tuple[str, list[Db]]:
    host = await lattice.host()
    pk = await lattice.start_provider(host, backend.provider, embedded=backend.embedded)
    dbs: list[Db] = []
    for i in range(actors):
        label = "ab"[i]
        if label != "a" and backend.postgres:
            backend.extra_dbs.append(await _create_database(backend.dsn))
        fwd = await lattice.forwarder(host, SQLDB)
        await lattice.link(fwd, pk, SQLDB, **backend.values(label))
        db = Db(lattice, fwd)
        # A link reaches a provider process asynchronously: wait until it answers.
        await eventually(lambda db=db: db.query("SELECT 1"))
        dbs.append(db)
    return pk, dbs


# ---- the contract, on every backend -------------------------------------------------------------


async def test_execute_and_query_typed(lattice: Lattice, backend: Backend) -> None:
    _, (db,) = await _setup(lattice, backend)
    assert await db.ok(backend.ddl()) == 0
    insert = "INSERT INTO t (id, name, ok, score, data, note) VALUES ($1, $2, $3, $4, $5, $6)"
    assert await db.ok(insert, 1, "one", True, 1.5, b"\x00\xff", None) == 1
    two_rows = ("INSERT INTO t (id, name, ok, score, data, note) VALUES "
                "($1, $2, $3, $4, $5, $6), ($7, $8, $9, $10, $11, $12)")
    assert await db.ok(two_rows, 2, "two", False, -2.25, b"", "x",
                       3, "drei ü", True, 0.0, b"abc", None) == 2
    assert await db.ok("UPDATE t SET note = $1 WHERE id >= $2", "upd", 2) == 2
    assert await db.ok("DELETE FROM t WHERE id = $1", 99) == 0

    result = await db.query("SELECT id, name, ok, score, data, note FROM t ORDER BY id")
    assert result.error is None
    assert result.num_rows == 3
    assert [(c.ordinal, c.name) for c in result.columns] == [
        (0, "id"), (1, "name"), (2, "ok"), (3, "score"), (4, "data"), (5, "note")]
    assert [c.db_type for c in result.columns] == backend.column_types()
    assert decode_rows(result.rows) == [
        [1, "one", True, 1.5, b"\x00\xff", None],
        [2, "two", False, -2.25, b"", "upd"],
        [3, "drei ü", True, 0.0, b"abc", "upd"],
    ]
    # Parameters in a WHERE clause, and a NULL parameter.
    assert await db.rows("SELECT name FROM t WHERE ok = $1 AND id > $2 ORDER BY id",
                         True, 1) == [["drei ü"]]
    assert await db.ok("UPDATE t SET name = $1 WHERE id = $2", None, 1) == 1
    assert await db.rows("SELECT name FROM t WHERE id = $1", 1) == [[None]]


async def test_zero_rows_and_in_band_errors(lattice: Lattice, backend: Backend) -> None:
    _, (db,) = await _setup(lattice, backend)
    await db.ok(backend.ddl())
    empty = await db.query("SELECT id, name FROM t WHERE id = $1", 42)
    assert empty == QueryResult(num_rows=0, columns=[], rows=b"", error=None)

    for bad in ("SELEC nonsense", "SELECT FROM WHERE"):
        failed = await db.execute(bad)
        assert failed.rows_affected == 0
        assert failed.error is not None and failed.error.code == "db"
        assert "syntax error" in failed.error.message
        qfailed = await db.query(bad)
        assert (qfailed.num_rows, qfailed.columns, qfailed.rows) == (0, [], b"")
        assert qfailed.error is not None and qfailed.error.code == "db"
        assert "syntax error" in qfailed.error.message

    missing = await db.query("SELECT * FROM no_such_table")
    assert missing.error is not None and missing.error.code == "db"
    dup = await db.execute("INSERT INTO t (id) VALUES ($1), ($1)", 7)
    assert dup.error is not None and dup.error.code == "db"  # a constraint violation
    undecodable = EXECUTE.decode_output(await lattice.host_call(
        db.actor, SQLDB, EXECUTE.name,
        EXECUTE.encode_input(Statement(sql="SELECT 1", parameters=[b"\xff"]))))
    assert undecodable.error is not None and undecodable.error.code == "decoding"
    # The link is still good after all those errors.
    assert await db.rows("SELECT count(*) FROM t") == [[0]]


async def test_bad_link_is_rejected(lattice: Lattice, backend: Backend,
                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    pk, (good,) = await _setup(lattice, backend)
    host = lattice.hosts[0]
    if backend.postgres:
        bad_links = [({}, MISSING_URI),
                     ({"config_json": '{"pool": {"max_connections": 2}}'}, MISSING_URI),
                     ({"uri": "postgresql://postgres@127.0.0.1:1/nowhere"},
                      "cannot create a connection pool")]
    else:
        bad_links = [({"path": str(backend.tmp / "no" / "such" / "dir" / "x.db")},
                      "cannot open SQLite database")]
    for values, reason in bad_links:
        caplog.clear()
        fwd = await lattice.forwarder(host, SQLDB)
        await lattice.link(fwd, pk, SQLDB, **values)
        bad = Db(lattice, fwd)
        # Refused: the provider logs why, and the actor's calls fail as unlinked.
        await until(lambda reason=reason: any(
            reason in str(getattr(r, "error", "")) for r in caplog.records))
        with pytest.raises(RpcError, match=r"unlinked actor|actor not linked"):
            await bad.query("SELECT 1")
    # The provider keeps running and serving the good link.
    assert await good.rows("SELECT 1") == [[1]]


async def test_per_actor_isolation(lattice: Lattice, extra_databases: Backend) -> None:
    backend = extra_databases
    _, (a, b) = await _setup(lattice, backend, actors=2)
    await a.ok("CREATE TABLE t (v text)")
    await a.ok("INSERT INTO t (v) VALUES ($1)", "from a")
    absent = await b.query("SELECT v FROM t")
    assert absent.error is not None and absent.error.code == "db"  # b has no table t
    await b.ok("CREATE TABLE t (v text)")
    await b.ok("INSERT INTO t (v) VALUES ($1), ($2)", "from b", "b again")
    assert await a.rows("SELECT v FROM t ORDER BY v") == [["from a"]]
    assert await b.rows("SELECT v FROM t ORDER BY v") == [["b again"], ["from b"]]
    # Unlinking a closes only a's database.
    await lattice.unlink(a.actor, SQLDB)
    await until(lambda: not lattice.hosts[0].store.links.get(a.actor, SQLDB, "default"))
    with pytest.raises(RpcError):
        await a.query("SELECT 1")
    assert await b.rows("SELECT count(*) FROM t") == [[2]]


# ---- backend specifics --------------------------------------------------------------------------


async def test_postgres_type_mapping(lattice: Lattice, postgres_dsn: str) -> None:
    # Linked through config_b64 (JSON with the URI and pool settings) instead of `uri`.
    config = {"uri": postgres_dsn, "pool": {"max_connections": 2, "min_idle": 1,
                                            "connection_timeout_millis": 3000}}
    b64 = base64.b64encode(json.dumps(config).encode()).decode()
    backend = Backend("sqldb-postgres", True, Path(), override={"config_b64": b64})
    _, (db,) = await _setup(lattice, backend)
    result = await db.query(
        "SELECT 12.50::numeric AS n, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS u, "
        "'2024-03-01 12:30:00+02'::timestamptz AS ts, '2024-03-01 12:30:00'::timestamp AS t, "
        "'2024-03-01'::date AS d, '{\"k\": [1, 2]}'::jsonb AS j, '{\"k\":1}'::json AS js, "
        "NULL::int4 AS nothing, 9000000000::int8 AS big, 2::int2 AS small, "
        "ARRAY[1, 2]::int4[] AS arr, $1::text AS p, 'A'::\"char\" AS c, 'ab'::varchar AS v",
        "param")
    assert result.error is None
    assert [c.db_type for c in result.columns] == [
        "numeric", "uuid", "timestamptz", "timestamp", "date", "jsonb", "json", "int4", "int8",
        "int2", "_int4", "text", "char", "varchar"]
    assert decode_rows(result.rows) == [[
        "12.50", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "2024-03-01T10:30:00Z",
        "2024-03-01T12:30:00Z", "2024-03-01", '{"k": [1, 2]}', '{"k":1}', None, 9000000000, 2,
        [1, 2], "param", 65, "ab"]]
    # Several statements without parameters run in one Execute (the simple protocol).
    assert await db.ok("CREATE TABLE m (v int); INSERT INTO m VALUES (1), (2), (3)") == 3


async def test_sqlite_specifics(lattice: Lattice, tmp_path: Path) -> None:
    host = await lattice.host()
    pk = await lattice.start_provider(host, "sqldb-sqlite", embedded=True)
    default = await lattice.forwarder(host, SQLDB)
    memory = await lattice.forwarder(host, SQLDB)
    await lattice.link(default, pk, SQLDB)                 # no path: the state directory
    await lattice.link(memory, pk, SQLDB, path=":memory:")
    d, m = Db(lattice, default), Db(lattice, memory)
    await d.ok("CREATE TABLE t (a INTEGER, b)")
    # `?`, `?NNN` and `$NNN` placeholders, and a `$1` inside a literal left alone.
    await d.ok("INSERT INTO t (a, b) VALUES (?, ?)", 1, "x")
    await d.ok("INSERT INTO t (a, b) VALUES (?2, ?1)", "y", 2)
    await d.ok("INSERT INTO t (a, b) VALUES ($2, '$1')", "unused", 3)
    rows = await d.query("SELECT a, b, count(*) OVER () AS n, 1.5 AS r, x'00' AS bl "
                         "FROM t ORDER BY a")
    # Declared types where there are some; else the storage class of the values.
    assert [c.db_type for c in rows.columns] == ["INTEGER", "TEXT", "INTEGER", "REAL", "BLOB"]
    assert decode_rows(rows.rows) == [[1, "x", 3, 1.5, b"\x00"], [2, "y", 3, 1.5, b"\x00"],
                                      [3, "$1", 3, 1.5, b"\x00"]]
    db_file = paths.state_dir() / "sqlite" / f"{default}.db"
    with sqlite3.connect(db_file) as direct:
        assert direct.execute("SELECT count(*) FROM t").fetchone() == (3,)
    # A script of several statements; a :memory: database of its own.
    assert await m.ok("CREATE TABLE n (v); INSERT INTO n VALUES (1); INSERT INTO n VALUES (2)") \
        == 2
    assert await m.rows("SELECT v FROM n ORDER BY v") == [[1], [2]]
    missing = await m.query("SELECT * FROM t")
    assert missing.error is not None and "no such table" in missing.error.message


# ---- swapping the provider under a running workload ---------------------------------------------


@pytest.mark.parametrize("embedded", [False, True], ids=["process", "embedded"])
async def test_swap_sqlite_to_postgres_at_run_time(lattice: Lattice, postgres_dsn: str,
                                                   tmp_path: Path, embedded: bool) -> None:
    host = await lattice.host()
    sqlite_pk = await lattice.start_provider(host, "sqldb-sqlite", embedded=embedded)
    pg_pk = await lattice.start_provider(host, "sqldb-postgres", embedded=embedded)
    fwd = await lattice.forwarder(host, SQLDB)
    db = Db(lattice, fwd)
    sqlite_file = tmp_path / "before.db"
    await lattice.link(fwd, sqlite_pk, SQLDB, path=str(sqlite_file))
    await eventually(lambda: db.query("SELECT 1"))
    await db.ok("CREATE TABLE log (n integer PRIMARY KEY)")
    pg = await asyncpg.connect(postgres_dsn)
    try:
        await pg.execute("CREATE TABLE log (n integer PRIMARY KEY)")

        outcomes: dict[int, str] = {}   # call number → "ok" or the failure
        swap_started: list[int] = []    # the first call number after the swap began
        stop = asyncio.Event()

        async def writer() -> None:
            n = 0
            while not stop.is_set():
                try:
                    result = await db.execute("INSERT INTO log (n) VALUES ($1)", n)
                    outcomes[n] = "ok" if result.error is None else f"in-band: {result.error}"
                except RpcError as exc:
                    outcomes[n] = f"rpc: {exc}"
                n += 1

        task = asyncio.create_task(writer())
        try:
            await until(lambda: sum(v == "ok" for v in outcomes.values()) >= 10)
            swap_started.append(len(outcomes))
            await lattice.unlink(fwd, SQLDB)
            await lattice.link(fwd, pg_pk, SQLDB, uri=postgres_dsn)

            async def landed_in_postgres() -> int:
                return int(await pg.fetchval("SELECT count(*) FROM log"))

            first_pg: int | None = None
            for _ in range(400):  # bounded; the condition, not a sleep, ends it
                if await landed_in_postgres():
                    first_pg = int(await pg.fetchval("SELECT min(n) FROM log"))
                    break
                await asyncio.sleep(0.025)
            assert first_pg is not None, "no row reached postgres after the relink"
            await until(lambda: len(outcomes) > first_pg + 30)
        finally:
            stop.set()
            await task

        # Every call before the swap worked, and every call from the first postgres row on.
        before = [n for n in outcomes if n < swap_started[0] - 1]
        assert all(outcomes[n] == "ok" for n in before), outcomes
        after = {n: v for n, v in outcomes.items() if n >= first_pg}
        assert len(after) > 30
        assert all(v == "ok" for v in after.values()), after
        # Rows landed where the link pointed at the time.
        ok = {n for n, v in outcomes.items() if v == "ok"}
        in_pg = {r["n"] for r in await pg.fetch("SELECT n FROM log")}
        assert in_pg == {n for n in ok if n >= first_pg}
        with sqlite3.connect(sqlite_file) as direct:
            in_sqlite = {r[0] for r in direct.execute("SELECT n FROM log")}
        assert in_sqlite == {n for n in ok if n < first_pg}
        assert in_sqlite and min(in_pg) > max(in_sqlite)
    finally:
        await pg.close()
