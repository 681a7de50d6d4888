"""Every NATS subject and bucket name of the lattice protocol, in one place (docs/wire.md §3)."""

from __future__ import annotations

import re

CTL_PREFIX = "wasmbus.ctl"
# Payloads larger than this travel through the object store (docs/wire.md §2.6): exactly 900 KiB.
CHUNK_THRESHOLD = 900 * 1024

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")

# Bounds for names and ids that become subject tokens. nats-server refuses a control line over
# 4 KiB and closes the connection that sent it, so one oversized token (a link name, say) would
# cut a host off the lattice: every entry point checks them first. Public keys are 56 characters.
MAX_LINK_NAME = 64
MAX_ID = 128


class InvalidSubjectToken(ValueError):
    """A name or id that cannot be part of a NATS subject; the message says which and why."""


def check_token(what: str, value: str, max_len: int = MAX_ID) -> str:
    """``value`` if it can stand as one subject token, else :class:`InvalidSubjectToken`."""
    if not isinstance(value, str) or not value:
        raise InvalidSubjectToken(f"the {what} is empty")
    if len(value) > max_len:
        raise InvalidSubjectToken(
            f"the {what} is {len(value):,} characters long; at most {max_len} are allowed "
            f"(it becomes part of NATS subjects)")
    if not _TOKEN.fullmatch(value):
        bad = next(c for c in value if not _TOKEN.fullmatch(c))
        raise InvalidSubjectToken(
            f"the {what} {value!r} contains {bad!r}: only letters, digits, '_' and '-' are "
            "allowed (it becomes part of NATS subjects)")
    return value


def check_lattice(prefix: str) -> str:
    if not _TOKEN.fullmatch(prefix):
        raise InvalidSubjectToken(f"lattice prefix {prefix!r} may only contain letters, digits, "
                                  "'_' and '-' (it becomes part of NATS subjects)")
    return check_token("lattice prefix", prefix)


def check_link_name(link_name: str) -> str:
    return check_token("link name", link_name, MAX_LINK_NAME)


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
    """The JetStream KV bucket with links, claims and refmaps (docs/wire.md §3.6)."""
    return f"LATTICEDATA_{lattice}"


def chunk_bucket(lattice: str) -> str:
    """The object store for chunked payloads: named exactly as the lattice prefix."""
    return lattice
