"""A typed client for the lattice control interface (docs/wire.md §3.3) and its events (§3.4).

Every method maps to one subject under ``{prefix}.{lattice}``; replies are parsed into small
dataclasses. Commands are acknowledged *before* the host does the work, so callers that care
about the outcome open :meth:`CtlClient.events` **before** sending the command and wait for the
matching CloudEvent::

    async with ctl.events() as events:
        await ctl.start_actor(host_id, "file:///abs/echo.wasm")
        event = await events.wait_for(lambda e: e.name == "actors_started", timeout=30)

Failures raise :class:`CtlError` whose message says what to do next.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from lattice.connect import settle
from lattice.links import LinkDefinition, check_link
from lattice.rpc import subjects

log = logging.getLogger("lattice.ctl")

EVENT_TYPE_PREFIX = "com.wasmcloud.lattice."
_NO_RESPONDERS = "503"


class CtlError(Exception):
    """A control request failed or was refused; the message says what to do next."""


class CtlInvalid(CtlError):
    """A request refused before it was sent: an argument cannot be part of a NATS subject."""


class CtlTimeout(CtlError):
    """Nothing (or not the awaited event) arrived in time."""


# --- results ------------------------------------------------------------------------------------


@dataclass
class HostInfo:
    """One host's answer to ``ping.hosts``."""

    id: str
    friendly_name: str = ""
    issuer: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    uptime_seconds: int = 0
    uptime_human: str = ""
    version: str = ""
    cluster_issuers: list[str] = field(default_factory=list)
    js_domain: str | None = None
    ctl_host: str = ""
    rpc_host: str = ""
    prov_rpc_host: str = ""
    lattice_prefix: str = ""

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> HostInfo:
        issuers = doc.get("cluster_issuers") or []
        if isinstance(issuers, str):  # OTP sends a comma-joined string
            issuers = [i for i in issuers.split(",") if i]
        return cls(
            id=_s(doc.get("id") or doc.get("host_id")),
            friendly_name=_s(doc.get("friendly_name")),
            issuer=_s(doc.get("issuer")),
            labels=_str_map(doc.get("labels")),
            uptime_seconds=_int(doc.get("uptime_seconds")),
            uptime_human=_s(doc.get("uptime_human")),
            version=_s(doc.get("version")),
            cluster_issuers=[str(i) for i in issuers],
            js_domain=doc.get("js_domain") or None,
            ctl_host=_s(doc.get("ctl_host")),
            rpc_host=_s(doc.get("rpc_host")),
            prov_rpc_host=_s(doc.get("prov_rpc_host")),
            lattice_prefix=_s(doc.get("lattice_prefix")),
        )


@dataclass
class ActorInstance:
    instance_id: str
    revision: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    image_ref: str = ""


@dataclass
class ActorDescription:
    id: str
    name: str = ""
    image_ref: str = ""
    instances: list[ActorInstance] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.instances)


@dataclass
class ProviderDescription:
    id: str
    link_name: str = "default"
    contract_id: str = ""
    name: str = ""
    image_ref: str = ""
    instance_id: str = ""
    revision: int = 0
    annotations: dict[str, str] = field(default_factory=dict)
    state: str = ""  # running, unhealthy, restarting, … ("" from hosts that do not say)


@dataclass
class HostInventory:
    host_id: str
    issuer: str = ""
    friendly_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    actors: list[ActorDescription] = field(default_factory=list)
    providers: list[ProviderDescription] = field(default_factory=list)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> HostInventory:
        actors: dict[str, ActorDescription] = {}
        for entry in doc.get("actors") or []:
            key = _s(entry.get("id"))
            # OTP 0.57 listed one entry per instance: merge them by actor key.
            actor = actors.setdefault(key, ActorDescription(
                id=key, name=_s(entry.get("name")), image_ref=_s(entry.get("image_ref"))))
            for inst in entry.get("instances") or []:
                actor.instances.append(ActorInstance(
                    instance_id=_s(inst.get("instance_id")),
                    revision=_int(inst.get("revision")),
                    annotations=_str_map(inst.get("annotations")),
                    image_ref=_s(inst.get("image_ref"))))
        providers = [
            ProviderDescription(
                id=_s(p.get("id")), link_name=_s(p.get("link_name")) or "default",
                contract_id=_s(p.get("contract_id")), name=_s(p.get("name")),
                image_ref=_s(p.get("image_ref")), instance_id=_s(p.get("instance_id")),
                revision=_int(p.get("revision")), annotations=_str_map(p.get("annotations")),
                state=_s(p.get("state")))
            for p in doc.get("providers") or []
        ]
        return cls(host_id=_s(doc.get("host_id")), issuer=_s(doc.get("issuer")),
                   friendly_name=_s(doc.get("friendly_name")),
                   labels=_str_map(doc.get("labels")), actors=list(actors.values()),
                   providers=providers)

    def actor(self, actor_id: str) -> ActorDescription | None:
        return next((a for a in self.actors if a.id == actor_id), None)

    def provider(self, provider_id: str,
                 link_name: str | None = None) -> ProviderDescription | None:
        return next((p for p in self.providers if p.id == provider_id
                     and (link_name is None or p.link_name == link_name)), None)


