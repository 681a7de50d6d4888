"""``sqldb-postgres``: a ``wasmcloud:sqldb`` provider for PostgreSQL (docs/contracts.md §6.4).

Compatible with the reference provider sqldb-postgres 0.6.0: one connection pool per linked
actor, created in ``put_link`` from the link values ``config_b64``, ``config_json`` and ``uri``
(applied in that order, later wins); a link without a URI, or whose pool cannot connect, is
refused. Database errors come back in-band (``error = {code: "db", message}``), never as RPC
errors. Unlike the reference we bind ``Statement.parameters``: each element is a CBOR-encoded
value, bound positionally to ``$1, $2, …``. See docs/providers/sqldb.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import datetime as dt
import decimal
import ipaddress
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import cbor2

from contracts.sqldb import (
    Column,
    ExecuteResult,
    QueryResult,
    SqlDbError,
    Statement,
    encode_rows,
    has_break,
)
from lattice.links import LinkDefinition
from lattice.provider import Context, InvalidParameter, Provider, ProviderError

log = logging.getLogger("providers.sqldb_postgres")

MISSING_URI = "link params values are missing 'uri'"
POOL_EXHAUSTED = "failed to get connection from pool"
# The shutdown hook must finish well within the SDK's 1.5 s budget.
CLOSE_TIMEOUT = 1.0


# ---- shared with sqldb-sqlite -------------------------------------------------------------------


class ParameterError(ValueError):
    """A ``Statement.parameters`` element is not usable; answered in-band as ``decoding``."""


# Values a parameter may decode to: the scalars both backends can bind.
PARAMETER_TYPES = (bool, int, float, str, bytes, type(None))


def decode_parameters(parameters: list[bytes] | None) -> list[Any]:
    """Each element is one CBOR item (Smithy doc of ``Parameters``) → the Python value to bind."""
    values: list[Any] = []
    for index, raw in enumerate(parameters or []):
        position = index + 1
        if not raw:
            raise ParameterError(f"parameter ${position} is empty (expected one CBOR item)")
        try:
            value = cbor2.loads(bytes(raw))
            if has_break(value):
                raise ValueError("a stray break code")
        except (cbor2.CBORDecodeError, ValueError, TypeError) as exc:
            raise ParameterError(f"parameter ${position} is not valid CBOR: {exc}") from None
        if isinstance(value, bytearray | memoryview):
            value = bytes(value)
        if not isinstance(value, PARAMETER_TYPES):
            raise ParameterError(f"parameter ${position} has unsupported type "
                                 f"{type(value).__name__} (use int, float, text, bytes, bool "
                                 "or null)")
        values.append(value)
    return values


def execute_error(code: str, message: str) -> ExecuteResult:
    return ExecuteResult(rows_affected=0, error=SqlDbError(code=code, message=message))


def query_error(code: str, message: str) -> QueryResult:
    return QueryResult(num_rows=0, columns=[], rows=b"", error=SqlDbError(code=code,
                                                                         message=message))


def not_linked(actor: str) -> ProviderError:
    # The reference provider's exact text (no space after the colon).
    return InvalidParameter(f"actor not linked:{actor}")


# ---- link configuration -------------------------------------------------------------------------


@dataclass(slots=True)
class PoolSettings:
    """The reference provider's ``pool`` JSON (bb8 names), with its defaults."""

    max_connections: int = 8
    min_idle: int = 0
    max_lifetime_secs: float = 7200
    idle_timeout_secs: float = 600
    connection_timeout_millis: float = 1000

    @property
    def connect_timeout(self) -> float:
        return self.connection_timeout_millis / 1000


@dataclass(slots=True)
class LinkConfig:
    uri: str
    pool: PoolSettings


def _number(doc: dict[str, Any], key: str, default: float, *, minimum: float) -> float:
    value = doc.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise ProviderError(f"invalid pool setting {key!r}: {value!r} (expected a number "
                            f">= {minimum:g})")
    return value


