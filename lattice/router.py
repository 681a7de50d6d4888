"""Where an actor's host call goes (docs/wire.md §1.6) and whether it is allowed (§5.3).

Order: builtins → link definition → actor key → call alias. Claims are the security model, so
every call to a capability contract is checked against the actor's ``caps`` before anything
else happens — with or without a link — and the denial says how to fix it.

Transports are pluggable: :class:`ProviderTransport` reaches a linked provider (in-process or
over NATS, supplied by the host) and :class:`ActorTransport` reaches actors not running here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from lattice import builtins
from lattice.links import LinkDefinition, LinkTable
from lattice.runtime import Actor, GuestCallError, HostCallError

log = logging.getLogger("lattice.router")

_KEY_LEN = 56


class ProviderTransport(Protocol):
    async def __call__(self, actor: Actor, link: LinkDefinition, operation: str,
                       payload: bytes) -> bytes: ...


# async (origin actor, target actor key, operation, payload) -> bytes
ActorTransport = Callable[[Actor, str, str, bytes], Awaitable[bytes]]


def is_actor_key(text: str) -> bool:
    return len(text) == _KEY_LEN and text.startswith("M") and text.isalnum() and text.isupper()


class Router:
    """Resolves host calls for the actors of one host; usable as their ``host_call`` handler."""

    def __init__(self, lattice: str, links: LinkTable | None, *, enforce_builtin_caps: bool = True,
                 providers: ProviderTransport | None = None,
                 remote_actors: ActorTransport | None = None) -> None:
        self.lattice = lattice
        self.links = links if links is not None else LinkTable()
        self.enforce_builtin_caps = enforce_builtin_caps
        self.providers = providers
        self.remote_actors = remote_actors
        # The host's policy service client (lattice/host/policy.py), asked before an actor's
        # call to a provider or to another actor on this host; its denial is a HostCallError.
        # None: no policy.
        self.policy: Any = None
        self._local: dict[str, Actor] = {}
        self._aliases: dict[str, str] = {}  # call alias -> actor key (lattice-wide in a host)

    # ---- actors known to this router ------------------------------------------------------------

    def add_actor(self, actor: Actor) -> None:
        self._local[actor.key] = actor
        alias = actor.call_alias
        if alias:
            owner = self._aliases.setdefault(alias, actor.key)  # first claimant wins, as in OTP
            if owner != actor.key:
                log.warning("call alias already taken; this actor is reachable by key only",
                            extra={"alias": alias, "actor": actor.key, "owner": owner})

    def remove_actor(self, actor: Actor) -> None:
        if self._local.get(actor.key) is actor:
            del self._local[actor.key]
        if actor.call_alias and self._aliases.get(actor.call_alias) == actor.key:
            del self._aliases[actor.call_alias]

    def note_alias(self, alias: str, key: str) -> None:
        """A call alias claimed anywhere in the lattice (from the CLAIMS_ entries)."""
        if len(alias) > 1:  # OTP ignores one-character aliases
            self._aliases.setdefault(alias, key)

    def forget_alias_of(self, key: str) -> None:
        for alias in [a for a, k in self._aliases.items() if k == key]:
            del self._aliases[alias]

    def alias_table(self) -> dict[str, str]:
        return dict(self._aliases)

    def resolve_actor(self, target: str) -> str | None:
        """An actor key for ``target`` (a key or a call alias), or None."""
        if is_actor_key(target):
            return target
        return self._aliases.get(target)

    def local_actor(self, key: str) -> Actor | None:
        return self._local.get(key)

    # ---- the host-call handler ------------------------------------------------------------------

    async def __call__(self, actor: Actor, binding: str, namespace: str, operation: str,
                       payload: bytes) -> bytes:
        if namespace.startswith(builtins.PREFIX):
            if self.enforce_builtin_caps:
                self._require_capability(actor, namespace)
            return await builtins.handle(actor, namespace, operation, payload)

        link = self.links.get(actor.key, namespace, binding)
        if link is not None:
            self._require_capability(actor, namespace)
            return await self._call_provider(actor, link, operation, payload)

        target = self.resolve_actor(namespace)
        if target is not None:
            return await self._call_actor(actor, target, operation, payload)

        if ":" in namespace:  # contract ids are vendor:name; keys and aliases never contain ':'
            self._require_capability(actor, namespace)
            raise HostCallError(
                f"Invocation not authorized: missing link definition for {namespace} on "
                f"{self.lattice}: no provider is linked for {namespace} (link name {binding}); "
                f"link actor {actor.key} to a {namespace} provider first")
        raise HostCallError(
            f"no actor with key or call alias '{namespace}' is running in lattice "
            f"{self.lattice}; start it, or check the alias in its claims "
            "(`lattice claims inspect`)")

    def _require_capability(self, actor: Actor, contract_id: str) -> None:
        if not actor.has_capability(contract_id):
            raise HostCallError(
                f"Invocation not authorized: missing capability claim for {contract_id}. "
                f"Actor {actor.name} ({actor.key}) was not signed with it: re-sign it with "
                f"`lattice claims sign FILE --name {actor.name} --cap {contract_id} …` (keep its "
                "other --cap flags)")

    async def _call_provider(self, actor: Actor, link: LinkDefinition, operation: str,
                             payload: bytes) -> bytes:
        if self.providers is None:
            raise HostCallError(
                f"a link to provider {link.provider_id} exists for {link.contract_id} "
                f"(link name {link.link_name}) but this host cannot reach providers")
        if self.policy is not None:
            await self.policy.check_outbound(actor, link.provider_id, link.contract_id,
                                             link.link_name)
        return await self.providers(actor, link, operation, payload)

    async def _call_actor(self, origin: Actor, target: str, operation: str,
                          payload: bytes) -> bytes:
        local = self._local.get(target)
        if local is not None:  # short-circuit: no NATS hop for an actor running here
            if self.policy is not None:  # (remote targets: their host checks the invocation)
                await self.policy.check_outbound(origin, target, target=local)
            try:
                return await local.call(operation, payload)
            except GuestCallError as exc:
                raise HostCallError(str(exc)) from None
        if self.remote_actors is not None:
            return await self.remote_actors(origin, target, operation, payload)
        raise HostCallError(f"Invocation received for actor {target} that is not running "
                            f"(lattice {self.lattice}); start it first")
