"""Every NATS subject and bucket name of the lattice protocol, in one place (WIRE.md §3)."""

from __future__ import annotations

import re

CTL_PREFIX = "wasmbus.ctl"
# Payloads larger than this travel through the object store (WIRE.md §2.6): exactly 900 KiB.
CHUNK_THRESHOLD = 900 * 1024

_LATTICE = re.compile(r"[A-Za-z0-9_-]+")


def check_lattice(prefix: str) -> str:
    if not _LATTICE.fullmatch(prefix):
        raise ValueError(f"lattice prefix {prefix!r} may only contain letters, digits, '_' and "
                         "'-' (it becomes part of NATS subjects)")
    return prefix


def actor(lattice: str, actor_key: str) -> str:
    return f"wasmbus.rpc.{lattice}.{actor_key}"


def provider(lattice: str, provider_key: str, link_name: str) -> str:
    return f"wasmbus.rpc.{lattice}.{provider_key}.{link_name}"


def provider_linkdefs_put(lattice: str, provider_key: str, link_name: str) -> str:
    return provider(lattice, provider_key, link_name) + ".linkdefs.put"


def provider_linkdefs_del(lattice: str, provider_key: str, link_name: str) -> str:
    return provider(lattice, provider_key, link_name) + ".linkdefs.del"


def provider_health(lattice: str, provider_key: str, link_name: str) -> str:
    return provider(lattice, provider_key, link_name) + ".health"


def provider_shutdown(lattice: str, provider_key: str, link_name: str) -> str:
    return provider(lattice, provider_key, link_name) + ".shutdown"


def ctl(lattice: str, *parts: str, prefix: str = CTL_PREFIX) -> str:
    return ".".join((prefix, lattice, *parts))


def events(lattice: str) -> str:
    return f"wasmbus.evt.{lattice}"


def event(lattice: str, name: str) -> str:
    return f"wasmbus.evt.{lattice}.{name}"


def rpc_events(lattice: str) -> str:
    return f"wasmbus.rpcevt.{lattice}"


def lattice_bucket(lattice: str) -> str:
    """The JetStream KV bucket with links, claims and refmaps (WIRE.md §3.6)."""
    return f"LATTICEDATA_{lattice}"


def chunk_bucket(lattice: str) -> str:
    """The object store for chunked payloads: named exactly as the lattice prefix."""
    return lattice
