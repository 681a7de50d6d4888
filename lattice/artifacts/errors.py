"""Why an artifact could not be stored or fetched; every message says what to do next."""

from __future__ import annotations


class ArtifactError(Exception):
    """An artifact could not be pushed, pulled or fetched; the text says why."""


class InvalidReference(ArtifactError):
    """The text is not a reference we can fetch (bad scheme, digest, tag or repository)."""


class ArtifactNotFound(ArtifactError):
    """No such digest, tag or repository."""


class ArtifactUnauthorized(ArtifactError):
    """The registry wants (other) credentials."""


class RegistryUnreachable(ArtifactError):
    """The OCI registry did not answer (connection refused, timeout, TLS mismatch)."""


class StoreUnavailable(ArtifactError):
    """The lattice's NATS has no usable JetStream for the artifact store."""


class DigestMismatch(ArtifactError):
    """Downloaded content does not hash to the digest it was asked for: refused."""
