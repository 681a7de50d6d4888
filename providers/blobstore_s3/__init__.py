"""``blobstore-s3``: ``wasmcloud:blobstore`` on AWS S3, MinIO or any S3-compatible endpoint
(docs/contracts.md §6.5). Containers are buckets, objects are keys.

One boto3 client per link, built from (later wins): the process's AWS environment variables,
the env file named by link value ``env``, the JSON of ``config_json``/``config_b64``, then the
plain link values ``endpoint``, ``region``, ``access_key_id``, ``secret_access_key``,
``session_token``. ``aliases`` (JSON) and ``alias_<name>=<bucket>`` remap container names. Given
an endpoint, addressing is path-style (what MinIO and most S3 clones expect). boto3 blocks, so
every S3 call runs in a worker thread.

Beyond the reference provider: multi-part uploads (PutObject with isLast=false returns a
streamId; PutChunk appends in order; S3 parts of ≥5 MiB are buffered), and GetObject streams the
rest of the body in ≤512 KiB ReceiveChunk calls, honouring ``cancelDownload``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import boto3
import botocore.exceptions
from botocore.config import Config

from contracts import Timestamp
from contracts.blobstore import (
    Chunk,
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
from lattice.links import LinkDefinition
from lattice.provider import Context, InvalidParameter, Provider, ProviderError
from providers.blobstore_fs import (
    CHUNK_SIZE,
    CONTRACT_ID,
    LIST_DEFAULT,
    Downloads,
    check_first_chunk,
    check_offset,
    continuation_of,
    find_upload,
    select_keys,
)

log = logging.getLogger("providers.blobstore_s3")

PART_MIN = 5 * 1024 * 1024  # S3's smallest part (all but the last)
DEFAULT_REGION = "us-east-1"
_JSON_KEYS = {"access_key_id", "secret_access_key", "session_token", "region", "endpoint",
              "aliases", "max_attempts", "sts_config"}
_REGION = re.compile(r"[a-z0-9][a-z0-9-]*")


# ---- link configuration -------------------------------------------------------------------------


@dataclass
class S3Config:
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str = DEFAULT_REGION
    endpoint: str | None = None
    max_attempts: int | None = None
    aliases: dict[str, str] = field(default_factory=dict)

    def bucket(self, container: str) -> str:
        """The bucket for a container name: ``<name>`` and ``alias_<name>`` follow the aliases."""
        if not container:
            raise InvalidParameter("container name must not be empty")
        if container in self.aliases:
            return self.aliases[container]
        if container.startswith("alias_") and container[6:] in self.aliases:
            return self.aliases[container[6:]]
        return container


def read_env_file(path: str) -> dict[str, str]:
    """``KEY=VALUE`` lines (``export`` prefixes, quotes and ``#`` comments allowed)."""
    try:
        with open(os.path.expanduser(path), encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError as exc:
        raise ProviderError(f"link value env: cannot read the env file {path!r}: "
                            f"{exc.strerror or exc}") from None
    env: dict[str, str] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ProviderError(f"link value env: line {number} of {path!r} is not KEY=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[key.strip()] = value
    return env


def _json_config(values: Mapping[str, str]) -> dict[str, Any]:
    if "config_json" in values and "config_b64" in values:
        raise ProviderError("link values config_json and config_b64 are both set; use one")
    if "config_b64" in values:
        try:
            text = base64.b64decode(values["config_b64"], validate=True).decode()
        except (binascii.Error, ValueError):
            raise ProviderError("link value config_b64 is not base64 of UTF-8 JSON") from None
        source = "config_b64"
    elif "config_json" in values:
        text, source = values["config_json"], "config_json"
    else:
        return {}
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProviderError(f"link value {source} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ProviderError(f"link value {source} must be a JSON object, got "
                            f"{type(doc).__name__}")
    unknown = sorted(set(doc) - _JSON_KEYS)
    if unknown:
        raise ProviderError(f"link value {source} has unknown keys {unknown}; known keys: "
                            f"{sorted(_JSON_KEYS)}")
    if doc.get("sts_config"):
        raise ProviderError(f"link value {source}: sts_config (assume role) is not supported; "
                            "pass temporary credentials with session_token instead")
    for key in ("access_key_id", "secret_access_key", "session_token", "region", "endpoint"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise ProviderError(f"link value {source}: {key} must be a string")
    aliases = doc.get("aliases")
    if aliases is not None and not (isinstance(aliases, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in aliases.items())):
        raise ProviderError(f"link value {source}: aliases must be an object of "
                            "alias → bucket strings")
    attempts = doc.get("max_attempts")
    if attempts is not None and (not isinstance(attempts, int) or isinstance(attempts, bool)
                                 or attempts < 1):
        raise ProviderError(f"link value {source}: max_attempts must be a positive integer")
    return doc


def link_config(values: Mapping[str, str], environ: Mapping[str, str] | None = None
                ) -> S3Config:
    """The client settings for one link; raises ProviderError naming the bad value."""
    env = dict(os.environ if environ is None else environ)
    if values.get("env"):
        env.update(read_env_file(values["env"]))  # the env file beats the process environment
    settings: dict[str, Any] = {
        "access_key_id": env.get("AWS_ACCESS_KEY_ID"),
        "secret_access_key": env.get("AWS_SECRET_ACCESS_KEY"),
        "session_token": env.get("AWS_SESSION_TOKEN"),
        "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        "endpoint": (env.get("AWS_ENDPOINT") or env.get("AWS_ENDPOINT_URL_S3")
                     or env.get("AWS_ENDPOINT_URL")),
        "max_attempts": None,
    }
    if env.get("AWS_MAX_ATTEMPTS"):
        with contextlib.suppress(ValueError):
            settings["max_attempts"] = int(env["AWS_MAX_ATTEMPTS"])
    doc = _json_config(values)
    aliases: dict[str, str] = dict(doc.pop("aliases", None) or {})
    doc.pop("sts_config", None)
    settings.update({k: v for k, v in doc.items() if v is not None})
    for key in ("endpoint", "region", "access_key_id", "secret_access_key", "session_token"):
        if values.get(key):
            settings[key] = values[key]
    for key, bucket in values.items():
        if key.startswith("alias_") and len(key) > 6:
            aliases[key[6:]] = bucket
    for alias, bucket in aliases.items():
        if not bucket.strip():
            raise ProviderError(f"alias {alias!r} maps to an empty bucket name")
    endpoint = (settings["endpoint"] or "").strip() or None
    if endpoint is not None:
        url = urlparse(endpoint)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ProviderError(f"link value endpoint must be an http:// or https:// URL with a "
                                f"host, got {endpoint!r}")
    region = (settings["region"] or "").strip() or DEFAULT_REGION
    if not _REGION.fullmatch(region):
        raise ProviderError(f"link value region {region!r} is not a region name "
                            "(e.g. us-east-1)")
    key_id, secret = settings["access_key_id"] or None, settings["secret_access_key"] or None
    if bool(key_id) != bool(secret):
        raise ProviderError("access_key_id and secret_access_key must be given together "
                            f"({'secret_access_key' if key_id else 'access_key_id'} is missing)")
    return S3Config(access_key_id=key_id, secret_access_key=secret,
                    session_token=settings["session_token"] or None, region=region,
                    endpoint=endpoint, max_attempts=settings["max_attempts"], aliases=aliases)


def make_client(cfg: S3Config) -> Any:
    session = boto3.session.Session(
        aws_access_key_id=cfg.access_key_id, aws_secret_access_key=cfg.secret_access_key,
        aws_session_token=cfg.session_token, region_name=cfg.region)
    config = Config(
        # Path-style for custom endpoints: virtual-host style needs wildcard DNS.
        s3={"addressing_style": "path" if cfg.endpoint else "auto"},
        retries={"max_attempts": cfg.max_attempts or 3, "mode": "standard"},
        connect_timeout=5, read_timeout=60, max_pool_connections=32)
    return session.client("s3", endpoint_url=cfg.endpoint, config=config)


# ---- errors -------------------------------------------------------------------------------------


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: botocore.exceptions.ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _message(exc: botocore.exceptions.ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'error')}: {error.get('Message') or exc}"


def _not_found(exc: BaseException) -> bool:
    return isinstance(exc, botocore.exceptions.ClientError) and (
        _code(exc) in ("404", "NoSuchBucket", "NoSuchKey", "NotFound") or _status(exc) == 404)


def _container_error(container: str, bucket: str) -> ProviderError:
    named = f"'{container}'" + (f" (bucket '{bucket}')" if bucket != container else "")
    return ProviderError(f"container {named} does not exist")


# ---- the provider -------------------------------------------------------------------------------


@dataclass
class Link:
    cfg: S3Config
    client: Any


@dataclass
class Upload:
    stream_id: str
    actor: str
    container: str
    object_id: str
    bucket: str
    upload_id: str
    client: Any
    expected: int
    buffer: bytearray = field(default_factory=bytearray)
    parts: list[dict[str, Any]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class BlobstoreS3Provider(Provider):
    contract_id = CONTRACT_ID
    name = "blobstore-s3"

    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.uploads: dict[str, Upload] = {}
        self.downloads = Downloads(log)

    # ---- links ----------------------------------------------------------------------------------

    async def put_link(self, link: LinkDefinition) -> None:
        self.links[link.actor_id] = await self._make_link(link.values)
        cfg = self.links[link.actor_id].cfg
        log.info("S3 client ready", extra={"actor": link.actor_id, "endpoint": cfg.endpoint,
                                           "region": cfg.region, "aliases": len(cfg.aliases)})

    @staticmethod
    async def _make_link(values: Mapping[str, str]) -> Link:
        def build() -> Link:  # reads an env file and builds a client: both block
            cfg = link_config(values)
            return Link(cfg, make_client(cfg))

        return await asyncio.to_thread(build)

    async def del_link(self, link: LinkDefinition) -> None:
        self.links.pop(link.actor_id, None)
        self.downloads.cancel(link.actor_id)
        await self._abort_uploads(lambda u: u.actor == link.actor_id)

    async def shutdown(self) -> None:
        self.downloads.cancel()
        with contextlib.suppress(Exception):  # best effort: S3 expires abandoned uploads too
            await asyncio.wait_for(self._abort_uploads(lambda u: True), 1.0)

    async def _abort_uploads(self, which: Callable[[Upload], bool]) -> None:
        gone = [u for u in self.uploads.values() if which(u)]
        for upload in gone:
            self.uploads.pop(upload.stream_id, None)
        await asyncio.gather(*(self._abort(u) for u in gone))

    async def _abort(self, upload: Upload) -> None:
        try:
            await asyncio.to_thread(upload.client.abort_multipart_upload, Bucket=upload.bucket,
                                    Key=upload.object_id, UploadId=upload.upload_id)
        except Exception as exc:
            log.warning("could not abort a multi-part upload", extra={
                "stream_id": upload.stream_id, "bucket": upload.bucket,
                "object_id": upload.object_id, "error": str(exc)})

    async def _link(self, ctx: Context) -> Link:
        link = self.links.get(ctx.actor)
        if link is None:  # no put_link seen (should not happen): build it from the values
            link = self.links[ctx.actor] = await self._make_link(ctx.values)
        return link

    async def _s3(self, link: Link, method: str, **kwargs: Any) -> Any:
        """One boto3 call in a worker thread; transport problems become clear errors."""
        try:
            return await asyncio.to_thread(getattr(link.client, method), **kwargs)
        except botocore.exceptions.EndpointConnectionError as exc:
            raise ProviderError(f"cannot reach the S3 endpoint "
                                f"{link.cfg.endpoint or exc.kwargs.get('endpoint_url')}: "
                                f"{exc}") from None
        except botocore.exceptions.NoCredentialsError:
            raise ProviderError("no S3 credentials: set access_key_id and secret_access_key in "
                                "the link (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") from None

    # ---- containers -----------------------------------------------------------------------------

    async def container_exists(self, ctx: Context, container: str) -> bool:
        link = await self._link(ctx)
        try:
            await self._s3(link, "head_bucket", Bucket=link.cfg.bucket(container))
        except botocore.exceptions.ClientError as exc:
            if _not_found(exc):
                return False
            raise ProviderError(f"cannot check container '{container}': {_message(exc)}") from None
        return True

    async def create_container(self, ctx: Context, container: str) -> None:
        link = await self._link(ctx)
        bucket = link.cfg.bucket(container)
        kwargs: dict[str, Any] = {"Bucket": bucket}
        if link.cfg.region != DEFAULT_REGION:  # us-east-1 refuses an explicit constraint
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": link.cfg.region}
        try:
            await self._s3(link, "create_bucket", **kwargs)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "BucketAlreadyOwnedByYou":
                return  # CreateContainer is idempotent
            raise ProviderError(f"cannot create container '{container}': {_message(exc)}") from None

    async def get_container_info(self, ctx: Context, container: str) -> ContainerMetadata:
        link = await self._link(ctx)
        bucket = link.cfg.bucket(container)
        try:
            await self._s3(link, "head_bucket", Bucket=bucket)
        except botocore.exceptions.ClientError as exc:
            if _not_found(exc):
                raise _container_error(container, bucket) from None
            raise ProviderError(f"cannot read container '{container}': {_message(exc)}") from None
        created = None
        with contextlib.suppress(botocore.exceptions.ClientError):  # needs ListAllMyBuckets
            listing = await self._s3(link, "list_buckets")
            created = next((Timestamp.from_datetime(b["CreationDate"])
                            for b in listing.get("Buckets", []) if b["Name"] == bucket), None)
        return ContainerMetadata(container, created)

    async def list_containers(self, ctx: Context, _request: Any = None) -> list[ContainerMetadata]:
        link = await self._link(ctx)
        try:
            listing = await self._s3(link, "list_buckets")
        except botocore.exceptions.ClientError as exc:
            raise ProviderError(f"cannot list containers: {_message(exc)}") from None
        return [ContainerMetadata(b["Name"], Timestamp.from_datetime(b["CreationDate"])
                                  if b.get("CreationDate") else None)
                for b in listing.get("Buckets", [])]

    async def remove_containers(self, ctx: Context, containers: list[str]) -> list[ItemResult]:
        link = await self._link(ctx)
        failures = []
        for container in containers:
            try:
                bucket = link.cfg.bucket(container)
                await asyncio.to_thread(_empty_bucket, link.client, bucket)
                await self._s3(link, "delete_bucket", Bucket=bucket)
            except botocore.exceptions.ClientError as exc:
                error = (str(_container_error(container, bucket)) if _not_found(exc)
                         else f"cannot remove container '{container}': {_message(exc)}")
                failures.append(ItemResult(key=container, success=False, error=error))
            except ProviderError as exc:
                failures.append(ItemResult(key=container, success=False, error=str(exc)))
        return failures

    # ---- objects --------------------------------------------------------------------------------

    def _target(self, link: Link, container: str, object_id: str) -> str:
        bucket = link.cfg.bucket(container)
        if not object_id:
            raise InvalidParameter(f"object name in container '{container}' must not be empty")
        return bucket

    async def _missing(self, link: Link, container: str, bucket: str, object_id: str
                       ) -> ProviderError:
        # One HEAD on the object cannot tell a missing bucket from a missing key: ask.
        if not await self._bucket_exists(link, bucket):
            return _container_error(container, bucket)
        return ProviderError(f"object '{object_id}' not found in container '{container}'")

    async def _bucket_exists(self, link: Link, bucket: str) -> bool:
        try:
            await self._s3(link, "head_bucket", Bucket=bucket)
        except botocore.exceptions.ClientError:
            return False
        return True

    async def object_exists(self, ctx: Context, req: ContainerObject) -> bool:
        link = await self._link(ctx)
        bucket = self._target(link, req.container_id, req.object_id)
        try:
            await self._s3(link, "head_object", Bucket=bucket, Key=req.object_id)
        except botocore.exceptions.ClientError as exc:
            if _not_found(exc):
                return False
            raise ProviderError(f"cannot check object '{req.object_id}' in container "
                                f"'{req.container_id}': {_message(exc)}") from None
        return True

    async def get_object_info(self, ctx: Context, req: ContainerObject) -> ObjectMetadata:
        link = await self._link(ctx)
        bucket = self._target(link, req.container_id, req.object_id)
        try:
            head = await self._s3(link, "head_object", Bucket=bucket, Key=req.object_id)
        except botocore.exceptions.ClientError as exc:
            if _not_found(exc):
                raise await self._missing(link, req.container_id, bucket, req.object_id) from None
            raise ProviderError(f"cannot read object '{req.object_id}' in container "
                                f"'{req.container_id}': {_message(exc)}") from None
        return ObjectMetadata(
            object_id=req.object_id, container_id=req.container_id,
            content_length=int(head.get("ContentLength", 0)),
            last_modified=Timestamp.from_datetime(head["LastModified"])
            if head.get("LastModified") else None,
            content_type=head.get("ContentType") or None,
            content_encoding=head.get("ContentEncoding") or None)

    async def list_objects(self, ctx: Context, req: ListObjectsRequest) -> ListObjectsResponse:
        link = await self._link(ctx)
        bucket = link.cfg.bucket(req.container_id)
        try:
            found, is_last = await asyncio.to_thread(_list_page, link.client, bucket, req)
        except botocore.exceptions.ClientError as exc:
            if _not_found(exc):
                raise _container_error(req.container_id, bucket) from None
            raise ProviderError(f"cannot list container '{req.container_id}': "
                                f"{_message(exc)}") from None
        objects = [ObjectMetadata(
            object_id=item["Key"], container_id=req.container_id,
            content_length=int(item.get("Size", 0)),
            last_modified=Timestamp.from_datetime(item["LastModified"])
            if item.get("LastModified") else None) for item in found]
        return ListObjectsResponse(objects, is_last,
                                   continuation_of([o.object_id for o in objects], is_last))

    async def remove_objects(self, ctx: Context, req: RemoveObjectsRequest) -> list[ItemResult]:
        link = await self._link(ctx)
        failures: list[ItemResult] = []
        names = [o for o in req.objects if o]
        failures += [ItemResult(key="", success=False, error="object name must not be empty")
                     for o in req.objects if not o]
        try:
            bucket = link.cfg.bucket(req.container_id)
        except ProviderError as exc:
            return [ItemResult(key=o, success=False, error=str(exc)) for o in req.objects]
        for start in range(0, len(names), 1000):  # DeleteObjects takes at most 1000 keys
            batch = names[start:start + 1000]
            try:
                out = await self._s3(link, "delete_objects", Bucket=bucket, Delete={
                    "Objects": [{"Key": k} for k in batch], "Quiet": True})
            except botocore.exceptions.ClientError as exc:
                error = (str(_container_error(req.container_id, bucket)) if _not_found(exc)
                         else f"cannot remove objects: {_message(exc)}")
                failures += [ItemResult(key=k, success=False, error=error) for k in batch]
                continue
            failures += [ItemResult(key=e.get("Key", ""), success=False,
                                    error=f"{e.get('Code', 'error')}: {e.get('Message', '')}")
                         for e in out.get("Errors", [])]
        return failures

    # ---- uploads --------------------------------------------------------------------------------

    async def put_object(self, ctx: Context, req: PutObjectRequest) -> PutObjectResponse:
        link = await self._link(ctx)
        chunk = req.chunk
        bucket = self._target(link, chunk.container_id, chunk.object_id)
        check_first_chunk(chunk)
        extra: dict[str, Any] = {}
        if req.content_type:
            extra["ContentType"] = req.content_type
        if req.content_encoding:
            extra["ContentEncoding"] = req.content_encoding
        try:
            if chunk.is_last:
                await self._s3(link, "put_object", Bucket=bucket, Key=chunk.object_id,
                               Body=chunk.bytes, **extra)
                return PutObjectResponse()
            started = await self._s3(link, "create_multipart_upload", Bucket=bucket,
                                     Key=chunk.object_id, **extra)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "NoSuchBucket":
                raise _container_error(chunk.container_id, bucket) from None
            raise ProviderError(f"cannot put object '{chunk.object_id}' in container "
                                f"'{chunk.container_id}': {_message(exc)}") from None
        upload = Upload(uuid.uuid4().hex, ctx.actor, chunk.container_id, chunk.object_id,
                        bucket, started["UploadId"], link.client, expected=len(chunk.bytes),
                        buffer=bytearray(chunk.bytes))
        self.uploads[upload.stream_id] = upload
        log.debug("multi-part upload started", extra={
            "actor": ctx.actor, "stream_id": upload.stream_id, "bucket": bucket,
            "object_id": chunk.object_id})
        return PutObjectResponse(stream_id=upload.stream_id)

    def _upload(self, ctx: Context, req: PutChunkRequest) -> Upload:
        return find_upload(self.uploads, ctx.actor, req)

    async def put_chunk(self, ctx: Context, req: PutChunkRequest) -> None:
        upload = self._upload(ctx, req)
        async with upload.lock:  # one chunk at a time per stream: the offsets must line up
            if self.uploads.get(upload.stream_id) is not upload:
                raise InvalidParameter(f"upload stream {upload.stream_id} has already ended")
            if req.cancel_and_remove:
                self.uploads.pop(upload.stream_id, None)
                await self._abort(upload)
                return
            chunk = req.chunk
            check_offset(upload.stream_id, upload.expected, chunk)
            upload.buffer += chunk.bytes
            upload.expected += len(chunk.bytes)
            try:
                # Parts must be ≥5 MiB except the last: keep buffering until then.
                if len(upload.buffer) >= PART_MIN or (chunk.is_last and (
                        upload.buffer or not upload.parts)):
                    await self._upload_part(upload)
                if chunk.is_last:
                    await asyncio.to_thread(
                        upload.client.complete_multipart_upload, Bucket=upload.bucket,
                        Key=upload.object_id, UploadId=upload.upload_id,
                        MultipartUpload={"Parts": upload.parts})
                    self.uploads.pop(upload.stream_id, None)
            except Exception as exc:
                self.uploads.pop(upload.stream_id, None)
                await self._abort(upload)
                text = (_message(exc) if isinstance(exc, botocore.exceptions.ClientError)
                        else str(exc) or type(exc).__name__)
                raise ProviderError(f"upload of object '{upload.object_id}' in container "
                                    f"'{upload.container}' failed: {text}") from None

    async def _upload_part(self, upload: Upload) -> None:
        number = len(upload.parts) + 1
        body, upload.buffer = bytes(upload.buffer), bytearray()
        out = await asyncio.to_thread(upload.client.upload_part, Bucket=upload.bucket,
                                      Key=upload.object_id, UploadId=upload.upload_id,
                                      PartNumber=number, Body=body)
        upload.parts.append({"ETag": out["ETag"], "PartNumber": number})

    # ---- downloads ------------------------------------------------------------------------------

    async def get_object(self, ctx: Context, req: GetObjectRequest) -> GetObjectResponse:
        link = await self._link(ctx)
        bucket = self._target(link, req.container_id, req.object_id)
        first = req.range_start or 0
        empty = GetObjectResponse(success=True, content_length=0, initial_chunk=Chunk(
            object_id=req.object_id, container_id=req.container_id, bytes=b"", offset=first,
            is_last=True))
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": req.object_id}
        if req.range_end is not None and req.range_end < first:
            return empty
        if req.range_start is not None or req.range_end is not None:
            end = "" if req.range_end is None else str(req.range_end)
            kwargs["Range"] = f"bytes={first}-{end}"  # inclusive, like the contract
        try:
            out = await self._s3(link, "get_object", **kwargs)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) == "InvalidRange" or _status(exc) == 416:
                return empty  # starts past the end (or the object is empty)
            if _not_found(exc):
                raise await self._missing(link, req.container_id, bucket, req.object_id) from None
            raise ProviderError(f"cannot read object '{req.object_id}' in container "
                                f"'{req.container_id}': {_message(exc)}") from None
        body = out["Body"]
        total = int(out.get("ContentLength", 0))
        try:
            data = await asyncio.to_thread(_read, body, min(CHUNK_SIZE, total))
        except BaseException:
            await asyncio.to_thread(body.close)
            raise
        chunk = Chunk(object_id=req.object_id, container_id=req.container_id, bytes=data,
                      offset=first, is_last=len(data) >= total)
        if chunk.is_last:
            await asyncio.to_thread(body.close)
        else:
            self.downloads.start(ctx, chunk, first + total,
                                 read=lambda n: asyncio.to_thread(_read, body, n),
                                 close=lambda: asyncio.to_thread(body.close))
        return GetObjectResponse(success=True, initial_chunk=chunk, content_length=total,
                                 content_type=out.get("ContentType") or None,
                                 content_encoding=out.get("ContentEncoding") or None)


def _read(body: Any, size: int) -> bytes:
    """Exactly ``size`` bytes (fewer only at the end): a socket read may return less."""
    parts: list[bytes] = []
    have = 0
    while have < size:
        data = body.read(size - have)
        if not data:
            break
        parts.append(data)
        have += len(data)
    return b"".join(parts)


def _list_page(client: Any, bucket: str, req: ListObjectsRequest
               ) -> tuple[list[dict[str, Any]], bool]:
    """One page of objects after our filters, and whether it is the last (worker thread)."""
    size = min(req.max_items or LIST_DEFAULT, LIST_DEFAULT)
    # StartAfter is exclusive; startWith is inclusive, so start just before it and filter.
    after = req.continuation or (req.start_with[:-1] if req.start_with else "")
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": bucket, "MaxKeys": 1000}
        if token:
            kwargs["ContinuationToken"] = token
        elif after:
            kwargs["StartAfter"] = after
        out = client.list_objects_v2(**kwargs)
        items = {item["Key"]: item for item in out.get("Contents", [])}
        # With nothing left to take (limit 0), select_keys still says whether more would come.
        page, done = select_keys(list(items), req, size - len(found))
        found += [items[k] for k in page]
        if not done:
            return found, False
        if _past_end(list(items), req) or not out.get("IsTruncated"):
            return found, True
        token = out.get("NextContinuationToken")


def _past_end(keys: list[str], req: ListObjectsRequest) -> bool:
    if not keys:
        return False
    last = keys[-1]
    return (req.end_with is not None and last > req.end_with) or (
        req.end_before is not None and last >= req.end_before)


def _empty_bucket(client: Any, bucket: str) -> None:
    """Delete every object (and abandoned multi-part upload) so the bucket can go."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
    with contextlib.suppress(botocore.exceptions.ClientError):
        for item in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            client.abort_multipart_upload(Bucket=bucket, Key=item["Key"],
                                          UploadId=item["UploadId"])


PROVIDER = BlobstoreS3Provider

__all__ = ["PROVIDER", "BlobstoreS3Provider", "S3Config", "link_config", "make_client"]
