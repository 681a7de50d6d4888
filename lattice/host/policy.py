"""The optional policy service (wasmCloud 0.82 "Policy service"; docs/operations.md, docs/wire.md
§3.5): a host started with a policy topic asks it, over NATS request/reply in JSON, before it
starts an actor, before it starts a provider and before the first invocation between a pair of
entities, and keeps each decision.

Request (wasmCloud 0.82's field names, ``RequestSource`` / ``RequestTarget`` / ``HostInfo``)::

    {"requestId": "…", "action": "start_actor" | "start_provider" | "perform_invocation",
     "source": {"publicKey", "contractId", "linkName", "capabilities", "issuer", "issuedOn",
                "expiresAt", "expired", "name"},
     "target": {"publicKey", "issuer", "contractId", "linkName", "name"},
     "host": {"publicKey", "issuer", "latticeId", "labels", "clusterIssuers"}}

``source`` is all nulls for the two start actions (wasmCloud sends it that way); ``name`` (both
entities) and ``host.issuer`` are what Lattice adds. Decision::

    {"requestId": "…", "permitted": bool, "message": "…"}   (+ "expiresAt" / "ttlSeconds")

Decisions are cached per (action, source, target) until they expire (``expiresAt``: Unix
seconds, or ``ttlSeconds`` in the decision; else ``HostConfig.policy_cache_ttl``; None = until
revoked) or a message on the changes topic drops or overrides them. A service that does not
answer in time denies (fail closed) unless ``policy_fail_open``; such outcomes are not cached.

Hooks: :meth:`check_start_actor` (ActorManager), :meth:`check_start_provider`
(ProviderSupervisor), :meth:`check_inbound` (an invocation served here), :meth:`check_outbound`
(an actor's call to a provider or to an actor on this host, from the Router). Without a policy
topic the host has no PolicyManager and none of this runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from lattice.rpc import Rejected
from lattice.runtime import HostCallError

if TYPE_CHECKING:
    from lattice.host.host import Host
    from lattice.host.providers import ProviderInfo
    from lattice.rpc import Entity
    from lattice.runtime import Actor

log = logging.getLogger("lattice.host.policy")

START_ACTOR = "start_actor"
START_PROVIDER = "start_provider"
PERFORM_INVOCATION = "perform_invocation"
ACTIONS = (START_ACTOR, START_PROVIDER, PERFORM_INVOCATION)

# (action, source key, source link name, target key, target link name)
CacheKey = tuple[str, str, str, str, str]


class PolicyDenied(Rejected, HostCallError):
    """The policy service (or its silence, failing closed) refused; the text says why. As a
    Rejected it is the error answer of an inbound invocation, as a HostCallError the host
    error an actor's call gets."""


# ---- the request ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicySource:
    """wasmCloud's ``RequestSource``: the caller of an invocation (empty for starts)."""

    public_key: str | None = None
    contract_id: str | None = None      # providers only
    link_name: str | None = None        # providers only
    capabilities: tuple[str, ...] = ()  # actors only
    issuer: str | None = None
    issued_on: str | None = None        # the claims' iat, as a decimal string
    expires_at: int | None = None
    expired: bool = False
    name: str | None = None             # Lattice addition

    def to_wire(self) -> dict[str, Any]:
        return {"publicKey": self.public_key, "contractId": self.contract_id,
                "linkName": self.link_name, "capabilities": list(self.capabilities),
                "issuer": self.issuer, "issuedOn": self.issued_on, "expiresAt": self.expires_at,
                "expired": self.expired, "name": self.name}


@dataclass(frozen=True)
class PolicyTarget:
    """wasmCloud's ``RequestTarget``: what is started, or invoked."""

    public_key: str | None = None
    issuer: str | None = None
    contract_id: str | None = None      # providers only
    link_name: str | None = None        # providers only
    name: str | None = None             # Lattice addition

    def to_wire(self) -> dict[str, Any]:
        return {"publicKey": self.public_key, "issuer": self.issuer,
                "contractId": self.contract_id, "linkName": self.link_name, "name": self.name}


@dataclass(frozen=True)
class HostInfo:
    public_key: str
    issuer: str                         # the host's cluster key (OTP sends it; Rust does not)
    lattice_id: str
    labels: dict[str, str]
    cluster_issuers: list[str]

    def to_wire(self) -> dict[str, Any]:
        return {"publicKey": self.public_key, "issuer": self.issuer, "latticeId": self.lattice_id,
                "labels": dict(self.labels), "clusterIssuers": list(self.cluster_issuers)}


