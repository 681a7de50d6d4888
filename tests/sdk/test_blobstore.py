"""blobstore client: containers, objects, chunked uploads and ranged downloads."""

from __future__ import annotations

import pytest

from contracts import Timestamp
from contracts import blobstore as bs
from lattice_actor import HostError, blobstore

KiB = 1024
MiB = 1024 * KiB


class Store:
    """Just enough of a blobstore provider (blobstore-fs semantics) to test the client."""

    def __init__(self, host) -> None:
        self.objects: dict[tuple[str, str], bytes] = {}
        self.uploads: dict[str, bytearray] = {}
        self.host = host
        host.on("Blobstore.PutObject", self.put_object)
        host.on("Blobstore.PutChunk", self.put_chunk)
        host.on("Blobstore.GetObject", self.get_object)

    def put_object(self, req: bs.PutObjectRequest) -> bs.PutObjectResponse:
        chunk = req.chunk
        assert chunk.offset == 0
        if chunk.is_last:
            self.objects[(chunk.container_id, chunk.object_id)] = chunk.bytes
            return bs.PutObjectResponse()
        stream = f"stream-{len(self.uploads)}"
        self.uploads[stream] = bytearray(chunk.bytes)
        return bs.PutObjectResponse(stream_id=stream)

    def put_chunk(self, req: bs.PutChunkRequest) -> None:
        buf = self.uploads[req.stream_id]
        if req.cancel_and_remove:
            del self.uploads[req.stream_id]
            return
        assert req.chunk.offset == len(buf), "chunks must arrive in order"
        buf += req.chunk.bytes
        if req.chunk.is_last:
            self.objects[(req.chunk.container_id, req.chunk.object_id)] = bytes(buf)
            del self.uploads[req.stream_id]

    def get_object(self, req: bs.GetObjectRequest) -> bs.GetObjectResponse:
        data = self.objects[(req.container_id, req.object_id)]
        first = req.range_start or 0
        stop = len(data) if req.range_end is None else min(req.range_end + 1, len(data))
        part = data[first:stop] if first < stop else b""
        return bs.GetObjectResponse(
            success=True, content_length=len(part),
            initial_chunk=bs.Chunk(req.object_id, req.container_id, part, first, True))


@pytest.fixture
def store(host) -> Store:
    return Store(host)


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


# ---- uploads ---------------------------------------------------------------------------------


def test_three_mib_upload_in_one_mib_chunks(host, store):
    data = pattern(3 * MiB)
    assert blobstore.put_object("c", "big", data, "application/x-test", chunk_size=MiB) == 3 * MiB
    assert host.ops() == ["Blobstore.PutObject", "Blobstore.PutChunk", "Blobstore.PutChunk"]
    first, second, third = (c.value for c in host.calls)
    assert first.chunk == bs.Chunk("big", "c", data[:MiB], 0, False)
    assert first.content_type == "application/x-test"
    assert (second.chunk.offset, second.chunk.is_last, second.stream_id) == (MiB, False,
                                                                             "stream-0")
    assert (third.chunk.offset, third.chunk.is_last, third.stream_id) == (2 * MiB, True,
                                                                          "stream-0")
    assert second.chunk.bytes == data[MiB:2 * MiB] and third.chunk.bytes == data[2 * MiB:]
    assert not second.cancel_and_remove
    assert all(c.namespace == "wasmcloud:blobstore" and c.binding == "default"
               for c in host.calls)
    assert store.objects[("c", "big")] == data


def test_default_upload_chunks_stay_under_the_rpc_chunking_threshold(host, store):
    data = pattern(3 * MiB + 5)
    blobstore.put_object("c", "o", data)
    sizes = [len(c.value.chunk.bytes) for c in host.calls]
    assert sizes == [512 * KiB] * 6 + [5]
    assert [c.value.chunk.offset for c in host.calls] == [i * 512 * KiB for i in range(7)]
    assert [c.value.chunk.is_last for c in host.calls] == [False] * 6 + [True]
    assert store.objects[("c", "o")] == data


def test_small_upload_is_a_single_put_object(host, store):
    assert blobstore.put_object("c", "s", "héllo") == 6
    assert host.ops() == ["Blobstore.PutObject"]
    assert host.last.value == bs.PutObjectRequest(bs.Chunk("s", "c", "héllo".encode(), 0, True))
    blobstore.put_object("c", "exact", pattern(MiB), chunk_size=MiB)
    assert host.ops()[-1] == "Blobstore.PutObject" and host.last.value.chunk.is_last


