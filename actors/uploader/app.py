"""uploader: stores HTTP uploads in the linked blobstore and serves them back. Bodies move to
and from the store in chunks (PutObject + PutChunk up, ranged GetObject down), so a 10 MB file
never becomes one blobstore message.

PUT    /files/NAME   (body: the file)  → 201 {"name", "size"}
GET    /files/NAME                     → the file (404 when missing)
GET    /files                          → [{"name", "size"}, …]
DELETE /files/NAME                     → 204
"""

from lattice_actor import HttpError, Request, Response, blobstore, http_handler

CONTAINER = "uploads"
CHUNK = 1 << 20  # 1 MiB per PutChunk / ranged GetObject
_ready = False


def _ensure_container() -> None:
    global _ready
    if not _ready:
        if not blobstore.container_exists(CONTAINER):
            blobstore.create_container(CONTAINER)
        _ready = True


def _name(path: str) -> str:
    name = path.removeprefix("/files/")
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise HttpError(400, "use /files/NAME with a plain file name")
    return name


@http_handler
def files(req: Request) -> Response:
    _ensure_container()
    if req.path in ("/files", "/files/"):
        if req.method != "GET":
            return Response.error(405, "use GET on /files", headers={"allow": "GET"})
        listing = blobstore.list_objects(CONTAINER)
        return Response.json([{"name": o.object_id, "size": o.content_length} for o in listing])
    if not req.path.startswith("/files/"):
        return Response.not_found("try /files")
    name = _name(req.path)
    if req.method == "PUT":
        body = req.body
        pieces = (body[i:i + CHUNK] for i in range(0, len(body), CHUNK))
        blobstore.put_object(CONTAINER, name, pieces,
                             content_type=req.headers.get("content-type"))
        return Response.json({"name": name, "size": len(body)}, status=201)
    if req.method == "GET":
        if not blobstore.object_exists(CONTAINER, name):
            raise HttpError(404, f"no file {name}")
        data = b"".join(blobstore.stream_object(CONTAINER, name, chunk_size=CHUNK))
        return Response(data, content_type="application/octet-stream")
    if req.method == "DELETE":
        if not blobstore.object_exists(CONTAINER, name):
            raise HttpError(404, f"no file {name}")
        blobstore.remove_object(CONTAINER, name)
        return Response.no_content()
    return Response.error(405, "use PUT, GET or DELETE on /files/NAME",
                          headers={"allow": "PUT, GET, DELETE"})
