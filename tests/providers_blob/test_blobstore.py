"""blobstore-fs and blobstore-s3 through a real lattice (docs/contracts.md §6.5).

One suite, run against both providers, each as a child process and embedded in the host: a
``fwdtap.wat`` actor makes the Blobstore calls (forward semantics) and relays the provider's
``ChunkReceiver.ReceiveChunk`` callbacks to :class:`TapProvider`, which records them. S3 is
moto's server mode over real HTTP; the file system is a temp dir.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

import contracts
from contracts.blobstore import (
    CONTRACT_ID,
    Chunk,
    ChunkResponse,
    ContainerObject,
    GetObjectRequest,
    ListObjectsRequest,
    PutChunkRequest,
    PutObjectRequest,
    RemoveObjectsRequest,
)
from lattice.rpc import RpcError
from tests.harness import TAP_CONTRACT, Lattice, TapProvider, eventually, until

pytestmark = pytest.mark.service

CHUNK = 512 * 1024
VARIANTS = ["fs-process", "fs-embedded", "s3-process", "s3-embedded"]
CREDS = {"access_key_id": "test", "secret_access_key": "test", "region": "us-east-1"}


class Blob:
    """Typed Blobstore calls made by one fwdtap actor."""

    def __init__(self, lattice: Lattice, actor: str) -> None:
        self.lattice, self.actor = lattice, actor

    async def __call__(self, operation: str, value: Any = None) -> Any:
        op = contracts.operation(f"Blobstore.{operation}")
        out = await self.lattice.host_call(self.actor, CONTRACT_ID, op.name,
                                           op.encode_input(value))
        return op.decode_output(out)


class Store:
    def __init__(self, lattice: Lattice, kind: str, mode: str, provider: str, host: Any,
                 s3_endpoint: str, root: Path) -> None:
        self.lattice, self.kind, self.mode = lattice, kind, mode
        self.provider, self.host = provider, host
        self.s3_endpoint, self.root = s3_endpoint, root

    def values(self) -> dict[str, str]:
        if self.kind == "fs":
            return {"ROOT": str(self.root)}
        return {"endpoint": self.s3_endpoint, **CREDS}

    async def actor(self, link: bool = True, **values: str) -> Blob:
        """A fresh fwdtap actor linked to the tap and (unless told not to) this provider."""
        key = await self.lattice.start_actor(self.host, self.lattice.module(
            "fwdtap", caps=[CONTRACT_ID, TAP_CONTRACT]))
        await self.lattice.link(key, self.tap, TAP_CONTRACT)
        blob = Blob(self.lattice, key)
        if link:
            await self.lattice.link(key, self.provider, CONTRACT_ID,
                                    **(values or self.values()))
            # a process provider learns of the link asynchronously
            await eventually(lambda: blob("ListContainers"))
        return blob

    async def start(self, tap: type[TapProvider] = TapProvider) -> None:
        self.tap = await self.lattice.start_provider(self.host, "tap", provider_cls=tap)


async def start_store(lattice: Lattice, variant: str, s3_endpoint: str, tmp: Path,
                      tap: type[TapProvider] = TapProvider) -> Store:
    kind, mode = variant.split("-")
    host = await lattice.host()
    provider = await lattice.start_provider(host, f"blobstore-{kind}",
                                            embedded=mode == "embedded")
    store = Store(lattice, kind, mode, provider, host, s3_endpoint, tmp / "blobs")
    await store.start(tap)
    return store


@pytest.fixture(params=VARIANTS)
async def store(request: pytest.FixtureRequest, lattice: Lattice, s3_endpoint: str,
                tmp_path: Path) -> Store:
    return await start_store(lattice, request.param, s3_endpoint, tmp_path)


def unique(prefix: str = "c") -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"  # a valid bucket name, new per test


def s3_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test",
                        aws_secret_access_key="test", region_name="us-east-1")


async def upload(blob: Blob, container: str, name: str, data: bytes, size: int = CHUNK) -> None:
    """PutObject with the first chunk, then PutChunk for the rest (in order)."""
    first = data[:size]
    out = await blob("PutObject", PutObjectRequest(chunk=Chunk(
        name, container, first, 0, is_last=len(data) <= size)))
    if len(data) <= size:
        return
    assert out.stream_id
    for offset in range(size, len(data), size):
        piece = data[offset:offset + size]
        await blob("PutChunk", PutChunkRequest(chunk=Chunk(
            name, container, piece, offset, is_last=offset + size >= len(data)),
            stream_id=out.stream_id))


async def download(blob: Blob, req: GetObjectRequest) -> bytes:
    """GetObject, then the ReceiveChunk deliveries the tap recorded, reassembled in order."""
    TapProvider.calls.clear()
    resp = await blob("GetObject", req)
    assert resp.success and resp.initial_chunk is not None
    first = resp.initial_chunk
    assert len(first.bytes) <= CHUNK
    expected = resp.content_length

    def chunks() -> list[Chunk]:
        got = [c for (a, op, c) in TapProvider.calls
               if a == blob.actor and op == "ChunkReceiver.ReceiveChunk"]
        return got if len(first.bytes) + sum(len(c.bytes) for c in got) >= expected else []

    rest = [] if first.is_last else await until(chunks, timeout=30)
    offsets = [first.offset]
    for chunk in rest:
        assert chunk.offset == offsets[-1] + (len(first.bytes) if len(offsets) == 1
                                              else len(rest[len(offsets) - 2].bytes))
        assert (chunk.container_id, chunk.object_id) == (req.container_id, req.object_id)
        assert 0 < len(chunk.bytes) <= CHUNK  # streamed for real, not one big message
        offsets.append(chunk.offset)
    if rest:
        assert [c.is_last for c in rest] == [False] * (len(rest) - 1) + [True]
    data = first.bytes + b"".join(c.bytes for c in rest)
    assert len(data) == expected
    return data


# ---- containers ---------------------------------------------------------------------------------


async def test_containers(store: Store) -> None:
    blob = await store.actor()
    name, missing = unique(), unique("missing")
    assert await blob("CreateContainer", name) is None
    assert await blob("CreateContainer", name) is None  # idempotent
    assert await blob("ContainerExists", name) is True
    assert await blob("ContainerExists", missing) is False
    info = await blob("GetContainerInfo", name)
    assert info.container_id == name and info.created_at is not None
    assert name in [c.container_id for c in await blob("ListContainers")]
    with pytest.raises(RpcError, match=f"container '{missing}' does not exist"):
        await blob("GetContainerInfo", missing)
    # only failures come back
    failures = await blob("RemoveContainers", [name, missing])
    assert [(f.key, f.success) for f in failures] == [(missing, False)]
    assert missing in (failures[0].error or "")
    assert await blob("ContainerExists", name) is False
    assert await blob("RemoveContainers", []) == []


# ---- objects ------------------------------------------------------------------------------------


async def test_objects(store: Store) -> None:
    blob = await store.actor()
    name = unique()
    await blob("CreateContainer", name)
    await blob("PutObject", PutObjectRequest(
        chunk=Chunk("hello.txt", name, b"hello world", 0, True), content_type="text/plain"))
    for key in ("a", "b", "dir/c", "d"):
        await blob("PutObject", PutObjectRequest(chunk=Chunk(key, name, key.encode(), 0, True)))
    assert await blob("ObjectExists", ContainerObject(name, "hello.txt")) is True
    assert await blob("ObjectExists", ContainerObject(name, "nope")) is False
    info = await blob("GetObjectInfo", ContainerObject(name, "hello.txt"))
    assert (info.object_id, info.container_id, info.content_length) == ("hello.txt", name, 11)
    assert info.last_modified is not None
    with pytest.raises(RpcError, match=f"object 'nope' not found in container '{name}'"):
        await blob("GetObjectInfo", ContainerObject(name, "nope"))

    listing = await blob("ListObjects", ListObjectsRequest(container_id=name))
    assert listing.is_last and listing.continuation is None
    assert [(o.object_id, o.content_length) for o in listing.objects] == [
        ("a", 1), ("b", 1), ("d", 1), ("dir/c", 5), ("hello.txt", 11)]
    # paging with continuation, and the bounds
    seen, token = [], None
    while True:
        page = await blob("ListObjects", ListObjectsRequest(
            container_id=name, max_items=2, continuation=token))
        seen += [o.object_id for o in page.objects]
        if page.is_last:
            break
        token = page.continuation
    assert seen == ["a", "b", "d", "dir/c", "hello.txt"]
    bounded = await blob("ListObjects", ListObjectsRequest(
        container_id=name, start_with="b", end_before="hello.txt"))
    assert [o.object_id for o in bounded.objects] == ["b", "d", "dir/c"]
    bounded = await blob("ListObjects", ListObjectsRequest(
        container_id=name, start_with="b", end_with="d"))
    assert [o.object_id for o in bounded.objects] == ["b", "d"]

    small = await blob("GetObject", GetObjectRequest("hello.txt", name))
    assert small.initial_chunk.bytes == b"hello world" and small.initial_chunk.is_last
    assert small.content_length == 11
    ranged = await blob("GetObject", GetObjectRequest("hello.txt", name, 6, 100))
    assert (ranged.initial_chunk.bytes, ranged.initial_chunk.offset) == (b"world", 6)
    with pytest.raises(RpcError, match="cannot put zero-length objects"):
        await blob("PutObject", PutObjectRequest(chunk=Chunk("empty", name, b"", 0, True)))
    with pytest.raises(RpcError, match=f"object 'nope' not found in container '{name}'"):
        await blob("GetObject", GetObjectRequest("nope", name))
    with pytest.raises(RpcError, match="container 'nosuchcontainer' does not exist"):
        await blob("PutObject", PutObjectRequest(
            chunk=Chunk("x", "nosuchcontainer", b"x", 0, True)))

    # a multi-part upload cancelled with cancelAndRemove leaves nothing behind
    started = await blob("PutObject", PutObjectRequest(chunk=Chunk("part", name, b"xx", 0, False)))
    assert started.stream_id
    await blob("PutChunk", PutChunkRequest(chunk=Chunk("part", name, b"", 2, False),
                                           stream_id=started.stream_id, cancel_and_remove=True))
    assert await blob("ObjectExists", ContainerObject(name, "part")) is False

    assert await blob("RemoveObjects", RemoveObjectsRequest(name, ["a", "dir/c", "nope"])) == []
    assert await blob("ObjectExists", ContainerObject(name, "a")) is False
    gone = await blob("RemoveObjects", RemoveObjectsRequest("nosuchcontainer", ["x", "y"]))
    assert [(f.key, f.success) for f in gone] == [("x", False), ("y", False)]
    assert all("container 'nosuchcontainer' does not exist" in (f.error or "") for f in gone)
    left = await blob("ListObjects", ListObjectsRequest(container_id=name))
    assert [o.object_id for o in left.objects] == ["b", "d", "hello.txt"]


# ---- streaming ----------------------------------------------------------------------------------


async def test_large_object_streams_both_ways(store: Store) -> None:
    blob = await store.actor()
    name = unique()
    await blob("CreateContainer", name)
    data = os.urandom(5 * 1024 * 1024 + 123_457)  # > one S3 part, not a chunk multiple

    # an out-of-order chunk is refused and the upload carries on
    out = await blob("PutObject", PutObjectRequest(chunk=Chunk("big", name, data[:CHUNK], 0)))
    with pytest.raises(RpcError, match="does not match the expected offset"):
        await blob("PutChunk", PutChunkRequest(
            chunk=Chunk("big", name, data[CHUNK:2 * CHUNK], 2 * CHUNK), stream_id=out.stream_id))
    for offset in range(CHUNK, len(data), CHUNK):
        await blob("PutChunk", PutChunkRequest(chunk=Chunk(
            "big", name, data[offset:offset + CHUNK], offset,
            is_last=offset + CHUNK >= len(data)), stream_id=out.stream_id))
    info = await blob("GetObjectInfo", ContainerObject(name, "big"))
    assert info.content_length == len(data)

    assert await download(blob, GetObjectRequest("big", name)) == data
    start, end = 1000, 1000 + 2 * CHUNK + 5  # inclusive
    assert await download(blob, GetObjectRequest("big", name, start, end)) == data[start:end + 1]
    # an end past the size is clamped; a start past it gives an empty, final chunk
    tail = await download(blob, GetObjectRequest("big", name, len(data) - 10, len(data) + 99))
    assert tail == data[-10:]
    empty = await blob("GetObject", GetObjectRequest("big", name, len(data) + 5))
    assert (empty.content_length, empty.initial_chunk.bytes, empty.initial_chunk.is_last) == (
        0, b"", True)

    if store.kind == "s3":  # the bytes really are in S3
        body = s3_client(store.s3_endpoint).get_object(Bucket=name, Key="big")["Body"].read()
        assert body == data
    else:
        assert (store.root / name / "big").read_bytes() == data


class CancellingTap(TapProvider):
    """Records the delivery, then asks the provider to stop the download."""

    async def receive_chunk(self, ctx: Any, chunk: Any) -> ChunkResponse:
        self.calls.append((ctx.actor, ctx.operation, chunk))
        return ChunkResponse(cancel_download=True)


@pytest.mark.parametrize("variant", ["fs-embedded", "s3-embedded"])
async def test_cancel_download_stops_the_stream(lattice: Lattice, s3_endpoint: str,
                                                tmp_path: Path, variant: str) -> None:
    store = await start_store(lattice, variant, s3_endpoint, tmp_path, tap=CancellingTap)
    blob = await store.actor()
    name = unique()
    await blob("CreateContainer", name)
    await upload(blob, name, "big", os.urandom(4 * CHUNK))
    TapProvider.calls.clear()
    resp = await blob("GetObject", GetObjectRequest("big", name))
    assert resp.content_length == 4 * CHUNK and not resp.initial_chunk.is_last
    bridge = store.host.providers.embedded(store.provider, "default")
    assert bridge is not None
    # the sender task ends by itself after the first answer asked it to stop
    await until(lambda: TapProvider.calls and not bridge.provider.downloads.tasks)
    assert [c.offset for _, _, c in TapProvider.calls] == [CHUNK]


# ---- file-system specifics ----------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["fs-process", "fs-embedded"])
async def test_fs_path_traversal_is_rejected(lattice: Lattice, s3_endpoint: str, tmp_path: Path,
                                             variant: str) -> None:
    store = await start_store(lattice, variant, s3_endpoint, tmp_path)
    blob = await store.actor()
    await blob("CreateContainer", "box")
    for bad in ("../escape", "a/../../escape", "/etc/passwd", "a//b", "./x", "nul\0byte"):
        with pytest.raises(RpcError, match=r"not allowed|NUL byte"):
            await blob("PutObject", PutObjectRequest(chunk=Chunk(bad, "box", b"x", 0, True)))
        with pytest.raises(RpcError, match=r"not allowed|NUL byte"):
            await blob("GetObject", GetObjectRequest(bad, "box"))
    for bad in ("..", "a/b", ".lattice-uploads"):
        with pytest.raises(RpcError, match=re.escape(f"container name {bad!r} is not allowed")):
            await blob("CreateContainer", bad)
    # a symlink inside the root may not lead out of it
    (store.root / "box" / "link").symlink_to(tmp_path)
    with pytest.raises(RpcError, match="resolves outside the blobstore root"):
        await blob("PutObject", PutObjectRequest(chunk=Chunk("link/x", "box", b"x", 0, True)))
    assert not (tmp_path / "escape").exists() and not (tmp_path / "x").exists()
    failures = await blob("RemoveObjects", RemoveObjectsRequest("box", ["../../x", "ok"]))
    assert [(f.key, f.success) for f in failures] == [("../../x", False)]

    # the default root lives under the state dir, one per actor
    default = await store.actor(ROOT="")
    await default("CreateContainer", "mine")
    state = Path(os.environ["LATTICE_STATE_DIR"]) / "blobstore" / default.actor / "mine"
    assert state.is_dir()


# ---- link values --------------------------------------------------------------------------------


BAD_LINKS = {
    "fs": [({"ROOT": "relative/dir"}, "link value ROOT must be an absolute path"),
           ({"ROOT": "{file}"}, "exists but is not a directory")],
    "s3": [({"endpoint": "ftp://example.com", **CREDS},
            "link value endpoint must be an http:// or https:// URL"),
           ({"config_json": "{not json"}, "link value config_json is not valid JSON"),
           ({"config_b64": "!!!"}, "link value config_b64 is not base64"),
           ({"config_json": '{"regoin": "x"}'}, "link value config_json has unknown keys"),
           ({"access_key_id": "only-the-id", "region": "us-east-1"},
            "access_key_id and secret_access_key must be given together"),
           ({"env": "/nonexistent/blob.env"}, "cannot read the env file")],
}


@pytest.mark.parametrize("variant", VARIANTS)
async def test_bad_link_values_are_rejected(lattice: Lattice, s3_endpoint: str, tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture,
                                            variant: str) -> None:
    caplog.set_level(logging.INFO)
    store = await start_store(lattice, variant, s3_endpoint, tmp_path)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for values, message in BAD_LINKS[store.kind]:
        values = {k: v.replace("{file}", str(a_file)) for k, v in values.items()}
        blob = await store.actor(link=False)
        await lattice.link(blob.actor, store.provider, CONTRACT_ID, **values)

        def refused(actor: str = blob.actor, message: str = message) -> bool:
            return any(getattr(r, "actor", None) == actor and message in str(
                getattr(r, "error", "")) for r in caplog.records)

        with pytest.raises(RpcError, match="unlinked actor"):
            await blob("ListContainers")
        await until(refused)


async def test_s3_link_values_aliases_and_config(lattice: Lattice, s3_endpoint: str,
                                                 tmp_path: Path) -> None:
    import base64
    import json

    store = await start_store(lattice, "s3-process", s3_endpoint, tmp_path)
    bucket = unique("real")
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    env = tmp_path / "s3.env"
    env.write_text(f"# credentials\nexport AWS_ACCESS_KEY_ID=test\nAWS_SECRET_ACCESS_KEY='test'\n"
                   f"AWS_ENDPOINT={s3_endpoint}\n")
    config = {"endpoint": s3_endpoint, "access_key_id": "test", "secret_access_key": "test",
              "region": "us-east-1", "aliases": {"photos": bucket}}
    for values in ({"config_json": json.dumps(config)},
                   {"config_b64": base64.b64encode(json.dumps(config).encode()).decode()},
                   {"env": str(env), "alias_photos": bucket}):
        blob = await store.actor(**values)
        await blob("PutObject", PutObjectRequest(chunk=Chunk("k", "photos", b"v", 0, True)))
        assert await blob("ObjectExists", ContainerObject("alias_photos", "k")) is True
        assert await blob("ContainerExists", "photos") is True
    assert s3_client(s3_endpoint).get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"


# ---- swapping providers at run time -------------------------------------------------------------


@pytest.mark.parametrize("mode", ["process", "embedded"])
async def test_swap_fs_for_s3_while_calls_run(lattice: Lattice, s3_endpoint: str, tmp_path: Path,
                                              mode: str) -> None:
    import asyncio

    fs = await start_store(lattice, f"fs-{mode}", s3_endpoint, tmp_path)
    s3_key = await lattice.start_provider(fs.host, "blobstore-s3", embedded=mode == "embedded")
    blob = await fs.actor()
    name = unique("swap")
    await blob("CreateContainer", name)
    s3_client(s3_endpoint).create_bucket(Bucket=name)

    phase = "fs"
    results: list[tuple[str, int, str | None]] = []
    stop = asyncio.Event()

    async def writer() -> None:
        i = 0
        while not stop.is_set():
            started = phase
            try:
                await blob("PutObject", PutObjectRequest(chunk=Chunk(
                    f"k{i:05d}", name, f"v{i}".encode(), 0, True)))
                results.append((started, i, None))
            except RpcError as exc:
                results.append((started, i, str(exc)))
            i += 1

    task = asyncio.create_task(writer())
    try:
        await until(lambda: sum(1 for p, _, e in results if p == "fs" and e is None) >= 5)
        phase = "switching"
        # the writer is sequential: once a "switching" call is back, no fs-phase call is open
        await until(lambda: any(p == "switching" for p, _, _ in results))
        await lattice.unlink(blob.actor, CONTRACT_ID)
        await lattice.link(blob.actor, s3_key, CONTRACT_ID, endpoint=s3_endpoint, **CREDS)
        # the switch is done once a call lands in S3 (a process provider hears of the link
        # over NATS); from then on, nothing may fail
        await eventually(lambda: blob("PutObject", PutObjectRequest(
            chunk=Chunk("probe", name, b"p", 0, True))), timeout=10)
        phase = "s3"
        await until(lambda: sum(1 for p, _, e in results if p == "s3" and e is None) >= 10)
    finally:
        stop.set()
        await task
    assert [r for r in results if r[0] != "switching" and r[2] is not None] == []
    fs_keys = {f"k{i:05d}" for p, i, _ in results if p == "fs"}
    s3_keys = {f"k{i:05d}" for p, i, _ in results if p == "s3"}
    on_disk = {p.name for p in (fs.root / name).iterdir()}
    in_s3 = {o["Key"] for o in s3_client(s3_endpoint).list_objects_v2(
        Bucket=name).get("Contents", [])}
    assert fs_keys <= on_disk and not (s3_keys & on_disk)
    assert s3_keys <= in_s3 and "probe" in in_s3 and not (fs_keys & in_s3)