@dataclass(frozen=True)
class PolicyRequest:
    request_id: str
    action: str
    source: PolicySource
    target: PolicyTarget
    host: HostInfo

    def to_wire(self) -> dict[str, Any]:
        return {"requestId": self.request_id, "action": self.action,
                "source": self.source.to_wire(), "target": self.target.to_wire(),
                "host": self.host.to_wire()}


@dataclass
class PolicyDecision:
    request_id: str
    permitted: bool
    message: str = ""
    answered: bool = True               # False: the service did not answer (fail open/closed)
    expires: float | None = field(default=None, compare=False)  # time.monotonic() deadline

    @classmethod
    def from_wire(cls, data: bytes, request_id: str, default_ttl: float | None
                  ) -> PolicyDecision:
        """A service's answer. Anything but a JSON object with a boolean ``permitted`` is a
        denial that says what was wrong with it (a broken policy service must not permit)."""
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError):
            return cls(request_id, False, f"the policy service's answer is not JSON: "
                                          f"{data[:80]!r}")
        if not isinstance(doc, dict) or not isinstance(doc.get("permitted"), bool):
            return cls(request_id, False, "the policy service's answer has no boolean "
                                          f"\"permitted\": {str(doc)[:120]}")
        message = doc.get("message")
        decision = cls(str(doc.get("requestId") or request_id), doc["permitted"],
                       message if isinstance(message, str) else "")
        decision.expires = _deadline(doc, default_ttl)
        return decision

    def valid(self, now: float) -> bool:
        return self.expires is None or now < self.expires


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _deadline(doc: dict[str, Any], default_ttl: float | None) -> float | None:
    """When a decision stops counting, as a time.monotonic() value (None: until revoked)."""
    now = time.monotonic()
    expires_at = _number(doc.get("expiresAt"))
    if expires_at is not None:
        return now + (expires_at - time.time())
    ttl = _number(doc.get("ttlSeconds"))
    if ttl is not None:
        return now + ttl
    return None if default_ttl is None else now + default_ttl


# ---- entities as the policy service sees them ----------------------------------------------------


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(c for c in (text or "").split(",") if c)


def actor_source(actor: Actor) -> PolicySource:
    c = actor.claims
    if c is None:  # an unsigned module (--allow-unsigned)
        return PolicySource(public_key=actor.key, name=actor.name)
    return PolicySource(public_key=c.subject, capabilities=tuple(c.caps), issuer=c.issuer,
                        issued_on=str(c.issued_at), expires_at=c.expires,
                        expired=c.expires is not None and c.expires < time.time(),
                        name=c.name or actor.name)


def actor_target(actor: Actor) -> PolicyTarget:
    c = actor.claims
    return PolicyTarget(public_key=actor.key, issuer=c.issuer if c else None,
                        name=(c.name if c else None) or actor.name)


def record_source(entity: Entity, record: dict[str, str] | None) -> PolicySource:
    """The caller of an inbound invocation, from the lattice's CLAIMS_ record when known."""
    record = record or {}
    provider = bool(entity.contract_id)
    return PolicySource(public_key=entity.public_key,
                        contract_id=entity.contract_id if provider else None,
                        link_name=entity.link_name if provider else None,
                        capabilities=() if provider else _split(record.get("caps")),
                        issuer=record.get("iss") or None, name=record.get("name") or None)


def provider_target(public_key: str, contract_id: str, link_name: str,
                    record: dict[str, str] | None) -> PolicyTarget:
    record = record or {}
    return PolicyTarget(public_key=public_key, issuer=record.get("iss") or None,
                        contract_id=contract_id, link_name=link_name,
                        name=record.get("name") or None)


# ---- the client ----------------------------------------------------------------------------------


