"""Pure functions of the sqldb providers: link configuration, command tags, placeholders."""

from __future__ import annotations

import base64
import json

import cbor2
import pytest

from lattice.provider import ProviderError
from providers.sqldb_postgres import (
    MISSING_URI,
    ParameterError,
    PoolSettings,
    decode_parameters,
    link_config,
    rows_affected,
)
from providers.sqldb_sqlite import translate_placeholders


def b64(doc: dict) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_link_values_apply_in_order_later_wins() -> None:
    from_b64 = {"config_b64": b64({"uri": "postgres://b64", "pool": {"max_connections": 3}})}
    assert link_config(from_b64).pool.max_connections == 3
    values = {**from_b64, "config_json": json.dumps({"uri": "postgres://json"})}
    config = link_config(values)
    assert config.uri == "postgres://json"
    assert config.pool == PoolSettings()  # config_json replaces all config_b64 gave
    with_uri = link_config({**from_b64, "uri": "postgres://uri"})
    assert (with_uri.uri, with_uri.pool.max_connections) == ("postgres://uri", 3)
    # A config_json without a URI still needs one from `uri`.
    with pytest.raises(ProviderError, match=MISSING_URI):
        link_config({**from_b64, "config_json": "{}"})
    assert link_config({"uri": "postgres://x"}).pool == PoolSettings()
    assert PoolSettings() == PoolSettings(8, 0, 7200, 600, 1000)


@pytest.mark.parametrize("values, message", [
    ({}, MISSING_URI),
    ({"config_json": '{"pool": {}}'}, MISSING_URI),
    ({"config_json": "not json"}, "invalid config_json"),
    ({"config_b64": "%%%"}, "invalid config_b64"),
    ({"uri": "postgres://x", "config_json": '{"pool": {"max_connections": 0}}'},
     "max_connections"),
])
def test_bad_link_values(values: dict[str, str], message: str) -> None:
    with pytest.raises(ProviderError, match=message):
        link_config(values)


@pytest.mark.parametrize("status, count", [
    ("INSERT 0 3", 3), ("UPDATE 2", 2), ("DELETE 0", 0), ("SELECT 5", 5),
    ("CREATE TABLE", 0), ("", 0), (None, 0),
])
def test_rows_affected(status: str | None, count: int) -> None:
    assert rows_affected(status) == count


def test_parameters_are_cbor_items() -> None:
    raw = [cbor2.dumps(v) for v in (1, -2.5, "t", b"\x00", True, None)]
    assert decode_parameters(raw) == [1, -2.5, "t", b"\x00", True, None]
    assert decode_parameters(None) == []
    with pytest.raises(ParameterError, match=r"\$1 is not valid CBOR"):
        decode_parameters([b"\xff"])
    with pytest.raises(ParameterError, match="unsupported type list"):
        decode_parameters([cbor2.dumps([1])])


def test_sqlite_placeholder_translation() -> None:
    sql = "SELECT $1, '$2', \"$3\", ?, ?4, :n -- $5\n/* $6 */ $10"
    assert translate_placeholders(sql) == (
        "SELECT ?1, '$2', \"$3\", ?, ?4, :n -- $5\n/* $6 */ ?10")
    assert translate_placeholders("SELECT 'it''s $1'") == "SELECT 'it''s $1'"
