"""Artifacts that travel with the lattice: the JetStream artifact store and OCI registries.

``fetch(ref)`` (in :mod:`lattice.artifacts.resolve`) turns ``lattice://sha256:…``,
``lattice://name:version``, ``oci://registry/repo:tag`` and bare ``registry/repo:tag``
references into verified files in the local cache; hosts use it for actors and providers.
See docs/artifacts.md.
"""

from lattice.artifacts.cache import ArtifactCache
from lattice.artifacts.credentials import Credentials, set_registry_credentials
from lattice.artifacts.errors import (
    ArtifactError,
    ArtifactNotFound,
    ArtifactUnauthorized,
    DigestMismatch,
    InvalidReference,
    RegistryUnreachable,
    StoreUnavailable,
)
from lattice.artifacts.refs import (
    LatticeRef,
    OciRef,
    is_remote_ref,
    lattice_ref,
    looks_like_oci,
    parse_lattice_ref,
    parse_oci_ref,
)
from lattice.artifacts.resolve import fetch
from lattice.artifacts.store import ArtifactStore, PushResult, artifacts_bucket, tags_bucket

__all__ = [
    "ArtifactCache",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactUnauthorized",
    "Credentials",
    "DigestMismatch",
    "InvalidReference",
    "LatticeRef",
    "OciRef",
    "PushResult",
    "RegistryUnreachable",
    "StoreUnavailable",
    "artifacts_bucket",
    "fetch",
    "is_remote_ref",
    "lattice_ref",
    "looks_like_oci",
    "parse_lattice_ref",
    "parse_oci_ref",
    "set_registry_credentials",
    "tags_bucket",
]
