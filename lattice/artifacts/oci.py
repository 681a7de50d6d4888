"""Pulling and pushing wasmCloud artifacts from and to OCI registries, with the oras client.

An artifact is one manifest with one layer, as ``wash reg push`` writes it:

* an actor module: layer ``application/vnd.module.wasm.content.layer.v1+wasm``, config
  ``application/vnd.wasmcloud.actor.archive.config``;
* a provider archive: layer ``application/vnd.wasmcloud.provider.archive.layer.v1+par``, config
  ``application/vnd.wasmcloud.provider.archive.config``.

The config blob is ``{}``. On pull we also take the layer types wasmCloud hosts accept
(``application/vnd.oci.image.layer.v1.tar``, and ``application/wasm``). Every blob is checked
against its digest, and a ``@sha256:`` reference against the manifest's digest.

The calls are blocking (``requests``): run them in a thread (:func:`asyncio.to_thread`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import oras.auth
import oras.container
import oras.defaults
import oras.oci
import oras.provider
import requests
from requests.adapters import HTTPAdapter

from lattice import par
from lattice.artifacts.cache import ArtifactCache
from lattice.artifacts.credentials import Credentials, credentials_for, plain_http
from lattice.artifacts.errors import (
    ArtifactError,
    ArtifactNotFound,
    ArtifactUnauthorized,
    DigestMismatch,
    InvalidReference,
    RegistryUnreachable,
)
from lattice.artifacts.refs import OciRef, check_digest, safe_name

log = logging.getLogger("lattice.artifacts.oci")

WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.wasmcloud.actor.archive.config"
PAR_LAYER = "application/vnd.wasmcloud.provider.archive.layer.v1+par"
PAR_CONFIG = "application/vnd.wasmcloud.provider.archive.config"
LEGACY_LAYER = "application/vnd.oci.image.layer.v1.tar"
WASM_STANDARD_LAYER = "application/wasm"
ACCEPTED_LAYERS = (WASM_LAYER, PAR_LAYER, LEGACY_LAYER, WASM_STANDARD_LAYER)
MANIFEST_TYPES = (oras.defaults.default_manifest_media_type,
                  oras.defaults.docker_manifest_media_type)
INDEX_TYPES = (oras.defaults.default_index_media_type,
               oras.defaults.docker_manifest_list_media_type)
TITLE = oras.defaults.annotation_title

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0

T = TypeVar("T")

# oras wraps do_request in a retry decorator that sleeps 3, 5, 11, 29, 83 s between attempts:
# far too long for a host's start command. We call the undecorated method and report at once.
_UNRETRIED_REQUEST = oras.provider.Registry.do_request.__wrapped__  # type: ignore[attr-defined]


class _Registry(oras.provider.Registry):
    def do_request(self, url: str, method: str = "GET", data: Any = None,
                   headers: dict[str, str] | None = None, json: Any = None,
                   stream: bool = False) -> requests.Response:
        return _UNRETRIED_REQUEST(self, url, method, data, headers, json, stream)


class _TimeoutAdapter(HTTPAdapter):
    """Every request gets a timeout (requests has none by default)."""

    def send(self, request: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (CONNECT_TIMEOUT, READ_TIMEOUT)
        return super().send(request, **kwargs)


@dataclass
class OciPushResult:
    ref: str            # oci://registry/repository:tag
    digest: str         # the manifest's digest (pull by ref@digest)
    layer_digest: str   # the content's digest (the cache key)
    media_type: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "digest": self.digest, "layer_digest": self.layer_digest,
                "media_type": self.media_type, "size": self.size}


def _errno_reason(exc: BaseException) -> str:
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", str(exc))
    if found:
        return found.group(0).strip()
    if isinstance(exc, requests.Timeout):
        return "timed out"
    return type(exc).__name__


def _error_codes(resp: requests.Response) -> str:
    with contextlib.suppress(ValueError, AttributeError, TypeError):
        errors = resp.json().get("errors") or []
        codes = [str(e.get("code") or e.get("message")) for e in errors if isinstance(e, dict)]
        if codes:
            return ", ".join(codes)
    return resp.reason or ""


def artifact_kind(path: Path) -> tuple[str, str]:
    """(layer, config) media types for an actor module or a provider archive."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path}: {exc.strerror or exc}") from None
    if data.startswith(b"\0asm"):
        return WASM_LAYER, WASM_CONFIG
    try:
        par.read_par_bytes(data, str(path))
    except par.ParError as exc:
        raise ArtifactError(
            f"{path} is neither a WebAssembly module nor a valid provider archive ({exc}): OCI "
            "registries hold wasmCloud actors (.wasm, compile .wat first) and providers "
            "(.par/.par.gz)") from None
    return PAR_LAYER, PAR_CONFIG


