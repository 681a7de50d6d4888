"""An app's status as a reader may repeat it: the stored status, unless it went stale.

The leader writes ``state.{app}`` from what it observed (lattice/host/reconciler.py). Once that
leader is killed, the entry still says what it saw — ``deployed``, say — while the instances it
counted are gone. So before repeating a status, readers (``lattice app status``, ``list``,
``deploy --wait``) check it is still current, from what they can observe themselves:

* who holds the reconciler lease now (a different or no holder: the writer no longer leads);
* whether the writer and the hosts it counted instances on still answer on their control
  subjects (a killed host's NATS connection is closed at once, so the server answers "no
  responders" immediately; a busy host that is merely slow is not taken for gone);
* how old the entry is (``lattice.app.status.staleness``).

A stale status is reported as ``unknown`` since it was last computed, with the last known one.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from lattice.app.lease import lease_holder
from lattice.app.status import UNKNOWN, staleness
from lattice.app.store import AppRecord, AppState, AppStore
from lattice.rpc import subjects


@dataclass
class Observed:
    name: str
    state: AppState | None
    status: str                   # what to report: the stored status, or "unknown"
    stale: str = ""               # why the stored status is not repeated ("" when current)
    since: float | None = None    # wall clock: unknown since (when it was last computed)
    gone: list[str] = field(default_factory=list)  # hosts found gone while checking

    @property
    def current(self) -> bool:
        return self.state is not None and not self.stale


async def gone_hosts(nc: Any, lattice: str, host_ids: set[str], *,
                     prefix: str = subjects.CTL_PREFIX, timeout: float = 1.0) -> set[str]:
    """The hosts in ``host_ids`` with nobody subscribed to their control subject: their NATS
    connection is gone (a killed or crashed process). A host that is only slow to answer is
    not gone."""
    async def probe(host_id: str) -> str | None:
        try:
            subject = subjects.ctl(lattice, "get", subjects.check_token("host id", host_id),
                                   "inv", prefix=prefix)
        except subjects.InvalidSubjectToken:
            return None
        try:
            await nc.request(subject, b"", timeout=timeout)
        except NoRespondersError:
            return host_id
        except (TimeoutError, NatsTimeoutError):
            return None
        return None

    found = await asyncio.gather(*(probe(h) for h in sorted(host_ids)))
    return {h for h in found if h}


async def observe(store: AppStore, nc: Any, js: Any, lattice: str, name: str, *,
                  prefix: str = subjects.CTL_PREFIX, record: AppRecord | None = None,
                  timeout: float = 1.0) -> Observed:
    """The status of app ``name`` as it may be reported now (see the module doc)."""
    state = await store.state(name)
    if state is None:
        return Observed(name, None, UNKNOWN)
    if record is None:
        record = await store.get(name)
    undeployed = record is not None and record.deployed is None
    holder = await lease_holder(js, lattice)
    suspects = {h for h in [state.leader, *state.hosts] if h}
    gone = await gone_hosts(nc, lattice, suspects, prefix=prefix, timeout=timeout) \
        if suspects and not (undeployed and state.status == "undeployed") else set()
    why = staleness(status=state.status, leader=state.leader, updated_at=state.updated_at,
                    interval=state.interval, now=time.time(), lease_holder=holder, gone=gone,
                    hosts=state.hosts, undeployed=undeployed)
    if why:
        return Observed(name, state, UNKNOWN, why, state.updated_at, sorted(gone))
    return Observed(name, state, state.status, gone=sorted(gone))