@dataclass
class Ack:
    accepted: bool
    error: str = ""


@dataclass
class AuctionAck:
    """A host volunteering in an actor or provider auction."""

    host_id: str
    constraints: dict[str, str] = field(default_factory=dict)
    actor_ref: str = ""
    provider_ref: str = ""
    link_name: str = ""

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> AuctionAck:
        return cls(host_id=_s(doc.get("host_id")), constraints=_str_map(doc.get("constraints")),
                   actor_ref=_s(doc.get("actor_ref")), provider_ref=_s(doc.get("provider_ref")),
                   link_name=_s(doc.get("link_name")))


@dataclass
class Event:
    """One CloudEvent from ``wasmbus.evt.{lattice}``; ``name`` is the type without its
    ``com.wasmcloud.lattice.`` prefix (``actors_started``, ``provider_stopped``, …)."""

    name: str
    source: str
    data: dict[str, Any]
    id: str = ""
    time: str = ""
    type: str = ""

    @classmethod
    def parse(cls, raw: bytes) -> Event:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("not a JSON object")
        kind = _s(doc.get("type"))
        data = doc.get("data")
        return cls(name=kind.removeprefix(EVENT_TYPE_PREFIX), source=_s(doc.get("source")),
                   data=data if isinstance(data, dict) else {}, id=_s(doc.get("id")),
                   time=_s(doc.get("time")), type=kind)


# --- events -------------------------------------------------------------------------------------


