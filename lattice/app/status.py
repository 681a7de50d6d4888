"""App and scaler status, derived only from what the lattice reports (docs/manifest.md, "Status").

A scaler is *satisfied* when the observed lattice already matches it; the app is ``deployed``
when every scaler is, ``reconciling`` (with one reason per unsatisfied scaler) otherwise, and
``failed`` when an unsatisfied component also has a start failure the caller keeps seeing in
the lattice's events (passed in: these functions do no I/O).

A stored status is only as good as the observation it was computed from. :func:`staleness`
says when a reader must not repeat it: the leader that wrote it is gone or no longer leads, a
host its instances ran on is gone, or it has not been rewritten for ``STALE_PASSES``
reconcile intervals (a leader rewrites every app's status on every pass). The reader then
reports ``unknown`` since the status was last written, with the last known one as detail.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

DEPLOYED = "deployed"
RECONCILING = "reconciling"
FAILED = "failed"
UNDEPLOYED = "undeployed"
UNKNOWN = "unknown"  # what a reader says when the stored status is stale (never stored)

STALE_PASSES = 3     # a status not rewritten for this many reconcile intervals (+ slack) ...
STALE_SLACK = 5.0    # ... seconds (a pass that waits on busy hosts, clock skew) is stale

# ScalerStatus.kind values besides the trait types (spreadscaler, daemonscaler, linkdef):
NOT_SCALED = "none"  # a component without scaler trait: not started by the app
REMOVED = "removed"  # instances the app started for a scaler no longer in the manifest


@dataclass(frozen=True)
class ScalerStatus:
    component: str
    scaler: str  # the scaler id (annotation value), or "linkdef:{target}"
    kind: str
    satisfied: bool
    reason: str = ""  # human text, e.g. "counter: 2/3 instances, no host with region=us"
    running: int = 0
    desired: int = 0


def app_status(statuses: Iterable[ScalerStatus],
               failures: Mapping[str, str] | None = None) -> tuple[str, list[str]]:
    """``(status, reasons)``: ``failures`` maps a component name to the start error the
    caller keeps observing; it only counts while that component is unsatisfied."""
    failures = failures or {}
    reasons: list[str] = []
    failed = False
    for st in statuses:
        if st.satisfied:
            continue
        error = failures.get(st.component)
        if error:
            failed = True
            reasons.append(f"{st.reason} ({st.component} keeps failing: {error})")
        else:
            reasons.append(st.reason)
    if failed:
        return FAILED, reasons
    return (RECONCILING if reasons else DEPLOYED), reasons


def staleness(*, status: str, leader: str, updated_at: float, interval: float, now: float,
              lease_holder: str | None, gone: Collection[str] = (),
              hosts: Collection[str] = (), undeployed: bool = False) -> str:
    """Why a stored status can no longer be trusted ("" when it can). Pure: the caller
    observes the inputs — ``lease_holder`` (who holds the reconciler lease now, ``None`` when
    nobody does), ``gone`` (hosts that do not answer: their NATS connection is closed) and
    ``now`` on the same wall clock as ``updated_at``.

    ``hosts`` are the hosts the status counted instances on; ``undeployed`` says the app is
    undeployed in the bucket: its ``undeployed`` status is then final and never goes stale."""
    if status == UNDEPLOYED and undeployed:
        return ""
    who = leader or "an unknown host"
    if leader and leader in gone:
        return f"the leader that computed it ({leader}) is gone"
    if lease_holder is None:
        return f"no reconciler holds the lease (it was computed by {who})"
    if lease_holder != leader:
        return (f"the leader changed: {lease_holder} has not recomputed it yet (it was computed "
                f"by {who})")
    lost = sorted(h for h in hosts if h in gone)
    if lost:
        return f"host {', '.join(lost)}, which ran its instances, is gone"
    age = now - updated_at
    if interval > 0 and age > STALE_PASSES * interval + STALE_SLACK:  # 0: an older writer
        return (f"not recomputed for {age:.0f} s (its leader rewrites it every {interval:g} s): "
                "the leader may be hung or cut off")
    return ""
