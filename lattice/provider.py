"""Provider SDK: what a capability provider process (or embedded provider) runs (docs/wire.md §7).

A provider author subclasses :class:`Provider`, sets ``contract_id`` and ``name``, and writes one
async method per contract operation (``KeyValue.ListAdd`` → ``list_add(self, ctx, request)``).
:class:`ProviderBridge` does everything else the way wasmbus-rpc's HostBridge does: connect to
NATS, apply the links from HostData, serve ``wasmbus.rpc.{lattice}.{key}.{link}`` (queue group
``rpc``) with anti-forgery checks and chunking, follow link puts/deletes, answer health checks
and the host's shutdown request. :func:`run_provider` is the process entry point.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import keyword
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
from nats.aio.client import Client
from nats.aio.msg import Msg

import contracts
from lattice import linksig
from lattice.connect import DEFAULT_URL, NatsOptions, connect, settle
from lattice.keys import KeyPair
from lattice.links import LinkDefinition
from lattice.rpc import (
    ChunkStore,
    Entity,
    Invocation,
    Rejected,
    RpcClient,
    RpcError,
    accept,
    reply,
    subjects,
)

log = logging.getLogger("lattice.provider")

# host_id that switches wasmbus-rpc into "test mode": links and health replies travel as JSON.
TEST_HOST_ID = "_TEST_"
DEFAULT_RPC_TIMEOUT_MS = 2000
SHUTDOWN_REPLY = b"shutting down"
# The host waits 2 s for the shutdown reply; a hook that takes longer must not make us miss it.
SHUTDOWN_HOOK_TIMEOUT = 1.5
# In-flight invocations get this long to finish when the provider stops.
DRAIN_TIMEOUT = 1.0


class HostDataError(ValueError):
    """The HostData line or JSON is unusable; the message says which key is wrong."""


class ProviderError(Exception):
    """Raised by a provider method: the invocation is answered with exactly this text."""


class InvalidParameter(ProviderError):
    """wasmbus-rpc's ``RpcError::InvalidParameter``: ``invalid parameter: {detail}``."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"invalid parameter: {detail}")


# ---- HostData (docs/wire.md §7.2) ----------------------------------------------------------------


def _str(doc: dict[str, Any], key: str, default: str = "") -> str:
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise HostDataError(f"HostData key {key!r} must be a string, got {type(value).__name__}")
    return value


def link_from_wire(doc: Any) -> LinkDefinition:
    """A LinkDefinition from a linkdefs.put/del or HostData map, refusing non-maps."""
    if not isinstance(doc, dict):
        raise ValueError(f"a link definition must be a map, got {type(doc).__name__}")
    if not isinstance(doc.get("values") or {}, dict):
        raise ValueError("link definition 'values' must be a map of strings")
    return LinkDefinition.from_wire(doc)