def test_iterable_upload_is_rechunked(host, store):
    pieces = [pattern(300 * KiB), b"", pattern(900 * KiB), memoryview(b"xyz")]
    total = sum(len(p) for p in pieces)
    assert blobstore.put_object("c", "it", iter(pieces), content_encoding="gzip") == total
    assert [len(c.value.chunk.bytes) for c in host.calls] == [512 * KiB, 512 * KiB,
                                                              total - MiB]
    assert host.calls[0].value.content_encoding == "gzip"
    assert store.objects[("c", "it")] == b"".join(bytes(p) for p in pieces)


def test_failing_source_cancels_the_upload(host, store):
    def source():
        yield pattern(MiB)
        yield pattern(MiB)
        raise OSError("disk gone")

    with pytest.raises(OSError, match=r"disk gone"):
        blobstore.put_object("c", "o", source(), chunk_size=MiB)
    assert host.ops() == ["Blobstore.PutObject", "Blobstore.PutChunk"]
    # the second chunk was already read ahead, so it was not sent before the source failed
    assert store.uploads == {}
    assert ("c", "o") not in store.objects


def test_failing_put_chunk_cancels_and_raises_the_host_error(host, store):
    calls = []

    def put_chunk(req):
        calls.append(req)
        if not req.cancel_and_remove:
            raise RuntimeError("io: no space left on device")

    host.on("Blobstore.PutChunk", put_chunk)
    with pytest.raises(HostError, match=r"no space left"):
        blobstore.put_object("c", "o", pattern(2 * MiB), chunk_size=MiB)
    assert [r.cancel_and_remove for r in calls] == [False, True]
    cancel = calls[1]
    assert (cancel.stream_id, cancel.chunk.object_id, cancel.chunk.container_id,
            cancel.chunk.offset, cancel.chunk.bytes) == ("stream-0", "o", "c", MiB, b"")


def test_upload_argument_checks(host, store):
    with pytest.raises(ValueError, match=r"1..1048576"):
        blobstore.put_object("c", "o", b"x", chunk_size=MiB + 1)
    with pytest.raises(TypeError, match=r"bytes"):
        blobstore.put_object("c", "o", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"pieces must be bytes"):
        blobstore.put_object("c", "o", ["text"])  # type: ignore[list-item]
    assert host.calls == []


# ---- downloads -------------------------------------------------------------------------------


def test_ranged_download(host, store):
    data = pattern(MiB + 200 * KiB)
    store.objects[("c", "o")] = data
    assert blobstore.get_object("c", "o") == data
    ranges = [(c.value.range_start, c.value.range_end) for c in host.calls]
    assert ranges == [(0, 512 * KiB - 1), (512 * KiB, MiB - 1), (MiB, MiB + 512 * KiB - 1)]
    assert all(c.value.object_id == "o" and c.value.container_id == "c" for c in host.calls)


def test_download_of_an_exact_multiple_ends_with_an_empty_range(host, store):
    data = pattern(MiB)
    store.objects[("c", "o")] = data
    pieces = list(blobstore.stream_object("c", "o", chunk_size=256 * KiB))
    assert [len(p) for p in pieces] == [256 * KiB] * 4
    assert b"".join(pieces) == data and len(host.calls) == 5
    store.objects[("c", "empty")] = b""
    assert blobstore.get_object("c", "empty") == b""


def test_partial_download(host, store):
    data = pattern(2 * MiB)
    store.objects[("c", "o")] = data
    assert blobstore.get_object("c", "o", start=100, length=600 * KiB) == data[100:100 + 600 * KiB]
    assert [(c.value.range_start, c.value.range_end) for c in host.calls] == [
        (100, 100 + 512 * KiB - 1), (100 + 512 * KiB, 100 + 600 * KiB - 1)]
    assert blobstore.get_object("c", "o", start=2 * MiB - 10) == data[-10:]
    with pytest.raises(ValueError, match=r"positive"):
        blobstore.stream_object("c", "o", chunk_size=0)  # checked at the call, not lazily
    with pytest.raises(ValueError, match=r"negative"):
        blobstore.get_object("c", "o", start=-1)


def test_bigger_pieces_still_use_small_ranges(host, store):
    data = pattern(2 * MiB + 3)
    store.objects[("c", "o")] = data
    pieces = list(blobstore.stream_object("c", "o", chunk_size=MiB))
    assert [len(p) for p in pieces] == [MiB, MiB, 3]
    assert b"".join(pieces) == data
    assert all(c.value.range_end - c.value.range_start + 1 == 512 * KiB for c in host.calls)
    assert len(host.calls) == 5


def test_download_that_would_need_receive_chunk_is_refused(host):
    host.on("Blobstore.GetObject", lambda req: bs.GetObjectResponse(
        success=True, content_length=2 * MiB,
        initial_chunk=bs.Chunk("o", "c", b"x" * 100, 0, False)))
    with pytest.raises(HostError, match=r"ReceiveChunk"):
        blobstore.get_object("c", "o")


