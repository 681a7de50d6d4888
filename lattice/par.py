"""Provider archives, ``.par`` / ``.par.gz`` (docs/wire.md §5.5).

A tar (optionally gzip) holding ``claims.jwt`` — a provider JWT signed by an account key, whose
``wascap.target_hashes`` lists the SHA-256 of every binary — and one executable per target named
``{arch}-{os}.bin``. Reading verifies the signature (the reference hosts do not; we do) and every
binary against its signed hash, so a tampered archive never runs.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import os
import platform
import re
import secrets
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from lattice import jwt
from lattice.keys import KeyPair, KeyRole, is_public_key

CLAIMS_ENTRY = "claims.jwt"
BIN_SUFFIX = ".bin"
WASCAP_REVISION = 3
_GZIP_MAGIC = b"\x1f\x8b"
_NUID_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_NOT_ALNUM = re.compile(r"[^a-z0-9]")

# Rust std::env::consts names, which target names use.
_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
         "i386": "x86", "i686": "x86", "x86": "x86", "armv7l": "arm", "armv6l": "arm",
         "riscv64": "riscv64", "ppc64le": "powerpc64", "s390x": "s390x"}
_OS = {"linux": "linux", "darwin": "macos", "win32": "windows", "cygwin": "windows",
       "freebsd": "freebsd", "openbsd": "openbsd", "netbsd": "netbsd"}


class ParError(ValueError):
    """The archive is unreadable, unsigned, tampered with, or lacks this platform's binary."""


@dataclass
class ProviderArchive:
    token: str
    claims: dict[str, Any]
    public_key: str        # sub: the provider's V… key
    issuer: str            # iss: the signing account's A… key
    name: str
    capid: str
    vendor: str
    rev: int | None
    ver: str | None
    issued_at: int
    config_schema: Any | None = None
    binaries: dict[str, bytes] = field(default_factory=dict)

    @property
    def revision(self) -> int:
        """What hosts compare: ``rev`` if > 0, else ``iat`` (as for actors)."""
        return self.rev if self.rev and self.rev > 0 else self.issued_at

    @property
    def targets(self) -> list[str]:
        return sorted(self.binaries)

    def binary(self, target: str | None = None) -> bytes:
        wanted = target or current_target()
        try:
            return self.binaries[wanted]
        except KeyError:
            have = ", ".join(self.targets) or "none"
            raise ParError(f"provider archive {self.name} ({self.public_key}) has no binary for "
                           f"{wanted} (it has: {have})") from None


def current_target() -> str:
    """This platform as a PAR target: ``x86_64-linux``, ``aarch64-macos``, …"""
    machine = platform.machine().lower()
    arch = _ARCH.get(machine, machine)
    osname = next((v for k, v in _OS.items() if sys.platform.startswith(k)), sys.platform)
    return f"{arch}-{osname}"


