"""One entry point for hosts: a local file for an artifact reference.

``lattice://…`` comes from the lattice's JetStream object store (over the host's own NATS
connection), ``oci://…`` and bare registry references from an OCI registry. Either way the
content is verified against its SHA-256 and kept in the local cache, so a host needs no disk
shared with whoever pushed it, and a second start of the same digest needs no download.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from nats.aio.client import Client

from lattice.artifacts.cache import ArtifactCache
from lattice.artifacts.credentials import Credentials
from lattice.artifacts.errors import ArtifactError, InvalidReference
from lattice.artifacts.refs import (
    LATTICE_SCHEME,
    is_remote_ref,
    looks_like_oci,
    parse_lattice_ref,
    parse_oci_ref,
)
from lattice.artifacts.store import ArtifactStore

log = logging.getLogger("lattice.artifacts")

__all__ = ["fetch", "is_remote_ref"]


async def fetch(ref: str, *, nc: Client | None = None, lattice: str = "default",
                js_domain: str | None = None, cache: ArtifactCache | None = None,
                credentials: Credentials | None = None, insecure: bool = False) -> Path:
    """The verified, cached local file for ``ref``; raises ArtifactError (a subclass says
    which: InvalidReference, ArtifactNotFound, ArtifactUnauthorized, RegistryUnreachable,
    StoreUnavailable, DigestMismatch)."""
    cache = cache or ArtifactCache()
    text = ref.strip()
    if text.startswith(LATTICE_SCHEME):
        if nc is None:
            raise ArtifactError(f"fetching {ref} needs a connection to the lattice's NATS")
        store = ArtifactStore(nc, lattice, js_domain)
        return await store.download(parse_lattice_ref(text), cache)
    if not looks_like_oci(text):
        raise InvalidReference(f"{ref!r} is neither lattice://… nor an OCI reference")
    from lattice.artifacts.oci import OciClient  # oras and requests load only when needed

    client = OciClient(parse_oci_ref(text), credentials=credentials, insecure=insecure)
    path = await asyncio.to_thread(client.pull, cache)
    log.debug("artifact resolved", extra={"ref": ref, "path": str(path)})
    return path