@dataclass
class HostData:
    """Everything the host tells a provider at start (one base64 JSON line on stdin)."""

    host_id: str = ""
    lattice_rpc_prefix: str = "default"
    link_name: str = "default"
    lattice_rpc_user_jwt: str = ""
    lattice_rpc_user_seed: str = ""
    lattice_rpc_url: str = ""          # "host:port" (OTP) or a URL (Rust host); "" = default
    provider_key: str = ""
    invocation_seed: str = ""          # the cluster seed (SC…) that signs provider→actor calls
    env_values: dict[str, str] = field(default_factory=dict)
    instance_id: str = ""
    link_definitions: list[LinkDefinition] = field(default_factory=list)
    cluster_issuers: list[str] = field(default_factory=list)
    config_json: str | None = None
    default_rpc_timeout_ms: int | None = None
    structured_logging: bool = False
    log_level: str | None = None
    lattice_rpc_tls: bool | None = None  # OTP extra
    # Lattice extras: the host's TLS files for NATS (a private CA, a client certificate), so a
    # provider process reaches a NATS the host reaches only with them.
    lattice_rpc_tls_ca: str | None = None
    lattice_rpc_tls_cert: str | None = None
    lattice_rpc_tls_key: str | None = None
    # Lattice extra: refuse link messages not signed by one of cluster_issuers (lattice.linksig).
    lattice_signed_links: bool = False
    js_domain: str | None = None         # OTP extra
    otel_config: dict[str, Any] | None = None  # Rust host ≥0.80
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept for round trips

    _KNOWN = ("host_id", "lattice_rpc_prefix", "link_name", "lattice_rpc_user_jwt",
              "lattice_rpc_user_seed", "lattice_rpc_url", "provider_key", "invocation_seed",
              "env_values", "instance_id", "link_definitions", "cluster_issuers", "config_json",
              "default_rpc_timeout_ms", "structured_logging", "log_level", "lattice_rpc_tls",
              "js_domain", "otel_config", "lattice_rpc_tls_ca", "lattice_rpc_tls_cert",
              "lattice_rpc_tls_key", "lattice_signed_links")

    @property
    def test_mode(self) -> bool:
        return self.host_id == TEST_HOST_ID

    @property
    def rpc_timeout(self) -> float:
        ms = self.default_rpc_timeout_ms
        return (ms if ms and ms > 0 else DEFAULT_RPC_TIMEOUT_MS) / 1000

    def nats_options(self) -> NatsOptions:
        """Connection settings; ``host:port`` gets a scheme, JWT+seed only when both are set."""
        url = self.lattice_rpc_url.strip() or DEFAULT_URL
        if self.lattice_rpc_tls and "://" not in url:
            url = f"tls://{url}"
        both = bool(self.lattice_rpc_user_jwt and self.lattice_rpc_user_seed)
        return NatsOptions(url=url, jwt=self.lattice_rpc_user_jwt if both else None,
                           seed=self.lattice_rpc_user_seed if both else None,
                           tls_ca=self.lattice_rpc_tls_ca, tls_cert=self.lattice_rpc_tls_cert,
                           tls_key=self.lattice_rpc_tls_key, js_domain=self.js_domain or None)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> HostData:
        if not isinstance(doc, dict):
            raise HostDataError(f"HostData must be a JSON object, got {type(doc).__name__}")
        links_raw = doc.get("link_definitions") or []
        issuers = doc.get("cluster_issuers") or []
        env = doc.get("env_values") or {}
        if not isinstance(links_raw, list):
            raise HostDataError("HostData key 'link_definitions' must be an array")
        if not isinstance(issuers, list) or not all(isinstance(i, str) for i in issuers):
            raise HostDataError("HostData key 'cluster_issuers' must be an array of strings")
        if not isinstance(env, dict):
            raise HostDataError("HostData key 'env_values' must be an object")
        try:
            links = [link_from_wire(item) for item in links_raw]
        except (ValueError, UnicodeDecodeError) as exc:
            raise HostDataError(f"HostData has a bad link definition: {exc}") from None
        timeout = doc.get("default_rpc_timeout_ms")
        if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool)):
            raise HostDataError("HostData key 'default_rpc_timeout_ms' must be an integer")
        config = doc.get("config_json")
        otel = doc.get("otel_config")
        tls = doc.get("lattice_rpc_tls")
        return cls(
            host_id=_str(doc, "host_id"),
            lattice_rpc_prefix=_str(doc, "lattice_rpc_prefix") or "default",
            link_name=_str(doc, "link_name") or "default",
            lattice_rpc_user_jwt=_str(doc, "lattice_rpc_user_jwt"),
            lattice_rpc_user_seed=_str(doc, "lattice_rpc_user_seed"),
            lattice_rpc_url=_str(doc, "lattice_rpc_url"),
            provider_key=_str(doc, "provider_key"),
            invocation_seed=_str(doc, "invocation_seed"),
            env_values={str(k): str(v) for k, v in env.items()},
            instance_id=_str(doc, "instance_id"),
            link_definitions=links,
            cluster_issuers=list(issuers),
            config_json=config if isinstance(config, str) else None,
            default_rpc_timeout_ms=timeout,
            structured_logging=bool(doc.get("structured_logging", False)),
            log_level=_str(doc, "log_level") or None,
            lattice_rpc_tls=bool(tls) if tls is not None else None,
            js_domain=_str(doc, "js_domain") or None,
            lattice_rpc_tls_ca=_str(doc, "lattice_rpc_tls_ca") or None,
            lattice_rpc_tls_cert=_str(doc, "lattice_rpc_tls_cert") or None,
            lattice_rpc_tls_key=_str(doc, "lattice_rpc_tls_key") or None,
            lattice_signed_links=doc.get("lattice_signed_links") is True,
            otel_config=otel if isinstance(otel, dict) else None,
            extra={k: v for k, v in doc.items() if k not in cls._KNOWN},
        )

    def to_json(self) -> dict[str, Any]:
        # Required keys always present; Option<T> keys omitted when unset (wasmbus-rpc serde).
        doc: dict[str, Any] = dict(self.extra)
        doc.update({
            "host_id": self.host_id,
            "lattice_rpc_prefix": self.lattice_rpc_prefix,
            "link_name": self.link_name,
            "lattice_rpc_user_jwt": self.lattice_rpc_user_jwt,
            "lattice_rpc_user_seed": self.lattice_rpc_user_seed,
            "lattice_rpc_url": self.lattice_rpc_url,
            "provider_key": self.provider_key,
            "invocation_seed": self.invocation_seed,
            "env_values": dict(self.env_values),
            "instance_id": self.instance_id,
            "link_definitions": [link.to_wire() for link in self.link_definitions],
            "cluster_issuers": list(self.cluster_issuers),
            "structured_logging": self.structured_logging,
        })
        optional = {"config_json": self.config_json,
                    "default_rpc_timeout_ms": self.default_rpc_timeout_ms,
                    "log_level": self.log_level, "lattice_rpc_tls": self.lattice_rpc_tls,
                    "js_domain": self.js_domain, "otel_config": self.otel_config,
                    "lattice_rpc_tls_ca": self.lattice_rpc_tls_ca,
                    "lattice_rpc_tls_cert": self.lattice_rpc_tls_cert,
                    "lattice_rpc_tls_key": self.lattice_rpc_tls_key,
                    "lattice_signed_links": self.lattice_signed_links or None}
        doc.update({k: v for k, v in optional.items() if v is not None})
        return doc

    def encode(self) -> bytes:
        """The stdin line: standard padded base64 of the JSON, then a newline."""
        return base64.b64encode(json.dumps(self.to_json()).encode()) + b"\n"

    @classmethod
    def decode(cls, line: bytes | str) -> HostData:
        raw = line.encode() if isinstance(line, str) else line
        raw = raw.strip()  # OTP ends the line with \n, the Rust host with \r\n
        if not raw:
            raise HostDataError("no HostData: the host sent an empty line (or closed stdin)")
        try:
            text = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise HostDataError("HostData is not valid base64") from None
        try:
            doc = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise HostDataError(f"HostData is not valid JSON: {exc}") from None
        return cls.from_json(doc)