class OciClient:
    """One OCI reference: pull it into the cache or push a file to it."""

    def __init__(self, ref: OciRef, *, credentials: Credentials | None = None,
                 insecure: bool = False) -> None:
        self.ref = ref
        self.credentials = credentials_for(ref, credentials)
        self.scheme = "http" if plain_http(ref, insecure) else "https"

    @property
    def where(self) -> str:
        return f"the OCI registry {self.ref.registry} ({self.scheme})"

    # ---- plumbing -------------------------------------------------------------------------------

    def _unauthorized(self, detail: str) -> ArtifactUnauthorized:
        if self.credentials is None:
            hint = ("it needs credentials: --user/--password on the command line; for hosts, "
                    "LATTICE_OCI_USER and LATTICE_OCI_PASSWORD in their environment or a "
                    "registries.put")
        else:
            hint = (f"the credentials of user {self.credentials.username!r} were rejected or do "
                    "not allow this")
        return ArtifactUnauthorized(f"{self.where} refused access to {self.ref} ({detail}): "
                                    f"{hint}")

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryUnreachable(
                f"TLS with {self.where} failed while {what} ({_errno_reason(exc)}); if it "
                "serves plain HTTP, use --insecure (or LATTICE_OCI_INSECURE on the host)"
            ) from None
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise RegistryUnreachable(
                f"cannot reach {self.where} while {what}: {_errno_reason(exc)}; is the registry "
                "running, and is the address right?") from None
        except oras.auth.AuthenticationException as exc:
            raise self._unauthorized(str(exc)) from None
        except ValueError as exc:  # oras: "Cannot respond to request for authentication." …
            if "authentication" in str(exc).lower():
                raise self._unauthorized(str(exc)) from None
            raise ArtifactError(f"{what} at {self.where} failed: {exc}") from None

    def _check(self, resp: requests.Response, what: str) -> None:
        if resp.status_code in (200, 201, 202):
            return
        detail = f"HTTP {resp.status_code} {_error_codes(resp)}".strip()
        if resp.status_code in (401, 403):
            raise self._unauthorized(detail)
        if resp.status_code == 404:
            raise ArtifactNotFound(f"{self.ref} was not found in {self.where} ({detail}) while "
                                   f"{what}")
        raise ArtifactError(f"{what} at {self.where} failed: {detail}")

    def _container(self) -> oras.container.Container:
        # Set the parts ourselves: oras' parser takes "localhost/x" for a namespace.
        container = oras.container.Container("artifact", registry=self.ref.registry)
        namespace, _, repository = self.ref.repository.rpartition("/")
        container.registry = self.ref.registry
        container.namespace = namespace or None
        container.repository = repository
        container.tag = self.ref.tag or "latest"
        container.digest = self.ref.digest
        return container

    def _connect(self) -> _Registry:
        """A client with the auth backend the registry asks for (probed on /v2/)."""
        reg = _Registry(hostname=self.ref.registry, insecure=self.scheme == "http")
        adapter = _TimeoutAdapter()
        reg.session.mount("http://", adapter)
        reg.session.mount("https://", adapter)
        base = f"{self.scheme}://{self.ref.registry}/v2/"
        probe = self._call("connecting", reg.session.get, base)
        challenge = probe.headers.get("Www-Authenticate", "")
        if probe.status_code == 401 and challenge.lower().startswith("basic"):
            reg.auth = oras.auth.get_auth_backend("basic", reg.session, self.scheme == "http")
        elif probe.status_code not in (200, 401):
            raise ArtifactError(f"{self.where} does not look like an OCI registry: GET /v2/ "
                                f"answered HTTP {probe.status_code}")
        if self.credentials is not None:
            reg.auth.set_basic_auth(self.credentials.username, self.credentials.password)
        else:
            with contextlib.suppress(Exception):  # Docker config credentials, if any
                reg.auth.load_configs(self._container())
        if probe.status_code == 401 and challenge.lower().startswith("basic"):
            basic = getattr(reg.auth, "_basic_auth", None)
            if not basic:
                raise self._unauthorized("HTTP 401: the registry needs a user and password")
            check = self._call("connecting", reg.session.get, base,
                               headers={"Authorization": f"Basic {basic}"})
            if check.status_code in (401, 403):
                raise self._unauthorized(f"HTTP {check.status_code} for the given credentials")
        return reg

    # ---- pull -----------------------------------------------------------------------------------

    def pull(self, cache: ArtifactCache) -> Path:
        """The artifact's file in ``cache`` (downloaded unless already there)."""
        ref = self.ref
        if ref.digest:
            cached = cache.lookup_manifest(ref.digest)
            if cached is not None:
                return cached
        reg = self._connect()
        container = self._container()
        resp = self._call("fetching the manifest", reg.do_request,
                          f"{self.scheme}://{container.manifest_url()}", "GET",
                          headers={"Accept": ", ".join(MANIFEST_TYPES + INDEX_TYPES)})
        self._check(resp, "fetching the manifest")
        body = resp.content
        manifest_digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ref.digest and manifest_digest != ref.digest:
            raise DigestMismatch(f"the manifest {self.where} returned for {ref} hashes to "
                                 f"{manifest_digest}: refusing it")
        try:
            manifest = json.loads(body)
        except ValueError:
            raise ArtifactError(f"{self.where} returned a manifest for {ref} that is not "
                                "JSON") from None
        if not isinstance(manifest, dict):
            raise ArtifactError(f"{self.where} returned an unreadable manifest for {ref}")
        if manifest.get("mediaType") in INDEX_TYPES or "manifests" in manifest:
            raise ArtifactError(f"{ref} is an image index (several platforms), not a wasmCloud "
                                "artifact: reference one actor or provider manifest")
        layers = [layer for layer in manifest.get("layers") or []
                  if isinstance(layer, dict) and layer.get("mediaType") in ACCEPTED_LAYERS]
        if len(layers) != 1:
            found = ", ".join(str(layer.get("mediaType")) for layer in
                              manifest.get("layers") or [] if isinstance(layer, dict))
            raise ArtifactError(
                f"{ref} is not a wasmCloud actor or provider: expected one layer of type "
                f"{WASM_LAYER} or {PAR_LAYER}, found {found or 'no layers'}")
        layer = layers[0]
        try:
            digest = check_digest(str(layer.get("digest", "")))
        except InvalidReference:
            raise ArtifactError(f"{ref}: the layer digest {layer.get('digest')!r} is not a "
                                "sha256 digest (the only kind Lattice verifies)") from None
        name = safe_name(str((layer.get("annotations") or {}).get(TITLE) or ""))
        if layer["mediaType"] == PAR_LAYER and not name.endswith((".par", ".par.gz")):
            name = ""  # named from the content below, so the host sees a provider archive
        fallback = ref.repository.rsplit("/", 1)[-1]
        path = cache.lookup(digest, name)
        if path is None:
            path = self._download(reg, container, digest, name, fallback, cache)
        if ref.digest:
            cache.remember_manifest(ref.digest, digest, path.name)
        return path

    def _download(self, reg: _Registry, container: oras.container.Container, digest: str,
                  name: str, fallback: str, cache: ArtifactCache) -> Path:
        url = f"{self.scheme}://{container.get_blob_url(digest)}"
        fh, tmp = cache.temp_file()
        try:
            with fh:
                resp = self._call("downloading the layer", reg.do_request, url, "GET",
                                  stream=True)
                with resp:
                    self._check(resp, "downloading the layer")
                    try:
                        for chunk in resp.iter_content(chunk_size=1 << 16):
                            fh.write(chunk)
                    except requests.RequestException as exc:
                        raise RegistryUnreachable(f"the download of {digest} from "
                                                  f"{self.where} broke off: "
                                                  f"{_errno_reason(exc)}") from None
            path = cache.store(tmp, digest, name or "", source=f"{self.where} ({self.ref})",
                               fallback=fallback)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        log.info("artifact pulled", extra={"ref": str(self.ref), "digest": digest,
                                           "artifact": path.name,
                                           "bytes": path.stat().st_size})
        return path

    # ---- push -----------------------------------------------------------------------------------

    def push(self, path: Path, *, annotations: Mapping[str, str] | None = None) -> OciPushResult:
        ref = self.ref
        if ref.digest:
            raise InvalidReference(f"push to a tag, not a digest: {ref}")
        layer_type, config_type = artifact_kind(path)
        reg = self._connect()
        container = self._container()
        with tempfile.TemporaryDirectory(prefix="lattice-oci-") as tmpdir:
            config_path = Path(tmpdir) / "config.json"
            config_path.write_bytes(b"{}")
            layer = oras.oci.NewLayer(str(path), media_type=layer_type)
            layer["annotations"] = {TITLE: safe_name(path.name) or "artifact"}
            resp = self._call("uploading the layer", reg.upload_blob, str(path), container,
                              layer)
            self._check(resp, "uploading the layer")
            config, _ = oras.oci.ManifestConfig(str(config_path), config_type)
            resp = self._call("uploading the config", reg.upload_blob, str(config_path),
                              container, config)
            self._check(resp, "uploading the config")
        manifest = oras.oci.NewManifest()
        manifest["config"] = config
        manifest["layers"] = [layer]
        if annotations:
            manifest["annotations"] = dict(annotations)
        else:
            manifest.pop("annotations", None)
        resp = self._call("uploading the manifest", reg.upload_manifest, manifest, container)
        self._check(resp, "uploading the manifest")
        digest = resp.headers.get("Docker-Content-Digest") or "sha256:" + hashlib.sha256(
            json.dumps(manifest).encode()).hexdigest()
        log.info("artifact pushed to a registry", extra={
            "ref": str(ref), "digest": digest, "media_type": layer_type})
        return OciPushResult(ref=str(OciRef(ref.registry, ref.repository, ref.tag)),
                             digest=digest, layer_digest=str(layer["digest"]),
                             media_type=layer_type, size=int(layer["size"]))
