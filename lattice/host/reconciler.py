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
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any

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
    reconcile,
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


class Reconciler:
    def __init__(self, host: Host) -> None:
        self.host = host
        cfg = host.config
        self.interval = cfg.reconcile_interval
        self.expiry = cfg.host_expiry
        self.lease_ttl = cfg.lease_ttl
        self._seen: dict[str, float] = {}          # host id -> monotonic time of last sign
        self._gone: set[str] = set()               # said host_stopped / no responders
        self._inventories: dict[str, HostInventory] = {}
        self._failures: dict[str, dict[str, str]] = {}  # app -> component -> last start error
        self._manifests: dict[str, Manifest] = {}       # deployed apps, as of the last pass
        self._pending: dict[tuple, float] = {}     # command key -> monotonic deadline
        self._trigger = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sub: Any = None
        self._watch: Any = None
        self.leader = False
        self._stopping = False
        self.reconciles = 0  # observable for tests

    async def start(self) -> None:
        nc, cfg = self.host.ctl_nc, self.host.config
        js = jetstream(nc, cfg.js_domain)
        self.store = await AppStore(js, self.host.lattice, replicas=cfg.js_replicas).open()
        self.lease = await Lease(js, self.host.lattice, self.host.host_id, self.lease_ttl,
                                 replicas=cfg.js_replicas).open()
        self.ctl = CtlClient(nc, self.host.lattice, prefix=self.host.config.ctl_prefix,
                             timeout=2.0)
        self._sub = await nc.subscribe(subjects.events(self.host.lattice), cb=self._on_event)
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
                       getattr(self._watch, "stop", None)):
            if closer:
                with contextlib.suppress(Exception):
                    await closer()
        with contextlib.suppress(Exception):
            await self.lease.release()

    # ---- inputs -----------------------------------------------------------------------------

    async def _on_event(self, msg: Any) -> None:
        try:
            doc = json.loads(msg.data)
        except ValueError:
            return
        name = str(doc.get("type", "")).rsplit(".", 1)[-1]
        data = doc.get("data") if isinstance(doc.get("data"), dict) else {}
        source = str(doc.get("source") or data.get("host_id") or "")
        if source:
            if name == "host_stopped":
                self._gone.add(source)
                self._seen.pop(source, None)
            else:
                self._seen[source] = time.monotonic()
                self._gone.discard(source)
        if name in _FAILURES:
            self._note_outcome(data, str(data.get("error") or "start failed"))
        elif name in _STARTED:
            self._note_outcome(data, None)
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
        while not self._stopping:
            was = self.leader
            self.leader = await self.lease.refresh()
            if self.leader and not was:
                await self._became_leader()
                next_pass = 0.0
            if self._stopping:
                break
            if self.leader and (self._trigger.is_set() or time.monotonic() >= next_pass):
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
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(renew, max(0.05, next_pass - time.monotonic()))):
                    await self._trigger.wait()

    async def _became_leader(self) -> None:
        log.info("reconciler is leader", extra={"host_id": self.host.host_id})
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
                await self._execute(commands)
                if not commands:
                    state = AppState(status="undeployed", version=None,
                                     updated_at=time.time(), leader=self.host.host_id)
                    await self.store.put_state(name, state)
                    self._failures.pop(name, None)
                continue
            manifests[name] = manifest
            plan = reconcile(manifest, snapshot, owned, self._failures.get(name))
            await self._execute(plan.commands)
            await self.store.put_state(name, self._state(manifest, plan))
        self._manifests = manifests

    def _state(self, manifest: Manifest, plan: Plan) -> AppState:
        return AppState(
            status=plan.app_status, version=manifest.version, reasons=list(plan.reasons),
            scalers=[{"component": s.component, "scaler": s.scaler, "kind": s.kind,
                      "satisfied": s.satisfied, "reason": s.reason, "running": s.running,
                      "desired": s.desired} for s in plan.statuses],
            owned_links=[ld.to_wire() for ld in plan.owned_links],
            updated_at=time.time(), leader=self.host.host_id)

    # ---- commands ---------------------------------------------------------------------------

    async def _execute(self, commands: list[Any]) -> None:
        now = time.monotonic()
        self._pending = {k: t for k, t in self._pending.items() if t > now}
        for cmd in commands:
            key = _key(cmd)
            if key in self._pending:
                continue  # sent recently and not visible yet: do not pile up duplicates
            try:
                await self._send(cmd)
            except CtlError as exc:
                log.warning("reconciler command refused", extra={
                    "command": type(cmd).__name__, "error": str(exc)})
                continue
            if not isinstance(cmd, PutLink | DeleteLink):
                self._pending[key] = now + PENDING_FOR
            log.info("reconciler command sent", extra={"command": repr(cmd)})

    async def _send(self, cmd: Any) -> None:
        ctl = self.ctl
        if isinstance(cmd, StartActor):
            await ctl.start_actor(cmd.host_id, cmd.image, cmd.count, cmd.annotations)
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
