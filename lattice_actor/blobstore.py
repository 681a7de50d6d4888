"""``wasmcloud:blobstore`` client: containers and objects, uploads and downloads in chunks.

::

    from lattice_actor import blobstore

    blobstore.create_container("photos")
    blobstore.put_object("photos", "cat.jpg", data, content_type="image/jpeg")
    blobstore.put_object("logs", "big.txt", (line.encode() for line in lines))  # any iterable
    data = blobstore.get_object("photos", "cat.jpg")
    for piece in blobstore.stream_object("logs", "big.txt"):   # 512 KiB at a time
        ...
    blobstore.object_info("photos", "cat.jpg").content_length
    [o.object_id for o in blobstore.list_objects("photos")]
    blobstore.remove_object("photos", "cat.jpg")

    archive = blobstore.Blobstore("archive")     # the actor's link named "archive"

Uploads are one ``PutObject`` carrying the first chunk, then ``PutChunk`` for the rest (same
``stream_id``, increasing offsets, the last one ``is_last``); a failure part-way cancels the
upload. Downloads are ranged ``GetObject`` calls, each small enough that the provider answers
it whole in ``initialChunk`` (no ``ChunkReceiver`` callbacks needed).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

from contracts import blobstore as _bs
from contracts.blobstore import (
    Chunk,
    ChunkResponse,
    ContainerMetadata,
    ItemResult,
    ObjectMetadata,
)

from ._client import DEFAULT_LINK, check_link, invoke
from ._errors import HostError

KiB = 1024
MiB = 1024 * KiB
# Upload chunks: at most 1 MiB (docs/contracts.md §6.5); the default keeps every PutChunk below the
# 900 KiB threshold above which an invocation detours through the JetStream object store.
MAX_PUT_CHUNK = 1 * MiB
DEFAULT_PUT_CHUNK = 512 * KiB
# Download ranges: providers answer up to 512 KiB inline in initialChunk (blobstore-fs streams
# the rest of a bigger range as ChunkReceiver calls), so no GetObject asks for more.
MAX_GET_CHUNK = 512 * KiB
DEFAULT_GET_CHUNK = 512 * KiB

_OPS = {op.name: op for op in _bs.OPERATIONS}

Data = bytes | bytearray | memoryview | str | Iterable[bytes | bytearray | memoryview]


def _check_size(chunk_size: int, limit: int, what: str) -> int:
    if not isinstance(chunk_size, int) or not 0 < chunk_size <= limit:
        raise ValueError(f"{what} chunk_size must be 1..{limit} bytes, got {chunk_size!r}")
    return chunk_size


def _pieces(data: Data, size: int) -> Iterator[bytes]:
    """``data`` cut (or joined) into pieces of exactly ``size`` bytes, the last one shorter."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data).cast("B")
        for start in range(0, len(view), size):
            yield bytes(view[start:start + size])
        return
    if not isinstance(data, Iterable):
        raise TypeError(f"object data must be bytes or an iterable of bytes, got "
                        f"{type(data).__name__}")
    buffer = bytearray()
    for item in data:
        if not isinstance(item, bytes | bytearray | memoryview):
            raise TypeError(f"object data pieces must be bytes, got {type(item).__name__}")
        buffer += item
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


