"""Desired state of the lattice's apps, in one JetStream KV bucket: ``LATTICE_APPS_{lattice}``.

Two keys per app, with one writer each, so they never race:

* ``app.{name}`` — written by the CLI (deploy/undeploy): every version ever deployed (the
  history, oldest first, with its canonical manifest) and which one is deployed (``None`` after
  an undeploy).
* ``state.{name}`` — written by the reconciler leader: status, per-scaler reasons, the links the
  app owns, commands held back after failures, and when and by whom it was computed. Status
  comes from what the lattice reports, never from what was requested; readers check that it
  is still current (lattice/app/observe.py) before repeating it.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.kv import KeyValue

from lattice.app.manifest import Manifest

BUCKET = "LATTICE_APPS_{lattice}"
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


class AppStoreError(Exception):
    pass


def check_app_name(name: str) -> str:
    if not _NAME.match(name):
        raise AppStoreError(f"app name {name!r} may only use letters, digits, '-' and '_' "
                            "(metadata.name in the manifest)")
    return name


@dataclass
class Version:
    version: str
    manifest: dict[str, Any]   # Manifest.to_dict()
    deployed_at: float


@dataclass
class AppRecord:
    name: str
    versions: list[Version] = field(default_factory=list)
    deployed: str | None = None  # the version that should run; None: undeployed

    def manifest(self, version: str | None = None) -> Manifest | None:
        wanted = version or self.deployed
        for v in self.versions:
            if v.version == wanted:
                return Manifest.from_dict(v.manifest)
        return None

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AppRecord:
        doc = json.loads(data)
        return cls(name=doc["name"], deployed=doc.get("deployed"),
                   versions=[Version(**v) for v in doc.get("versions", [])])


@dataclass
class AppState:
    status: str = "reconciling"          # deployed | reconciling | failed | undeployed
    version: str | None = None
    reasons: list[str] = field(default_factory=list)
    scalers: list[dict[str, Any]] = field(default_factory=list)
    owned_links: list[dict[str, Any]] = field(default_factory=list)  # LinkDefinition.to_wire()
    updated_at: float = 0.0              # wall clock of the pass that computed it
    leader: str = ""                     # the host whose reconciler computed it
    interval: float = 0.0                # that reconciler's reconcile_interval (0: unknown)
    hosts: list[str] = field(default_factory=list)  # hosts running what the app started
    #: Commands held back after failures: component, command, host_id, image, error,
    #: attempts, retry_at (wall clock) — lattice/app/backoff.py.
    retries: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, data: bytes) -> AppState:
        doc = json.loads(data)
        return cls(**{k: v for k, v in doc.items() if k in cls.__dataclass_fields__})


async def bind_or_create(js: Any, bucket: str, **config: Any) -> KeyValue:
    """The KV bucket as it exists (any config: replicated, made by an older version), else a
    new one with ``config``. ``js`` should come from lattice.connect.jetstream, so writes work
    across a leaf node's JetStream domain."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        try:
            return await js.create_key_value(bucket=bucket, **config)
        except BadRequestError:  # another host created it meanwhile
            return await js.key_value(bucket)


class AppStore:
    def __init__(self, js: Any, lattice: str, *, replicas: int = 1) -> None:
        self._js = js
        self.bucket = BUCKET.format(lattice=lattice)
        self.replicas = replicas
        self._kv: KeyValue | None = None

    async def open(self) -> AppStore:
        self._kv = await bind_or_create(self._js, self.bucket, history=1,
                                        replicas=self.replicas)
        return self

    @property
    def kv(self) -> KeyValue:
        if self._kv is None:
            raise RuntimeError("AppStore.open() first")
        return self._kv

    async def _read(self, key: str) -> tuple[bytes | None, int]:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None, 0
        return entry.value, entry.revision

    async def get(self, name: str) -> AppRecord | None:
        data, _ = await self._read(f"app.{check_app_name(name)}")
        return AppRecord.from_json(data) if data else None

    async def names(self) -> list[str]:
        try:
            keys = await self.kv.keys()
        except Exception:  # nats-py raises NoKeysError on an empty bucket
            return []
        return sorted(k.removeprefix("app.") for k in keys if k.startswith("app."))

    async def deploy(self, manifest: Manifest) -> tuple[AppRecord, bool]:
        """Record ``manifest`` as the app's deployed version; (record, new version?).

        Re-deploying a version with the same content just makes it current again; the same
        version with other content is refused (versions are immutable, as in wadm).
        """
        name = check_app_name(manifest.name)
        doc = manifest.to_dict()
        for _ in range(10):  # optimistic concurrency against another deploy
            data, revision = await self._read(f"app.{name}")
            record = AppRecord.from_json(data) if data else AppRecord(name)
            existing = next((v for v in record.versions if v.version == manifest.version), None)
            if existing is not None and existing.manifest != doc:
                raise AppStoreError(
                    f"app {name} already has a version {manifest.version} with other content: "
                    "versions are immutable, so bump metadata.annotations.version")
            new = existing is None
            if new:
                record.versions.append(Version(manifest.version, doc, time.time()))
            record.deployed = manifest.version
            if await self._write(f"app.{name}", record.to_json(), revision):
                return record, new
        raise AppStoreError(f"app {name} is being changed concurrently; retry")

    async def undeploy(self, name: str) -> AppRecord:
        for _ in range(10):
            data, revision = await self._read(f"app.{check_app_name(name)}")
            if not data:
                raise AppStoreError(f"no app named {name} in this lattice: see `lattice app "
                                    "list`")
            record = AppRecord.from_json(data)
            record.deployed = None
            if await self._write(f"app.{name}", record.to_json(), revision):
                return record
        raise AppStoreError(f"app {name} is being changed concurrently; retry")

    async def _write(self, key: str, value: bytes, revision: int) -> bool:
        try:
            if revision:
                await self.kv.update(key, value, last=revision)
            else:
                await self.kv.create(key, value)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def state(self, name: str) -> AppState | None:
        data, _ = await self._read(f"state.{check_app_name(name)}")
        return AppState.from_json(data) if data else None

    async def put_state(self, name: str, state: AppState) -> None:
        await self.kv.put(f"state.{check_app_name(name)}", state.to_json())