def test_download_errors(host):
    host.on("Blobstore.GetObject", lambda req: bs.GetObjectResponse(
        success=True, initial_chunk=bs.Chunk("o", "c", b"abc", 7, True), content_length=3))
    with pytest.raises(HostError, match=r"offset 7"):
        blobstore.get_object("c", "o")
    host.on("Blobstore.GetObject", lambda req: bs.GetObjectResponse(success=False,
                                                                    error="not found"))
    with pytest.raises(HostError, match=r"^not found$"):
        blobstore.get_object("c", "o")

    def missing(req):
        raise RuntimeError("object 'o' not found in container 'c'")

    host.on("Blobstore.GetObject", missing)
    with pytest.raises(HostError, match=r"^object 'o' not found"):
        blobstore.get_object("c", "o")
    host.on("Blobstore.GetObject", lambda req: bs.GetObjectResponse(success=True))
    assert blobstore.get_object("c", "o") == b""  # no initial chunk at all: empty


# ---- containers and object metadata -----------------------------------------------------------


def test_containers(host):
    created = Timestamp(1700000000, 5)
    host.on("Blobstore.CreateContainer", lambda name: None)
    host.on("Blobstore.ContainerExists", lambda name: name == "c")
    host.on("Blobstore.GetContainerInfo", lambda name: bs.ContainerMetadata(name, created))
    host.on("Blobstore.ListContainers", lambda _: [bs.ContainerMetadata("c"),
                                                   bs.ContainerMetadata("d")])
    host.on("Blobstore.RemoveContainers", lambda names: [])
    blobstore.create_container("c")
    assert blobstore.container_exists("c") and not blobstore.container_exists("x")
    assert blobstore.container_info("c") == bs.ContainerMetadata("c", created)
    assert [m.container_id for m in blobstore.list_containers()] == ["c", "d"]
    assert blobstore.remove_containers(["c", "d"]) == []
    blobstore.remove_container("c")
    assert [c.value for c in host.calls] == ["c", "c", "x", "c", None, ["c", "d"], ["c"]]
    assert host.calls[4].payload == b""  # ListContainers has no input
    host.on("Blobstore.RemoveContainers", lambda names: [
        bs.ItemResult("c", True, "container 'c' is not empty")])  # success flag ignored
    with pytest.raises(HostError, match=r"not empty"):
        blobstore.remove_container("c")
    with pytest.raises(TypeError, match=r"single str"):
        blobstore.remove_containers("c")


def test_object_metadata_listing_and_removal(host):
    meta = bs.ObjectMetadata("o", "c", 42, Timestamp(1, 0), "text/plain")
    host.on("Blobstore.ObjectExists", lambda co: co.object_id == "o")
    host.on("Blobstore.GetObjectInfo", lambda co: meta)
    pages = {
        None: bs.ListObjectsResponse([bs.ObjectMetadata("a", "c"), bs.ObjectMetadata("b", "c")],
                                     False, "b"),
        "b": bs.ListObjectsResponse([bs.ObjectMetadata("c", "c")], True),
    }
    host.on("Blobstore.ListObjects", lambda req: pages[req.continuation])
    host.on("Blobstore.RemoveObjects", lambda req: [bs.ItemResult("x", False, "denied")]
            if "x" in req.objects else [])
    assert blobstore.object_exists("c", "o") and not blobstore.object_exists("c", "p")
    assert host.calls[0].value == bs.ContainerObject("c", "o")
    assert blobstore.object_info("c", "o") == meta
    assert [o.object_id for o in blobstore.list_objects("c", start_with="a")] == ["a", "b", "c"]
    listing = [c.value for c in host.calls if c.operation == "Blobstore.ListObjects"]
    assert listing == [bs.ListObjectsRequest("c", start_with="a"),
                       bs.ListObjectsRequest("c", continuation="b")]
    assert [o.object_id for o in blobstore.list_objects("c", limit=1)] == ["a"]
    assert host.last.value.max_items == 1
    assert blobstore.remove_objects("c", ["o", "p"]) == []
    assert host.last.value == bs.RemoveObjectsRequest("c", ["o", "p"])
    assert blobstore.remove_objects("c", ["x"]) == [bs.ItemResult("x", False, "denied")]
    blobstore.remove_object("c", "o")
    with pytest.raises(HostError, match=r"^denied$"):
        blobstore.remove_object("c", "x")


def test_listing_stops_on_a_provider_that_never_finishes(host):
    host.on("Blobstore.ListObjects", lambda req: bs.ListObjectsResponse(
        [bs.ObjectMetadata("a", "c")], False, None))  # not last, but no continuation
    assert len(blobstore.list_objects("c")) == 1


def test_other_link(host, store):
    archive = blobstore.Blobstore("archive")
    archive.put_object("c", "o", b"x")
    assert host.last.binding == "archive"
