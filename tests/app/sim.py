"""A tiny in-memory lattice that applies scaler commands the way a host does (docs/wire.md §3.3.2),
so tests can check that a plan, once applied, satisfies the manifest and is idempotent.

Public keys are derived from the image name without its version tag (``counter:v2`` →
``Mcounter``), so a new version of an image keeps its key, as a re-signed actor does.
"""

from __future__ import annotations

from lattice.app.manifest import Manifest
from lattice.app.scalers import (
    ActorState,
    Command,
    DeleteLink,
    HostState,
    Plan,
    ProviderState,
    PutLink,
    Snapshot,
    StartActor,
    StartProvider,
    StopActor,
    StopProvider,
    UpdateActor,
    reconcile,
)
from lattice.links import LinkDefinition


def actor_key(image: str) -> str:
    return "M" + image.split(":")[0].upper()


def provider_key(image: str) -> str:
    return "V" + image.split(":")[0].upper()


class Sim:
    def __init__(self, hosts: dict[str, dict[str, str]] | None = None) -> None:
        self.snapshot = Snapshot()
        self.owned: list[LinkDefinition] = []
        for host_id, labels in (hosts or {}).items():
            self.add_host(host_id, **labels)

    # -- lattice changes --

    def add_host(self, host_id: str, **labels: str) -> HostState:
        host = HostState(host_id, dict(labels))
        self.snapshot.hosts.append(host)
        return host

    def remove_host(self, host_id: str) -> None:
        self.snapshot.hosts = [h for h in self.snapshot.hosts if h.id != host_id]

    def host(self, host_id: str) -> HostState:
        return next(h for h in self.snapshot.hosts if h.id == host_id)

    def run_unmanaged_actor(self, host_id: str, image: str, count: int,
                            annotations: dict[str, str] | None = None) -> None:
        self.apply([StartActor(host_id, image, count, annotations or {})])

    # -- queries --

    def actor_counts(self, annotations: dict[str, str] | None = None) -> dict[str, int]:
        """host → number of actor instances whose annotations contain ``annotations``."""
        wanted = annotations or {}
        out: dict[str, int] = {}
        for h in self.snapshot.hosts:
            n = sum(1 for a in h.actors for ann in a.instances
                    if all(ann.get(k) == v for k, v in wanted.items()))
            if n:
                out[h.id] = n
        return out

    def links(self) -> set[tuple[str, str, str, str]]:
        return {(ld.actor_id, ld.provider_id, ld.contract_id, ld.link_name)
                for ld in self.snapshot.links}

    # -- applying commands --

    def apply(self, commands: list[Command]) -> None:
        for cmd in commands:
            self._apply(cmd)

    def _apply(self, cmd: Command) -> None:
        if isinstance(cmd, PutLink | DeleteLink):
            key = (cmd.actor_id, cmd.contract, cmd.link_name)
            self.snapshot.links = [ld for ld in self.snapshot.links
                                   if (ld.actor_id, ld.contract_id, ld.link_name) != key]
            if isinstance(cmd, PutLink):
                self.snapshot.links.append(cmd.link())
            return
        host = self.host(cmd.host_id)
        if isinstance(cmd, StartActor):
            assert cmd.count >= 1
            key = actor_key(cmd.image)
            actor = next((a for a in host.actors if a.id == key), None)
            if actor is None:
                actor = ActorState(key, cmd.image)
                host.actors.append(actor)
            assert actor.image_ref == cmd.image, "a host refuses another image of a running key"
            actor.instances.extend(dict(cmd.annotations) for _ in range(cmd.count))
        elif isinstance(cmd, StopActor):
            actor = next(a for a in host.actors if a.id == cmd.actor_id)
            matching = [i for i, ann in enumerate(actor.instances)
                        if all(ann.get(k) == v for k, v in cmd.annotations.items())]
            victims = set(matching if cmd.count <= 0 else matching[-cmd.count:])
            actor.instances = [ann for i, ann in enumerate(actor.instances) if i not in victims]
            if not actor.instances:
                host.actors.remove(actor)
        elif isinstance(cmd, UpdateActor):
            actor = next(a for a in host.actors if a.id == cmd.actor_id)
            assert actor_key(cmd.image) == actor.id, "live update keeps the actor's key"
            actor.image_ref = cmd.image
        elif isinstance(cmd, StartProvider):
            key = provider_key(cmd.image)
            assert not any(p.id == key and p.link_name == cmd.link_name
                           for p in host.providers), "lp refuses a running provider + link"
            host.providers.append(ProviderState(key, cmd.link_name, cmd.contract, cmd.image,
                                                dict(cmd.annotations)))
        elif isinstance(cmd, StopProvider):
            before = len(host.providers)
            host.providers = [p for p in host.providers
                              if (p.id, p.link_name) != (cmd.provider_id, cmd.link_name)]
            assert len(host.providers) == before - 1
        else:  # pragma: no cover
            raise AssertionError(cmd)

    def reconcile(self, manifest: Manifest, **kw) -> Plan:
        # What a driver knows before deploying: the key of each image (from its claims).
        self.snapshot.image_keys = {
            c.image: (actor_key if c.is_actor else provider_key)(c.image)
            for c in manifest.components}
        return reconcile(manifest, self.snapshot, self.owned, **kw)

    def step(self, manifest: Manifest) -> Plan:
        plan = self.reconcile(manifest)
        self.apply(plan.commands)
        self.owned = plan.owned_links
        return plan

    def converge(self, manifest: Manifest, rounds: int = 3) -> Plan:
        """Reconcile and apply until a pass yields no commands; returns that last plan."""
        for _ in range(rounds):
            plan = self.step(manifest)
            if not plan.commands:
                return plan
        plan = self.reconcile(manifest)
        assert not plan.commands, f"no convergence in {rounds} passes: {plan.commands}"
        return plan
