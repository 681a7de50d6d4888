"""The app reconciler, inside every host; one of them (the lease holder) acts at a time.

Loop: renew or take the lease (lattice/app/lease.py); as leader, on a trigger (lattice events,
an app changed in the bucket) or every ``reconcile_interval`` seconds, take a snapshot of the
lattice — the inventories of live hosts plus the links — run the pure scalers
(lattice/app/scalers.py) for every app, send their commands over the control interface, and
write each app's status. Status is derived from the snapshot only, so it never reports what was
merely requested.

Host liveness: a host is live while its heartbeats (or any event it publishes) keep coming; it
is gone when it has been silent for ``host_expiry`` seconds, when it says ``host_stopped``, or
at once when its control subject has no subscriber (its NATS connection is gone — a killed
process). Its work is then placed on the remaining matching hosts by the next reconcile.

Leader loss: followers do not wait for the lease to expire. Every ``leader_probe_interval``
seconds they ask the holder's reconciler subject (``{ctl prefix}.{lattice}.reconciler.{host}``)
whether it is there; "no responders" (its connection is closed: killed, crashed) or its
``host_stopped`` event lets one of them take the lease over at the revision the dead holder
left (lattice/app/lease.py), and it reconciles at once. The lease TTL remains the bound for a
leader that hangs with its connection open.

Failing commands are retried with exponential backoff per command (host, image, link name):
``retry_backoff`` seconds after the first failure, doubling up to ``retry_backoff_max``, reset
by a success (lattice/app/backoff.py). Held commands and their errors are part of the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from nats.errors import NoRespondersError

from lattice.app.backoff import DEFAULT_BASE, DEFAULT_CAP, Backoff
from lattice.app.lease import Lease
from lattice.app.manifest import Manifest
from lattice.app.scalers import (
    DeleteLink,
    Plan,
    PutLink,
    Snapshot,
    StartActor,
    StartProvider,
    StopActor,
    StopProvider,
    UpdateActor,
    event_retry_key,
    hosts_running,
    reconcile,
    retry_key,
    undeploy_commands,
)
from lattice.app.store import AppState, AppStore
from lattice.connect import jetstream
from lattice.ctl import CtlClient, CtlError, CtlTimeout, HostInventory
from lattice.links import LinkDefinition
from lattice.rpc import subjects

if TYPE_CHECKING:
    from lattice.host.host import Host

log = logging.getLogger("lattice.reconciler")

# Events that change what a snapshot would show.
_TRIGGERS = {"host_started", "host_stopped", "actors_started", "actors_stopped",
             "actor_started", "actor_stopped", "provider_started", "provider_stopped",
             "actors_start_failed", "actor_start_failed", "provider_start_failed",
             "linkdef_set", "linkdef_deleted"}
_FAILURES = {"actors_start_failed", "actor_start_failed", "provider_start_failed"}
_STARTED = {"actors_started", "provider_started"}
PENDING_FOR = 30.0  # seconds before an unanswered start/stop command may be sent again
PROBE_INTERVAL = 0.5  # seconds between a follower's checks that the leader is still there


class Reconciler:
    def __init__(self, host: Host, *, backoff: float | None = None,
                 backoff_max: float | None = None, probe_interval: float | None = None) -> None:
        self.host = host
        cfg = host.config
        self.interval = cfg.reconcile_interval
        self.expiry = cfg.host_expiry
        self.lease_ttl = cfg.lease_ttl
        base = backoff if backoff is not None else getattr(cfg, "retry_backoff", DEFAULT_BASE)
        cap = backoff_max if backoff_max is not None else getattr(cfg, "retry_backoff_max",
                                                                  DEFAULT_CAP)
        self.backoff = Backoff(base, max(base, cap))
        self.probe_interval = (probe_interval if probe_interval is not None else
                               getattr(cfg, "leader_probe_interval", PROBE_INTERVAL))
        self._seen: dict[str, float] = {}          # host id -> monotonic time of last sign
        self._gone: set[str] = set()               # said host_stopped / no responders
        self._inventories: dict[str, HostInventory] = {}
        self._failures: dict[str, dict[str, str]] = {}  # app -> component -> last start error
        self._manifests: dict[str, Manifest] = {}       # deployed apps, as of the last pass
        self._pending: dict[tuple, float] = {}     # command key -> monotonic deadline
        self._trigger = asyncio.Event()
        self._wake = asyncio.Event()               # a follower: the holder may be gone
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._probe_sub: Any = None
        self._watch: Any = None
        self._started_at = time.monotonic()
        self.leader = False
        self._stopping = False
        self.reconciles = 0  # observable for tests
        self.took_over = 0   # leases taken from a holder seen gone (observable for tests)

    async def start(self) -> None:
        nc, cfg = self.host.ctl_nc, self.host.config
        js = jetstream(nc, cfg.js_domain)
        self.store = await AppStore(js, self.host.lattice, replicas=cfg.js_replicas).open()
        self.lease = await Lease(js, self.host.lattice, self.host.host_id, self.lease_ttl,
                                 replicas=cfg.js_replicas).open()
        self.ctl = CtlClient(nc, self.host.lattice, prefix=self.host.config.ctl_prefix,
                             timeout=2.0)
        self._sub = await nc.subscribe(subjects.events(self.host.lattice), cb=self._on_event)
        # Followers ask here whether the leader is still there: "no responders" means it is not.
        self._probe_sub = await nc.subscribe(self._probe_subject(self.host.host_id),
                                             cb=self._on_probe)
        self._watch = await self.store.kv.watchall(include_history=False)
        self._task = asyncio.create_task(self._run(), name="lattice-reconciler")
        self._watch_task = asyncio.create_task(self._watch_apps(), name="lattice-app-watch")

    async def stop(self) -> None:
        # A flag as well as cancel(): a NATS request cancelled mid-flight may swallow the
        # CancelledError, and the loop must still end.
        self._stopping = True
        self._trigger.set()
        for task in (self._task, getattr(self, "_watch_task", None)):
            if task:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(task, 5)
        for closer in (getattr(self._sub, "unsubscribe", None),
                       getattr(self._probe_sub, "unsubscribe", None),
                       getattr(self._watch, "stop", None)):
            if closer:
                with contextlib.suppress(Exception):
                    await closer()
        with contextlib.suppress(Exception):
            await self.lease.release()

    # ---- inputs -----------------------------------------------------------------------------

    def _probe_subject(self, host_id: str) -> str:
        return subjects.ctl(self.host.lattice, "reconciler", host_id,
                            prefix=self.host.config.ctl_prefix)

    async def _on_probe(self, msg: Any) -> None:
        with contextlib.suppress(Exception):
            await msg.respond(json.dumps({"host_id": self.host.host_id,
                                          "leader": self.leader}).encode())

    async def _on_event(self, msg: Any) -> None:
        try:
            doc = json.loads(msg.data)
        except (ValueError, RecursionError):
            return
        if not isinstance(doc, dict):
            return  # not a CloudEvent
        name = str(doc.get("type", "")).rsplit(".", 1)[-1]
        data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
        source = str(doc.get("source") or data.get("host_id") or "")
        if source:
            if name == "host_stopped":
                self._gone.add(source)
                self._seen.pop(source, None)
                self._wake.set()  # a follower: if that was the leader, take over now
            else:
                self._seen[source] = time.monotonic()
                self._gone.discard(source)
        if name in _FAILURES:
            error = str(data.get("error") or "start failed")
            self._note_outcome(data, error)
            key = event_retry_key(name, data, source)
            if key is not None:
                hold = self.backoff.failed(key, error, time.monotonic())
                if hold is not None:
                    log.info("start failed; retrying with backoff", extra={
                        "key": list(key), "attempts": hold.attempts, "retry_in": hold.delay,
                        "error": error})
        elif name in _STARTED:
            self._note_outcome(data, None)
            key = event_retry_key(name, data, source)
            if key is not None:
                self.backoff.succeeded(key)
        if name in _TRIGGERS and source:  # that host answered: its commands are no longer pending
            self._pending = {k: t for k, t in self._pending.items() if k[1] != source}
        if name in _TRIGGERS:
            self._trigger.set()

    def _note_outcome(self, data: dict, error: str | None) -> None:
        """Remember a component's last start error; a later successful start clears it, so
        an old failure never colours a later, unrelated reason."""
        ref = str(data.get("image_ref") or data.get("actor_ref") or data.get("provider_ref")
                  or "")
        for app, manifest in self._manifests.items():
            for comp in manifest.components:
                if comp.image != ref:
                    continue
                if error is None:
                    self._failures.get(app, {}).pop(comp.name, None)
                else:
                    self._failures.setdefault(app, {})[comp.name] = error

    async def _watch_apps(self) -> None:
        async for _entry in self._watch:
            if self._stopping:
                return
            self._trigger.set()

    # ---- the loop ---------------------------------------------------------------------------

    async def _run(self) -> None:
        renew = self.lease_ttl / 3
        next_pass = 0.0
        checked = time.monotonic()  # held commands that became due since then get a pass
        while not self._stopping:
            was = self.leader
            try:
                self.leader = await (self.lease.refresh() if was else self._try_lead())
            except Exception:  # NATS trouble: not leading is the safe side
                log.exception("reconciler lease check failed")
                self.leader = False
            if self.leader and not was:
                await self._became_leader()
                self._trigger.clear()
                next_pass = 0.0
            if self._stopping:
                break
            if not self.leader:
                # A follower: events are for the leader; check on it every probe interval,
                # at once when a host says it stops (it may be the leader).
                self._trigger.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(min(renew, self.probe_interval)):
                        await self._wake.wait()
                self._wake.clear()
                continue
            now = time.monotonic()
            if self.backoff.became_due(checked, now):
                self._trigger.set()  # a held command may be sent again
            checked = now
            if self._trigger.is_set() or now >= next_pass:
                if self._trigger.is_set():
                    self._trigger.clear()
                    await asyncio.sleep(0.2)  # debounce a burst of events into one pass
                    self._trigger.clear()
                try:
                    await self.reconcile_once()
                except Exception:
                    log.exception("reconcile pass failed")
                next_pass = time.monotonic() + self.interval
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that lands
            # as the trigger fires, and the loop would outlive stop().
            now = time.monotonic()
            wait = min(renew, next_pass - now)
            due = self.backoff.next_due(now)
            if due is not None:
                wait = min(wait, due - now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.05, wait)):
                    await self._trigger.wait()

    async def _try_lead(self) -> bool:
        """A follower's turn: take the lease if nobody holds it, or take it over from a
        holder that is gone (said host_stopped, or nobody answers on its probe subject)."""
        current = await self.lease.current()
        if current is None:
            return await self.lease.refresh()
        holder, revision = current
        if holder == self.host.host_id:  # ours from before (e.g. a lost renewal): reclaim it
            return await self.lease.take_over(revision)
        if holder not in self._gone and not await self._holder_gone(holder):
            return False
        if await self.lease.take_over(revision):
            log.info("took over the reconciler lease from a gone leader",
                     extra={"host_id": self.host.host_id, "previous": holder})
            self._gone.add(holder)
            self._inventories.pop(holder, None)
            self.took_over += 1
            return True
        return False

    async def _holder_gone(self, holder: str) -> bool:
        """Nobody answers for the holder: neither its reconciler nor (a host of a version
        without the probe subject) its control interface. Slow answers are not proof."""
        wait = max(0.5, self.probe_interval)
        inventory = subjects.ctl(self.host.lattice, "get", holder, "inv",
                                 prefix=self.host.config.ctl_prefix)
        for subject in (self._probe_subject(holder), inventory):
            try:
                await self.host.ctl_nc.request(subject, b"", timeout=wait)
            except NoRespondersError:
                continue
            except Exception:  # slow, or NATS trouble
                return False
            return False
        return True

    async def _became_leader(self) -> None:
        log.info("reconciler is leader", extra={"host_id": self.host.host_id})
        # Every reconciler follows the events, so one that has listened for a heartbeat
        # interval already knows the live hosts; a fresh one asks them.
        if time.monotonic() - self._started_at < self.host.config.heartbeat_interval + 1:
            now = time.monotonic()
            with contextlib.suppress(CtlError):
                for info in await self.ctl.ping_hosts(wait=0.5):
                    self._seen[info.id] = now

    def live_hosts(self) -> list[str]:
        now = time.monotonic()
        self._seen[self.host.host_id] = now  # we are alive: we are running this
        return sorted(h for h, t in self._seen.items()
                      if h not in self._gone and now - t < self.expiry)

    async def snapshot(self) -> Snapshot:
        inventories = []
        for host_id in self.live_hosts():
            try:
                inv = await self.ctl.inventory(host_id)
                self._inventories[host_id] = inv
            except CtlTimeout:
                inv = self._inventories.get(host_id)  # busy, not gone: keep what it had
            except CtlError:  # no responders: its connection is gone, so is the host
                log.info("host is gone (no responders)", extra={"host_id": host_id})
                self._gone.add(host_id)
                self._inventories.pop(host_id, None)
                continue
            if inv is not None:
                inventories.append(inv)
        links = await self.ctl.get_links()
        return Snapshot.from_inventories(inventories, links)

    async def reconcile_once(self) -> None:
        names = await self.store.names()
        if not names:
            return  # nothing declared: no need to query every host
        self.reconciles += 1
        snapshot = await self.snapshot()
        manifests: dict[str, Manifest] = {}
        wanted: set[tuple] = set()  # retry keys of every command the plans still want
        for name in names:
            record = await self.store.get(name)
            if record is None:
                continue
            state = await self.store.state(name) or AppState()
            owned = [LinkDefinition.from_wire(d) for d in state.owned_links]
            manifest = record.manifest()
            if manifest is None:  # undeployed: stop what it owns, then say so
                if state.status == "undeployed":
                    continue
                commands = undeploy_commands(name, snapshot, owned)
                holds = self.backoff.holds(time.monotonic())
                wanted.update(retry_key(c) for c in commands)
                await self._execute([c for c in commands if retry_key(c) not in holds])
                if not commands:
                    state = AppState(status="undeployed", version=None,
                                     updated_at=time.time(), leader=self.host.host_id,
                                     interval=self.interval)
                    self._failures.pop(name, None)
                else:  # say so while it lasts: the last status of the deployed version is over
                    state = AppState(status="reconciling", version=None,
                                     reasons=[f"undeploying: {len(commands)} stop/unlink "
                                              "command(s) outstanding"],
                                     owned_links=state.owned_links, updated_at=time.time(),
                                     leader=self.host.host_id, interval=self.interval,
                                     hosts=hosts_running(name, snapshot))
                await self.store.put_state(name, state)
                continue
            manifests[name] = manifest
            plan = reconcile(manifest, snapshot, owned, self._failures.get(name),
                             holds=self.backoff.holds(time.monotonic()))
            wanted.update(retry_key(c) for c in plan.commands)
            wanted.update(retry_key(h.command) for h in plan.held)
            await self._execute(plan.commands)
            await self.store.put_state(name, self._state(manifest, plan, snapshot))
        self._manifests = manifests
        self.backoff.retain(wanted)

    def _state(self, manifest: Manifest, plan: Plan, snapshot: Snapshot) -> AppState:
        mono, wall = time.monotonic(), time.time()
        return AppState(
            status=plan.app_status, version=manifest.version, reasons=list(plan.reasons),
            scalers=[{"component": s.component, "scaler": s.scaler, "kind": s.kind,
                      "satisfied": s.satisfied, "reason": s.reason, "running": s.running,
                      "desired": s.desired} for s in plan.statuses],
            owned_links=[ld.to_wire() for ld in plan.owned_links],
            updated_at=wall, leader=self.host.host_id, interval=self.interval,
            hosts=hosts_running(manifest.name, snapshot),
            retries=[{"component": h.component, "command": type(h.command).__name__,
                      "host_id": getattr(h.command, "host_id", ""),
                      "image": getattr(h.command, "image", ""), "error": h.hold.error,
                      "attempts": h.hold.attempts,
                      "retry_at": wall + max(0.0, h.hold.retry_at - mono)}
                     for h in plan.held])

    # ---- commands ---------------------------------------------------------------------------

    async def _execute(self, commands: list[Any]) -> None:
        now = time.monotonic()
        self._pending = {k: t for k, t in self._pending.items() if t > now}
        for cmd in commands:
            key = _key(cmd)
            if key in self._pending:
                continue  # sent recently and not visible yet: do not pile up duplicates
            retry = retry_key(cmd)
            self.backoff.sent(retry)
            try:
                await self._send(cmd)
            except CtlError as exc:
                hold = self.backoff.failed(retry, str(exc), time.monotonic())
                log.warning("reconciler command refused", extra={
                    "command": type(cmd).__name__, "error": str(exc),
                    "retry_in": hold.delay if hold else None})
                continue
            if isinstance(cmd, StartActor | StartProvider):
                pass  # accepted; its outcome comes as an event (started, or start failed)
            else:
                self.backoff.succeeded(retry)
            if not isinstance(cmd, PutLink | DeleteLink):
                self._pending[key] = now + PENDING_FOR
            log.info("reconciler command sent", extra={"command": repr(cmd)})

    async def _send(self, cmd: Any) -> None:
        ctl = self.ctl
        if isinstance(cmd, StartActor):
            await ctl.start_actor(cmd.host_id, cmd.image, cmd.count, cmd.annotations,
                                  memory_limit_mib=cmd.memory_limit_mib)
        elif isinstance(cmd, StopActor):
            await ctl.stop_actor(cmd.host_id, cmd.actor_id, cmd.count, cmd.annotations)
        elif isinstance(cmd, UpdateActor):
            await ctl.update_actor(cmd.host_id, cmd.actor_id, cmd.image, cmd.annotations)
        elif isinstance(cmd, StartProvider):
            await ctl.start_provider(cmd.host_id, cmd.image, cmd.link_name, cmd.config,
                                     cmd.annotations, embedded=cmd.embedded,
                                     contract_id=cmd.contract)
        elif isinstance(cmd, StopProvider):
            await ctl.stop_provider(cmd.host_id, cmd.provider_id, cmd.link_name, cmd.contract,
                                    cmd.annotations)
        elif isinstance(cmd, PutLink):
            await ctl.put_link(cmd.actor_id, cmd.provider_id, cmd.contract, cmd.link_name,
                               cmd.values)
        elif isinstance(cmd, DeleteLink):
            await ctl.del_link(cmd.actor_id, cmd.contract, cmd.link_name)
        else:  # pragma: no cover - a new command type without a sender is a bug
            raise TypeError(f"unknown reconciler command {cmd!r}")


def _key(cmd: Any) -> tuple:
    """Identity of a command for de-duplication: (type, host, the rest). Counts are excluded:
    a retried start of the same scaler on the same host is the same intent."""
    fields = dict(vars(cmd))
    fields.pop("count", None)
    host = fields.pop("host_id", "")
    return (type(cmd).__name__, host, json.dumps(fields, sort_keys=True, default=str))
