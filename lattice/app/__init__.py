"""Declarative apps: wadm-style manifests (:mod:`.manifest`) and scalers as pure functions
(:mod:`.scalers`): an observed lattice snapshot in, control commands and a status out."""

from lattice.app.manifest import (
    Component,
    DaemonScaler,
    LinkDef,
    Manifest,
    ManifestError,
    Spread,
    SpreadScaler,
    UnsupportedTrait,
    load_manifest,
)
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
    undeploy_commands,
)
from lattice.app.status import DEPLOYED, FAILED, RECONCILING, UNDEPLOYED, ScalerStatus

__all__ = [
    "DEPLOYED", "FAILED", "RECONCILING", "UNDEPLOYED", "ActorState", "Command", "Component",
    "DaemonScaler", "DeleteLink", "HostState", "LinkDef", "Manifest", "ManifestError", "Plan",
    "ProviderState", "PutLink", "ScalerStatus", "Snapshot", "Spread", "SpreadScaler",
    "StartActor", "StartProvider", "StopActor", "StopProvider", "UnsupportedTrait",
    "UpdateActor", "load_manifest", "reconcile", "undeploy_commands",
]
