"""Everything a host is configured with (docs/wire.md §6.1), as one plain data class."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lattice.connect import NatsOptions
from lattice.rpc.subjects import CTL_PREFIX
from lattice.runtime import RuntimeConfig


@dataclass
class HostConfig:
    nats: NatsOptions = field(default_factory=NatsOptions)
    lattice: str = "default"
    host_seed: str | None = None            # SN…; generated per start when absent
    cluster_seed: str | None = None         # SC…; generated when absent (then only it is trusted)
    cluster_issuers: list[str] = field(default_factory=list)  # C… keys trusted besides our own
    labels: dict[str, str] = field(default_factory=dict)
    allow_unsigned: bool = False            # development only
    allow_file_load: bool = True            # start actors/providers from local paths
    rpc_timeout: float = 2.0                # seconds, per invocation (per link: rpc_timeout_ms)
    ctl_prefix: str = CTL_PREFIX
    js_domain: str | None = None
    js_replicas: int = 1                    # of the buckets it creates (LATTICEDATA, chunks)
    heartbeat_interval: float = 30.0
    enforce_builtin_caps: bool = True
    rpc_events: bool = True                 # publish invocation_succeeded/failed
    provider_health_interval: float = 30.0
    provider_health_first: float = 1.0
    shutdown_grace: float = 10.0            # seconds to let in-flight calls finish on stop
    # Actor instances this host runs at most, all actors together: a start or scale past it is
    # refused before it is acknowledged. Beyond a few thousand, the inventory reply outgrows
    # NATS's 1 MiB payload limit and the host looks "busy or gone" to `lattice get inventory`.
    max_instances: int = 2000
    state_dir: Path | None = None           # provider cache etc.; default lattice.paths
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # App reconciler (docs/operations.md): runs in every host, one leader per lattice.
    reconciler: bool = True
    reconcile_interval: float = 5.0         # seconds between periodic passes (events trigger more)
    host_expiry: float | None = None        # silent this long → gone; default 3x heartbeat
    lease_ttl: float = 6.0                  # a hung leader is replaced within this many seconds
    leader_probe_interval: float = 0.5      # followers check the leader is there this often
    retry_backoff: float = 1.0              # a failed start is retried after this, doubling...
    retry_backoff_max: float = 60.0         # ...up to this many seconds (reset by a success)
    # Policy service (lattice/host/policy.py, docs/operations.md): asked before actor and
    # provider starts and the first invocation between two entities. None: no policy checks.
    policy_topic: str | None = None
    policy_changes_topic: str | None = None  # revocations/overrides of cached decisions
    policy_timeout: float = 1.0             # seconds to wait for a decision (wasmCloud: 1 s)
    policy_fail_open: bool = False          # permit, instead of deny, when it does not answer
    policy_cache_ttl: float | None = None   # seconds a decision counts; None: until revoked

    def __post_init__(self) -> None:
        if self.host_expiry is None:
            self.host_expiry = 3 * self.heartbeat_interval
