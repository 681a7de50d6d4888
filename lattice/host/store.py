"""The lattice store: links and claims in the JetStream KV bucket LATTICEDATA_{lattice}
(docs/wire.md §3.6, §4.2).

Writes go to the bucket only. Every host — including the writer — learns about changes from its
watcher, so changes written straight into the bucket by other tools (e.g. wash's control client)
count exactly like ours. The watcher keeps the caches and calls the host's hooks, which publish
events and notify providers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from nats.aio.client import Client
from nats.js.errors import BadRequestError, BucketNotFoundError, KeyNotFoundError
from nats.js.kv import KeyValue

from lattice.connect import jetstream
from lattice.links import LinkDefinition, LinkTable, check_link, link_id
from lattice.rpc.subjects import InvalidSubjectToken, lattice_bucket

log = logging.getLogger("lattice.store")

LINK_PREFIX = "LINKDEF_"
CLAIMS_PREFIX = "CLAIMS_"
REFMAP_PREFIX = "REFMAP_"
CLAIMS_KEYS = ("call_alias", "caps", "contract_id", "iss", "name", "rev", "sub", "tags",
               "version")

LinkHook = Callable[[LinkDefinition], Awaitable[None]]
ClaimsHook = Callable[[str, dict[str, str] | None], Awaitable[None]]


def link_from_json(raw: bytes) -> LinkDefinition:
    return LinkDefinition.from_wire(json.loads(raw))


class LatticeStore:
    def __init__(self, nc: Client, lattice: str, *, js_domain: str | None = None,
                 replicas: int = 1, on_link_put: LinkHook | None = None,
                 on_link_del: LinkHook | None = None,
                 on_claims: ClaimsHook | None = None) -> None:
        self._js = jetstream(nc, js_domain)  # KV writes must reach the domain from a leaf
        self.bucket = lattice_bucket(lattice)
        self.replicas = replicas  # when we create the bucket (3 in a 3-node NATS cluster)
        self.links = LinkTable()
        self.claims: dict[str, dict[str, str]] = {}
        self._by_id: dict[str, LinkDefinition] = {}
        self._on_link_put = on_link_put
        self._on_link_del = on_link_del
        self._on_claims = on_claims
        self._kv: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def open(self) -> None:
        """Create or bind the bucket, load it and start watching; returns once caught up."""
        # An existing bucket (any config: OTP's, wash's, replicated) is reused as it is —
        # JetStream refuses to "create" it again with another config. Else history 1 as OTP.
        try:
            self._kv = await self._js.key_value(self.bucket)
        except BucketNotFoundError:
            try:
                self._kv = await self._js.create_key_value(bucket=self.bucket, history=1,
                                                           replicas=self.replicas)
            except BadRequestError:  # another host created it meanwhile, maybe otherwise
                self._kv = await self._js.key_value(self.bucket)
        self._task = asyncio.create_task(self._watch(), name="lattice-store-watch")
        waiter = asyncio.ensure_future(self._ready.wait())
        done, _ = await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            waiter.cancel()
            self._task.result()  # the watcher died before catching up: raise its error

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    # ---- writes (the watcher applies them) ------------------------------------------------------

    async def put_link(self, link: LinkDefinition) -> None:
        check_link(link)
        await self._kv_or_fail().put(LINK_PREFIX + link.id, json.dumps(link.to_wire()).encode())

    async def delete_link(self, actor_id: str, contract_id: str, link_name: str) -> bool:
        """Remove a stored link, including one the watcher ignored as undeliverable."""
        key = LINK_PREFIX + link_id(actor_id, contract_id, link_name)
        if key.removeprefix(LINK_PREFIX) not in self._by_id:
            try:
                await self._kv_or_fail().get(key)
            except KeyNotFoundError:
                return False
        await self._kv_or_fail().purge(key)  # OTP purges; the control client deletes: both work
        return True

    async def put_claims(self, public_key: str, claims: dict[str, str]) -> None:
        value = {k: str(claims.get(k, "")) for k in CLAIMS_KEYS}
        value.update({k: str(v) for k, v in claims.items() if k not in value})
        await self._kv_or_fail().put(CLAIMS_PREFIX + public_key, json.dumps(value).encode())

    def links_for_provider(self, provider_id: str, link_name: str) -> list[LinkDefinition]:
        return [ln for ln in self.links
                if ln.provider_id == provider_id and ln.link_name == link_name]

    def _kv_or_fail(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("the lattice store is not open")
        return self._kv

    # ---- the watcher ----------------------------------------------------------------------------

    async def _watch(self) -> None:
        watcher = await self._kv_or_fail().watchall()
        async for entry in watcher:
            if entry is None:  # initial values delivered
                self._ready.set()
                continue
            try:
                await self._apply(entry.key, entry.value or b"",
                                  entry.operation in ("DEL", "PURGE"))
            except Exception:  # one bad entry must not stop the host from watching
                log.exception("could not apply a lattice store entry", extra={"key": entry.key})

    async def _apply(self, key: str, value: bytes, deleted: bool) -> None:
        if key.startswith(LINK_PREFIX):
            await self._apply_link(key.removeprefix(LINK_PREFIX), value, deleted)
        elif key.startswith(CLAIMS_PREFIX):
            pk = key.removeprefix(CLAIMS_PREFIX)
            if deleted:
                self.claims.pop(pk, None)
                claims = None
            else:
                claims = {str(k): "" if v is None else str(v)
                          for k, v in json.loads(value).items()}
                self.claims[pk] = claims
            if self._on_claims:
                await self._on_claims(pk, claims)

    async def _apply_link(self, stored_id: str, value: bytes, deleted: bool) -> None:
        if deleted:
            link = self._by_id.pop(stored_id, None)
            if link is None:
                return
            self.links.delete(link.actor_id, link.contract_id, link.link_name)
            if self._on_link_del:
                await self._on_link_del(link)
            return
        link = link_from_json(value)  # the id may be absent (wash writes it without): recompute
        try:
            check_link(link)
        except InvalidSubjectToken as exc:
            # Written straight into the bucket, or by an older host: delivering it would send
            # a subject nats-server refuses by closing our connection. Keep it out of the
            # table (so nothing routes to it or forwards it); `lattice link del` removes it.
            log.warning("ignoring a stored link that cannot be delivered", extra={
                "key": LINK_PREFIX + stored_id, "actor": link.actor_id[:80],
                "contract": link.contract_id[:80], "error": str(exc)})
            return
        old = self.links.get(link.actor_id, link.contract_id, link.link_name)
        self._by_id[link.id] = link
        self.links.put(link)
        if old == link:
            # The same link written again: nothing changed here, but deliver it again, so a
            # provider that lost it (a stray delete, a restart) gets it back; providers ignore
            # a put for an actor they have.
            if self._on_link_put:
                await self._on_link_put(link)
            return
        if old is not None and self._on_link_del:
            # Providers ignore a put for an actor they already have (wasmbus-rpc), so a changed
            # link is delivered as del + put; a new provider is told, the old one lets go.
            await self._on_link_del(old)
        if self._on_link_put:
            await self._on_link_put(link)

    def claims_list(self) -> list[dict[str, Any]]:
        return list(self.claims.values())
