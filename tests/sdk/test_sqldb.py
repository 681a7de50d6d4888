"""sqldb client: Statement encoding (CBOR parameters), rows as dicts, in-band errors."""

from __future__ import annotations

import cbor2
import pytest

from contracts import sqldb as s
from lattice_actor import HostError, sqldb

COLUMNS = [s.Column(1, "name", "text"), s.Column(0, "id", "int4")]  # out of ordinal order


def test_execute_encodes_parameters_as_cbor_items(host):
    host.on("SqlDb.Execute", lambda stmt: s.ExecuteResult(rows_affected=2))
    assert sqldb.execute("UPDATE t SET a = $1 WHERE b = $2 AND c = $3",
                         [1, "two", b"\x03", None, True, 1.5]) == 2
    call = host.last
    assert (call.binding, call.namespace, call.operation) == (
        "default", "wasmcloud:sqldb", "SqlDb.Execute")
    stmt = call.value
    assert stmt.sql.startswith("UPDATE") and stmt.database is None
    assert [cbor2.loads(p) for p in stmt.parameters] == [1, "two", b"\x03", None, True, 1.5]
    # each parameter goes on the wire as an array of ints, not bin (docs/contracts.md §6.4)
    assert b"\x91\x01" in call.payload  # [cbor(1)] = array(1) of int 1


def test_execute_without_params_omits_the_key(host):
    host.on("SqlDb.Execute", lambda stmt: s.ExecuteResult(0))
    sqldb.execute("DELETE FROM t")
    assert host.last.payload == b"\x81\xa3sql\xadDELETE FROM t"


def test_query_rows_become_dicts_in_column_order(host):
    host.on("SqlDb.Query", lambda stmt: s.QueryResult(
        num_rows=2, columns=COLUMNS, rows=s.encode_rows([[1, "a"], [2, "b"]])))
    rows = sqldb.query("SELECT id, name FROM t WHERE id > $1", (0,))
    assert rows == [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    assert list(rows[0]) == ["id", "name"]
    assert sqldb.query_one("SELECT 1") == {"id": 1, "name": "a"}
    raw = sqldb.query_result("SELECT 1")
    assert raw.num_rows == 2 and raw.columns == COLUMNS


def test_query_without_rows(host):
    host.on("SqlDb.Query", lambda stmt: s.QueryResult())  # zero-length rows blob
    assert sqldb.query("SELECT * FROM empty") == []
    assert sqldb.query_one("SELECT * FROM empty") is None


def test_rows_tolerance():
    result = s.QueryResult(1, [s.Column(0, "a", "")], cbor2.dumps([[1, 2], {"x": 1}]))
    assert sqldb.rows_as_dicts(result) == [{"a": 1, "1": 2}, {"x": 1}]
    with pytest.raises(HostError, match=r"invalid CBOR"):
        sqldb.rows_as_dicts(s.QueryResult(1, [], b"\x9f\x01"))
    with pytest.raises(HostError, match=r"expected an array"):
        sqldb.rows_as_dicts(s.QueryResult(1, [], cbor2.dumps([5])))


def test_in_band_errors_raise_sql_error(host):
    host.on("SqlDb.Execute", lambda stmt: s.ExecuteResult(
        error=s.SqlDbError("db", 'relation "t" does not exist')))
    host.on("SqlDb.Query", lambda stmt: s.QueryResult(
        error=s.SqlDbError("decoding", "parameter $1 is not valid CBOR")))
    with pytest.raises(sqldb.SqlError) as info:
        sqldb.execute("INSERT INTO t VALUES (1)")
    err = info.value
    assert isinstance(err, HostError)
    assert (err.code, err.sql_message, str(err)) == (
        "db", 'relation "t" does not exist', 'db: relation "t" does not exist')
    assert (err.binding, err.namespace, err.operation) == (
        "default", "wasmcloud:sqldb", "SqlDb.Execute")
    with pytest.raises(sqldb.SqlError, match=r"^decoding: parameter"):
        sqldb.query("SELECT $1", [1])


def test_rpc_errors_and_argument_checks(host):
    def fail(stmt):
        raise RuntimeError("invalid parameter: actor not linked:MABC")

    host.on("SqlDb.Query", fail)
    with pytest.raises(HostError, match=r"^invalid parameter: actor not linked"):
        sqldb.query("SELECT 1")
    with pytest.raises(ValueError, match=r"non-empty"):
        sqldb.execute("  ")
    with pytest.raises(TypeError, match=r"list or tuple"):
        sqldb.execute("SELECT $1", "abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"parameter \$1 \(object\)"):
        sqldb.execute("SELECT $1", [object()])


def test_other_link_and_database(host):
    host.on("SqlDb.Execute", lambda stmt: s.ExecuteResult(1))
    db = sqldb.SqlDb("reports", database="analytics")
    assert db.execute("SELECT 1") == 1
    assert host.last.binding == "reports" and host.last.value.database == "analytics"
