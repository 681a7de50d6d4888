"""Artifact references: the lattice's own store (``lattice://``) and OCI registries.

* ``lattice://sha256:<hex>[/<file name>]`` — an object of the lattice's artifact store, by the
  SHA-256 of its content; the optional file name is for display (events, inventory) and names
  the cached copy (a ``.par``/``.par.gz`` suffix is what makes a provider archive).
* ``lattice://<name>:<version>`` — a tag of that store, resolved when the host fetches it.
* ``oci://<registry>[:port]/<repository>[:<tag>][@sha256:<hex>]`` — an OCI registry; the same
  without ``oci://`` ("bare") when the first path segment names a registry: it contains a ``.``
  or a ``:``, or is ``localhost`` (``127.0.0.1:5000/acme/echo:0.1``, ``ghcr.io/acme/kv:1``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lattice.artifacts.errors import InvalidReference

LATTICE_SCHEME = "lattice://"
OCI_SCHEME = "oci://"

DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_SEGMENT = r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*"
_TAG_RE = re.compile(rf"(?P<name>{_SEGMENT}(?:/{_SEGMENT})*):(?P<version>{_SEGMENT})")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._+-]+")
# OCI distribution spec grammar (repository components are lowercase).
_OCI_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_OCI_REGISTRY = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]{1,5})?")
_LOOPBACK = ("localhost", "::1", "[::1]")


def check_digest(text: str) -> str:
    """``sha256:<64 lowercase hex>`` (a bare hex string gets the prefix)."""
    digest = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", digest):
        digest = "sha256:" + digest
    digest = digest[:7] + digest[7:].lower() if digest.startswith("sha256:") else digest
    if not DIGEST_RE.fullmatch(digest):
        raise InvalidReference(f"{text!r} is not a sha256 digest (expected sha256: and 64 hex "
                               "digits)")
    return digest


def check_tag(text: str) -> str:
    """A tag of the lattice store: ``name:version`` (letters, digits, ``_ - .``; ``/`` inside
    the name)."""
    tag = text.strip()
    if not _TAG_RE.fullmatch(tag) or tag.split(":", 1)[0] == "sha256":
        raise InvalidReference(
            f"{text!r} is not a tag: use NAME:VERSION (letters, digits, '_', '-', '.' and '/' in "
            "the name), e.g. echo:0.1.0")
    return tag


def tag_key(tag: str) -> str:
    """The tag bucket's key for a tag: ``name/version`` (KV keys cannot hold ``:``)."""
    name, version = check_tag(tag).split(":", 1)
    return f"{name}/{version}"


def safe_name(name: str) -> str:
    """A file name we can put in a reference and on disk (no directories, no odd characters)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    cleaned = _UNSAFE_NAME.sub("_", base).strip("._")[:120]
    return cleaned


@dataclass(frozen=True)
class LatticeRef:
    """An artifact of the lattice's store: by ``digest`` or by ``tag``; ``name`` for display."""

    digest: str | None = None
    tag: str | None = None
    name: str = ""

    def __str__(self) -> str:
        if self.digest:
            return LATTICE_SCHEME + self.digest + (f"/{self.name}" if self.name else "")
        return LATTICE_SCHEME + str(self.tag)


def lattice_ref(digest: str, name: str = "") -> str:
    return str(LatticeRef(digest=check_digest(digest), name=safe_name(name)))


def parse_lattice_ref(text: str) -> LatticeRef:
    """``lattice://sha256:<hex>[/name]``, ``lattice://name:version``, or the same without the
    scheme (for the CLI)."""
    rest = text.strip().removeprefix(LATTICE_SCHEME)
    if rest.startswith("sha256:"):
        digest, _, name = rest.partition("/")
        return LatticeRef(digest=check_digest(digest), name=safe_name(name))
    if re.fullmatch(r"[0-9a-f]{64}", rest):
        return LatticeRef(digest=check_digest(rest))
    try:
        return LatticeRef(tag=check_tag(rest))
    except InvalidReference:
        raise InvalidReference(
            f"{text!r} is not a lattice artifact reference: use lattice://sha256:<hex>[/name] "
            "or lattice://NAME:VERSION") from None


@dataclass(frozen=True)
class OciRef:
    registry: str            # host[:port]
    repository: str          # path inside the registry
    tag: str | None = None
    digest: str | None = None

    @property
    def host(self) -> str:
        if self.registry.startswith("["):
            return self.registry[1:].split("]", 1)[0]
        return self.registry.rsplit(":", 1)[0] if ":" in self.registry else self.registry

    @property
    def loopback(self) -> bool:
        host = self.host.lower()
        return host in _LOOPBACK or host.startswith("127.")

    @property
    def reference(self) -> str:
        """What the manifest URL ends with: the digest when given, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = f"{OCI_SCHEME}{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def _registry_like(segment: str) -> bool:
    return "." in segment or ":" in segment or segment == "localhost" or segment.startswith("[")


def looks_like_oci(text: str) -> bool:
    """Whether ``text`` is an OCI reference: ``oci://…``, or bare with a registry first."""
    text = text.strip()
    if text.startswith(OCI_SCHEME):
        return True
    if "://" in text or text.startswith(("/", ".", "~")) or "/" not in text:
        return False
    return _registry_like(text.split("/", 1)[0])


def parse_oci_ref(text: str) -> OciRef:
    raw = text.strip()
    body = raw.removeprefix(OCI_SCHEME)
    registry, slash, rest = body.partition("/")
    explicit = raw.startswith(OCI_SCHEME)
    if not slash or not rest or (not explicit and not _registry_like(registry)):
        raise InvalidReference(f"{text!r} is not an OCI reference: expected "
                               "oci://REGISTRY[:PORT]/REPOSITORY:TAG (or @sha256:…)")
    if not _OCI_REGISTRY.fullmatch(registry):
        raise InvalidReference(f"{text!r}: {registry!r} is not a registry host[:port]")
    digest = None
    if "@" in rest:
        rest, _, digest_text = rest.partition("@")
        digest = check_digest(digest_text)
    tag = None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, _, tag = rest.rpartition(":")
        if not _OCI_TAG.fullmatch(tag):
            raise InvalidReference(f"{text!r}: {tag!r} is not a valid OCI tag")
    components = rest.split("/")
    if not all(_OCI_COMPONENT.fullmatch(c) for c in components):
        raise InvalidReference(
            f"{text!r}: {rest!r} is not a valid OCI repository (lowercase letters, digits and "
            "separators '.', '_', '-', '/')")
    if tag is None and digest is None:
        tag = "latest"
    return OciRef(registry=registry, repository=rest, tag=tag, digest=digest)


def is_remote_ref(text: str) -> bool:
    """A reference a host fetches (``lattice://`` or OCI) rather than a local path; a bare OCI
    look-alike that exists as a file here stays a path."""
    text = text.strip()
    if text.startswith((LATTICE_SCHEME, OCI_SCHEME)):
        return True
    return looks_like_oci(text) and not Path(text).expanduser().exists()
