"""Scalers as pure functions: desired component + observed lattice snapshot → commands + status.

This is wadm's model (and Spin's "factors" style): no scaler talks to NATS. A driver takes a
:class:`Snapshot` (host inventories and links), calls :func:`reconcile`, sends the returned
commands through the control interface and calls again when the lattice changes. Because
every decision is re-derived from what the lattice *reports*, a lost command or a crashed host
is simply corrected on the next pass, and a satisfied snapshot yields no commands at all.

Ownership follows wadm: what an app starts carries the annotations
``wasmcloud.dev/managed-by: lattice``, ``wasmcloud.dev/appspec: <app>`` and
``wasmcloud.dev/scaler: <scaler id>`` (plus ``wasmcloud.dev/spread_name`` for spreadscalers);
only instances carrying them are counted, stopped or updated, never anyone else's.

Convergence takes up to two passes: links need the public keys of actors and providers that
only exist once they run, and a host that must stop an old provider (or finish a live update)
first gets its replacement on the next pass.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from lattice.app.backoff import Hold
from lattice.app.manifest import (
    Component,
    Manifest,
    Scaler,
    Spread,
    SpreadScaler,
    iter_scalers,
)
from lattice.app.status import NOT_SCALED, REMOVED, ScalerStatus, app_status
from lattice.links import LinkDefinition

log = logging.getLogger("lattice.app.scalers")

MANAGED_BY_KEY = "wasmcloud.dev/managed-by"
MANAGED_BY = "lattice"  # wadm wrote "wadm"
APP_KEY = "wasmcloud.dev/appspec"
SCALER_KEY = "wasmcloud.dev/scaler"
SPREAD_KEY = "wasmcloud.dev/spread_name"
DEFAULT_SPREAD = Spread(name="default")


# --- the observed lattice -----------------------------------------------------------------------


@dataclass
class ActorState:
    """One actor on one host; ``instances`` holds each instance's annotations."""

    id: str
    image_ref: str = ""
    instances: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ProviderState:
    id: str
    link_name: str = "default"
    contract_id: str = ""
    image_ref: str = ""
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass
class HostState:
    id: str
    labels: dict[str, str] = field(default_factory=dict)
    actors: list[ActorState] = field(default_factory=list)
    providers: list[ProviderState] = field(default_factory=list)

    def matches(self, requirements: Mapping[str, str]) -> bool:
        return all(self.labels.get(k) == v for k, v in requirements.items())


@dataclass
class Snapshot:
    hosts: list[HostState] = field(default_factory=list)
    links: list[LinkDefinition] = field(default_factory=list)
    #: Public key of an image ref, where the caller knows it (claims read from the file, the
    #: lattice's REFMAP/CLAIMS entries). Optional: it only lets a scaler avoid hosts that run
    #: the same key from another image (they refuse the start) before the key is seen running.
    image_keys: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_inventories(cls, inventories: Iterable[Any],
                         links: Iterable[LinkDefinition] = (),
                         image_keys: Mapping[str, str] | None = None) -> Snapshot:
        """From :class:`lattice.ctl.HostInventory` objects (duck-typed: no import of ctl)."""
        hosts = []
        for inv in inventories:
            actors = [ActorState(
                id=a.id,
                image_ref=a.image_ref or next((i.image_ref for i in a.instances), ""),
                instances=[dict(i.annotations) for i in a.instances]) for a in inv.actors]
            providers = [ProviderState(id=p.id, link_name=p.link_name,
                                       contract_id=p.contract_id, image_ref=p.image_ref,
                                       annotations=dict(p.annotations)) for p in inv.providers]
            hosts.append(HostState(id=inv.host_id, labels=dict(inv.labels), actors=actors,
                                   providers=providers))
        return cls(hosts=hosts, links=list(links), image_keys=dict(image_keys or {}))


# --- commands -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StartActor:
    host_id: str
    image: str
    count: int
    annotations: dict[str, str] = field(default_factory=dict)
    memory_limit_mib: int | None = None  # the component's own cap, if the manifest sets one


