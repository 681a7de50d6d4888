"""``wasmcloud:blobstore``: ``Blobstore`` (actor -> provider) and ``ChunkReceiver``
(provider -> actor, streams download chunks).

Crate >= 0.8 speaks msgpack; <= 0.7 and blobstore-s3 speak ``0x7f`` + CBOR with structs as arrays
in the field order below. ``decode`` sniffs the prefix and reads both; ``encode(..., fmt="cbor")``
talks to the old peers. Keys typed ContainerId/ObjectId/list/struct must always be written.
"""

from dataclasses import dataclass, field

from ._codec import U32, U64, Blob, Timestamp
from ._operation import ACTOR_TO_PROVIDER, PROVIDER_TO_ACTOR, Operation

CONTRACT_ID = "wasmcloud:blobstore"

CONTAINER_EXISTS = "Blobstore.ContainerExists"
CREATE_CONTAINER = "Blobstore.CreateContainer"
GET_CONTAINER_INFO = "Blobstore.GetContainerInfo"
LIST_CONTAINERS = "Blobstore.ListContainers"
REMOVE_CONTAINERS = "Blobstore.RemoveContainers"
OBJECT_EXISTS = "Blobstore.ObjectExists"
GET_OBJECT_INFO = "Blobstore.GetObjectInfo"
LIST_OBJECTS = "Blobstore.ListObjects"
REMOVE_OBJECTS = "Blobstore.RemoveObjects"
PUT_OBJECT = "Blobstore.PutObject"
PUT_CHUNK = "Blobstore.PutChunk"
GET_OBJECT = "Blobstore.GetObject"
RECEIVE_CHUNK = "ChunkReceiver.ReceiveChunk"

ContainerId = str
ObjectId = str


@dataclass(slots=True)
class Chunk:
    object_id: ObjectId = ""
    container_id: ContainerId = ""
    bytes: Blob = b""
    offset: U64 = 0  # byte offset of this chunk within the object
    is_last: bool = False


@dataclass(slots=True)
class ChunkResponse:
    cancel_download: bool = False  # true asks the provider to stop sending


@dataclass(slots=True)
class ContainerMetadata:
    container_id: ContainerId = ""
    created_at: Timestamp | None = None


@dataclass(slots=True)
class ContainerObject:
    container_id: ContainerId = ""
    object_id: ObjectId = ""


@dataclass(slots=True)
class ObjectMetadata:
    object_id: ObjectId = ""
    container_id: ContainerId = ""
    content_length: U64 = 0
    last_modified: Timestamp | None = None
    content_type: str | None = None
    content_encoding: str | None = None


@dataclass(slots=True)
class ListObjectsRequest:
    container_id: str = ""
    start_with: str | None = None
    continuation: str | None = None  # if set, start_with is ignored
    end_with: str | None = None  # inclusive end
    end_before: str | None = None  # exclusive end
    max_items: U32 | None = None


@dataclass(slots=True)
class ListObjectsResponse:
    objects: list[ObjectMetadata] = field(default_factory=list)
    is_last: bool = False
    continuation: str | None = None  # token for the next request when is_last is false


@dataclass(slots=True)
class RemoveObjectsRequest:
    container_id: ContainerId = ""
    objects: list[ObjectId] = field(default_factory=list)


@dataclass(slots=True)
class ItemResult:
    key: str = ""
    success: bool = False
    error: str | None = None


@dataclass(slots=True)
class PutObjectRequest:
    chunk: Chunk = field(default_factory=Chunk)
    content_type: str | None = None
    content_encoding: str | None = None


@dataclass(slots=True)
class PutObjectResponse:
    stream_id: str | None = None  # set for multi-part uploads; pass back in PutChunk


@dataclass(slots=True)
class PutChunkRequest:
    chunk: Chunk = field(default_factory=Chunk)
    stream_id: str | None = None
    cancel_and_remove: bool = False  # prelude Boolean: always written


@dataclass(slots=True)
class GetObjectRequest:
    object_id: ObjectId = ""
    container_id: ContainerId = ""
    range_start: U64 | None = None  # inclusive, 0-based
    range_end: U64 | None = None  # inclusive; may exceed the size


@dataclass(slots=True)
class GetObjectResponse:
    success: bool = False
    error: str | None = None
    initial_chunk: Chunk | None = None
    content_length: U64 = 0  # total bytes that will be delivered
    content_type: str | None = None
    content_encoding: str | None = None


def _op(name: str, input_: object, output: object) -> Operation:
    return Operation(CONTRACT_ID, name, input_, output, ACTOR_TO_PROVIDER)


OPERATIONS = (
    _op(CONTAINER_EXISTS, ContainerId, bool),
    _op(CREATE_CONTAINER, ContainerId, None),
    _op(GET_CONTAINER_INFO, ContainerId, ContainerMetadata),
    _op(LIST_CONTAINERS, None, list[ContainerMetadata]),
    _op(REMOVE_CONTAINERS, list[ContainerId], list[ItemResult]),  # lists failures only
    _op(OBJECT_EXISTS, ContainerObject, bool),
    _op(GET_OBJECT_INFO, ContainerObject, ObjectMetadata),
    _op(LIST_OBJECTS, ListObjectsRequest, ListObjectsResponse),
    _op(REMOVE_OBJECTS, RemoveObjectsRequest, list[ItemResult]),
    _op(PUT_OBJECT, PutObjectRequest, PutObjectResponse),
    _op(PUT_CHUNK, PutChunkRequest, None),
    _op(GET_OBJECT, GetObjectRequest, GetObjectResponse),
    Operation(CONTRACT_ID, RECEIVE_CHUNK, Chunk, ChunkResponse, PROVIDER_TO_ACTOR),
)