def _sha256_upper(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest().upper()


def _entries(data: bytes, source: str) -> tuple[str | None, dict[str, bytes]]:
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ParError(f"{source} is not a valid gzip file: {exc}") from None
    token: str | None = None
    binaries: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                entry = PurePosixPath(member.name).name
                if entry != CLAIMS_ENTRY and not entry.endswith(BIN_SUFFIX):
                    continue
                handle = tar.extractfile(member)
                content = handle.read() if handle else b""
                if entry == CLAIMS_ENTRY:
                    token = content.decode("utf-8", "replace").strip()
                else:
                    binaries[entry[: -len(BIN_SUFFIX)]] = content
    except tarfile.TarError as exc:
        raise ParError(f"{source} is not a provider archive (tar): {exc}") from None
    return token, binaries


def _verified_claims(token: str, source: str) -> dict[str, Any]:
    try:
        claims = jwt.verify(token)
    except jwt.JwtError as exc:
        raise ParError(f"the claims in {source} are not validly signed: {exc}") from None
    now = time.time()
    if isinstance(claims.get("exp"), int) and claims["exp"] < now:
        raise ParError(f"the claims in {source} have expired")
    if isinstance(claims.get("nbf"), int) and claims["nbf"] > now:
        raise ParError(f"the claims in {source} are not valid yet")
    if not is_public_key(claims["sub"], KeyRole.SERVICE):
        raise ParError(f"the claims in {source} are not provider claims: the subject must be "
                       f"{KeyRole.SERVICE.label}, got {claims['sub'][:1]}…")
    if not is_public_key(claims["iss"], KeyRole.ACCOUNT):
        raise ParError(f"the claims in {source} must be issued by {KeyRole.ACCOUNT.label}")
    meta = claims.get("wascap")
    if not isinstance(meta, dict) or not isinstance(meta.get("capid"), str):
        raise ParError(f"the claims in {source} carry no provider metadata (wascap.capid)")
    if not isinstance(meta.get("target_hashes"), dict):
        raise ParError(f"the claims in {source} carry no wascap.target_hashes")
    return claims


def read_par_bytes(data: bytes, source: str = "the provider archive") -> ProviderArchive:
    token, binaries = _entries(data, source)
    if not token:
        raise ParError(f"{source} has no {CLAIMS_ENTRY}: it is not a provider archive")
    if not binaries:
        raise ParError(f"{source} contains no provider binary ({{target}}{BIN_SUFFIX})")
    claims = _verified_claims(token, source)
    meta = claims["wascap"]
    hashes = {str(k): str(v).upper() for k, v in meta["target_hashes"].items()}
    for target, binary in binaries.items():
        signed = hashes.get(target)
        if signed is None:
            raise ParError(f"{source}: the binary for {target} is not covered by the signed "
                           "claims (no target hash)")
        actual = _sha256_upper(binary)
        if actual != signed:
            raise ParError(f"{source}: the binary for {target} does not match its signed hash "
                           f"({actual} / {signed}); the archive was modified after signing")
    rev = meta.get("rev")
    ver = meta.get("ver")
    iat = claims.get("iat")
    return ProviderArchive(
        token=token, claims=claims, public_key=claims["sub"], issuer=claims["iss"],
        name=str(meta.get("name") or ""), capid=meta["capid"], vendor=str(meta.get("vendor") or ""),
        rev=rev if isinstance(rev, int) and not isinstance(rev, bool) else None,
        ver=ver if isinstance(ver, str) else None,
        issued_at=iat if isinstance(iat, int) else 0,
        config_schema=meta.get("config_schema"), binaries=binaries)


def read_par(path: str | Path) -> ProviderArchive:
    """Read and verify a ``.par``/``.par.gz``; raises ParError with the reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ParError(f"cannot read provider archive {path}: {exc.strerror}") from None
    return read_par_bytes(data, str(path))


def _cache_component(text: str) -> str:
    return _NOT_ALNUM.sub("_", text.lower())


def cache_path(archive: ProviderArchive, cache_root: str | Path, link_name: str = "default"
               ) -> Path:
    """``{cache_root}/wasmcloudcache/{provider_pk}/{rev}/{contract}_{link}`` (docs/wire.md §5.5)."""
    name = f"{_cache_component(archive.capid)}_{_cache_component(link_name)}"
    if sys.platform.startswith("win"):
        name += ".exe"
    return (Path(cache_root) / "wasmcloudcache" / archive.public_key / str(archive.rev or 0)
            / name)


def extract(archive: ProviderArchive, cache_root: str | Path, *, link_name: str = "default",
            target: str | None = None) -> Path:
    """Write this platform's binary to the cache path (mode 0755) and return the path.

    An existing file is kept when its content matches the signed hash; a file that does not
    match (a stale or modified cache) is replaced atomically, so a running copy is not touched.
    """
    binary = archive.binary(target)
    path = cache_path(archive, cache_root, link_name)
    try:
        if path.is_file() and _sha256_upper(path.read_bytes()) == _sha256_upper(binary):
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(binary)
            os.chmod(tmp, 0o755)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise ParError(f"cannot write the provider binary to {path}: {exc.strerror}") from None
    return path


def _nuid() -> str:
    return "".join(secrets.choice(_NUID_ALPHABET) for _ in range(22))


def build_par(path: str | Path, *, binaries: dict[str, bytes], issuer: KeyPair, subject: KeyPair,
              name: str, capid: str, vendor: str, rev: int | None = None, ver: str | None = None,
              compress: bool = False, config_schema: Any | None = None) -> Path:
    """Write a signed provider archive (for tests and tooling); returns its path."""
    if issuer.role is not KeyRole.ACCOUNT or not issuer.has_seed:
        raise ParError(f"the issuer must be {KeyRole.ACCOUNT.label} with its seed")
    if subject.role is not KeyRole.SERVICE:
        raise ParError(f"the subject must be {KeyRole.SERVICE.label}")
    if not binaries:
        raise ParError("a provider archive needs at least one binary")
    # Key order follows wascap's CapabilityProvider serde layout; Options are omitted.
    meta: dict[str, Any] = {"name": name, "capid": capid, "vendor": vendor}
    if rev is not None:
        meta["rev"] = rev
    if ver is not None:
        meta["ver"] = ver
    meta["target_hashes"] = {t: _sha256_upper(b) for t, b in sorted(binaries.items())}
    if config_schema is not None:
        meta["config_schema"] = config_schema
    claims = {"jti": _nuid(), "iat": int(time.time()), "iss": issuer.public_key,
              "sub": subject.public_key, "wascap": meta, "wascap_revision": WASCAP_REVISION}
    token = jwt.encode(claims, issuer)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:") as tar:
        entries = [(CLAIMS_ENTRY, token.encode(), 0o644)]
        entries += [(f"{t}{BIN_SUFFIX}", b, 0o755) for t, b in sorted(binaries.items())]
        for entry, content, mode in entries:
            info = tarfile.TarInfo(entry)
            info.size = len(content)
            info.mode = mode
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(content))
    data = buf.getvalue()
    if compress:
        data = gzip.compress(data)
    path = Path(path)
    path.write_bytes(data)
    return path
