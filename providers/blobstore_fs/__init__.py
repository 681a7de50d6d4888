"""``blobstore-fs``: ``wasmcloud:blobstore`` on the local file system (docs/contracts.md §6.5).

Each linked actor gets a root directory (link value ``ROOT``, default
``{state dir}/blobstore/{actor key}``); containers are its sub-directories and objects the files
below them (``ROOT/<container>/<object>``, an object name may contain ``/``). Names that could
leave the root (``..``, ``.``, empty segments, absolute paths, NUL) are refused.

Differences from the reference provider, on purpose:

* ``GetObject`` streams: the first ≤512 KiB come back in ``initialChunk``, the rest arrives as
  ``ChunkReceiver.ReceiveChunk`` calls (in order, stopped by ``cancelDownload``), so a large
  file never becomes one huge message.
* Uploads are atomic: multi-part data goes to ``ROOT/.lattice-uploads/`` and is renamed into
  place by the last chunk; ``cancelAndRemove`` drops it (an older object stays untouched).
* Removing a missing object is a success (as in S3); ``RemoveContainers``/``RemoveObjects`` list
  only real failures, with ``success: false`` and the name the actor used as ``key``.

This module also holds the helpers ``blobstore-s3`` shares (download streaming, ranges, list
selection, upload-offset checks).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import Timestamp
from contracts.blobstore import OPERATIONS as _OPS
from contracts.blobstore import (
    RECEIVE_CHUNK,
    Chunk,
    ChunkResponse,
    ContainerMetadata,
    ContainerObject,
    GetObjectRequest,
    GetObjectResponse,
    ItemResult,
    ListObjectsRequest,
    ListObjectsResponse,
    ObjectMetadata,
    PutChunkRequest,
    PutObjectRequest,
    PutObjectResponse,
    RemoveObjectsRequest,
)
from lattice import paths
from lattice.links import LinkDefinition
from lattice.provider import Context, InvalidParameter, Provider, ProviderError

log = logging.getLogger("providers.blobstore_fs")

CONTRACT_ID = "wasmcloud:blobstore"
# Each streamed download chunk stays well under the 900 KiB RPC chunking threshold, so streaming
# really happens message by message instead of through the object store.
CHUNK_SIZE = 512 * 1024
LIST_DEFAULT = 1000
ZERO_LENGTH = "cannot put zero-length objects"
STAGING = ".lattice-uploads"  # in-progress multi-part uploads, never listed as a container

_RECEIVE = next(op for op in _OPS if op.name == RECEIVE_CHUNK)


# ---- helpers shared with blobstore-s3 -----------------------------------------------------------


def byte_range(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """``[first, stop)`` of an inclusive ``rangeStart..rangeEnd`` request on ``size`` bytes."""
    first = start or 0
    last = size - 1 if end is None else min(end, size - 1)
    if first > last:
        return first, first
    return first, last + 1


def select_keys(keys: Iterable[str], req: ListObjectsRequest, limit: int | None = None
                ) -> tuple[list[str], bool]:
    """Apply startWith (inclusive lower bound), continuation (the last key already returned),
    endWith (inclusive) and endBefore (exclusive) to sorted ``keys``; ``(page, is_last)``."""
    size = min(req.max_items or LIST_DEFAULT, LIST_DEFAULT) if limit is None else limit
    page: list[str] = []
    for key in keys:
        if req.continuation:
            if key <= req.continuation:
                continue
        elif req.start_with and key < req.start_with:
            continue
        if (req.end_with is not None and key > req.end_with) or (
                req.end_before is not None and key >= req.end_before):
            return page, True
        if len(page) == size:
            return page, False
        page.append(key)
    return page, True


def continuation_of(page: list[str], is_last: bool) -> str | None:
    # Our token is simply the last key returned: stable across calls and across providers.
    return None if is_last or not page else page[-1]


class Downloads:
    """Background ReceiveChunk senders, per actor, so unlinking or stopping can end them."""

    def __init__(self, logger: logging.Logger) -> None:
        self.log = logger
        self.tasks: dict[str, set[asyncio.Task[None]]] = {}

    def start(self, ctx: Context, chunk: Chunk, stop: int,
              read: Callable[[int], Awaitable[bytes]], close: Callable[[], Awaitable[None]]
              ) -> None:
        """Stream bytes ``[chunk.offset + len(chunk.bytes), stop)`` after the initial chunk."""
        task = asyncio.ensure_future(self._send(ctx, chunk, stop, read, close))
        tasks = self.tasks.setdefault(ctx.actor, set())
        tasks.add(task)

        def done(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            if not tasks and self.tasks.get(ctx.actor) is tasks:
                del self.tasks[ctx.actor]

        task.add_done_callback(done)

    async def _send(self, ctx: Context, first: Chunk, stop: int,
                    read: Callable[[int], Awaitable[bytes]],
                    close: Callable[[], Awaitable[None]]) -> None:
        offset = first.offset + len(first.bytes)
        fields = {"actor": ctx.actor, "container": first.container_id,
                  "object_id": first.object_id}
        try:
            while offset < stop:
                data = await read(min(CHUNK_SIZE, stop - offset))
                if not data:
                    raise ProviderError(f"the object ended early at byte {offset} of {stop}")
                last = offset + len(data) >= stop
                payload = _RECEIVE.encode_input(Chunk(
                    object_id=first.object_id, container_id=first.container_id, bytes=data,
                    offset=offset, is_last=last))
                answer = await ctx.bridge.call_actor(ctx.actor, RECEIVE_CHUNK, payload)
                offset += len(data)
                response = _RECEIVE.decode_output(answer) if answer else ChunkResponse()
                if response.cancel_download and not last:
                    self.log.info("download cancelled by the actor",
                                  extra={**fields, "offset": offset})
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the actor is gone or refused: nobody to tell but the log
            self.log.warning("download stream stopped", extra={
                **fields, "offset": offset, "error": str(exc) or type(exc).__name__})
        finally:
            with contextlib.suppress(Exception):
                await close()

    def cancel(self, actor: str | None = None) -> None:
        for key in [actor] if actor is not None else list(self.tasks):
            for task in list(self.tasks.get(key, ())):
                task.cancel()


def check_offset(stream_id: str, expected: int, chunk: Chunk) -> None:
    if chunk.offset != expected:
        raise InvalidParameter(
            f"chunk offset {chunk.offset} does not match the expected offset {expected} of "
            f"upload stream {stream_id} (chunks must arrive in order without gaps)")


def check_first_chunk(chunk: Chunk) -> None:
    if not chunk.bytes:
        raise InvalidParameter(ZERO_LENGTH)
    if chunk.offset != 0:
        raise InvalidParameter(f"PutObject must carry the first chunk (offset 0), got offset "
                               f"{chunk.offset}; send later chunks with PutChunk")


def timestamp(seconds: float) -> Timestamp:
    sec = int(seconds)
    return Timestamp(sec, int((seconds - sec) * 1e9))


# ---- names and paths ----------------------------------------------------------------------------


def check_container(name: str) -> None:
    if not name:
        raise InvalidParameter("container name must not be empty")
    if "\0" in name:
        raise InvalidParameter(f"container name {name!r} contains a NUL byte")
    if "/" in name or name in (".", "..") or name == STAGING:
        raise InvalidParameter(f"container name {name!r} is not allowed: it must be a single "
                               "directory name (no '/', not '.', '..' or " + STAGING + ")")


def check_object(container: str, name: str) -> None:
    if not name:
        raise InvalidParameter(f"object name in container '{container}' must not be empty")
    if "\0" in name:
        raise InvalidParameter(f"object name {name!r} contains a NUL byte")
    if name.startswith("/") or any(p in ("", ".", "..") for p in name.split("/")):
        raise InvalidParameter(f"object name {name!r} is not allowed: it must be a relative path "
                               "without '..', '.' or empty segments (path traversal)")


def _inside(root: Path, path: Path) -> Path:
    # A symlink inside the root could still point outside it: check the resolved path.
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise InvalidParameter(f"{path.relative_to(root)} resolves outside the blobstore root")
    return real


# ---- the provider -------------------------------------------------------------------------------


def find_upload(uploads: dict[str, Any], actor: str, req: PutChunkRequest) -> Any:
    """The upload a PutChunk continues: by streamId, else the actor's upload of that object.

    Shared by blobstore-fs and blobstore-s3; an upload is anything with ``actor``,
    ``container``, ``object_id`` and ``stream_id``.
    """
    chunk = req.chunk
    upload = uploads.get(req.stream_id) if req.stream_id else next(
        (u for u in uploads.values() if u.actor == actor
         and (u.container, u.object_id) == (chunk.container_id, chunk.object_id)), None)
    if upload is None or upload.actor != actor:
        raise InvalidParameter(
            f"no upload in progress for stream {req.stream_id or '(none)'} (object "
            f"'{chunk.object_id}' in container '{chunk.container_id}'): start it with "
            "PutObject and isLast=false")
    if (chunk.container_id or upload.container) != upload.container or (
            chunk.object_id or upload.object_id) != upload.object_id:
        raise InvalidParameter(
            f"upload stream {upload.stream_id} belongs to object '{upload.object_id}' in "
            f"container '{upload.container}', not '{chunk.object_id}' in "
            f"'{chunk.container_id}'")
    return upload


@dataclass
class Upload:
    stream_id: str
    actor: str
    root: Path
    container: str
    object_id: str
    staging: Path
    expected: int
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def default_root(actor: str) -> Path:
    return paths.state_dir() / "blobstore" / actor


def root_from_values(actor: str, values: dict[str, str]) -> Path:
    """The link's ROOT (exact case, as the reference; ``root`` accepted too) or the default."""
    raw = values.get("ROOT", values.get("root", ""))
    if not raw.strip():
        return default_root(actor)
    if "\0" in raw:
        raise ProviderError("link value ROOT contains a NUL byte")
    root = Path(raw).expanduser()
    if not root.is_absolute():
        raise ProviderError(f"link value ROOT must be an absolute path, got {raw!r}")
    return root