# ---- the provider author's side -----------------------------------------------------------------


@dataclass
class Context:
    """Who is calling: the origin actor, its link (config in ``link.values``) and the bridge."""

    actor: str
    operation: str
    link: LinkDefinition | None
    bridge: ProviderBridge

    @property
    def provider(self) -> ProviderBridge:
        """Alias of ``bridge``: ``await ctx.provider.call_actor(...)``."""
        return self.bridge

    @property
    def values(self) -> dict[str, str]:
        return dict(self.link.values) if self.link else {}


class Provider:
    """Base class of every provider. Override the hooks you need and one method per operation."""

    contract_id: str = ""
    name: str = ""
    bridge: ProviderBridge | None = None  # set by the bridge that runs this instance

    async def init(self, host_data: HostData) -> None:
        """Called once, before any link is applied (``host_data.config_json`` has the config)."""

    async def put_link(self, link: LinkDefinition) -> None:
        """An actor was linked; raise (or return False) to refuse the link."""

    async def del_link(self, link: LinkDefinition) -> None:
        """The link of ``link.actor_id`` was deleted; drop what belongs to that actor."""

    async def health(self) -> tuple[bool, str | None]:
        return True, None

    async def shutdown(self) -> None:
        """Release resources; called once when the provider stops."""


# Hook and attribute names an operation must never resolve to.
_RESERVED = frozenset({"init", "put_link", "del_link", "health", "shutdown", "bridge",
                       "contract_id", "name"})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def method_name(operation: str) -> str:
    """``KeyValue.ListAdd`` → ``list_add``; a keyword or hook name gets a ``_`` (``del_``)."""
    method = operation.rpartition(".")[2]
    snake = _CAMEL.sub("_", method).lower()
    if keyword.iskeyword(snake) or snake in _RESERVED:
        snake += "_"
    return snake


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


