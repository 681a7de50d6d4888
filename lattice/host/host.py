"""A lattice host: runs actors, supervises providers, serves the control interface.

Lifecycle: ``Host(config)`` → ``await start()`` → serve → ``request_stop()`` (SIGINT, SIGTERM or
the ctl stop command) → ``await run_until_stopped()`` returns after a graceful stop: no new work
is taken, in-flight calls finish (up to ``shutdown_grace``), actors stop, providers shut down,
``host_stopped`` is published.

Two NATS connections, as OTP does: control (JSON, events, lattice store) and RPC (msgpack).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import secrets
import signal
import threading
import time
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

from lattice import __version__
from lattice.connect import connect
from lattice.host.actors import ActorManager
from lattice.host.config import HostConfig
from lattice.host.control import ControlServer
from lattice.host.events import EventPublisher
from lattice.host.policy import PolicyManager, start_policy
from lattice.host.providers import LinkAnswer, ProviderStartError, ProviderSupervisor
from lattice.host.reconciler import Reconciler
from lattice.host.store import LatticeStore
from lattice.keys import KeyPair, KeyRole
from lattice.links import LinkDefinition
from lattice.paths import state_dir
from lattice.provider import Provider
from lattice.router import Router
from lattice.rpc import ChunkStore, Entity, RpcClient, RpcError, subjects
from lattice.runtime import Actor, HostCallError, Runtime

log = logging.getLogger("lattice.host")

_ADJECTIVES = ("amber", "bold", "calm", "deep", "eager", "fair", "gentle", "hidden", "icy",
               "jolly", "keen", "lively", "misty", "noble", "odd", "proud", "quiet", "rapid",
               "silent", "tidy", "vivid", "wild", "young", "zesty")
_NOUNS = ("brook", "cloud", "dune", "ember", "fjord", "grove", "harbor", "island", "lake",
          "meadow", "nebula", "orchid", "peak", "quartz", "reef", "summit", "tundra", "valley",
          "willow", "zephyr")


def builtin_labels() -> dict[str, str]:
    """``hostcore.*`` labels with Rust ``std::env::consts`` values, plus ``HOST_*`` env vars."""
    system = platform.system().lower()
    os_name = {"darwin": "macos"}.get(system, system)
    labels = {"hostcore.arch": platform.machine().lower().replace("amd64", "x86_64"),
              "hostcore.os": os_name,
              "hostcore.osfamily": "windows" if os_name == "windows" else "unix"}
    for var, value in os.environ.items():
        if var.startswith("HOST_") and len(var) > 5:
            labels[var[5:].lower()] = value
    return labels


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join([*parts, f"{secs}s"])


class Host:
    def __init__(self, config: HostConfig | None = None) -> None:
        self.config = config = config or HostConfig()
        self._link_tasks: set[asyncio.Task[None]] = set()  # waiting on providers' link answers
        self.lattice = subjects.check_lattice(config.lattice)
        self.host_key = (KeyPair.from_seed(config.host_seed, KeyRole.SERVER) if config.host_seed
                         else KeyPair.generate(KeyRole.SERVER))
        self.cluster_key = (KeyPair.from_seed(config.cluster_seed, KeyRole.CLUSTER)
                            if config.cluster_seed else KeyPair.generate(KeyRole.CLUSTER))
        self.host_id = self.host_key.public_key
        # Our own cluster key is always trusted (docs/wire.md §6.1).
        self.issuers = {self.cluster_key.public_key, *config.cluster_issuers}
        self.labels = {**builtin_labels(), **config.labels}
        self.friendly_name = (f"{secrets.choice(_ADJECTIVES)}-{secrets.choice(_NOUNS)}-"
                              f"{secrets.randbelow(9999) + 1}")
        self.runtime = Runtime(replace(config.runtime, allow_unsigned=config.allow_unsigned))
        self.router = Router(self.lattice, None, enforce_builtin_caps=config.enforce_builtin_caps,
                             providers=self._call_provider, remote_actors=self._call_actor)
        self.started_at = time.time()
        # Calls waiting for a provider's answer, by (provider key, link name): the task making
        # each, and why it was failed (None while it still waits). See _provider_exited.
        self._provider_calls: dict[tuple[str, str], dict[asyncio.Task[Any], str | None]] = {}
        self._stop_requested = asyncio.Event()
        self._stopped = asyncio.Event()
        self._heartbeat: asyncio.Task[None] | None = None
        self.reconciler: Reconciler | None = None
        self.policy: PolicyManager | None = None  # with a policy topic (lattice/host/policy.py)
        self._signals: list[int] = []
        self.running = False

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        short = self.host_id[:8]
        self.ctl_nc = await connect(cfg.nats, name=f"lattice-host-{short}-ctl")
        self.rpc_nc = await connect(cfg.nats, name=f"lattice-host-{short}-rpc")
        self.chunks = ChunkStore(self.rpc_nc, self.lattice, cfg.js_domain,
                                 replicas=cfg.js_replicas)
        self.rpc = RpcClient(self.rpc_nc, self.lattice, self.cluster_key, self.host_id,
                             timeout=cfg.rpc_timeout, chunks=self.chunks)
        self.events = EventPublisher(self.ctl_nc, self.lattice, self.host_id)
        self.store = LatticeStore(self.ctl_nc, self.lattice, js_domain=cfg.js_domain,
                                  replicas=cfg.js_replicas,
                                  on_link_put=self._link_put, on_link_del=self._link_del,
                                  on_claims=self._claims_changed)
        self.router.links = self.store.links
        self.providers = ProviderSupervisor(
            nc=self.rpc_nc, lattice=self.lattice, host_id=self.host_id,
            cluster_seed=self.cluster_key.seed, cluster_issuers=sorted(self.issuers),
            nats=cfg.nats, events=self.events, links_for=self.store.links_for_provider,
            rpc_timeout=cfg.rpc_timeout, js_domain=cfg.js_domain,
            state_dir=cfg.state_dir or state_dir(),
            health_interval=cfg.provider_health_interval,
            health_first=cfg.provider_health_first, local_actor=self.router.local_actor,
            on_exit=self._provider_exited)
        if cfg.policy_topic:
            self.policy = await start_policy(self)
        self.actors = ActorManager(self)
        self.control = ControlServer(self)
        await self.store.open()
        await self.control.start()
        self.reconciler = Reconciler(self) if cfg.reconciler else None
        if self.reconciler:
            await self.reconciler.start()
        self.started_at = time.time()
        self.running = True
        self._install_signal_handlers()
        await self.events.publish("host_started", {
            "labels": self.labels, "friendly_name": self.friendly_name, "uptime_seconds": 0,
            "version": __version__, "host_id": self.host_id})
        self._heartbeat = asyncio.create_task(self._heartbeat_loop(), name="lattice-heartbeat")
        log.info("host started", extra={"host_id": self.host_id, "lattice": self.lattice,
                                        "friendly_name": self.friendly_name,
                                        "nats": cfg.nats.url})

    def request_stop(self) -> None:
        self._stop_requested.set()

    async def run_until_stopped(self) -> None:
        await self._stop_requested.wait()
        await self.stop()

    async def stop(self) -> None:
        if not self.running:  # never started, or another stop() is already under way
            return
        self.running = False
        self._stop_requested.set()
        log.info("host stopping", extra={"host_id": self.host_id})
        if self.reconciler:
            await self.reconciler.stop()
        await self.control.stop()
        await self.actors.unsubscribe_all()          # no new invocations...
        await self.actors.drain(self.config.shutdown_grace)  # ...and let in-flight ones finish
        await self.actors.stop_all()
        for task in list(self._link_tasks):
            task.cancel()
        await self.providers.stop_all()
        if self._heartbeat:
            self._heartbeat.cancel()
        await self.events.publish("host_stopped", {"labels": self.labels,
                                                   "host_id": self.host_id})
        if self.policy is not None:
            await self.policy.stop()
        await self.store.close()
        for nc in (self.rpc_nc, self.ctl_nc):
            with contextlib.suppress(Exception):
                await nc.flush(timeout=2)
            with contextlib.suppress(Exception):
                await nc.close()
        await self.runtime.close()
        self._remove_signal_handlers()
        self._stopped.set()
        log.info("host stopped", extra={"host_id": self.host_id})

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.request_stop)
                self._signals.append(sig)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
        self._signals.clear()

    # ---- providers -------------------------------------------------------------------------------

    async def start_provider(self, ref: str, link_name: str = "default", *,
                             config_json: str = "", annotations: dict[str, str] | None = None,
                             embedded: bool = False, contract_id: str | None = None,
                             provider_cls: type[Provider] | None = None) -> None:
        """Start a provider (``provider_cls``: embed that class, named ``ref``)."""
        try:
            info = await self.providers.start(ref, link_name, config_json=config_json,
                                              annotations=annotations, embedded=embedded,
                                              contract_id=contract_id, provider_cls=provider_cls)
        except ProviderStartError:
            return  # the supervisor published provider_start_failed with the reason
        if info.claims:
            await self.store.put_claims(info.public_key, info.claims)

    def provider_runs(self, ref: str, link_name: str) -> bool:
        return any((p.public_key == ref or p.image_ref == ref) and p.link_name == link_name
                   for p in self.providers.list())

    # ---- routing transports (the Router's hooks) -------------------------------------------------

    async def _call_provider(self, actor: Actor, link: LinkDefinition, operation: str,
                             payload: bytes) -> bytes:
        bridge = self.providers.embedded(link.provider_id, link.link_name)
        if bridge is not None:  # same process: no NATS hop
            try:
                # pass the link: it may be newer than the provider's own copy (NATS is async)
                return await bridge.dispatch(actor.key, operation, payload, link=link)
            except Exception as exc:
                raise HostCallError(str(exc)) from None
        timeout = None
        if "rpc_timeout_ms" in link.values:
            with contextlib.suppress(ValueError):
                timeout = float(link.values["rpc_timeout_ms"]) / 1000
        label = self.store.claims.get(link.provider_id, {}).get("name") or None
        target = Entity.provider(link.provider_id, link.contract_id, link.link_name)
        # Links reach remote providers asynchronously (often via another host), so right after a
        # link is made a provider may still answer "unlinked actor". It refused before doing
        # anything, so a short retry is safe and makes relinking seamless.
        budget = time.monotonic() + (timeout or self.config.rpc_timeout)
        delay = 0.02
        while True:
            try:
                return await self._awaiting_provider(
                    (link.provider_id, link.link_name),
                    self.rpc.invoke(Entity.actor(actor.key), target, operation, payload,
                                    timeout=timeout, label=label))
            except RpcError as exc:
                lagging = exc.kind == "remote" and str(exc).startswith("unlinked actor")
                if not lagging or time.monotonic() + delay > budget:
                    raise HostCallError(str(exc)) from None
            # A link put over this one while the call was on its way: the old provider let go
            # of the actor and never takes it back, so follow the link as it is now.
            current = self.store.links.get(actor.key, link.contract_id, link.link_name)
            if current is not None and current.provider_id != link.provider_id:
                return await self._call_provider(actor, current, operation, payload)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.25)

    async def _awaiting_provider(self, key: tuple[str, str], call: Awaitable[bytes]) -> bytes:
        """Await a provider call, failed at once if the provider's process exits meanwhile."""
        task = asyncio.current_task()
        assert task is not None
        calls = self._provider_calls.setdefault(key, {})
        calls[task] = None
        try:
            return await call
        except asyncio.CancelledError:
            why = calls.get(task)
            # Only our own cancellation becomes this error; any other (the host stopping, the
            # guest's deadline) still cancels the task.
            if why is None or task.uncancel() > 0:
                raise
            raise HostCallError(why) from None
        finally:
            calls.pop(task, None)
            if not calls and self._provider_calls.get(key) is calls:
                del self._provider_calls[key]

    def _provider_exited(self, provider_key: str, link_name: str, why: str) -> None:
        """The supervisor saw a provider process exit: the calls this host still waits for it
        to answer never will be (it may have done the work or not), so fail them now with
        ``why`` rather than at their RPC timeout. New calls meet no responders until it is back.
        """
        calls = self._provider_calls.get((provider_key, link_name), {})
        for task, already in list(calls.items()):
            if already is None and not task.done():
                calls[task] = why
                task.cancel(why)
        if calls:
            log.warning("failed the calls in flight to an exited provider", extra={
                "provider_key": provider_key, "link_name": link_name, "calls": len(calls),
                "reason": why})

    async def _call_actor(self, origin: Actor, target: str, operation: str,
                          payload: bytes) -> bytes:
        label = self.store.claims.get(target, {}).get("name") or None
        try:
            return await self.rpc.invoke(Entity.actor(origin.key), Entity.actor(target),
                                         operation, payload, label=label)
        except RpcError as exc:
            raise HostCallError(str(exc)) from None

    # ---- lattice store hooks ---------------------------------------------------------------------

    async def _link_put(self, link: LinkDefinition) -> None:
        answer = await self.providers.link_put(link)
        if answer is None:  # not a provider this host runs: its own host reports the outcome
            await self.events.publish("linkdef_set", link.to_wire())
            return
        # Wait for the provider's verdict off the store watcher's path (a provider may connect
        # to its backend first), so that a refusal reaches `lattice link put` as an event.
        task = asyncio.create_task(self._link_outcome(link, answer))
        self._link_tasks.add(task)
        task.add_done_callback(self._link_tasks.discard)

    async def _link_outcome(self, link: LinkDefinition, answer: LinkAnswer) -> None:
        verdict = await answer.wait()
        if verdict is None or verdict[0]:
            # provider_answered: a Lattice extra telling waiters this is the provider's word
            await self.events.publish("linkdef_set", {**link.to_wire(),
                                                      "provider_answered": verdict is not None})
            return
        log.warning("a provider refused a link", extra={
            "provider": link.provider_id, "actor": link.actor_id, "error": verdict[1]})
        await self.events.publish("linkdef_set_failed", {**link.to_wire(), "error": verdict[1]})

    async def _link_del(self, link: LinkDefinition) -> None:
        await self.events.publish("linkdef_deleted", link.to_wire())
        await self.providers.link_del(link)

    async def _claims_changed(self, public_key: str, claims: dict[str, str] | None) -> None:
        if claims is None:
            self.router.forget_alias_of(public_key)
        elif claims.get("call_alias"):
            self.router.note_alias(claims["call_alias"], public_key)

    # ---- views -----------------------------------------------------------------------------------

    def ping_reply(self) -> dict[str, Any]:
        uptime = time.time() - self.started_at
        url = self.config.nats.servers[0]
        return {"id": self.host_id, "issuer": self.cluster_key.public_key, "labels": self.labels,
                "friendly_name": self.friendly_name, "uptime_seconds": int(uptime),
                "uptime_human": human_duration(uptime), "version": __version__,
                "cluster_issuers": ",".join(sorted(self.issuers)),
                "js_domain": self.config.js_domain, "ctl_host": url, "prov_rpc_host": url,
                "rpc_host": url, "lattice_prefix": self.lattice}

    def inventory(self) -> dict[str, Any]:
        providers = [{"id": p.public_key, "image_ref": p.image_ref, "contract_id": p.contract_id,
                      "link_name": p.link_name, "name": p.name, "instance_id": p.instance_id,
                      "annotations": p.annotations, "revision": p.revision,
                      "embedded": p.embedded, "state": p.state}
                     for p in self.providers.list()]
        return {"host_id": self.host_id, "issuer": self.cluster_key.public_key,
                "friendly_name": self.friendly_name, "labels": self.labels,
                "actors": self.actors.inventory(), "providers": providers}

    async def _heartbeat_loop(self) -> None:
        while True:
            uptime = time.time() - self.started_at
            await self.events.publish("host_heartbeat", {
                "actors": self.actors.counts(),
                "providers": [{"public_key": p.public_key, "link_name": p.link_name,
                               "contract_id": p.contract_id} for p in self.providers.list()],
                "labels": self.labels, "friendly_name": self.friendly_name,
                "version": __version__, "uptime_seconds": int(uptime),
                "uptime_human": human_duration(uptime), "issuer": self.cluster_key.public_key,
                "host_id": self.host_id})
            await asyncio.sleep(self.config.heartbeat_interval)