class EventStream:
    """A subscription to the lattice's events; an async context manager and async iterator.

    Open it before sending the command whose outcome you wait for: events published before
    the subscription exists are not seen.
    """

    def __init__(self, nc: Client, lattice: str, names: Collection[str] | None = None) -> None:
        self.nc = nc
        self.subject = subjects.events(lattice)
        self.names = set(names) if names else None
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._sub: Subscription | None = None

    async def __aenter__(self) -> EventStream:
        self._sub = await self.nc.subscribe(self.subject, cb=self._on_msg)
        # The server must know the subscription before the caller sends its command (which
        # may go out on another connection); a plain flush() does not guarantee that.
        await settle(self.nc)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _on_msg(self, msg: Msg) -> None:
        try:
            event = Event.parse(msg.data)
        except (ValueError, UnicodeDecodeError) as exc:
            log.debug("ignoring an unreadable event", extra={"error": str(exc)})
            return
        if self.names is None or event.name in self.names:
            self._queue.put_nowait(event)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()

    async def next(self, timeout: float | None = None) -> Event:
        """The next event; raises CtlTimeout after ``timeout`` seconds."""
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            raise CtlTimeout(f"no event arrived within {timeout:g} s") from None

    async def wait_for(self, predicate: Callable[[Event], bool], timeout: float) -> Event:
        """The first event satisfying ``predicate``; raises CtlTimeout after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while True:
            left = max(deadline - time.monotonic(), 0.0)
            try:
                event = await asyncio.wait_for(self._queue.get(), left)
            except TimeoutError:
                raise CtlTimeout(
                    f"the awaited event did not arrive within {timeout:g} s") from None
            if predicate(event):
                return event


def _check_link_name(link_name: str) -> None:
    try:
        subjects.check_link_name(link_name)
    except subjects.InvalidSubjectToken as exc:
        raise CtlInvalid(f"{exc}; e.g. --link-name backup") from None


# --- the client ---------------------------------------------------------------------------------


class CtlClient:
    """Control-interface requests for one lattice over an open NATS connection."""

    def __init__(self, nc: Client, lattice: str = "default", prefix: str = subjects.CTL_PREFIX,
                 timeout: float = 2.0, *, nats_url: str | None = None) -> None:
        self.nc = nc
        self.lattice = subjects.check_lattice(lattice)
        self.prefix = prefix
        self.timeout = timeout
        self.nats_url = nats_url or _connected_url(nc)

    # -- plumbing --

    def _subject(self, *parts: str) -> str:
        return subjects.ctl(self.lattice, *parts, prefix=self.prefix)

    def _host_subject(self, kind: str, host_id: str, verb: str) -> str:
        try:
            subjects.check_token("host id", host_id)
        except subjects.InvalidSubjectToken as exc:
            raise CtlInvalid(f"{exc}; host ids are the N… keys `lattice get hosts` lists") \
                from None
        return self._subject(kind, host_id, verb)

    @property
    def _where(self) -> str:
        return f"lattice {self.lattice} at {self.nats_url}"

    def _nobody(self) -> str:
        return (f"no host answered on {self._where}: is a host running? start one with "
                "`lattice up` (or check --lattice and --nats-url)")

    def _no_host(self, host_id: str) -> str:
        return (f"no host {host_id} on {self._where}: list the running hosts with "
                "`lattice get hosts`")

    async def _request(self, subject: str, body: Mapping[str, Any] | None, what: str,
                       host_id: str | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else b""
        try:
            msg = await self.nc.request(subject, data, timeout=self.timeout)
        except NoRespondersError:
            raise CtlError(self._no_host(host_id) if host_id else self._nobody()) from None
        except (TimeoutError, NatsTimeoutError):
            who = f"host {host_id}" if host_id else "the lattice"
            raise CtlTimeout(f"{who} did not answer {what} within {self.timeout:g} s on "
                             f"{self._where}: it may be busy or gone; retry, or allow more time "
                             "with --timeout") from None
        try:
            return json.loads(msg.data) if msg.data else {}
        except (ValueError, UnicodeDecodeError) as exc:
            raise CtlError(f"the reply to {what} on {self._where} is not JSON: {exc}") from None

    async def _command(self, subject: str, body: Mapping[str, Any], what: str,
                       host_id: str | None = None) -> Ack:
        reply = await self._request(subject, body, what, host_id)
        if not isinstance(reply, dict):
            raise CtlError(f"the reply to {what} on {self._where} is not an acknowledgement")
        ack = Ack(accepted=bool(reply.get("accepted")), error=_s(reply.get("error")))
        if not ack.accepted:
            raise CtlError(ack.error or f"{what} was refused (no reason given)")
        log.debug("ctl command accepted", extra={"subject": subject})
        return ack

    async def _gather(self, subject: str, body: Mapping[str, Any] | None, wait: float,
                      limit: int | None = None) -> list[Any]:
        """Scatter/gather: publish once, collect every reply until ``wait`` elapses (or
        ``limit`` replies arrived, or the server reports that nobody listens)."""
        inbox = self.nc.new_inbox()
        replies: asyncio.Queue[Msg] = asyncio.Queue()

        async def on_reply(msg: Msg) -> None:
            replies.put_nowait(msg)

        sub = await self.nc.subscribe(inbox, cb=on_reply)
        results: list[Any] = []
        try:
            data = json.dumps(body).encode() if body is not None else b""
            await self.nc.publish(subject, data, reply=inbox)
            deadline = time.monotonic() + wait
            while limit is None or len(results) < limit:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    msg = await asyncio.wait_for(replies.get(), left)
                except TimeoutError:
                    break
                if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
                    break  # nobody subscribes: no need to wait out the window
                try:
                    results.append(json.loads(msg.data))
                except (ValueError, UnicodeDecodeError):
                    log.debug("ignoring an unreadable reply", extra={"subject": subject})
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return results

    # -- queries --

    async def ping_hosts(self, wait: float = 1.0) -> list[HostInfo]:
        """Every host that answers within ``wait`` seconds (an empty list when none runs)."""
        replies = await self._gather(self._subject("ping", "hosts"), None, wait)
        hosts = [HostInfo.from_wire(r) for r in replies if isinstance(r, dict)]
        return sorted(hosts, key=lambda h: (h.friendly_name, h.id))

    async def inventory(self, host_id: str) -> HostInventory:
        reply = await self._request(self._host_subject("get", host_id, "inv"), None,
                                    "the inventory request", host_id)
        if not isinstance(reply, dict):
            raise CtlError(f"host {host_id} sent an unreadable inventory")
        inv = HostInventory.from_wire(reply)
        inv.host_id = inv.host_id or host_id
        return inv

    async def get_claims(self) -> list[dict[str, str]]:
        reply = await self._request(self._subject("get", "claims"), None, "get claims")
        claims = reply.get("claims") if isinstance(reply, dict) else None
        return [_str_map(c) for c in claims or [] if isinstance(c, dict)]

    async def get_links(self) -> list[LinkDefinition]:
        reply = await self._request(self._subject("get", "links"), None, "get links")
        links = reply.get("links") if isinstance(reply, dict) else None
        return [LinkDefinition.from_wire(ld) for ld in links or [] if isinstance(ld, dict)]

    # -- host commands --

    async def start_actor(self, host_id: str, actor_ref: str, count: int = 1,
                          annotations: Mapping[str, str] | None = None, *,
                          memory_limit_mib: int | None = None) -> Ack:
        body: dict[str, Any] = {
            "actor_ref": actor_ref, "count": count,
            "annotations": dict(annotations) if annotations else None, "host_id": host_id}
        if memory_limit_mib is not None:  # a Lattice extension; other hosts ignore it
            body["memory_limit_mib"] = memory_limit_mib
        return await self._command(self._host_subject("cmd", host_id, "la"), body,
                                   "the start-actor command", host_id)

    async def stop_actor(self, host_id: str, actor_id: str, count: int = 0,
                         annotations: Mapping[str, str] | None = None) -> Ack:
        """Stop ``count`` instances (0 = all) of the actor on that host."""
        body = {"actor_ref": actor_id, "count": count,
                "annotations": dict(annotations) if annotations else None, "host_id": host_id}
        return await self._command(self._host_subject("cmd", host_id, "sa"), body,
                                   "the stop-actor command", host_id)

    async def scale_actor(self, host_id: str, actor_id: str, actor_ref: str, count: int,
                          annotations: Mapping[str, str] | None = None) -> Ack:
        body = {"actor_id": actor_id, "actor_ref": actor_ref, "count": count,
                "annotations": dict(annotations) if annotations else None, "host_id": host_id}
        return await self._command(self._host_subject("cmd", host_id, "scale"), body,
                                   "the scale-actor command", host_id)

    async def update_actor(self, host_id: str, actor_id: str, new_actor_ref: str,
                           annotations: Mapping[str, str] | None = None) -> Ack:
        body = {"actor_id": actor_id, "new_actor_ref": new_actor_ref,
                "annotations": dict(annotations) if annotations else None, "host_id": host_id}
        return await self._command(self._host_subject("cmd", host_id, "upd"), body,
                                   "the update-actor command", host_id)

    async def start_provider(self, host_id: str, provider_ref: str, link_name: str = "default",
                             configuration: str = "",
                             annotations: Mapping[str, str] | None = None, *,
                             embedded: bool = False, contract_id: str | None = None) -> Ack:
        _check_link_name(link_name)
        body: dict[str, Any] = {
            "provider_ref": provider_ref, "link_name": link_name,
            "configuration": configuration,
            "annotations": dict(annotations) if annotations else None, "host_id": host_id}
        # Lattice extensions; other hosts ignore unknown keys, so only send them when used.
        if embedded:
            body["embedded"] = True
        if contract_id:
            body["contract_id"] = contract_id
        return await self._command(self._host_subject("cmd", host_id, "lp"), body,
                                   "the start-provider command", host_id)

    async def stop_provider(self, host_id: str, provider_id: str, link_name: str = "default",
                            contract_id: str = "",
                            annotations: Mapping[str, str] | None = None) -> Ack:
        body = {"provider_ref": provider_id, "link_name": link_name, "contract_id": contract_id,
                "annotations": dict(annotations) if annotations else None, "host_id": host_id}
        return await self._command(self._host_subject("cmd", host_id, "sp"), body,
                                   "the stop-provider command", host_id)

    async def stop_host(self, host_id: str, timeout_ms: int | None = None) -> Ack:
        body: dict[str, Any] = {"host_id": host_id}
        if timeout_ms is not None:
            body["timeout"] = timeout_ms  # OTP's code reads "timeout" (the docs say timeout_ms)
        return await self._command(self._host_subject("cmd", host_id, "stop"), body,
                                   "the stop-host command", host_id)

    async def put_label(self, host_id: str, key: str, value: str) -> Ack:
        return await self._command(self._host_subject("labels", host_id, "put"),
                                   {"key": key, "value": value}, "the put-label command",
                                   host_id)

    async def del_label(self, host_id: str, key: str) -> Ack:
        return await self._command(self._host_subject("labels", host_id, "del"), {"key": key},
                                   "the delete-label command", host_id)

    # -- lattice commands --

    async def put_link(self, actor_id: str, provider_id: str, contract_id: str,
                       link_name: str = "default",
                       values: Mapping[str, str] | None = None) -> Ack:
        try:
            check_link(LinkDefinition(actor_id, provider_id, contract_id, link_name))
        except subjects.InvalidSubjectToken as exc:
            raise CtlInvalid(f"cannot link: {exc}") from None
        body = {"actor_id": actor_id, "provider_id": provider_id, "contract_id": contract_id,
                "link_name": link_name, "values": dict(values or {})}
        return await self._command(self._subject("linkdefs", "put"), body, "the link put")

    async def del_link(self, actor_id: str, contract_id: str, link_name: str = "default") -> Ack:
        body = {"actor_id": actor_id, "contract_id": contract_id, "link_name": link_name}
        return await self._command(self._subject("linkdefs", "del"), body, "the link delete")

    async def auction_actor(self, actor_ref: str, constraints: Mapping[str, str] | None = None,
                            wait: float = 1.0, *, limit: int | None = None) -> list[AuctionAck]:
        """Hosts whose labels satisfy ``constraints`` (first ``limit`` answers, if given)."""
        body = {"actor_ref": actor_ref, "constraints": dict(constraints or {})}
        replies = await self._gather(self._subject("auction", "actor"), body, wait, limit)
        return [AuctionAck.from_wire(r) for r in replies if isinstance(r, dict)]

    async def auction_provider(self, provider_ref: str, link_name: str = "default",
                               constraints: Mapping[str, str] | None = None, wait: float = 1.0,
                               *, limit: int | None = None) -> list[AuctionAck]:
        _check_link_name(link_name)
        body = {"provider_ref": provider_ref, "link_name": link_name,
                "constraints": dict(constraints or {})}
        replies = await self._gather(self._subject("auction", "provider"), body, wait, limit)
        return [AuctionAck.from_wire(r) for r in replies if isinstance(r, dict)]

    # -- events --

    def events(self, names: Collection[str] | None = None) -> EventStream:
        """Subscribe to the lattice's events (``async with ctl.events() as stream``), keeping
        only the given event names (e.g. ``{"actors_started"}``) when ``names`` is set."""
        return EventStream(self.nc, self.lattice, names)

    async def wait_for_event(self, predicate: Callable[[Event], bool], timeout: float,
                             names: Collection[str] | None = None) -> Event:
        """Subscribe now and wait for a matching event. Events published before this call are
        missed: to wait for the outcome of a command, use :meth:`events` around it."""
        async with self.events(names) as stream:
            return await stream.wait_for(predicate, timeout)


# --- helpers ------------------------------------------------------------------------------------


def _connected_url(nc: Client) -> str:
    url = getattr(nc, "connected_url", None)
    if url is None or not url.hostname:
        return "NATS"
    return f"{url.scheme or 'nats'}://{url.hostname}:{url.port or 4222}"


def _s(value: Any) -> str:
    return "" if value is None else str(value)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _str_map(value: Any) -> dict[str, str]:
    """A JSON object as ``{str: str}`` (claims and labels are string maps on the wire)."""
    if not isinstance(value, dict):
        return {}
    return {str(k): _text(v) for k, v in value.items()}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):  # e.g. caps/tags from a host that sends lists
        return ",".join(_text(v) for v in value)
    return json.dumps(value)