@dataclass(frozen=True)
class StopActor:
    """Stop ``count`` instances whose annotations contain ``annotations`` (ctl ``sa``)."""

    host_id: str
    actor_id: str
    count: int
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class UpdateActor:
    """Live update (ctl ``upd``): replaces the module of the actor on that host."""

    host_id: str
    actor_id: str
    image: str
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StartProvider:
    host_id: str
    image: str
    link_name: str
    contract: str
    config: str = ""  # the ctl `configuration` string (a JSON object or the opaque string)
    embedded: bool = False
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StopProvider:
    host_id: str
    provider_id: str
    link_name: str
    contract: str
    annotations: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PutLink:
    actor_id: str
    provider_id: str
    contract: str
    link_name: str
    values: dict[str, str] = field(default_factory=dict)

    def link(self) -> LinkDefinition:
        return LinkDefinition(self.actor_id, self.provider_id, self.contract, self.link_name,
                              dict(self.values))


@dataclass(frozen=True)
class DeleteLink:
    actor_id: str
    contract: str
    link_name: str


Command = (StartActor | StopActor | UpdateActor | StartProvider | StopProvider | PutLink
           | DeleteLink)

# Plan order: replace and add before taking away, so capacity never dips during a move.
_ORDER = (UpdateActor, StartProvider, StartActor, PutLink, DeleteLink, StopActor, StopProvider)


@dataclass
class ScalerResult:
    commands: list[Command]
    status: ScalerStatus


@dataclass
class Plan:
    commands: list[Command]
    statuses: list[ScalerStatus]
    app_status: str
    reasons: list[str]
    #: The links the app owns once the plan is applied: store it, pass it to the next call.
    owned_links: list[LinkDefinition]
    #: Commands the plan would send but holds back: they failed recently (``holds``).
    held: list[HeldCommand] = field(default_factory=list)


@dataclass(frozen=True)
class HeldCommand:
    component: str  # the component the command is for ("" for link commands)
    command: Command
    hold: Hold


def retry_key(cmd: Command) -> tuple[str, ...]:
    """The identity a command's failures are counted under (lattice/app/backoff.py).

    Starts are keyed by what the host's failure and success events carry — (kind, host,
    image, link name) — so an event finds its command; other commands by all their fields
    (counts excluded: a retried stop of the same scaler is the same intent)."""
    if isinstance(cmd, StartActor):
        return ("actor", cmd.host_id, cmd.image, "")
    if isinstance(cmd, StartProvider):
        return ("provider", cmd.host_id, cmd.image, cmd.link_name)
    fields = dict(vars(cmd))
    fields.pop("count", None)
    host = str(fields.pop("host_id", ""))
    return (type(cmd).__name__, host, json.dumps(fields, sort_keys=True, default=str))


def event_retry_key(name: str, data: Mapping[str, Any], source: str) -> tuple[str, ...] | None:
    """The :func:`retry_key` a host event (``actor_start_failed``, ``actors_start_failed``,
    ``actors_started``, ``provider_start_failed``, ``provider_started``) reports on."""
    host = str(data.get("host_id") or source or "")
    if name in ("actor_start_failed", "actors_start_failed", "actors_started"):
        ref = str(data.get("image_ref") or data.get("actor_ref") or "")
        return ("actor", host, ref, "") if ref and host else None
    if name in ("provider_start_failed", "provider_started"):
        ref = str(data.get("image_ref") or data.get("provider_ref") or "")
        link = str(data.get("link_name") or "default")
        return ("provider", host, ref, link) if ref and host else None
    return None


def _gate(commands: list[Command], holds: Mapping[Any, Hold], component: str
          ) -> tuple[list[Command], list[HeldCommand]]:
    if not holds:
        return commands, []
    kept: list[Command] = []
    held: list[HeldCommand] = []
    for cmd in commands:
        hold = holds.get(retry_key(cmd))
        if hold is None:
            kept.append(cmd)
        else:
            held.append(HeldCommand(component, cmd, hold))
    return kept, held


def hosts_running(app: str, snapshot: Snapshot) -> list[str]:
    """Hosts where something ``app`` started runs: the status depends on them staying up."""
    mine = ownership(app)
    return sorted(h.id for h in snapshot.hosts
                  if any(_has(ann, mine) for a in h.actors for ann in a.instances)
                  or any(_has(p.annotations, mine) for p in h.providers))


# --- helpers ------------------------------------------------------------------------------------


def ownership(app: str, scaler_id: str | None = None) -> dict[str, str]:
    """The annotations marking what ``app`` (and, if given, one of its scalers) started."""
    ann = {MANAGED_BY_KEY: MANAGED_BY, APP_KEY: app}
    if scaler_id is not None:
        ann[SCALER_KEY] = scaler_id
    return ann


