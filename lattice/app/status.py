"""App and scaler status, derived only from what the lattice reports (docs/manifest.md, "Status").

A scaler is *satisfied* when the observed lattice already matches it; the app is ``deployed``
when every scaler is, ``reconciling`` (with one reason per unsatisfied scaler) otherwise, and
``failed`` when an unsatisfied component also has a start failure the caller keeps seeing in
the lattice's events (passed in: these functions do no I/O).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

DEPLOYED = "deployed"
RECONCILING = "reconciling"
FAILED = "failed"
UNDEPLOYED = "undeployed"

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
