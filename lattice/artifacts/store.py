"""The lattice's artifact store: a JetStream object store of actors and providers by content.

* Object store ``LATTICE_ARTIFACTS_{lattice}``: one object per content, named
  ``sha256:<hex>`` of the content. Headers keep the original file name
  (``Lattice-Filename``), whether it was executable (``Lattice-Executable``) and what it looks
  like (``Lattice-Kind``: ``actor``, ``provider-archive``, ``executable`` or ``file``).
* KV bucket ``LATTICE_ARTIFACT_TAGS_{lattice}``: one key per tag ``name:version``, stored as
  ``name/version`` (KV keys cannot hold ``:``); the value is JSON
  ``{"tag", "digest", "name", "size", "updated"}``. A tag is moved by pushing again.

Pushing is idempotent: content whose digest is already stored is not uploaded again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ObjectInfo, ObjectMeta, ObjectStoreConfig
from nats.js.errors import (
    BucketNotFoundError,
    DigestMismatchError,
    KeyNotFoundError,
    NoKeysError,
    NotFoundError,
    ObjectNotFoundError,
    ServiceUnavailableError,
)
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from lattice.artifacts.cache import ArtifactCache, file_digest, sniff_suffix
from lattice.artifacts.errors import (
    ArtifactError,
    ArtifactNotFound,
    DigestMismatch,
    StoreUnavailable,
)
from lattice.artifacts.refs import LatticeRef, check_tag, lattice_ref, safe_name, tag_key
from lattice.connect import jetstream

log = logging.getLogger("lattice.artifacts.store")

FILENAME_HEADER = "Lattice-Filename"
EXECUTABLE_HEADER = "Lattice-Executable"
KIND_HEADER = "Lattice-Kind"


def artifacts_bucket(lattice: str) -> str:
    return f"LATTICE_ARTIFACTS_{lattice}"


def tags_bucket(lattice: str) -> str:
    return f"LATTICE_ARTIFACT_TAGS_{lattice}"


def kind_of(head: bytes, executable: bool) -> str:
    suffix = sniff_suffix(head)
    if suffix == ".wasm":
        return "actor"
    if suffix.startswith(".par"):
        return "provider-archive"
    return "executable" if executable else "file"


@dataclass
class PushResult:
    ref: str            # lattice://sha256:<hex>/<name>
    digest: str
    name: str
    size: int
    kind: str
    uploaded: bool      # False: the store already had this content
    tags: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "digest": self.digest, "name": self.name, "size": self.size,
                "kind": self.kind, "uploaded": self.uploaded, "tags": self.tags}


@dataclass
class StoredArtifact:
    digest: str
    name: str
    size: int
    executable: bool
    kind: str


class ArtifactStore:
    """The artifact store of one lattice over an open NATS connection."""

    def __init__(self, nc: Client, lattice: str, js_domain: str | None = None,
                 timeout: float = 10.0) -> None:
        self.js = jetstream(nc, js_domain, timeout=timeout)  # KV writes work across leaves
        self.lattice = lattice
        self.bucket = artifacts_bucket(lattice)
        self.tags_bucket = tags_bucket(lattice)
        self._objects: ObjectStore | None = None
        self._tags: KeyValue | None = None

    # ---- buckets --------------------------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        return StoreUnavailable(
            f"the lattice's NATS did not answer for the artifact store {self.bucket} "
            f"({exc or type(exc).__name__}): it needs JetStream (nats-server -js; `lattice up` "
            "starts one that has it)")

    async def _object_store(self, create: bool) -> ObjectStore:
        if self._objects is None:
            try:
                try:
                    self._objects = await self.js.object_store(self.bucket)
                except (BucketNotFoundError, NotFoundError):
                    if not create:
                        raise ArtifactNotFound(
                            f"lattice {self.lattice} has no artifact store yet (nothing was "
                            "pushed to it): push the artifact with `lattice push FILE`") from None
                    self._objects = await self.js.create_object_store(
                        self.bucket, config=ObjectStoreConfig(
                            bucket=self.bucket,
                            description="Lattice actors and providers by content digest"))
            except (NoRespondersError, NatsTimeoutError, TimeoutError,
                    ServiceUnavailableError) as exc:
                raise self._unavailable(exc) from None
        return self._objects

    async def _tag_store(self, create: bool) -> KeyValue:
        if self._tags is None:
            try:
                try:
                    self._tags = await self.js.key_value(self.tags_bucket)
                except (BucketNotFoundError, NotFoundError):
                    if not create:
                        raise ArtifactNotFound(
                            f"lattice {self.lattice} has no artifact tags yet: tag an artifact "
                            "with `lattice push FILE --tag NAME:VERSION`") from None
                    self._tags = await self.js.create_key_value(bucket=self.tags_bucket,
                                                                history=5)
            except (NoRespondersError, NatsTimeoutError, TimeoutError,
                    ServiceUnavailableError) as exc:
                raise self._unavailable(exc) from None
        return self._tags

    # ---- push -----------------------------------------------------------------------------------

    async def push_file(self, path: Path, *, tags: list[str] | tuple[str, ...] = (),
                        name: str | None = None) -> PushResult:
        """Upload ``path`` unless its content is already stored, then point ``tags`` at it."""
        tags = [check_tag(t) for t in tags]
        path = Path(path)
        try:
            digest = await asyncio.to_thread(file_digest, path)
            size = path.stat().st_size
            executable = os.access(path, os.X_OK)
            with path.open("rb") as fh:
                head = fh.read(512)
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
        display = safe_name(name or path.name) or f"artifact{sniff_suffix(head)}"
        kind = kind_of(head, executable)
        store = await self._object_store(create=True)
        uploaded = False
        try:
            existing = await self._info(store, digest)
            if existing is None or existing.size != size:
                meta = ObjectMeta(name=digest, description=display, headers={
                    FILENAME_HEADER: display, EXECUTABLE_HEADER: "true" if executable else "false",
                    KIND_HEADER: kind})
                with path.open("rb") as fh:
                    await store.put(digest, fh, meta=meta)
                uploaded = True
            for tag in tags:
                await self.set_tag(tag, digest, display, size)
        except OSError as exc:
            raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
        except (NoRespondersError, NatsTimeoutError, TimeoutError,
                ServiceUnavailableError) as exc:
            raise self._unavailable(exc) from None
        except NatsError as exc:
            raise ArtifactError(f"uploading {path} to {self.bucket} failed: {exc}") from None
        log.info("artifact pushed", extra={"digest": digest, "artifact": display, "bytes": size,
                                           "uploaded": uploaded, "tags": tags,
                                           "bucket": self.bucket})
        return PushResult(ref=lattice_ref(digest, display), digest=digest, name=display,
                          size=size, kind=kind, uploaded=uploaded, tags=tags)

    async def set_tag(self, tag: str, digest: str, name: str, size: int) -> None:
        kv = await self._tag_store(create=True)
        doc = {"tag": check_tag(tag), "digest": digest, "name": name, "size": size,
               "updated": int(time.time())}
        await kv.put(tag_key(tag), json.dumps(doc).encode())

    # ---- lookups --------------------------------------------------------------------------------

    @staticmethod
    async def _info(store: ObjectStore, digest: str) -> ObjectInfo | None:
        try:
            info = await store.get_info(digest)
        except (ObjectNotFoundError, NotFoundError):
            return None
        return None if info.deleted else info

    async def resolve_tag(self, tag: str) -> str:
        """The digest a tag points at; raises ArtifactNotFound."""
        kv = await self._tag_store(create=False)
        try:
            entry = await kv.get(tag_key(tag))
            doc = json.loads(entry.value or b"{}")
            return str(doc["digest"])
        except (KeyNotFoundError, NotFoundError):
            raise ArtifactNotFound(
                f"there is no tag {tag} in lattice {self.lattice}'s artifact store: push it "
                f"with `lattice push FILE --tag {tag}`") from None
        except (ValueError, KeyError, TypeError):
            raise ArtifactError(f"the tag {tag} in {self.tags_bucket} is not readable") from None
        except (NoRespondersError, NatsTimeoutError, TimeoutError,
                ServiceUnavailableError) as exc:
            raise self._unavailable(exc) from None

    async def tags(self) -> list[dict[str, Any]]:
        """Every tag (``tag``, ``digest``, ``name``, ``size``, ``updated``), sorted by tag."""
        try:
            kv = await self._tag_store(create=False)
        except ArtifactNotFound:
            return []
        out = []
        try:
            keys = await kv.keys()
        except (NoKeysError, NotFoundError):
            return []
        for key in keys:
            with contextlib.suppress(KeyNotFoundError, NotFoundError, ValueError):
                entry = await kv.get(key)
                out.append(json.loads(entry.value or b"{}"))
        return sorted(out, key=lambda d: str(d.get("tag", "")))

    async def download(self, ref: LatticeRef, cache: ArtifactCache) -> Path:
        """Fetch ``ref`` into ``cache`` (or take the cached copy); the content's SHA-256 must
        equal the digest asked for."""
        digest = ref.digest or await self.resolve_tag(str(ref.tag))
        cached = await asyncio.to_thread(cache.lookup, digest, ref.name)
        if cached is not None:
            return cached
        store = await self._object_store(create=False)
        fh, tmp = cache.temp_file()
        try:
            with fh:
                try:
                    result = await store.get(digest, writeinto=fh)
                except (ObjectNotFoundError, NotFoundError):
                    raise ArtifactNotFound(
                        f"there is no artifact {digest} in lattice {self.lattice}'s artifact "
                        f"store{f' (tag {ref.tag})' if ref.tag else ''}: push it with "
                        "`lattice push FILE`") from None
                except DigestMismatchError:
                    raise DigestMismatch(
                        f"{digest} arrived from {self.bucket} damaged (its chunks do not match "
                        "the object's own checksum): refusing it; push the artifact again"
                    ) from None
                except (NoRespondersError, NatsTimeoutError, TimeoutError,
                        ServiceUnavailableError) as exc:
                    raise self._unavailable(exc) from None
                except NatsError as exc:
                    raise ArtifactError(f"downloading {digest} from {self.bucket} failed: "
                                        f"{exc}") from None
            headers = result.info.headers or {}
            name = ref.name or headers.get(FILENAME_HEADER, "") or result.info.description or ""
            executable = headers.get(EXECUTABLE_HEADER) == "true"
            path = await asyncio.to_thread(
                cache.store, tmp, digest, name,
                source=f"lattice {self.lattice}'s artifact store", executable=executable)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        log.info("artifact fetched", extra={"digest": digest, "artifact": path.name,
                                            "bytes": path.stat().st_size, "source": self.bucket})
        return path