class BlobstoreFsProvider(Provider):
    contract_id = CONTRACT_ID
    name = "blobstore-fs"

    def __init__(self) -> None:
        self.roots: dict[str, Path] = {}
        self.uploads: dict[str, Upload] = {}
        self.downloads = Downloads(log)

    # ---- links ----------------------------------------------------------------------------------

    async def put_link(self, link: LinkDefinition) -> None:
        root = root_from_values(link.actor_id, link.values)

        def prepare() -> None:
            if root.exists() and not root.is_dir():
                raise ProviderError(f"link value ROOT {str(root)!r} exists but is not a directory")
            try:
                root.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ProviderError(f"cannot create the blobstore root {str(root)!r}: "
                                    f"{exc.strerror or exc}") from None

        await asyncio.to_thread(prepare)
        self.roots[link.actor_id] = root
        log.info("blobstore root ready", extra={"actor": link.actor_id, "root": str(root)})

    async def del_link(self, link: LinkDefinition) -> None:
        self.roots.pop(link.actor_id, None)
        self.downloads.cancel(link.actor_id)
        await self._drop_uploads(lambda u: u.actor == link.actor_id)

    async def shutdown(self) -> None:
        self.downloads.cancel()
        await self._drop_uploads(lambda u: True)

    async def _drop_uploads(self, which: Callable[[Upload], bool]) -> None:
        gone = [u for u in self.uploads.values() if which(u)]
        for upload in gone:
            self.uploads.pop(upload.stream_id, None)
        if gone:
            await asyncio.to_thread(
                lambda: [u.staging.unlink(missing_ok=True) for u in gone])

    def _root(self, ctx: Context) -> Path:
        root = self.roots.get(ctx.actor)
        if root is None:  # no put_link seen (should not happen): derive it like put_link
            root = root_from_values(ctx.actor, ctx.values)
        return root

    # ---- containers -----------------------------------------------------------------------------

    async def container_exists(self, ctx: Context, container: str) -> bool:
        check_container(container)
        root = self._root(ctx)
        return await asyncio.to_thread(lambda: _inside(root, root / container).is_dir())

    async def create_container(self, ctx: Context, container: str) -> None:
        check_container(container)
        root = self._root(ctx)

        def create() -> None:
            path = _inside(root, root / container)
            if path.exists() and not path.is_dir():
                raise ProviderError(f"cannot create container '{container}': a file is in the way")
            path.mkdir(parents=True, exist_ok=True)  # idempotent, as CreateContainer must be

        await asyncio.to_thread(create)

    async def get_container_info(self, ctx: Context, container: str) -> ContainerMetadata:
        check_container(container)
        root = self._root(ctx)

        def info() -> ContainerMetadata:
            path = _inside(root, root / container)
            if not path.is_dir():
                raise ProviderError(f"container '{container}' does not exist")
            return ContainerMetadata(container, timestamp(path.stat().st_mtime))

        return await asyncio.to_thread(info)

    async def list_containers(self, ctx: Context, _request: Any = None) -> list[ContainerMetadata]:
        root = self._root(ctx)

        def listing() -> list[ContainerMetadata]:
            if not root.is_dir():
                return []
            return [ContainerMetadata(p.name, timestamp(p.stat().st_mtime))
                    for p in sorted(root.iterdir()) if p.is_dir() and p.name != STAGING]

        return await asyncio.to_thread(listing)

    async def remove_containers(self, ctx: Context, containers: list[str]) -> list[ItemResult]:
        root = self._root(ctx)

        def remove() -> list[ItemResult]:
            failures = []
            for name in containers:
                try:
                    check_container(name)
                    path = _inside(root, root / name)
                    if not path.is_dir():
                        raise ProviderError(f"container '{name}' does not exist")
                    shutil.rmtree(path)
                except (ProviderError, OSError) as exc:
                    failures.append(ItemResult(key=name, success=False, error=_text(exc)))
            return failures

        failures = await asyncio.to_thread(remove)
        failed = {f.key for f in failures}
        await self._drop_uploads(lambda u: u.root == root and u.container in containers
                                 and u.container not in failed)
        return failures

    # ---- objects --------------------------------------------------------------------------------

    def _object_path(self, root: Path, container: str, object_id: str) -> Path:
        # Pure string checks here; the symlink-aware check runs in the worker thread.
        check_container(container)
        check_object(container, object_id)
        return root / container / object_id

    async def object_exists(self, ctx: Context, req: ContainerObject) -> bool:
        root = self._root(ctx)
        path = self._object_path(root, req.container_id, req.object_id)
        return await asyncio.to_thread(lambda: _inside(root, path).is_file())

    async def get_object_info(self, ctx: Context, req: ContainerObject) -> ObjectMetadata:
        root = self._root(ctx)
        path = self._object_path(root, req.container_id, req.object_id)

        def info() -> ObjectMetadata:
            real = _inside(root, path)
            if not real.is_file():
                raise _missing(root, req.container_id, req.object_id)
            st = real.stat()
            return ObjectMetadata(object_id=req.object_id, container_id=req.container_id,
                                  content_length=st.st_size, last_modified=timestamp(st.st_mtime))

        return await asyncio.to_thread(info)

    async def list_objects(self, ctx: Context, req: ListObjectsRequest) -> ListObjectsResponse:
        check_container(req.container_id)
        root = self._root(ctx)

        def listing() -> ListObjectsResponse:
            base = _inside(root, root / req.container_id)
            if not base.is_dir():
                raise ProviderError(f"container '{req.container_id}' does not exist")
            keys = sorted(Path(d, f).relative_to(base).as_posix()
                          for d, _, files in os.walk(base) for f in files)
            page, is_last = select_keys(keys, req)
            objects = []
            for key in page:
                with contextlib.suppress(FileNotFoundError):  # removed while we list
                    st = (base / key).stat()
                    objects.append(ObjectMetadata(
                        object_id=key, container_id=req.container_id, content_length=st.st_size,
                        last_modified=timestamp(st.st_mtime)))
            return ListObjectsResponse(objects, is_last, continuation_of(page, is_last))

        return await asyncio.to_thread(listing)

    async def remove_objects(self, ctx: Context, req: RemoveObjectsRequest) -> list[ItemResult]:
        root = self._root(ctx)

        def remove() -> list[ItemResult]:
            try:
                check_container(req.container_id)
                if not _inside(root, root / req.container_id).is_dir():
                    raise ProviderError(f"container '{req.container_id}' does not exist")
            except (ProviderError, OSError) as exc:
                return [ItemResult(key=o, success=False, error=_text(exc)) for o in req.objects]
            failures = []
            for name in req.objects:
                try:
                    path = _inside(root, self._object_path(root, req.container_id, name))
                    path.unlink(missing_ok=True)  # already gone is fine, as in S3
                except (ProviderError, OSError) as exc:
                    failures.append(ItemResult(key=name, success=False, error=_text(exc)))
            return failures

        return await asyncio.to_thread(remove)

    # ---- uploads --------------------------------------------------------------------------------

    async def put_object(self, ctx: Context, req: PutObjectRequest) -> PutObjectResponse:
        chunk = req.chunk
        root = self._root(ctx)
        path = self._object_path(root, chunk.container_id, chunk.object_id)
        check_first_chunk(chunk)
        stream_id = uuid.uuid4().hex
        staging = root / STAGING / stream_id

        def write() -> None:
            if not _inside(root, root / chunk.container_id).is_dir():
                raise ProviderError(f"container '{chunk.container_id}' does not exist")
            _inside(root, path)
            staging.parent.mkdir(parents=True, exist_ok=True)
            staging.write_bytes(chunk.bytes)
            if chunk.is_last:
                _commit(root, staging, path)

        try:
            await asyncio.to_thread(write)
        except (OSError, ProviderError) as exc:
            await asyncio.to_thread(staging.unlink, missing_ok=True)
            if isinstance(exc, ProviderError):
                raise
            raise ProviderError(f"cannot write object '{chunk.object_id}' in container "
                                f"'{chunk.container_id}': {_text(exc)}") from None
        if chunk.is_last:
            return PutObjectResponse()
        self.uploads[stream_id] = Upload(stream_id, ctx.actor, root, chunk.container_id,
                                         chunk.object_id, staging, len(chunk.bytes))
        log.debug("multi-part upload started", extra={
            "actor": ctx.actor, "stream_id": stream_id, "container": chunk.container_id,
            "object_id": chunk.object_id})
        return PutObjectResponse(stream_id=stream_id)

    def _upload(self, ctx: Context, req: PutChunkRequest) -> Upload:
        return find_upload(self.uploads, ctx.actor, req)

    async def put_chunk(self, ctx: Context, req: PutChunkRequest) -> None:
        upload = self._upload(ctx, req)
        async with upload.lock:  # one chunk at a time per stream: the offsets must line up
            if self.uploads.get(upload.stream_id) is not upload:
                raise InvalidParameter(f"upload stream {upload.stream_id} has already ended")
            if req.cancel_and_remove:
                self.uploads.pop(upload.stream_id, None)
                await asyncio.to_thread(upload.staging.unlink, missing_ok=True)
                return
            chunk = req.chunk
            check_offset(upload.stream_id, upload.expected, chunk)
            path = upload.root / upload.container / upload.object_id

            def append() -> None:
                with upload.staging.open("ab") as handle:
                    handle.write(chunk.bytes)
                if chunk.is_last:
                    _commit(upload.root, upload.staging, path)

            try:
                await asyncio.to_thread(append)
            except (OSError, ProviderError) as exc:
                self.uploads.pop(upload.stream_id, None)
                await asyncio.to_thread(upload.staging.unlink, missing_ok=True)
                raise ProviderError(f"upload of object '{upload.object_id}' in container "
                                    f"'{upload.container}' failed: {_text(exc)}") from None
            upload.expected += len(chunk.bytes)
            if chunk.is_last:
                self.uploads.pop(upload.stream_id, None)

    # ---- downloads ------------------------------------------------------------------------------

    async def get_object(self, ctx: Context, req: GetObjectRequest) -> GetObjectResponse:
        root = self._root(ctx)
        path = self._object_path(root, req.container_id, req.object_id)

        def open_range() -> tuple[Any, int, int, bytes]:
            real = _inside(root, path)
            if not real.is_file():
                raise _missing(root, req.container_id, req.object_id)
            handle = real.open("rb")
            try:
                size = os.fstat(handle.fileno()).st_size
                first, stop = byte_range(size, req.range_start, req.range_end)
                handle.seek(first)
                data = handle.read(min(CHUNK_SIZE, stop - first))
            except BaseException:
                handle.close()
                raise
            return handle, first, stop, data

        handle, first, stop, data = await asyncio.to_thread(open_range)
        chunk = Chunk(object_id=req.object_id, container_id=req.container_id, bytes=data,
                      offset=first, is_last=first + len(data) >= stop)
        if chunk.is_last:
            await asyncio.to_thread(handle.close)
        else:
            self.downloads.start(ctx, chunk, stop,
                                 read=lambda n: asyncio.to_thread(handle.read, n),
                                 close=lambda: asyncio.to_thread(handle.close))
        return GetObjectResponse(success=True, initial_chunk=chunk, content_length=stop - first)


def _commit(root: Path, staging: Path, path: Path) -> None:
    container = path.relative_to(root).parts[0]
    if not (root / container).is_dir():  # removed mid-upload: do not bring it back
        raise ProviderError(f"container '{container}' does not exist")
    real = _inside(root, path)
    real.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, real)  # atomic: readers see the old object or the whole new one


def _missing(root: Path, container: str, object_id: str) -> ProviderError:
    if not (root / container).is_dir():
        return ProviderError(f"container '{container}' does not exist")
    return ProviderError(f"object '{object_id}' not found in container '{container}'")


def _text(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror  # not the file name: actors need not learn the host's paths
    return str(exc) or type(exc).__name__


PROVIDER = BlobstoreFsProvider

__all__ = ["CHUNK_SIZE", "PROVIDER", "BlobstoreFsProvider", "Downloads", "byte_range",
           "select_keys"]