def _has(annotations: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(annotations.get(k) == v for k, v in wanted.items())


def split_replicas(replicas: int, weights: list[int]) -> list[int]:
    """Largest-remainder split: each spread gets ``floor(replicas·w/Σw)``; the replicas left
    over go one each to the spreads with the largest fractional remainder, ties to the
    heavier spread, then to the one declared first. 3 at 80/20 → [2, 1]; 1 at 80/20 → [1, 0]."""
    total = sum(weights)
    if not weights or total <= 0:
        return [0] * len(weights)
    shares = [replicas * w // total for w in weights]
    order = sorted(range(len(weights)),
                   key=lambda i: (-(replicas * weights[i] % total), -weights[i], i))
    for i in order[:replicas - sum(shares)]:
        shares[i] += 1
    return shares


def _place(target: int, current: dict[str, int], caps: Mapping[str, int | None],
           prefer: set[str]) -> dict[str, int]:
    """Per-host changes that bring ``sum(current)`` to ``target`` without moving what runs.

    Adds go to the host with the fewest instances (ties: hosts already running the module,
    then lowest host id) within its cap; removals come from the most loaded host (ties: the
    highest host id). Returns only the non-zero deltas."""
    counts = dict(current)
    total = sum(counts.values())
    while total > target:
        host = max((h for h in counts if counts[h] > 0), key=lambda h: (counts[h], h))
        counts[host] -= 1
        total -= 1
    while total < target:
        free = [h for h in counts if (cap := caps.get(h)) is None or counts[h] < cap]
        if not free:
            break
        host = min(free, key=lambda h: (counts[h], h not in prefer, h))
        counts[host] += 1
        total += 1
    return {h: counts[h] - current[h] for h in counts if counts[h] != current[h]}


def _describe(requirements: Mapping[str, str]) -> str:
    if not requirements:
        return "no hosts in the lattice"
    return "no host with " + ", ".join(f"{k}={v}" for k, v in requirements.items())


def _eligible(hosts: list[HostState], spreads: tuple[Spread, ...]) -> list[HostState]:
    return [h for h in hosts if not spreads or any(h.matches(s.requirements) for s in spreads)]


def _config_text(config: Any) -> str:
    if config is None:
        return ""
    return config if isinstance(config, str) else json.dumps(config)


# --- actor scalers ------------------------------------------------------------------------------


def scale_actor(app: str, component: Component, trait: Scaler, scaler_id: str,
                snapshot: Snapshot) -> ScalerResult:
    """Spread- or daemon-scale one actor component: start, stop and live-update only the
    instances this scaler owns."""
    own = ownership(app, scaler_id)
    image = component.image
    hosts = sorted(snapshot.hosts, key=lambda h: h.id)
    # owned[(host, spread)][actor_id] = instance count; image of each (host, actor)
    owned: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    images: dict[tuple[str, str], str] = {}
    for h in hosts:
        for a in h.actors:
            for ann in a.instances:
                if _has(ann, own):
                    owned[(h.id, ann.get(SPREAD_KEY, ""))][a.id] += 1
                    images[(h.id, a.id)] = a.image_ref
    keys = ({a for _, a in images} | {a.id for h in hosts for a in h.actors if a.image_ref == image}
            | ({snapshot.image_keys[image]} if image in snapshot.image_keys else set()))
    # A host running one of our actor keys from another image refuses a start until updated.
    blocked = {h.id for h in hosts for a in h.actors if a.id in keys and a.image_ref != image}
    prefer = {h.id for h in hosts for a in h.actors if a.id in keys and a.image_ref == image}

    starts: dict[tuple[str, str], int] = defaultdict(int)  # (host, spread) → count
    stops: list[StopActor] = []
    problems: list[str] = []
    running = desired = 0

    def stop(host: str, spread: str, count: int) -> None:
        by_actor = owned[(host, spread)]
        # old-image instances go first, then by actor id
        for actor_id in sorted(by_actor, key=lambda a: (images[(host, a)] == image, a)):
            n = min(count, by_actor[actor_id])
            if n > 0:
                ann = dict(own, **({SPREAD_KEY: spread} if spread else {}))
                stops.append(StopActor(host, actor_id, n, ann))
                count -= n

    if isinstance(trait, SpreadScaler):
        spreads = trait.spreads or (DEFAULT_SPREAD,)
        shares = split_replicas(trait.replicas, [s.weight for s in spreads])
        names = {s.name for s in spreads}
        for host, spread in list(owned):
            if spread not in names:
                stop(host, spread, sum(owned[(host, spread)].values()))
        desired = trait.replicas
        for spread, share in zip(spreads, shares, strict=True):
            matching = {h.id for h in hosts if h.matches(spread.requirements)}
            for host, name in list(owned):
                if name == spread.name and host not in matching:
                    stop(host, name, sum(owned[(host, name)].values()))
            current = {h: sum(owned[(h, spread.name)].values()) if (h, spread.name) in owned
                       else 0 for h in sorted(matching)}
            running += min(sum(current.values()), share)
            caps = {h: (current[h] if h in blocked else None) for h in current}
            deltas = _place(share, current, caps, prefer)
            for host, delta in deltas.items():
                if delta > 0:
                    starts[(host, spread.name)] += delta
                else:
                    stop(host, spread.name, -delta)
            placed = sum(current.values()) + sum(deltas.values())
            if placed < share:
                problems.append(_describe(spread.requirements) if not matching
                                else f"{share - placed} waiting for an update to finish")
    else:  # daemon: `replicas` on each eligible host, spread annotation unused
        eligible = {h.id for h in _eligible(hosts, trait.spreads)}
        per_host: dict[str, int] = defaultdict(int)
        for (host, spread), by_actor in list(owned.items()):
            if host not in eligible:
                stop(host, spread, sum(by_actor.values()))
            else:
                per_host[host] += sum(by_actor.values())
        desired = trait.replicas * len(eligible)
        for host in sorted(eligible):
            have = per_host[host]
            running += min(have, trait.replicas)
            if have < trait.replicas and host not in blocked:
                starts[(host, "")] += trait.replicas - have
            elif have > trait.replicas:
                excess = have - trait.replicas
                for (h, spread), by_actor in list(owned.items()):
                    if h == host and excess > 0:
                        n = min(excess, sum(by_actor.values()))
                        stop(host, spread, n)
                        excess -= n
        if trait.replicas and not eligible:
            problems.append(" or ".join(_describe(s.requirements) for s in trait.spreads)
                            or _describe({}))
        if any(h in blocked and per_host[h] < trait.replicas for h in eligible):
            problems.append("waiting for an update to finish")

    commands: list[Command] = []
    stopped: dict[tuple[str, str], int] = defaultdict(int)
    for cmd in stops:
        stopped[(cmd.host_id, cmd.actor_id)] += cmd.count
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for (host, _), by_actor in owned.items():
        for actor_id, n in by_actor.items():
            totals[(host, actor_id)] += n
    outdated = 0
    for (host, actor_id), ref in sorted(images.items()):
        if ref != image and totals[(host, actor_id)] > stopped[(host, actor_id)]:
            commands.append(UpdateActor(host, actor_id, image, dict(own)))
            outdated += totals[(host, actor_id)] - stopped[(host, actor_id)]
    for (host, spread), n in sorted(starts.items()):
        commands.append(StartActor(host, image, n,
                                   dict(own, **({SPREAD_KEY: spread} if spread else {})),
                                   component.memory_limit_mib))
    commands.extend(stops)
    if outdated:
        problems.append(f"{outdated} updating to {image}")
    return ScalerResult(commands, _status(component.name, scaler_id, trait.type, commands,
                                          running, desired, problems))


def _status(name: str, scaler_id: str, kind: str, commands: list[Command], running: int,
            desired: int, problems: list[str]) -> ScalerStatus:
    satisfied = not commands and not problems and running == desired
    reason = "" if satisfied else ", ".join([f"{name}: {running}/{desired} instances",
                                             *problems])
    return ScalerStatus(name, scaler_id, kind, satisfied, reason, running, desired)


# --- provider scalers ---------------------------------------------------------------------------


def scale_provider(app: str, component: Component, trait: Scaler, scaler_id: str,
                   snapshot: Snapshot) -> ScalerResult:
    """Spread- or daemon-scale one capability component. A host runs at most one provider per
    link name, so every host holds 0 or 1 of ours; an image change is a stop, then a start."""
    own = ownership(app, scaler_id)
    image, link = component.image, component.link_name
    hosts = sorted(snapshot.hosts, key=lambda h: h.id)
    ours: dict[str, ProviderState] = {}  # host → our valid instance
    commands: list[Command] = []
    busy: set[str] = set()  # hosts where something else holds this provider + link name
    ids = {p.id for h in hosts for p in h.providers if p.image_ref == image}
    if image in snapshot.image_keys:
        ids.add(snapshot.image_keys[image])
    for h in hosts:
        for p in h.providers:
            if _has(p.annotations, own):
                if p.image_ref == image and p.link_name == link and h.id not in ours:
                    ours[h.id] = p
                    continue
                commands.append(StopProvider(h.id, p.id, p.link_name, p.contract_id
                                             or component.contract, dict(p.annotations)))
                busy.add(h.id)  # the replacement starts once this one has stopped
            elif p.link_name == link and (p.image_ref == image or p.id in ids):
                busy.add(h.id)

    def stop(host: str) -> None:
        p = ours.pop(host)
        commands.append(StopProvider(host, p.id, p.link_name, p.contract_id
                                     or component.contract, dict(p.annotations)))
        busy.add(host)  # still running until the stop completes: no start there this pass

    def start(host: str, spread: str) -> None:
        commands.append(StartProvider(
            host, image, link, component.contract, _config_text(component.config),
            component.embedded, dict(own, **({SPREAD_KEY: spread} if spread else {}))))

    problems: list[str] = []
    running = desired = 0
    if isinstance(trait, SpreadScaler):
        spreads = trait.spreads or (DEFAULT_SPREAD,)
        shares = split_replicas(trait.replicas, [s.weight for s in spreads])
        by_spread = {s.name: s for s in spreads}
        for host, p in list(ours.items()):
            spread = by_spread.get(p.annotations.get(SPREAD_KEY, ""))
            host_state = next(h for h in hosts if h.id == host)
            if spread is None or not host_state.matches(spread.requirements):
                stop(host)
        busy.update(ours)  # from here on: every host that cannot take another instance
        desired = trait.replicas
        for spread, share in zip(spreads, shares, strict=True):
            matching = [h.id for h in hosts if h.matches(spread.requirements)]
            current = {h: int(h in ours and ours[h].annotations.get(SPREAD_KEY) == spread.name)
                       for h in matching}
            caps = {h: (current[h] if h in busy and not current[h] else 1) for h in matching}
            running += min(sum(current.values()), share)
            deltas = _place(share, current, caps, set())
            for host, delta in sorted(deltas.items()):
                if delta > 0:
                    start(host, spread.name)
                    busy.add(host)
                else:
                    stop(host)
            placed = sum(current.values()) + sum(deltas.values())
            if placed < share:
                problems.append(_describe(spread.requirements) if not matching else
                                f"{share - placed} more need free hosts "
                                f"({len(matching)} match, a host runs one {component.name} per "
                                "link name)")
    else:
        eligible = [h.id for h in _eligible(hosts, trait.spreads)]
        want = min(trait.replicas, 1)
        for host in list(ours):
            if host not in eligible or not want:
                stop(host)
        desired = want * len(eligible)
        running = sum(1 for h in eligible if h in ours) if want else 0
        waiting = 0
        for host in eligible:
            if want and host not in ours:
                if host in busy:
                    waiting += 1
                else:
                    start(host, "")
        if want and not eligible:
            problems.append(" or ".join(_describe(s.requirements) for s in trait.spreads)
                            or _describe({}))
        if waiting:
            problems.append(f"waiting on {waiting} host(s) where {image} (link name {link}) "
                            "runs outside this scaler or is still stopping")
    return ScalerResult(commands, _status(component.name, scaler_id, trait.type, commands,
                                          running, desired, problems))


def scale(app: str, component: Component, trait: Scaler, scaler_id: str,
          snapshot: Snapshot) -> ScalerResult:
    fn = scale_actor if component.is_actor else scale_provider
    return fn(app, component, trait, scaler_id, snapshot)


# --- links --------------------------------------------------------------------------------------


def component_actor_ids(app: str, component: Component, snapshot: Snapshot) -> list[str]:
    """Public keys of the running actor(s) of ``component``: those its scalers started, or for a
    component the app does not start, any actor running its image."""
    sids = {sid for _, sid in iter_scalers(component)}
    found = set()
    for h in snapshot.hosts:
        for a in h.actors:
            if sids:
                if any(_has(ann, ownership(app)) and ann.get(SCALER_KEY) in sids
                       for ann in a.instances):
                    found.add(a.id)
            elif a.image_ref == component.image and a.instances:
                found.add(a.id)
    return sorted(found)


def component_provider_ids(app: str, component: Component, snapshot: Snapshot) -> list[str]:
    """Public keys of running providers of ``component`` (its link name and contract): the
    app's own first, else any running its image; current image first, then by key."""
    sids = {sid for _, sid in iter_scalers(component)}
    owned, other = set(), set()
    for h in snapshot.hosts:
        for p in h.providers:
            if p.link_name != component.link_name or p.contract_id not in ("",
                                                                           component.contract):
                continue
            if _has(p.annotations, ownership(app)) and p.annotations.get(SCALER_KEY) in sids:
                owned.add((p.image_ref != component.image, p.id))
            elif p.image_ref == component.image:
                other.add((False, p.id))
    return [pid for _, pid in sorted(owned or other)]


def link_plan(manifest: Manifest, snapshot: Snapshot, owned_links: Iterable[LinkDefinition]
              ) -> tuple[list[Command], list[ScalerStatus], list[LinkDefinition]]:
    """Desired links (from linkdef traits, resolved to running keys) against observed ones:
    puts for missing or different links, deletes only for links the app put and no longer
    wants. Returns ``(commands, statuses, owned links after the plan)``."""
    app = manifest.name
    observed = {(ld.actor_id, ld.contract_id, ld.link_name): ld for ld in snapshot.links}
    desired: dict[tuple[str, str, str], LinkDefinition] = {}
    statuses: list[ScalerStatus] = []
    declared: dict[str, set[tuple[str, str]]] = {}  # actor id → (contract, link) it declares
    any_declared: set[tuple[str, str]] = set()
    commands: list[Command] = []
    for comp in manifest.components:
        if not comp.is_actor or not comp.linkdefs:
            continue
        actor_ids = component_actor_ids(app, comp, snapshot)
        for ld in comp.linkdefs:
            target = manifest.component(ld.target)
            if target is None or target.is_actor:
                continue  # the manifest parser refuses these
            pair = (target.contract, target.link_name)
            any_declared.add(pair)
            for aid in actor_ids:
                declared.setdefault(aid, set()).add(pair)
            provider_ids = component_provider_ids(app, target, snapshot)
            scaler = f"linkdef:{ld.target}"
            if not actor_ids:
                reason = f"{comp.name}: link to {ld.target} waits for {comp.name} to run"
            elif not provider_ids:
                reason = (f"{comp.name}: link to {ld.target} waits for provider {ld.target} "
                          f"({target.image}) to run")
            else:
                reason = ""
                missing = 0
                for aid in actor_ids:
                    want = LinkDefinition(aid, provider_ids[0], target.contract,
                                          target.link_name, dict(ld.values))
                    desired[(aid, *pair)] = want
                    if observed.get((aid, *pair)) != want:
                        missing += 1
                        commands.append(PutLink(aid, want.provider_id, want.contract_id,
                                                want.link_name, dict(want.values)))
                if missing:
                    reason = f"{comp.name}: link to {ld.target} not yet in place"
            statuses.append(ScalerStatus(comp.name, scaler, "linkdef", not reason, reason,
                                         len(actor_ids) if not reason else 0, len(actor_ids)))
    kept: list[LinkDefinition] = []
    for ld in owned_links:
        key = (ld.actor_id, ld.contract_id, ld.link_name)
        if key in desired:
            continue
        seen = observed.get(key)
        if seen is None or seen.provider_id != ld.provider_id:
            continue  # gone, or replaced by someone else: no longer ours
        wanted = declared.get(ld.actor_id, any_declared)
        if (ld.contract_id, ld.link_name) in wanted:
            kept.append(ld)  # still declared; its provider or actor is only not running now
        else:
            commands.append(DeleteLink(*key))
    return commands, statuses, [*desired.values(), *kept]


# --- whole apps ---------------------------------------------------------------------------------


def _orphans(manifest: Manifest, snapshot: Snapshot) -> tuple[list[Command], list[ScalerStatus]]:
    """Stop what the app started for scalers that are no longer in the manifest (removed
    components, changed trait types)."""
    app = manifest.name
    actor_sids = {sid for c in manifest.components if c.is_actor for _, sid in iter_scalers(c)}
    provider_sids = {sid for c in manifest.components if not c.is_actor
                     for _, sid in iter_scalers(c)}
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    commands: list[Command] = []
    gone: dict[str, int] = defaultdict(int)
    for h in sorted(snapshot.hosts, key=lambda h: h.id):
        for a in h.actors:
            for ann in a.instances:
                sid = ann.get(SCALER_KEY, "")
                if _has(ann, ownership(app)) and sid not in actor_sids:
                    counts[(h.id, a.id, sid)] += 1
        for p in h.providers:
            sid = p.annotations.get(SCALER_KEY, "")
            if _has(p.annotations, ownership(app)) and sid not in provider_sids:
                commands.append(StopProvider(h.id, p.id, p.link_name, p.contract_id,
                                             dict(p.annotations)))
                gone[sid] += 1
    for (host, actor_id, sid), n in sorted(counts.items()):
        commands.append(StopActor(host, actor_id, n, ownership(app, sid)))
        gone[sid] += n
    statuses = [ScalerStatus(sid.split("/")[0], sid, REMOVED, False,
                             f"{sid.split('/')[0]}: stopping {n} instances no longer in the "
                             "manifest", n, 0)
                for sid, n in sorted(gone.items())]
    return commands, statuses


def _ordered(commands: list[Command]) -> list[Command]:
    return sorted(commands, key=lambda c: _ORDER.index(type(c)))  # stable within a kind


def reconcile(manifest: Manifest, snapshot: Snapshot,
              owned_links: Iterable[LinkDefinition] = (),
              failures: Mapping[str, str] | None = None,
              holds: Mapping[Any, Hold] | None = None) -> Plan:
    """Everything that brings the lattice to ``manifest``, and the app's status now.

    ``owned_links`` is what the app put before (``Plan.owned_links`` of the previous call);
    ``failures`` maps component names to start errors the caller keeps seeing in events;
    ``holds`` maps :func:`retry_key` values to commands that failed recently and must not be
    sent yet (``Backoff.holds(now)``): they are left out of ``commands`` and listed in
    ``Plan.held``, and their component counts as failing."""
    holds = holds or {}
    commands: list[Command] = []
    statuses: list[ScalerStatus] = []
    held: list[HeldCommand] = []
    for comp in manifest.components:
        scalers = list(iter_scalers(comp))
        if not scalers:
            statuses.append(ScalerStatus(comp.name, "", NOT_SCALED, True,
                                         f"{comp.name}: not started by the app (no scaler "
                                         "trait)"))
        for trait, sid in scalers:
            result = scale(manifest.name, comp, trait, sid, snapshot)
            kept, waiting = _gate(result.commands, holds, comp.name)
            commands.extend(kept)
            held.extend(waiting)
            statuses.append(result.status)
    cleanup, cleanup_statuses = _orphans(manifest, snapshot)
    kept, waiting = _gate(cleanup, holds, "")
    commands.extend(kept)
    held.extend(waiting)
    statuses.extend(cleanup_statuses)
    link_commands, link_statuses, owned = link_plan(manifest, snapshot, owned_links)
    kept, waiting = _gate(link_commands, holds, "")
    commands.extend(kept)
    held.extend(waiting)
    statuses.extend(link_statuses)
    failing = {h.component: h.hold.error for h in held if h.component}
    status, reasons = app_status(statuses, {**failing, **(failures or {})})
    if commands or held:
        log.debug("app plan", extra={"app": manifest.name, "commands": len(commands),
                                     "held": len(held), "status": status})
    return Plan(_ordered(commands), statuses, status, reasons, owned, held)


def undeploy_commands(app: str, snapshot: Snapshot,
                      owned_links: Iterable[LinkDefinition] = ()) -> list[Command]:
    """Delete the links the app put (if still its own), stop every actor instance and provider
    it started. An empty list means the app is fully undeployed."""
    commands: list[Command] = []
    observed = {(ld.actor_id, ld.contract_id, ld.link_name): ld for ld in snapshot.links}
    for ld in owned_links:
        key = (ld.actor_id, ld.contract_id, ld.link_name)
        seen = observed.get(key)
        if seen is not None and seen.provider_id == ld.provider_id:
            commands.append(DeleteLink(*key))
    mine = ownership(app)
    for h in sorted(snapshot.hosts, key=lambda h: h.id):
        for a in sorted(h.actors, key=lambda a: a.id):
            n = sum(1 for ann in a.instances if _has(ann, mine))
            if n:
                commands.append(StopActor(h.id, a.id, n, dict(mine)))
        for p in h.providers:
            if _has(p.annotations, mine):
                commands.append(StopProvider(h.id, p.id, p.link_name, p.contract_id,
                                             dict(p.annotations)))
    return commands