class Blobstore:
    """Blob storage over one link (the module functions use ``Blobstore("default")``)."""

    def __init__(self, link_name: str = DEFAULT_LINK) -> None:
        self.link_name = check_link(link_name)

    def _call(self, name: str, value: Any = None) -> Any:
        return invoke(self.link_name, _OPS[name], value)

    # ---- containers ------------------------------------------------------------------------

    def create_container(self, container: str) -> None:
        """Create a container (no error if it exists)."""
        self._call(_bs.CREATE_CONTAINER, container)

    def container_exists(self, container: str) -> bool:
        return bool(self._call(_bs.CONTAINER_EXISTS, container))

    def container_info(self, container: str) -> ContainerMetadata:
        """``container_id`` and ``created_at`` (a Timestamp, when the provider knows it)."""
        return self._call(_bs.GET_CONTAINER_INFO, container)

    def list_containers(self) -> list[ContainerMetadata]:
        return list(self._call(_bs.LIST_CONTAINERS))

    def remove_containers(self, containers: Iterable[str]) -> list[ItemResult]:
        """Remove containers and their objects; the failures (empty list = all removed)."""
        return list(self._call(_bs.REMOVE_CONTAINERS, _names(containers)))

    def remove_container(self, container: str) -> None:
        """Remove one container and its objects; raises HostError if that failed."""
        _raise_failures(self.remove_containers([container]), self.link_name,
                        _bs.REMOVE_CONTAINERS)

    # ---- objects ---------------------------------------------------------------------------

    def object_exists(self, container: str, name: str) -> bool:
        return bool(self._call(_bs.OBJECT_EXISTS,
                               _bs.ContainerObject(container_id=container, object_id=name)))

    def object_info(self, container: str, name: str) -> ObjectMetadata:
        """``content_length``, ``last_modified``, ``content_type``, ... of one object."""
        return self._call(_bs.GET_OBJECT_INFO,
                          _bs.ContainerObject(container_id=container, object_id=name))

    def iter_objects(self, container: str, *, start_with: str | None = None,
                     end_with: str | None = None, end_before: str | None = None,
                     limit: int | None = None) -> Iterator[ObjectMetadata]:
        """Objects of a container, following the provider's pages. ``start_with`` (inclusive),
        ``end_with`` (inclusive) and ``end_before`` (exclusive) bound the names; ``limit``
        caps the count."""
        continuation: str | None = None
        remaining = limit
        while remaining is None or remaining > 0:
            page = self._call(_bs.LIST_OBJECTS, _bs.ListObjectsRequest(
                container_id=container, start_with=None if continuation else start_with,
                continuation=continuation, end_with=end_with, end_before=end_before,
                max_items=remaining))
            yield from page.objects[:remaining]
            if remaining is not None:
                remaining -= min(len(page.objects), remaining)
            if page.is_last or not page.continuation or page.continuation == continuation:
                return
            continuation = page.continuation

    def list_objects(self, container: str, *, start_with: str | None = None,
                     end_with: str | None = None, end_before: str | None = None,
                     limit: int | None = None) -> list[ObjectMetadata]:
        """Like :meth:`iter_objects`, as a list."""
        return list(self.iter_objects(container, start_with=start_with, end_with=end_with,
                                      end_before=end_before, limit=limit))

    def remove_objects(self, container: str, names: Iterable[str]) -> list[ItemResult]:
        """Remove objects; the failures (empty list = all removed)."""
        return list(self._call(_bs.REMOVE_OBJECTS, _bs.RemoveObjectsRequest(
            container_id=container, objects=_names(names))))

    def remove_object(self, container: str, name: str) -> None:
        """Remove one object; raises HostError if that failed."""
        _raise_failures(self.remove_objects(container, [name]), self.link_name,
                        _bs.REMOVE_OBJECTS)

    # ---- upload ----------------------------------------------------------------------------

    def put_object(self, container: str, name: str, data: Data, content_type: str | None = None,
                   *, content_encoding: str | None = None,
                   chunk_size: int = DEFAULT_PUT_CHUNK) -> int:
        """Store an object from bytes (or str, UTF-8) or an iterable of bytes, streamed in
        chunks of ``chunk_size`` (≤ 1 MiB). Returns the number of bytes stored."""
        _check_size(chunk_size, MAX_PUT_CHUNK, "upload")
        pieces = _pieces(data, chunk_size)
        first = next(pieces, b"")
        following = next(pieces, None)
        response = self._call(_bs.PUT_OBJECT, _bs.PutObjectRequest(
            chunk=Chunk(object_id=name, container_id=container, bytes=first, offset=0,
                        is_last=following is None),
            content_type=content_type, content_encoding=content_encoding))
        offset = len(first)
        stream_id = response.stream_id
        try:
            while following is not None:
                current, following = following, next(pieces, None)
                self._call(_bs.PUT_CHUNK, _bs.PutChunkRequest(
                    chunk=Chunk(object_id=name, container_id=container, bytes=current,
                                offset=offset, is_last=following is None),
                    stream_id=stream_id))
                offset += len(current)
        except BaseException:
            self._cancel_upload(container, name, offset, stream_id)
            raise
        return offset

    def _cancel_upload(self, container: str, name: str, offset: int,
                       stream_id: str | None) -> None:
        with contextlib.suppress(Exception):  # best effort: the upload may already be gone
            self._call(_bs.PUT_CHUNK, _bs.PutChunkRequest(
                chunk=Chunk(object_id=name, container_id=container, bytes=b"", offset=offset,
                            is_last=True),
                stream_id=stream_id, cancel_and_remove=True))

    # ---- download --------------------------------------------------------------------------

    def stream_object(self, container: str, name: str, chunk_size: int = DEFAULT_GET_CHUNK, *,
                      start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes in pieces of ``chunk_size`` (the last one shorter), fetched with
        ranged ``GetObject`` calls of at most 512 KiB each. ``start``/``length`` select part
        of the object."""
        if not isinstance(chunk_size, int) or chunk_size <= 0:
            raise ValueError(f"chunk_size must be a positive number of bytes, got {chunk_size!r}")
        if start < 0 or (length is not None and length < 0):
            raise ValueError("start and length must not be negative")
        ranges = self._ranges(container, name, min(chunk_size, MAX_GET_CHUNK), start, length)
        return ranges if chunk_size <= MAX_GET_CHUNK else _pieces(ranges, chunk_size)

    def _ranges(self, container: str, name: str, chunk_size: int, start: int,
                length: int | None) -> Iterator[bytes]:
        position, remaining = start, length
        while remaining is None or remaining > 0:
            want = chunk_size if remaining is None else min(chunk_size, remaining)
            response = self._call(_bs.GET_OBJECT, _bs.GetObjectRequest(
                object_id=name, container_id=container, range_start=position,
                range_end=position + want - 1))
            data = self._check_range(response, container, name, position)
            if len(data) > want:
                data = data[:want]
            if data:
                yield data
            position += len(data)
            if remaining is not None:
                remaining -= len(data)
            if len(data) < want:
                return

    def _check_range(self, response: _bs.GetObjectResponse, container: str, name: str,
                     position: int) -> bytes:
        def fail(text: str) -> HostError:
            return HostError(text, binding=self.link_name, namespace=_bs.CONTRACT_ID,
                             operation=_bs.GET_OBJECT)

        if not response.success:
            raise fail(response.error or f"cannot read object '{name}' in container "
                       f"'{container}'")
        chunk = response.initial_chunk
        if chunk is None:
            return b""
        data = chunk.bytes
        if data and chunk.offset != position:
            raise fail(f"GetObject of '{name}' asked for offset {position} but the provider "
                       f"answered offset {chunk.offset} (does it support ranges?)")
        if not chunk.is_last and response.content_length > len(data):
            raise fail(f"GetObject of '{name}' returned {len(data)} of "
                       f"{response.content_length} bytes inline; the rest would arrive as "
                       "ChunkReceiver.ReceiveChunk calls (use a smaller chunk_size)")
        return data

    def get_object(self, container: str, name: str, *, start: int = 0,
                   length: int | None = None) -> bytes:
        """The whole object (or ``length`` bytes from ``start``) as bytes."""
        return b"".join(self.stream_object(container, name, start=start, length=length))

    def __repr__(self) -> str:
        return f"Blobstore({self.link_name!r})"


def _names(names: Iterable[str]) -> list[str]:
    if isinstance(names, str):
        raise TypeError("expected a list of names, got a single str")
    return list(names)


def _raise_failures(failures: list[ItemResult], link: str, operation: str) -> None:
    for item in failures:  # the list holds failures only (whatever their success flag says)
        raise HostError(item.error or f"cannot remove '{item.key}'", binding=link,
                        namespace=_bs.CONTRACT_ID, operation=operation)


_default = Blobstore()
create_container = _default.create_container
container_exists = _default.container_exists
container_info = _default.container_info
list_containers = _default.list_containers
remove_container = _default.remove_container
remove_containers = _default.remove_containers
object_exists = _default.object_exists
object_info = _default.object_info
iter_objects = _default.iter_objects
list_objects = _default.list_objects
remove_object = _default.remove_object
remove_objects = _default.remove_objects
put_object = _default.put_object
get_object = _default.get_object
stream_object = _default.stream_object

__all__ = [
    "DEFAULT_GET_CHUNK", "DEFAULT_PUT_CHUNK", "MAX_GET_CHUNK", "MAX_PUT_CHUNK", "Blobstore",
    "Chunk", "ChunkResponse", "ContainerMetadata", "ItemResult", "ObjectMetadata",
    "container_exists", "container_info", "create_container", "get_object", "iter_objects",
    "list_containers", "list_objects", "object_exists", "object_info", "put_object",
    "remove_container", "remove_containers", "remove_object", "remove_objects",
    "stream_object",
]
