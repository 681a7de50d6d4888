"""Actors running on this host: lifecycle (docs/wire.md §6.2) and serving their RPC subject (§3.2).

One RunningActor per actor key. Its *instances* are inventory records (id, annotations,
revision); their number is the actor's pool size, i.e. how many calls it serves at once. Each
actor queue-subscribes ``wasmbus.rpc.{lattice}.{key}`` (queue group = the subject), so any host
running it may answer, and each message is served in its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from lattice import claims as claims_mod
from lattice.artifacts import ArtifactError, fetch, is_remote_ref
from lattice.connect import settle
from lattice.local import read_module
from lattice.rpc import Rejected, accept, reply, subjects
from lattice.runtime import Actor, ActorLoadError, GuestCallError

if TYPE_CHECKING:
    from lattice.host.host import Host

log = logging.getLogger("lattice.host.actors")


class ActorCommandError(Exception):
    """A start/stop/scale/update request that cannot be carried out; the text says why."""


@dataclass
class InstanceRecord:
    instance_id: str
    annotations: dict[str, str]
    revision: int


@dataclass
class RunningActor:
    actor: Actor
    image_ref: str
    instances: list[InstanceRecord] = field(default_factory=list)
    subscription: Subscription | None = None
    started_at: float = field(default_factory=time.time)
    memory_limit_mib: int | None = None  # this actor's own cap (None: the host's); kept by updates

    @property
    def key(self) -> str:
        return self.actor.key

    @property
    def revision(self) -> int:
        claims = self.actor.claims
        return claims.revision if claims else 0


def resolve_file_ref(ref: str, allow_file_load: bool) -> Path:
    """A local path for ``ref`` (a path or file:// URL); other schemes are not fetched here."""
    if ref.startswith("file://"):
        path = Path(unquote(urlparse(ref).path))
    elif "://" in ref:
        raise ActorCommandError(f"cannot fetch {ref}: this host loads actors from lattice://, "
                                "oci:// (or host/repo:tag), file:// and plain paths")
    else:
        path = Path(ref)
    if not allow_file_load:
        raise ActorCommandError(f"this host does not load from files ({ref}); start it with "
                                "file loading allowed")
    try:
        is_file = path.is_file()
    except OSError as exc:  # e.g. a file name too long
        raise ActorCommandError(f"cannot read {ref[:200]}: {exc.strerror}") from None
    if not is_file:
        raise ActorCommandError(f"{path} does not exist on host (or is not a file)")
    return path


async def resolve_ref(host: Host, ref: str) -> Path:
    """A local path for ``ref``: fetched and verified (``lattice://``, OCI), or a file."""
    if not is_remote_ref(ref):
        return resolve_file_ref(ref, host.config.allow_file_load)
    try:
        return await fetch(ref, nc=host.ctl_nc, lattice=host.lattice,
                           js_domain=host.config.js_domain)
    except ArtifactError as exc:
        raise ActorCommandError(str(exc)) from None


def claims_record(actor: Actor) -> dict[str, str]:
    """The CLAIMS_{key} value: every field a string (docs/wire.md §3.6)."""
    c = actor.claims
    if c is None:
        return {"call_alias": "", "caps": "", "contract_id": "", "iss": "", "name": actor.name,
                "rev": "0", "sub": actor.key, "tags": "", "version": ""}
    return {"call_alias": c.call_alias or "", "caps": ",".join(c.caps), "contract_id": "",
            "iss": c.issuer, "name": c.name or "", "rev": str(c.revision), "sub": c.subject,
            "tags": ",".join(c.tags), "version": c.ver or ""}


def event_claims(actor: Actor) -> dict[str, Any]:
    c = actor.claims
    if c is None:
        return {"call_alias": "", "caps": [], "issuer": "", "tags": [], "name": actor.name,
                "version": "", "revision": 0, "not_before_human": "", "expires_human": ""}
    return {"call_alias": c.call_alias or "", "caps": list(c.caps), "issuer": c.issuer,
            "tags": list(c.tags), "name": c.name or "", "version": c.ver or "",
            "revision": c.revision,
            "not_before_human": claims_mod.format_time(c.not_before) if c.not_before else "",
            "expires_human": claims_mod.format_time(c.expires) if c.expires else ""}


class ActorManager:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.actors: dict[str, RunningActor] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # lifecycle changes one at a time; serving is not locked

    # ---- lifecycle -----------------------------------------------------------------------------

    def total_instances(self) -> int:
        return sum(len(r.instances) for r in self.actors.values())

    def check_capacity(self, key: str | None, count: int, *, replace: bool = False) -> None:
        """Refuse ``count`` more instances of actor ``key`` (with ``replace``: ``count`` in all
        for that actor) when the host's total would pass ``HostConfig.max_instances``."""
        limit = self.host.config.max_instances
        running = self.actors.get(key) if key else None
        current = self.total_instances()
        after = current - (len(running.instances) if running and replace else 0) + count
        if after > limit:
            raise ActorCommandError(
                f"this would make {after:,} actor instances on host {self.host.host_id}, over "
                f"its limit of {limit:,} (it runs {current:,}): scale across more hosts, or "
                "raise the limit with `lattice host --max-instances N`")

    async def start(self, ref: str, count: int = 1,
                    annotations: dict[str, str] | None = None, *,
                    memory_limit_mib: int | None = None) -> RunningActor:
        """Start ``count`` instances; ``memory_limit_mib`` caps each instance's memory when the
        actor is not running here yet (instances added later share the running actor's)."""
        if count < 1:
            raise ActorCommandError("count must be at least 1")
        self.check_capacity(None, count)
        annotations = dict(annotations or {})
        path = await resolve_ref(self.host, ref)
        try:
            wasm = read_module(path)
        except ActorLoadError as exc:
            raise ActorCommandError(str(exc)) from None
        async with self._lock:
            peek = _peek_subject(wasm)
            running = self.actors.get(peek) if peek else None
            if running is not None:
                if running.image_ref != ref:
                    raise ActorCommandError(
                        f"actor {peek} already runs on this host from {running.image_ref}; to "
                        f"change its module use `lattice update actor {peek} {ref}`")
                await self._check_policy(running.actor)
                self._add_instances(running, count, annotations)
                await self._started_events(running, running.instances[-count:], annotations)
                return running
            try:
                actor = await self.host.runtime.load(
                    wasm, self.host.router, max_instances=count, name=path.stem,
                    allow_unsigned=self.host.config.allow_unsigned,
                    memory_limit=memory_limit_mib << 20 if memory_limit_mib else None)
            except ActorLoadError as exc:
                raise ActorCommandError(str(exc)) from None
            if actor.key in self.actors:  # unsigned modules only get their key at load
                await self.host.runtime.unload(actor)
                raise ActorCommandError(f"actor {actor.key} already runs on this host")
            try:
                await self._check_policy(actor)
            except ActorCommandError:
                await self.host.runtime.unload(actor)
                raise
            running = RunningActor(actor, ref, memory_limit_mib=memory_limit_mib)
            self._add_instances(running, count, annotations, resize=False)
            subject = subjects.actor(self.host.lattice, actor.key)
            running.subscription = await self.host.rpc_nc.subscribe(
                subject, queue=subject, cb=self._dispatcher(),
                pending_msgs_limit=65536, pending_bytes_limit=256 * 1024 * 1024)
            # SUB is asynchronous: flush so the server routes to us before we announce the
            # actor, or a caller who saw actor_started could still get "no responders".
            await settle(self.host.rpc_nc)
            self.actors[actor.key] = running
            self.host.router.add_actor(actor)
        await self.host.store.put_claims(actor.key, claims_record(actor))
        await self._started_events(running, running.instances, annotations)
        log.info("actor started", extra={"actor": actor.key, "actor_name": actor.name,
                                         "count": count, "ref": ref})
        return running

    async def _check_policy(self, actor: Actor) -> None:
        """Ask the policy service (when the host has one) whether ``actor`` may start here."""
        if self.host.policy is None:
            return
        from lattice.host.policy import PolicyDenied

        try:
            await self.host.policy.check_start_actor(actor)
        except PolicyDenied as exc:
            raise ActorCommandError(str(exc)) from None

    def _add_instances(self, running: RunningActor, count: int, annotations: dict[str, str],
                       resize: bool = True) -> None:
        for _ in range(count):
            running.instances.append(InstanceRecord(str(uuid.uuid4()), dict(annotations),
                                                    running.revision))
        if resize:
            running.actor.pool.resize(len(running.instances))

    async def _started_events(self, running: RunningActor, new: list[InstanceRecord],
                              annotations: dict[str, str]) -> None:
        ev = self.host.events
        claims = event_claims(running.actor)
        for inst in new:
            await ev.publish("actor_started", {
                "public_key": running.key, "image_ref": running.image_ref, "api_version": "n/a",
                "instance_id": inst.instance_id, "annotations": inst.annotations,
                "claims": claims, "host_id": self.host.host_id})
        await ev.publish("actors_started", {
            "public_key": running.key, "image_ref": running.image_ref,
            "annotations": annotations, "host_id": self.host.host_id, "claims": claims,
            "count": len(new)})

    async def stop(self, key: str, count: int = 0,
                   annotations: dict[str, str] | None = None) -> int:
        """Stop up to ``count`` instances (0: all) whose annotations contain ``annotations``."""
        async with self._lock:
            running = self.actors.get(key)
            if running is None:
                raise ActorCommandError(f"actor {key} is not running on this host")
            wanted = annotations or {}
            matching = [i for i in running.instances
                        if all(i.annotations.get(k) == v for k, v in wanted.items())]
            victims = matching if count <= 0 else matching[-count:]
            # One pass, not list.remove per victim: that was kept x removed (20k -> 10k froze
            # the host for 15 s).
            gone = {id(inst) for inst in victims}
            running.instances = [i for i in running.instances if id(i) not in gone]
            remaining = len(running.instances)
            if remaining:
                running.actor.pool.resize(remaining)
            else:
                await self._remove(running)
        for n, inst in enumerate(victims, 1):
            await self.host.events.publish("actor_stopped", {
                "public_key": key, "instance_id": inst.instance_id,
                "annotations": inst.annotations, "host_id": self.host.host_id})
            if n % 256 == 0:
                await asyncio.sleep(0)  # thousands of events: let calls and heartbeats through
        await self.host.events.publish("actors_stopped", {
            "host_id": self.host.host_id, "public_key": key, "count": len(victims),
            "remaining": remaining, "annotations": wanted})
        return len(victims)

    async def scale(self, key: str, ref: str | None, count: int,
                    annotations: dict[str, str] | None = None) -> None:
        running = self.actors.get(key)
        if running is None:
            if count <= 0:
                return
            if not ref:
                raise ActorCommandError(f"actor {key} is not running here and no actor_ref was "
                                        "given to start it from")
            await self.start(ref, count, annotations)
            return
        if count <= 0:
            await self.stop(key, 0)
            return
        self.check_capacity(key, count, replace=True)
        diff = count - len(running.instances)
        if diff > 0:
            await self._check_policy(running.actor)
            async with self._lock:
                self._add_instances(running, diff, dict(annotations or {}))
            await self._started_events(running, running.instances[-diff:], annotations or {})
        elif diff < 0:
            await self.stop(key, -diff)

    async def update(self, key: str, new_ref: str) -> RunningActor:
        """Live update: same subject, strictly higher revision; in-flight calls finish on the
        old module while new calls already reach the new one."""
        running = self.actors.get(key)
        if running is None:
            raise ActorCommandError(f"actor {key} is not running on this host")
        path = await resolve_ref(self.host, new_ref)
        try:
            wasm = read_module(path)
        except ActorLoadError as exc:
            raise ActorCommandError(str(exc)) from None
        new_subject = _peek_subject(wasm)
        if new_subject != key:
            raise ActorCommandError(f"the new module's subject is {new_subject or 'missing'}, "
                                    f"not {key}: a live update must keep the actor's identity")
        if _same_module(wasm, running.actor.identity.module_hash, running.revision):
            # The same module and revision under another reference (a path that became
            # lattice://sha256:…, a tag): nothing to reload, only the reported reference changes.
            async with self._lock:
                running.image_ref = new_ref
            return running
        try:
            actor = await self.host.runtime.load(
                wasm, self.host.router, max_instances=len(running.instances), name=path.stem,
                allow_unsigned=self.host.config.allow_unsigned,
                memory_limit=(running.memory_limit_mib << 20
                              if running.memory_limit_mib else None))
        except ActorLoadError as exc:
            raise ActorCommandError(str(exc)) from None
        old_rev, new_rev = running.revision, (actor.claims.revision if actor.claims else 0)
        if new_rev <= old_rev:
            await self.host.runtime.unload(actor)
            raise ActorCommandError(f"the new module has revision {new_rev}, which is not higher "
                                    f"than the running revision {old_rev}: re-sign it with a "
                                    "higher --rev")
        async with self._lock:
            old = running.actor
            running.actor, running.image_ref = actor, new_ref
            for inst in running.instances:
                inst.revision = new_rev
            self.host.router.add_actor(actor)
        self._spawn(self._retire(old))
        await self.host.store.put_claims(key, claims_record(actor))
        for inst in running.instances:
            await self.host.events.publish("actor_updated", {
                "public_key": key, "revision": new_rev, "instance_id": inst.instance_id,
                "host_id": self.host.host_id})
        return running

    async def _retire(self, actor: Actor) -> None:
        """Unload an updated-away module once its in-flight calls have finished."""
        deadline = time.monotonic() + actor.call_timeout + 1
        while actor.pool.in_use and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await self.host.runtime.unload(actor)

    async def _remove(self, running: RunningActor) -> None:
        self.actors.pop(running.key, None)
        if running.subscription is not None:
            with contextlib.suppress(Exception):
                await running.subscription.unsubscribe()
        self.host.router.remove_actor(running.actor)
        self._spawn(self._retire(running.actor))

    async def stop_all(self) -> None:
        for key in list(self.actors):
            with contextlib.suppress(ActorCommandError):
                await self.stop(key, 0)

    async def unsubscribe_all(self) -> None:
        """Stop taking new invocations (first step of a graceful shutdown)."""
        for running in self.actors.values():
            if running.subscription is not None:
                with contextlib.suppress(Exception):
                    await running.subscription.unsubscribe()
                running.subscription = None

    async def drain(self, timeout: float) -> None:
        """Wait for in-flight invocations to finish, up to ``timeout`` seconds."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    # ---- serving invocations --------------------------------------------------------------------

    def _dispatcher(self):
        async def on_message(msg: Msg) -> None:
            # Serve each invocation in its own task: nats-py runs a subscription's callbacks
            # one after another, and an actor pool serves calls concurrently.
            self._spawn(self._serve(msg))
        return on_message

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, msg: Msg) -> None:
        host = self.host
        inv_id, error, result = "", None, b""
        inv = None
        try:
            inv = await accept(msg.data, issuers=host.issuers, chunks=host.chunks)
            inv_id = inv.id
            running = self.actors.get(inv.target.public_key)
            if running is None:
                raise Rejected(f"Invocation received for actor {inv.target.public_key} that is "
                               "not running")
            origin_contract = inv.origin.contract_id
            if origin_contract and not running.actor.has_capability(origin_contract):
                raise Rejected(f"Invocation source does not have the required capability claim "
                               f"{origin_contract}")
            if host.policy is not None:  # raises a Rejected with the service's message
                await host.policy.check_inbound(inv.origin, running.actor)
            result = await running.actor.call(inv.operation, inv.msg)
        except Rejected as exc:
            error = str(exc)
        except GuestCallError as exc:
            error = str(exc)
        except Exception as exc:  # never leave a caller waiting for a timeout on our bug
            log.exception("failed to serve an invocation")
            error = f"host error: {exc}"
        try:
            data = await reply(inv_id, result=result, error=error, chunks=host.chunks)
            if msg.reply:
                await msg.respond(data)
        except Exception as exc:
            log.warning("could not answer an invocation", extra={"error": str(exc)})
        if inv is not None and host.config.rpc_events:
            await host.events.rpc_event(error is None, inv.origin.to_wire(), inv.target.to_wire(),
                                        inv.operation, len(inv.msg))

    # ---- views ----------------------------------------------------------------------------------

    def inventory(self) -> list[dict[str, Any]]:
        return [{"id": r.key, "image_ref": r.image_ref, "name": r.actor.name,
                 "instances": [{"annotations": i.annotations, "instance_id": i.instance_id,
                                "revision": i.revision, "image_ref": r.image_ref,
                                "max_concurrent": 1} for i in r.instances]}
                for r in self.actors.values()]

    def counts(self) -> dict[str, int]:
        return {r.key: len(r.instances) for r in self.actors.values()}


def _peek_subject(wasm: bytes) -> str | None:
    try:
        found = claims_mod.extract_claims(wasm)
    except claims_mod.ClaimsError:
        return None
    return found.subject if found else None


def _same_module(wasm: bytes, module_hash: str, revision: int) -> bool:
    """Same code (the module hash leaves the claims out) *and* same revision: re-signing with a
    higher revision is a real update, with new claims."""
    try:
        claims = claims_mod.extract_claims(wasm)
        return (claims_mod.module_hash(wasm) == module_hash
                and (claims.revision if claims else 0) == revision)
    except Exception:  # not parseable here: let the load report it
        return False
