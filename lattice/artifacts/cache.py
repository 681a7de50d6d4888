"""The local artifact cache: fetched actors and providers, by the SHA-256 of their content.

Layout under ``lattice.paths.cache_dir() / "artifacts"``::

    sha256/<hex>/<file name>     the content, under its display name (echo.wasm, kv.par.gz)
    oci/<manifest hex>.json      manifest digest -> content digest and name (``@sha256:`` refs)
    tmp/                         downloads in progress (same filesystem: renamed into place)

Content is written to ``tmp/`` and renamed into place only after its hash matched, and is
hashed again whenever it is taken from the cache, so a truncated or altered file is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from lattice import paths
from lattice.artifacts.errors import DigestMismatch
from lattice.artifacts.refs import check_digest, safe_name

log = logging.getLogger("lattice.artifacts.cache")

_GZIP_MAGIC = b"\x1f\x8b"


def file_digest(path: Path) -> str:
    with path.open("rb") as fh:
        return "sha256:" + hashlib.file_digest(fh, "sha256").hexdigest()


def sniff_suffix(head: bytes) -> str:
    """A file suffix for content without a name: ``.wasm``, ``.par.gz``, ``.par`` or none."""
    if head.startswith(b"\0asm"):
        return ".wasm"
    if head.startswith(_GZIP_MAGIC):
        return ".par.gz"
    if len(head) > 262 and head[257:262] == b"ustar":
        return ".par"
    return ""


def display_name(name: str, head: bytes, fallback: str = "artifact") -> str:
    """``name`` made safe, or ``fallback`` plus a suffix guessed from the content."""
    return safe_name(name) or f"{safe_name(fallback) or 'artifact'}{sniff_suffix(head)}"


class ArtifactCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else paths.cache_dir() / "artifacts"

    def dir_for(self, digest: str) -> Path:
        return self.root / "sha256" / check_digest(digest).removeprefix("sha256:")

    def lookup(self, digest: str, name: str = "") -> Path | None:
        """The cached content of ``digest`` (as ``name`` when given), if intact."""
        folder = self.dir_for(digest)
        try:
            entries = sorted(p for p in folder.iterdir() if p.is_file())
        except OSError:
            return None
        for path in entries:
            if file_digest(path) != digest:
                log.warning("dropping a corrupt cached artifact", extra={
                    "path": str(path), "digest": digest})
                with contextlib.suppress(OSError):
                    path.unlink()
                continue
            wanted = safe_name(name)
            if not wanted or wanted == path.name:
                return path
            return self._alias(path, folder / wanted)
        return None

    def _alias(self, path: Path, alias: Path) -> Path:
        """The same content under another name (hard link, else a copy)."""
        try:
            os.link(path, alias)
        except FileExistsError:
            pass
        except OSError:
            try:
                self._copy(path, alias)
            except OSError:
                return path
        return alias if alias.exists() else path

    def _copy(self, src: Path, dst: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            while chunk := inp.read(1 << 20):
                out.write(chunk)
        os.chmod(tmp, src.stat().st_mode & 0o777)
        os.replace(tmp, dst)

    def temp_file(self) -> tuple[IO[bytes], Path]:
        """An open temporary file in the cache's filesystem, for a download."""
        folder = paths.private_dir(self.root / "tmp")
        fd, name = tempfile.mkstemp(dir=folder, prefix="download-")
        return os.fdopen(fd, "wb"), Path(name)

    def store(self, tmp: Path, digest: str, name: str, *, source: str,
              executable: bool = False, fallback: str = "artifact") -> Path:
        """Move a finished download into place once it hashes to ``digest``; the temporary
        file is gone afterwards either way. Raises DigestMismatch."""
        try:
            actual = file_digest(tmp)
            if actual != digest:
                raise DigestMismatch(
                    f"the content of {digest} from {source} hashes to {actual}: refusing it (the "
                    "stored object was corrupted or tampered with; push the artifact again)")
            folder = paths.private_dir(self.dir_for(digest))
            with tmp.open("rb") as fh:
                head = fh.read(512)
            target = folder / display_name(name, head, fallback)
            os.chmod(tmp, 0o755 if executable else 0o644)
            os.replace(tmp, target)
            return target
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()

    # ---- OCI manifest digests -> content ------------------------------------------------------

    def _index_path(self, manifest_digest: str) -> Path:
        return self.root / "oci" / (check_digest(manifest_digest).removeprefix("sha256:")
                                    + ".json")

    def lookup_manifest(self, manifest_digest: str) -> Path | None:
        try:
            doc: Any = json.loads(self._index_path(manifest_digest).read_text())
            return self.lookup(str(doc["digest"]), str(doc.get("name") or ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember_manifest(self, manifest_digest: str, digest: str, name: str) -> None:
        path = self._index_path(manifest_digest)
        with contextlib.suppress(OSError):
            paths.private_dir(path.parent)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".index-")
            with os.fdopen(fd, "w") as fh:
                json.dump({"digest": digest, "name": name}, fh)
            os.replace(tmp, path)