class PolicyManager:
    """Asks the policy service and keeps its decisions (one per host)."""

    def __init__(self, nc: Client, topic: str, *, host_info: Callable[[], HostInfo],
                 claims: Callable[[str], dict[str, str] | None],
                 timeout: float = 1.0, fail_open: bool = False,
                 cache_ttl: float | None = None, changes_topic: str | None = None) -> None:
        self.nc = nc
        self.topic = topic
        self.changes_topic = changes_topic or None
        self.timeout = timeout
        self.fail_open = fail_open
        self.cache_ttl = cache_ttl
        self.host_info = host_info
        self.claims = claims                # public key -> CLAIMS_ record (the lattice store)
        self._cache: dict[CacheKey, PolicyDecision] = {}
        self._by_request: dict[str, CacheKey] = {}  # request id -> its cache key (overrides)
        self._pending: dict[CacheKey, asyncio.Future[PolicyDecision]] = {}
        self._generation = 0                # bumped by every revocation
        self._sub: Any = None
        self.requests = 0                   # asked the service (for tests and logs)

    async def start(self) -> None:
        if self.changes_topic:
            self._sub = await self.nc.subscribe(self.changes_topic, cb=self._on_change)

    async def stop(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    # ---- the hooks -------------------------------------------------------------------------------

    async def check_start_actor(self, actor: Actor) -> None:
        """Raises PolicyDenied when ``actor`` may not start here."""
        decision = await self.evaluate(START_ACTOR, PolicySource(), actor_target(actor))
        self._require(decision, f"start actor {actor.name} ({actor.key})")

    async def check_start_provider(self, info: ProviderInfo) -> None:
        """Raises ProviderStartError when the provider may not start here (the supervisor's
        hook: a start that fails with it publishes provider_start_failed)."""
        from lattice.host.providers import ProviderStartError

        target = provider_target(info.public_key, info.contract_id, info.link_name, info.claims)
        decision = await self.evaluate(START_PROVIDER, PolicySource(), target)
        try:
            self._require(decision, f"start provider {info.name} ({info.public_key}, link name "
                                    f"{info.link_name})")
        except PolicyDenied as exc:
            raise ProviderStartError(str(exc)) from None

    async def check_inbound(self, origin: Entity, actor: Actor) -> None:
        """An invocation of ``actor`` (running here) by ``origin``; raises PolicyDenied."""
        key = (PERFORM_INVOCATION, origin.public_key, origin.link_name, actor.key, "")
        decision = self._cache.get(key)
        if decision is None or not decision.valid(time.monotonic()):
            decision = await self._ask(key, lambda: (
                record_source(origin, self.claims(origin.public_key)), actor_target(actor)))
        if decision.permitted:  # the hot path: a dict lookup and a clock read
            return
        self._require(decision, f"invoke actor {actor.name} ({actor.key}) from "
                                f"{_describe(origin.public_key, origin.link_name)}")

    async def check_outbound(self, actor: Actor, target_key: str, contract_id: str = "",
                             link_name: str = "", target: Actor | None = None) -> None:
        """``actor``'s call to a provider link (or to ``target``, an actor on this host, which
        is called without an inbound invocation); raises PolicyDenied."""
        key = (PERFORM_INVOCATION, actor.key, "", target_key, link_name)
        decision = self._cache.get(key)
        if decision is None or not decision.valid(time.monotonic()):
            def build() -> tuple[PolicySource, PolicyTarget]:
                if target is not None:
                    return actor_source(actor), actor_target(target)
                return actor_source(actor), provider_target(target_key, contract_id, link_name,
                                                            self.claims(target_key))
            decision = await self._ask(key, build)
        if decision.permitted:
            return
        what = (f"actor {target.name} ({target_key})" if target is not None
                else f"provider {_describe(target_key, link_name)} for {contract_id}")
        self._require(decision, f"invoke {what} from actor {actor.name} ({actor.key})")

    # ---- deciding --------------------------------------------------------------------------------

    async def evaluate(self, action: str, source: PolicySource,
                       target: PolicyTarget) -> PolicyDecision:
        key = (action, source.public_key or "", source.link_name or "",
               target.public_key or "", target.link_name or "")
        decision = self._cache.get(key)
        if decision is not None and decision.valid(time.monotonic()):
            return decision
        return await self._ask(key, lambda: (source, target))

    async def _ask(self, key: CacheKey,
                   build: Callable[[], tuple[PolicySource, PolicyTarget]]) -> PolicyDecision:
        """One request per key at a time: concurrent first calls share its answer."""
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[PolicyDecision] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            source, target = build()
            decision = await self._request(key, source, target)
            future.set_result(decision)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        finally:
            del self._pending[key]
        return decision

    async def _request(self, key: CacheKey, source: PolicySource,
                       target: PolicyTarget) -> PolicyDecision:
        action = key[0]
        request = PolicyRequest(str(uuid.uuid4()), action, source, target, self.host_info())
        generation = self._generation
        self.requests += 1
        try:
            reply = await self.nc.request(self.topic, json.dumps(request.to_wire()).encode(),
                                          timeout=self.timeout)
        except (NatsError, TimeoutError) as exc:  # nats' TimeoutError is both
            why = (f"the policy service at {self.topic} did not answer within "
                   f"{self.timeout:g} s")
            if isinstance(exc, NoRespondersError):
                why += " (nothing is subscribed to that topic)"
            elif not isinstance(exc, TimeoutError | NatsTimeoutError):
                why = f"the policy service at {self.topic} could not be asked ({exc!r})"
            log.warning("policy service did not answer", extra={
                "topic": self.topic, "action": action, "target": target.public_key,
                "fail_open": self.fail_open})
            return PolicyDecision(request.request_id, self.fail_open, why, answered=False)
        decision = PolicyDecision.from_wire(reply.data, request.request_id, self.cache_ttl)
        if generation == self._generation and decision.valid(time.monotonic()):
            self._cache[key] = decision  # not when revoked meanwhile: ask again next time
            self._by_request[request.request_id] = key
            if decision.request_id != request.request_id:
                self._by_request[decision.request_id] = key
        log.debug("policy decision", extra={"action": action, "target": target.public_key,
                                            "permitted": decision.permitted})
        return decision

    def _require(self, decision: PolicyDecision, what: str) -> None:
        if decision.permitted:
            return
        if not decision.answered:
            raise PolicyDenied(f"cannot {what}: {decision.message}, and this host fails closed "
                               "(`lattice host --policy-fail-open` permits while the policy "
                               "service is down)")
        raise PolicyDenied(f"Policy denied request to {what}: "
                           f"{decision.message or 'the policy service gave no reason'}")

    # ---- revocations -----------------------------------------------------------------------------

    async def _on_change(self, msg: Msg) -> None:
        """A message on the changes topic. ``{"requestId", "permitted"[, "message"]}`` overrides
        that decision (wasmCloud 0.82); ``{"publicKey"|"source"|"target": KEY}`` drops the
        decisions about that entity; anything else drops them all. A request is answered
        ``{"success": true}`` once applied (OTP), so the sender knows the next call asks again."""
        try:
            doc = json.loads(msg.data) if msg.data.strip() else {}
        except (ValueError, RecursionError):
            doc = {}
        if not isinstance(doc, dict):
            doc = {}
        request_id = doc.get("requestId", doc.get("request_id"))
        if isinstance(request_id, str) and isinstance(doc.get("permitted"), bool):
            self.override(request_id, doc["permitted"], str(doc.get("message") or ""))
        else:
            def text(name: str) -> str | None:
                value = doc.get(name)
                return value if isinstance(value, str) and value else None
            self.revoke(text("publicKey"), text("source"), text("target"))
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(json.dumps({"success": True}).encode())

    def override(self, request_id: str, permitted: bool, message: str = "") -> bool:
        key = self._by_request.get(request_id)
        if key is None:
            log.warning("policy override for an unknown request", extra={"request": request_id})
            return False
        self._cache[key] = PolicyDecision(request_id, permitted, message,
                                          expires=_deadline({}, self.cache_ttl))
        return True

    def revoke(self, public_key: str | None = None, source: str | None = None,
               target: str | None = None) -> int:
        """Drop cached decisions (all when no key is given); returns how many."""
        self._generation += 1
        if public_key is None and source is None and target is None:
            dropped = len(self._cache)
            self._cache.clear()
            self._by_request.clear()
            return dropped

        def matches(key: CacheKey) -> bool:
            if public_key is not None and public_key not in (key[1], key[3]):
                return False
            return (source is None or key[1] == source) and (target is None or key[3] == target)

        gone = {key for key in self._cache if matches(key)}
        for key in gone:
            del self._cache[key]
        self._by_request = {r: k for r, k in self._by_request.items() if k not in gone}
        log.info("policy decisions revoked", extra={"count": len(gone)})
        return len(gone)


async def start_policy(host: Host) -> PolicyManager:
    """The policy client of ``host`` (which has a policy topic), subscribed to the changes
    topic and hooked into the provider supervisor and the router (the actor manager and the
    invocation dispatcher call it through ``host.policy``)."""
    cfg = host.config
    assert cfg.policy_topic
    manager = PolicyManager(
        host.ctl_nc, cfg.policy_topic, host_info=lambda: HostInfo(
            public_key=host.host_id, issuer=host.cluster_key.public_key,
            lattice_id=host.lattice, labels=host.labels,
            cluster_issuers=sorted(host.issuers)),
        claims=lambda key: host.store.claims.get(key), timeout=cfg.policy_timeout,
        fail_open=cfg.policy_fail_open, cache_ttl=cfg.policy_cache_ttl,
        changes_topic=cfg.policy_changes_topic)
    await manager.start()
    host.providers.policy_check = manager.check_start_provider
    host.router.policy = manager
    # An embedded provider calls actors on this host directly, past the invocation dispatcher:
    # with a policy, its calls take the NATS path, where they are checked like any other.
    host.providers.local_actor = None
    return manager


def _describe(public_key: str, link_name: str) -> str:
    if link_name:
        return f"{public_key} (link name {link_name})"
    return public_key