def _parse_json(text: str, source: str) -> tuple[str | None, PoolSettings]:
    """One JSON config source → (uri, pool settings), missing fields at their defaults."""
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProviderError(f"invalid {source}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ProviderError(f"invalid {source}: expected a JSON object")
    uri = doc.get("uri")
    if uri is not None and not isinstance(uri, str):
        raise ProviderError(f"invalid {source}: 'uri' must be a string")
    raw_pool = doc.get("pool")
    if raw_pool is None:
        return uri, PoolSettings()
    if not isinstance(raw_pool, dict):
        raise ProviderError(f"invalid {source}: 'pool' must be an object")
    d = PoolSettings()
    return uri, PoolSettings(
        max_connections=int(_number(raw_pool, "max_connections", d.max_connections, minimum=1)),
        min_idle=int(_number(raw_pool, "min_idle", d.min_idle, minimum=0)),
        max_lifetime_secs=_number(raw_pool, "max_lifetime_secs", d.max_lifetime_secs,
                                  minimum=0),
        idle_timeout_secs=_number(raw_pool, "idle_timeout_secs", d.idle_timeout_secs,
                                  minimum=0),
        connection_timeout_millis=_number(raw_pool, "connection_timeout_millis",
                                          d.connection_timeout_millis, minimum=1),
    )


def link_config(values: dict[str, str]) -> LinkConfig:
    """``config_b64``, then ``config_json``, then ``uri`` (later wins); refuses a link without
    a URI with the reference provider's message. As in the reference, ``config_json`` replaces
    the whole configuration ``config_b64`` gave, while ``uri`` overrides only the URI."""
    uri: str | None = None
    pool = PoolSettings()
    if values.get("config_b64"):
        try:
            text = base64.b64decode(values["config_b64"], validate=True).decode()
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise ProviderError("invalid config_b64: not base64 of UTF-8 JSON") from None
        uri, pool = _parse_json(text, "config_b64")
    if values.get("config_json"):
        uri, pool = _parse_json(values["config_json"], "config_json")
    if values.get("uri"):
        uri = values["uri"]
    if not uri:
        raise ProviderError(MISSING_URI)
    return LinkConfig(uri=uri, pool=pool)


def redact(uri: str) -> str:
    """The URI without its password, for logs and error messages."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return uri
    userinfo, _, hostpart = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}" if ":" in userinfo else uri


# ---- pools --------------------------------------------------------------------------------------


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """Remembers when it was opened, so the pool can retire it after ``max_lifetime_secs``
    (asyncpg has no such setting; bb8 does)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lattice_opened_at = time.monotonic()


async def create_pool(config: LinkConfig) -> asyncpg.Pool:
    """An asyncpg pool from the bb8 settings; one connection is opened to prove the URI works."""
    p = config.pool
    pool = await asyncpg.create_pool(
        config.uri,
        min_size=min(p.min_idle, p.max_connections),
        max_size=p.max_connections,
        # asyncpg closes a connection idle this long (bb8 idle_timeout); 0 = never.
        max_inactive_connection_lifetime=p.idle_timeout_secs,
        timeout=p.connect_timeout,
        connection_class=_Connection,
    )
    try:
        async with pool.acquire(timeout=p.connect_timeout) as conn:
            await conn.execute("SELECT 1")
    except BaseException:
        pool.terminate()
        raise
    return pool


async def close_pool(pool: asyncpg.Pool, timeout: float = CLOSE_TIMEOUT) -> None:
    """Let in-flight statements finish for up to ``timeout`` s, then cut the connections."""
    try:
        await asyncio.wait_for(pool.close(), timeout)
    except (TimeoutError, Exception):
        pool.terminate()


# ---- value mapping (docs/contracts.md §6.4 row table) --------------------------------------------


def rfc3339(value: dt.datetime) -> str:
    """UTC RFC 3339 text; a ``timestamp`` without time zone is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def to_cbor_value(value: Any) -> Any:
    """One asyncpg value → the CBOR item the reference provider would send for its type."""
    if value is None or isinstance(value, bool | int | str | bytes):
        return value
    if isinstance(value, float):
        return value
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        # numeric as text keeps every digit (documented deviation: the reference sends bytes).
        return "NaN" if value.is_nan() else str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, asyncpg.BitString):
        return value.bytes
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, list | tuple | asyncpg.Record):  # arrays and composite types
        return [to_cbor_value(v) for v in value]
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network
                  | ipaddress.IPv6Network | ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    if isinstance(value, dt.timedelta):
        return str(value)
    return str(value)  # ranges, geometric types, …: their text form


def type_name(pg_type: Any) -> str:
    """Postgres' own type name (``pg_type.typname``), as tokio-postgres reports it: asyncpg
    spells arrays ``int4[]`` where Postgres says ``_int4``."""
    name = str(pg_type.name)
    if pg_type.kind == "array" and name.endswith("[]"):
        return "_" + name[:-2]
    return name


def column_value(value: Any, db_type: str) -> Any:
    """A value of a column of ``db_type`` → its CBOR item."""
    if db_type == "char" and isinstance(value, bytes) and len(value) == 1:
        return int.from_bytes(value, "big", signed=True)  # "char" is an i8 in the reference
    return to_cbor_value(value)


def rows_affected(status: str | None) -> int:
    """asyncpg's command tag → a count: ``INSERT 0 3`` → 3, ``UPDATE 2`` → 2, ``CREATE
    TABLE`` → 0."""
    if not status:
        return 0
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _db_message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    detail = getattr(exc, "detail", None)
    return f"{text} ({detail})" if detail else text


# ---- the provider -------------------------------------------------------------------------------


class SqlDbPostgresProvider(Provider):
    contract_id = "wasmcloud:sqldb"
    name = "sqldb-postgres"

    def __init__(self) -> None:
        self.pools: dict[str, asyncpg.Pool] = {}
        self.settings: dict[str, PoolSettings] = {}

    async def put_link(self, link: LinkDefinition) -> None:
        config = link_config(dict(link.values))
        try:
            pool = await create_pool(config)
        except Exception as exc:
            # Refuse the link with the reason; the provider itself keeps running.
            raise ProviderError(f"cannot create a connection pool for {redact(config.uri)}: "
                                f"{_db_message(exc)}") from None
        old = self.pools.pop(link.actor_id, None)
        self.pools[link.actor_id] = pool
        self.settings[link.actor_id] = config.pool
        if old is not None:
            await close_pool(old)
        log.info("sqldb pool ready", extra={
            "provider_name": self.name, "actor": link.actor_id, "uri": redact(config.uri),
            "max_connections": config.pool.max_connections})

    async def del_link(self, link: LinkDefinition) -> None:
        pool = self.pools.pop(link.actor_id, None)
        self.settings.pop(link.actor_id, None)
        if pool is not None:
            await close_pool(pool)

    async def health(self) -> tuple[bool, str | None]:
        return True, f"{len(self.pools)} pool(s)"

    async def shutdown(self) -> None:
        pools = list(self.pools.values())
        self.pools.clear()
        self.settings.clear()
        if pools:
            await asyncio.gather(*(close_pool(p) for p in pools))

    # -- helpers --

    def _pool(self, actor: str) -> tuple[asyncpg.Pool, PoolSettings]:
        pool = self.pools.get(actor)
        if pool is None:
            raise not_linked(actor)
        return pool, self.settings.get(actor, PoolSettings())

    @contextlib.asynccontextmanager
    async def _connection(self, actor: str) -> AsyncIterator[Any]:
        pool, settings = self._pool(actor)
        try:
            conn = await pool.acquire(timeout=settings.connect_timeout)
        except Exception as exc:
            # Pool exhaustion or an unreachable server is an RPC error, as in the reference.
            log.warning("no connection from the pool", extra={
                "provider_name": self.name, "actor": actor, "error": _db_message(exc)})
            raise ProviderError(POOL_EXHAUSTED) from None
        try:
            yield conn
        finally:
            opened = getattr(conn, "lattice_opened_at", None)
            if (settings.max_lifetime_secs and opened is not None
                    and time.monotonic() - opened > settings.max_lifetime_secs):
                with contextlib.suppress(Exception):
                    await conn.close(timeout=CLOSE_TIMEOUT)  # the pool replaces it lazily
            with contextlib.suppress(Exception):
                await pool.release(conn)

    # -- operations --

    async def execute(self, ctx: Context, statement: Statement) -> ExecuteResult:
        try:
            args = decode_parameters(statement.parameters)
        except ParameterError as exc:
            return execute_error("decoding", str(exc))
        async with self._connection(ctx.actor) as conn:
            try:
                # Without arguments asyncpg uses the simple protocol: several statements may
                # be sent at once (the count is the last one's).
                status = await conn.execute(statement.sql, *args)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, TypeError,
                    OverflowError) as exc:
                return execute_error("db", _db_message(exc))
        return ExecuteResult(rows_affected=rows_affected(status))

    async def query(self, ctx: Context, statement: Statement) -> QueryResult:
        try:
            args = decode_parameters(statement.parameters)
        except ParameterError as exc:
            return query_error("decoding", str(exc))
        async with self._connection(ctx.actor) as conn:
            try:
                prepared = await conn.prepare(statement.sql)
                records = await prepared.fetch(*args)
                attributes = prepared.get_attributes()
            except (asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, TypeError,
                    OverflowError) as exc:
                return query_error("db", _db_message(exc))
        if not records:
            # Reference behaviour: the default result, columns only when rows came back.
            return QueryResult(num_rows=0, columns=[], rows=b"")
        columns = [Column(ordinal=i, name=a.name, db_type=type_name(a.type))
                   for i, a in enumerate(attributes)]
        types = [c.db_type for c in columns]
        try:
            rows = encode_rows([[column_value(v, t) for v, t in zip(record, types, strict=True)]
                                for record in records])
        except Exception as exc:
            return query_error("encoding", str(exc))
        return QueryResult(num_rows=len(records), columns=columns, rows=rows)


PROVIDER = SqlDbPostgresProvider

__all__ = ["MISSING_URI", "PROVIDER", "LinkConfig", "ParameterError", "PoolSettings",
           "SqlDbPostgresProvider", "decode_parameters", "link_config", "rows_affected",
           "to_cbor_value"]
