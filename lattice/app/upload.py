"""Local image paths in a manifest → ``lattice://`` refs, so any host can run the app.

``lattice app deploy`` runs on the operator's machine; the hosts may not share its disk. Every
component whose image is a local file is uploaded into the lattice's artifact store (by content
hash; an unchanged file is not sent again) and the manifest records the ``lattice://sha256:…``
reference instead. Names (``httpserver``), OCI refs and ``file://`` URLs are left alone.

A consequence worth knowing: the stored version pins the content. Rebuilding an actor and
deploying the same version again is refused (versions are immutable) — bump the version.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lattice.app.manifest import Manifest
from lattice.artifacts import ArtifactError
from lattice.artifacts.store import ArtifactStore

_SUFFIXES = (".wasm", ".par", ".par.gz", ".wat")


def local_image(image: str, base: Path) -> Path | None:
    """The local file ``image`` names, if it is a path (not a provider name) and exists."""
    if "://" in image or not ("/" in image or image.endswith(_SUFFIXES)):
        return None
    path = Path(image).expanduser()
    path = path if path.is_absolute() else base / path
    return path if path.is_file() else None


async def upload_images(nc: Any, lattice: str, manifest: Manifest, base: Path,
                        note: Callable[[str], None]) -> Manifest:
    store = ArtifactStore(nc, lattice)
    refs: dict[str, str] = {}
    for comp in manifest.components:
        path = local_image(comp.image, base)
        if path is None or comp.image in refs:
            continue
        try:
            result = await store.push_file(path)
        except ArtifactError as exc:
            raise ArtifactError(f"component {comp.name}: cannot upload {path}: {exc}") from None
        note(f"{'uploaded' if result.uploaded else 'already stored:'} {path.name} as "
             f"{result.ref}")
        refs[comp.image] = result.ref
    return manifest.map_images(lambda image: refs.get(image, image))