def _invocation_id(data: bytes) -> str:
    # The reply should echo the id even when the invocation is refused, if we can read it.
    try:
        return Invocation.decode(data).id
    except Exception:
        return ""


# ---- the bridge ---------------------------------------------------------------------------------


class ProviderBridge:
    """Runs one Provider instance on the lattice (process mode, or embedded on a host's NATS)."""

    def __init__(self, provider: Provider, host_data: HostData, *, nc: Client | None = None
                 ) -> None:
        self.provider = provider
        self.host_data = host_data
        self.links: dict[str, LinkDefinition] = {}  # actor_id → link, as wasmbus-rpc keys it
        # Set by a host that embeds this provider: actor key -> the Actor if it runs there.
        self.local_actors: Callable[[str], Any] | None = None
        self.nc: Client | None = nc
        self._own_nc = nc is None
        self._chunks: ChunkStore | None = None
        self._rpc: RpcClient | None = None
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._link_lock = asyncio.Lock()
        self._busy: dict[str, int] = {}  # actor_id → its calls running now
        self._idle: dict[str, asyncio.Event] = {}  # actor_id → set when its last call is done
        self._stopped = asyncio.Event()
        self._stopping = False
        provider.bridge = self

    # -- identity --

    @property
    def provider_key(self) -> str:
        return self.host_data.provider_key

    @property
    def link_name(self) -> str:
        return self.host_data.link_name

    @property
    def lattice(self) -> str:
        return self.host_data.lattice_rpc_prefix

    @property
    def contract_id(self) -> str:
        return self.provider.contract_id

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _fields(self, **more: Any) -> dict[str, Any]:
        return {"provider_name": self.provider.name or type(self.provider).__name__,
                "provider_key": self.provider_key, "link_name": self.link_name, **more}

    # -- lifecycle --

    async def start(self) -> None:
        """Connect (unless given a connection), init, apply initial links, then subscribe."""
        if self.nc is None:
            self.nc = await connect(self.host_data.nats_options(),
                                    name=f"provider {self.provider.name} {self.provider_key[:8]}")
        self._chunks = ChunkStore(self.nc, self.lattice, self.host_data.js_domain)
        await _maybe_await(self.provider.init(self.host_data))
        for link in self.host_data.link_definitions:
            await self._put_link(link)
        lat, key, link_name = self.lattice, self.provider_key, self.link_name
        nc = self.nc
        # Same order as wasmbus-rpc: RPC, links, shutdown, and health last (health = "ready").
        self._subs.append(await nc.subscribe(subjects.provider(lat, key, link_name), queue="rpc",
                                             cb=self._on_rpc))
        self._subs.append(await nc.subscribe(subjects.provider_linkdefs_put(lat, key, link_name),
                                             cb=self._on_link_put))
        self._subs.append(await nc.subscribe(subjects.provider_linkdefs_del(lat, key, link_name),
                                             cb=self._on_link_del))
        self._subs.append(await nc.subscribe(subjects.provider_shutdown(lat, key, link_name),
                                             cb=self._on_shutdown))
        self._subs.append(await nc.subscribe(subjects.provider_health(lat, key, link_name),
                                             cb=self._on_health))
        await settle(nc)  # subscriptions live before anyone is told we are ready
        log.info("provider ready", extra=self._fields(contract_id=self.contract_id,
                                                      links=len(self.links)))

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def stop(self, *, reply_to: str | None = None) -> None:
        """Shutdown hook, acknowledge (if asked over NATS), unsubscribe, drain, flush."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        try:
            await asyncio.wait_for(_maybe_await(self.provider.shutdown()), SHUTDOWN_HOOK_TIMEOUT)
        except Exception as exc:  # a broken hook must not keep the provider alive
            log.error("provider shutdown hook failed", extra=self._fields(error=str(exc)))
        nc = self.nc
        if nc is not None and reply_to:
            with contextlib.suppress(Exception):
                await nc.publish(reply_to, SHUTDOWN_REPLY)
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        current = asyncio.current_task()
        pending = [t for t in self._tasks if t is not current and not t.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=DRAIN_TIMEOUT)
            for task in late:
                task.cancel()
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=1)
            if self._own_nc:
                with contextlib.suppress(Exception):
                    await nc.close()
        log.info("provider stopped", extra=self._fields())
        self._stopped.set()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- links --

    async def _put_link(self, link: LinkDefinition) -> tuple[bool, str]:
        """Hand a link to the provider once: (accepted, why not)."""
        async with self._link_lock:  # serialise with deletes and with dispatch()'s catch-up
            if link.actor_id in self.links:
                log.debug("ignoring duplicate link put", extra=self._fields(actor=link.actor_id))
                return True, ""
            try:
                accepted = await _maybe_await(self.provider.put_link(link))
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                log.error("link refused by the provider", extra=self._fields(
                    actor=link.actor_id, error=reason))
                return False, reason
            if accepted is False:
                log.warning("link refused by the provider", extra=self._fields(actor=link.actor_id))
                return False, "the provider refused the link"
            self.links[link.actor_id] = link
            log.info("actor linked", extra=self._fields(actor=link.actor_id))
            return True, ""

    async def _del_link(self, actor_id: str) -> None:
        async with self._link_lock:
            link = self.links.pop(actor_id, None)
            if link is None:
                log.debug("link delete for an unlinked actor", extra=self._fields(actor=actor_id))
                return
            # New calls are refused from now on; the ones running still use what del_link
            # closes (a pool, a connection), so let them finish first (a relink, for one, must
            # not fail the actor's last calls on the old backend).
            await self._calls_done(actor_id, self.host_data.rpc_timeout)
            try:
                await _maybe_await(self.provider.del_link(link))
            except Exception as exc:
                log.error("provider failed to delete a link", extra=self._fields(
                    actor=actor_id, error=str(exc) or type(exc).__name__))
            log.info("actor unlinked", extra=self._fields(actor=actor_id))

    def _decode_link(self, data: bytes, what: str) -> LinkDefinition | None:
        try:
            doc = json.loads(data) if self.host_data.test_mode else msgpack.unpackb(data, raw=False)
            return link_from_wire(doc)
        except Exception as exc:
            log.warning("undecodable link definition", extra=self._fields(
                subject_kind=what, error=str(exc)))
            return None

    def _refused_link_message(self, msg: Msg, what: str) -> str | None:
        """Why a link message must be ignored, or None (see lattice.linksig)."""
        if not self.host_data.lattice_signed_links:
            return None  # a wasmCloud host: plain messages, as the protocol has them
        why = linksig.check(msg.headers, msg.subject, msg.data, self.host_data.cluster_issuers)
        if why is not None:
            log.warning("ignoring a link message that is not from a trusted host", extra=(
                self._fields(subject_kind=what, error=why)))
        return why

    async def _answer_link(self, msg: Msg, accepted: bool, error: str) -> None:
        # Lattice hosts send puts as requests to learn the outcome; wasmCloud hosts publish.
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps({"accepted": accepted, "error": error}).encode())

    async def _on_link_put(self, msg: Msg) -> None:
        refused = self._refused_link_message(msg, "linkdefs.put")
        if refused is not None:
            await self._answer_link(msg, False, f"link message ignored: {refused}")
            return
        link = self._decode_link(msg.data, "linkdefs.put")
        if link is None:
            await self._answer_link(msg, False, "the link definition cannot be decoded")
            return
        accepted, error = await self._put_link(link)
        await self._answer_link(msg, accepted, error)

    async def _on_link_del(self, msg: Msg) -> None:
        if self._refused_link_message(msg, "linkdefs.del") is not None:
            return
        link = self._decode_link(msg.data, "linkdefs.del")
        if link is not None:
            await self._del_link(link.actor_id)

    # -- health and shutdown --

    async def health_status(self) -> tuple[bool, str | None]:
        try:
            result = await _maybe_await(self.provider.health())
        except Exception as exc:
            return False, str(exc) or type(exc).__name__
        if isinstance(result, bool):
            return result, None
        healthy, message = result
        return bool(healthy), message

    async def _on_health(self, msg: Msg) -> None:
        healthy, message = await self.health_status()
        doc: dict[str, Any] = {"healthy": healthy}
        if message:
            doc["message"] = message
        if self.host_data.lattice_signed_links:
            # For a Lattice host only: the actors linked here, so it can put back a link the
            # provider lost and take away one the lattice no longer has.
            doc["lattice_links"] = sorted(self.links)
        body = (json.dumps(doc).encode() if self.host_data.test_mode
                else msgpack.packb(doc, use_bin_type=True))
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(body)

    async def _on_shutdown(self, msg: Msg) -> None:
        try:
            doc = json.loads(msg.data) if msg.data else {}
            host_id = (doc.get("host_id") or "") if isinstance(doc, dict) else ""
        except (ValueError, UnicodeDecodeError):
            host_id = ""  # unparsable = legacy host without an id: shut down (wasmbus-rpc)
        if host_id and host_id != self.host_data.host_id:
            log.debug("ignoring a shutdown request for another host",
                      extra=self._fields(host_id=host_id))
            return
        log.info("shutdown requested by the host", extra=self._fields())
        # Run in its own task: stop() unsubscribes the very subscription calling us.
        self._spawn(self.stop(reply_to=msg.reply or None))

    # -- invocations --

    async def _on_rpc(self, msg: Msg) -> None:
        if self._stopping:  # answer now rather than let the caller wait for its timeout
            assert self._chunks is not None
            await self._respond(msg, await reply(
                _invocation_id(msg.data), chunks=self._chunks,
                error=f"provider {self.provider.name} ({self.provider_key}) is shutting down"))
            return
        self._spawn(self._handle_rpc(msg))  # one task per call: a slow call blocks no other

    async def _handle_rpc(self, msg: Msg) -> None:
        assert self._chunks is not None
        try:
            inv = await accept(msg.data, issuers=self.host_data.cluster_issuers,
                               chunks=self._chunks)
        except Exception as exc:
            # Rejected carries the wire text; anything else escaping accept() is still a
            # malformed invocation and must get an answer, not a silent timeout.
            text = str(exc) if isinstance(exc, Rejected) else "Failed to deserialize invocation"
            log.warning("invocation refused", extra=self._fields(error=str(exc)))
            await self._respond(msg, await reply(_invocation_id(msg.data), error=text,
                                                 chunks=self._chunks))
            return
        error: str | None = None
        result = b""
        if inv.target.public_key != self.provider_key:
            error = f"target key mismatch: {inv.target.public_key} != {self.provider_key}"
        elif inv.origin.public_key not in self.links:
            error = f"unlinked actor: '{inv.origin.public_key}'"
        else:
            try:
                result = await self._call(inv.origin.public_key, inv.operation, inv.msg,
                                          self.links.get(inv.origin.public_key))
            except ProviderError as exc:
                error = str(exc)
            except Exception as exc:
                error = str(exc) or type(exc).__name__
                log.warning("provider method raised", exc_info=True, extra=self._fields(
                    operation=inv.operation, actor=inv.origin.public_key))
        if error is not None:
            log.info("invocation failed", extra=self._fields(
                operation=inv.operation, actor=inv.origin.public_key, error=error))
        try:
            body = await reply(inv.id, result=result, error=error, chunks=self._chunks)
        except Exception as exc:  # e.g. the object store refused a large result
            body = await reply(inv.id, error=f"cannot send the result: {exc}",
                               chunks=self._chunks)
        await self._respond(msg, body)

    async def _respond(self, msg: Msg, body: bytes) -> None:
        if not msg.reply:
            return
        try:
            await msg.respond(body)
        except Exception as exc:
            log.warning("could not answer an invocation", extra=self._fields(error=str(exc)))

    async def _calls_done(self, actor: str, timeout: float) -> None:
        """Until no call of ``actor`` is running (at most ``timeout`` seconds)."""
        if not self._busy.get(actor):
            return
        idle = self._idle.setdefault(actor, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(idle.wait(), timeout)

    async def _call(self, actor: str, operation: str, payload: bytes,
                    link: LinkDefinition | None) -> bytes:
        self._busy[actor] = self._busy.get(actor, 0) + 1
        try:
            return await self._invoke(actor, operation, payload, link)
        finally:
            self._busy[actor] -= 1
            if not self._busy[actor]:
                del self._busy[actor]
                idle = self._idle.pop(actor, None)
                if idle is not None:
                    idle.set()

    async def _invoke(self, actor: str, operation: str, payload: bytes,
                      link: LinkDefinition | None) -> bytes:
        name = method_name(operation)
        fn: Callable[..., Any] | None = getattr(self.provider, name, None)
        if not name or name.startswith("_") or fn is None or not callable(fn):
            raise ProviderError(f"method not handled {operation}")
        ctx = Context(actor=actor, operation=operation, link=link, bridge=self)
        op = contracts.OPERATIONS.get(operation)
        if op is None:  # not a known contract: raw bytes both ways
            result = await _maybe_await(fn(ctx, payload))
            if result is None:
                return b""
            if not isinstance(result, bytes | bytearray | memoryview):
                raise ProviderError(f"serialization: {operation} must return bytes for an "
                                    f"operation unknown to the contracts, got "
                                    f"{type(result).__name__}")
            return bytes(result)
        try:
            request = op.decode_input(payload)
        except contracts.CodecError as exc:
            raise ProviderError(f"deserialization: {exc}") from None
        result = await _maybe_await(fn(ctx, request))
        try:
            return op.encode_output(result)
        except contracts.CodecError as exc:
            raise ProviderError(f"serialization: {exc}") from None

    async def dispatch(self, actor_key: str, operation: str, payload: bytes, *,
                       link: LinkDefinition | None = None) -> bytes:
        """Call the provider directly (embedded short-circuit); the host already checked claims.

        Pass the host's ``link`` so a call racing the NATS ``linkdefs.put`` still sees
        ``put_link`` first. Raises ProviderError (or the provider's exception) on failure.
        """
        current = self.links.get(actor_key)
        if current is None and link is not None:
            accepted, _ = await self._put_link(link)
            if not accepted:
                raise ProviderError(f"unlinked actor: '{actor_key}'")
            current = self.links.get(actor_key)
        return await self._call(actor_key, operation, payload, current)

    async def call_actor(self, actor_key: str, operation: str, payload: bytes,
                         timeout: float | None = None) -> bytes:
        """Invoke an actor (provider → actor, docs/wire.md §7.3 step 5).

        Raises lattice.rpc.RpcError."""
        if self.nc is None:
            raise ProviderError("the provider is not connected to the lattice")
        if self._rpc is None:
            if not self.host_data.invocation_seed:
                raise ProviderError("the host gave no invocation seed: cannot sign calls")
            self._rpc = RpcClient(self.nc, self.lattice,
                                  KeyPair.from_seed(self.host_data.invocation_seed),
                                  self.host_data.host_id, timeout=self.host_data.rpc_timeout,
                                  chunks=self._chunks)
        link = self.links.get(actor_key)
        contract = link.contract_id if link and link.contract_id else self.contract_id
        local = self.local_actors(actor_key) if self.local_actors is not None else None
        if local is not None:
            return await self._call_local(local, contract, operation, payload, timeout)
        origin = Entity.provider(self.provider_key, contract, self.link_name)
        return await self._rpc.invoke(origin, Entity.actor(actor_key), operation, payload,
                                      timeout=timeout)

    async def _call_local(self, actor: Any, contract: str, operation: str, payload: bytes,
                          timeout: float | None) -> bytes:
        """Embedded provider → actor on the same host: no signing, no NATS hop. The host still
        checks what it checks for a NATS invocation: the actor must claim our contract."""
        if not actor.has_capability(contract):
            raise RpcError(f"Invocation source does not have the required capability claim "
                           f"{contract}", "remote")
        wait = self.host_data.rpc_timeout if timeout is None else timeout
        # As over NATS, the timeout bounds how long *we* wait; the actor's call runs on to its
        # own deadline (its work is not cut short because a caller gave up).
        call = asyncio.ensure_future(actor.call(operation, payload))
        try:
            return await asyncio.wait_for(asyncio.shield(call), wait)
        except TimeoutError:
            call.add_done_callback(lambda f: f.cancelled() or f.exception())
            raise RpcError(f"actor {getattr(actor, 'key', '')} did not answer {operation} within "
                           f"{wait:g} s", "timeout") from None
        except Exception as exc:
            # a runtime GuestCallError (matched by shape: provider processes never import the
            # wasm runtime); anything else is a bug and propagates as is
            kind = getattr(exc, "kind", None)
            if kind is None:
                raise
            raise RpcError(str(exc), "timeout" if kind == "timeout" else "remote") from None


# ---- process entry point ------------------------------------------------------------------------

_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
           "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}


def _setup_process_logging(level: str | None) -> None:
    from lattice.logs import JsonFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())  # one JSON object per line: the host parses them
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get((level or "info").lower(), logging.INFO))


def _read_line(fd: int) -> bytes:
    # Unbuffered: whatever follows the line stays in the pipe, where the EOF watcher reads it.
    buf = bytearray()
    while b"\n" not in buf:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
    return bytes(buf.split(b"\n", 1)[0])


def _watch_eof(fd: int, on_eof: Callable[[], None]) -> None:
    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 65536):
                pass
        on_eof()

    threading.Thread(target=watch, name="stdin-eof", daemon=True).start()


async def _serve(provider_cls: type[Provider], host_data: HostData) -> int:
    loop = asyncio.get_running_loop()
    reason: asyncio.Future[str] = loop.create_future()

    def request_stop(why: str) -> None:
        if not reason.done():
            reason.set_result(why)

    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, request_stop, sig.name)
    # Our host keeps stdin open; EOF means it went away, so we must not linger as an orphan.
    def on_eof() -> None:
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            loop.call_soon_threadsafe(request_stop, "stdin closed")

    _watch_eof(0, on_eof)

    bridge = ProviderBridge(provider_cls(), host_data)
    try:
        await bridge.start()
    except Exception as exc:
        log.error("provider failed to start", exc_info=True, extra={
            "provider_name": provider_cls.name, "error": str(exc) or type(exc).__name__})
        if bridge.nc is not None:
            with contextlib.suppress(Exception):
                await bridge.nc.close()
        return 1
    stopped = asyncio.ensure_future(bridge.wait_stopped())
    await asyncio.wait({reason, stopped}, return_when=asyncio.FIRST_COMPLETED)
    if not stopped.done():
        log.info("provider stopping", extra={"provider_name": provider_cls.name,
                                             "reason": reason.result()})
        await bridge.stop()
    stopped.cancel()
    return 0


def run_provider(provider_cls: type[Provider]) -> None:
    """``python -m providers.<name>``: read HostData from stdin, serve until told to stop."""
    try:
        host_data = HostData.decode(_read_line(0))
    except (HostDataError, OSError) as exc:
        _setup_process_logging("info")
        log.error("cannot read HostData from stdin", extra={
            "provider_name": provider_cls.name, "error": str(exc)})
        sys.exit(2)
    _setup_process_logging(host_data.log_level)
    try:
        code = asyncio.run(_serve(provider_cls, host_data))
    except KeyboardInterrupt:
        code = 0
    if code:
        sys.exit(code)
