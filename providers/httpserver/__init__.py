"""``httpserver``: a ``wasmcloud:httpserver`` provider (docs/contracts.md §6.1) on aiohttp.

One HTTP listener per linked actor, configured from the link values like the reference provider
``httpserver-rs`` 0.19: every request becomes ``HttpServer.HandleRequest`` to that actor and the
actor's ``HttpResponse`` becomes the HTTP answer (actor error → 500, RPC timeout → 503). The
provider itself answers CORS preflights, ``readonly_mode`` refusals (405) and bodies over
``max_content_len`` (413) without calling the actor. Deleting the link closes the listener.

Link values (names matched case-insensitively): ``config_file``, ``config_b64``, ``config_json``
(settings JSON, merged in that order over the provider's own ``config_json``), then ``address``,
``port`` (binds 127.0.0.1), ``cache_control``, ``readonly_mode``, ``timeout_ms`` and
``max_content_len``, which override the settings. See docs/providers/http.md.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import ipaddress
import json
import logging
import re
import ssl
import time
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

import contracts
from contracts.httpserver import CONTRACT_ID, HANDLE_REQUEST, HttpRequest, HttpResponse
from lattice.links import LinkDefinition
from lattice.provider import HostData, Provider, ProviderError
from lattice.rpc import RpcError

log = logging.getLogger("providers.httpserver")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_CONTENT_LEN = 100 * 1024 * 1024
MAX_CONTENT_LEN_LIMIT = 1024 * 1024 * 1024  # the reference refuses anything above 1 GiB
DEFAULT_ALLOWED_HEADERS = ("accept", "accept-language", "content-type", "content-language")
DEFAULT_ALLOWED_METHODS = ("GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS")
DEFAULT_MAX_AGE_SECS = 300
# In-flight requests get this long when a listener stops: the SDK gives the whole shutdown hook
# only 1.5 s, and a link delete must not hang the link lock either.
STOP_GRACE = 0.5
# A link moved here from another httpserver keeps its port: the old provider frees it as soon as
# it hears of the move, so an address in use is tried again this long before the link is refused.
BIND_GRACE = 3.0

_OP = contracts.operation(HANDLE_REQUEST)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Visible ASCII, space and tab: what the http crate's HeaderValue::from_str accepts.
_VALUE = re.compile(r"[\t\x20-\x7e]*")
_ORIGIN = re.compile(r"https?://[^/\s?#]+", re.IGNORECASE)
_SIZE = re.compile(r"\s*(\d+)\s*([kmg]?)(i?b)?\s*", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
# aiohttp computes these from the body it sends; an actor's copy could only contradict it.
_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})
_EMPTY = b""


# ---- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cors:
    allowed_origins: tuple[str, ...] = ()  # normalised (lower-case, no trailing '/'); () = any
    allowed_headers: tuple[str, ...] = DEFAULT_ALLOWED_HEADERS  # lower-case
    allowed_methods: tuple[str, ...] = DEFAULT_ALLOWED_METHODS  # upper-case
    exposed_headers: tuple[str, ...] = ()
    max_age_secs: int = DEFAULT_MAX_AGE_SECS

    def origin_allowed(self, origin: str) -> bool:
        return not self.allowed_origins or origin.lower().rstrip("/") in self.allowed_origins


@dataclass(frozen=True, slots=True)
class Settings:
    """One link's effective configuration."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    tls_cert_file: str | None = None
    tls_priv_key_file: str | None = None
    cors: Cors = field(default_factory=Cors)
    timeout: float | None = None  # seconds; None = the host's default RPC timeout
    cache_control: str | None = None
    readonly_mode: bool = False
    max_content_len: int = DEFAULT_MAX_CONTENT_LEN

    @property
    def tls(self) -> bool:
        return bool(self.tls_cert_file and self.tls_priv_key_file)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_size(value: Any, what: str = "max_content_len") -> int:
    """``"20M"``, ``"512K"``, ``"1G"``, ``"2048"`` (also ``"20MB"``/``"20MiB"``) → bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        match = _SIZE.fullmatch(str(value))
        if match is None:
            raise ProviderError(f"invalid {what} {value!r}: expected a byte count such as "
                                "1048576, 512K, 20M or 1G")
        size = int(match[1]) * _UNITS[match[2].lower()]
    if size <= 0 or size > MAX_CONTENT_LEN_LIMIT:
        raise ProviderError(f"invalid {what} {value!r}: must be between 1 byte and 1G")
    return size


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise ProviderError(f"invalid {what} {value!r}: expected true or false")


def _port(value: Any) -> int:
    try:
        port = int(str(value).strip())
    except ValueError:
        raise ProviderError(f"invalid port {value!r}: expected a number 1-65535") from None
    if not 0 < port < 65536:
        raise ProviderError(f"invalid port {value!r}: expected a number 1-65535")
    return port


def parse_address(value: Any) -> tuple[str, int]:
    """``IP:PORT`` or ``[IPv6]:PORT`` → (ip, port)."""
    text = str(value).strip()
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        host = ""
    if not sep or not host:
        raise ProviderError(f"invalid address {value!r}: expected IP:PORT, e.g. 0.0.0.0:8080 "
                            "or [::1]:8080")
    return host, _port(port)


def _str_list(value: Any, what: str) -> list[str]:
    # The reference takes JSON lists; a comma-separated string is accepted as a convenience.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ProviderError(f"invalid cors.{what}: expected a list of strings")


def _cors(doc: Any) -> Cors:
    if doc is None:
        return Cors()
    if not isinstance(doc, dict):
        raise ProviderError("invalid cors settings: expected a JSON object")
    origins = []
    for origin in _str_list(doc.get("allowed_origins") or [], "allowed_origins"):
        if not _ORIGIN.fullmatch(origin.rstrip("/")):
            raise ProviderError(f"invalid cors.allowed_origins entry {origin!r}: expected "
                                "http(s)://host[:port]")
        origins.append(origin.lower().rstrip("/"))
    headers = doc.get("allowed_headers")
    methods = doc.get("allowed_methods")
    exposed = doc.get("exposed_headers")
    max_age = doc.get("max_age_secs", DEFAULT_MAX_AGE_SECS)
    if isinstance(max_age, bool) or not isinstance(max_age, int | str):
        raise ProviderError(f"invalid cors.max_age_secs {max_age!r}: expected seconds")
    try:
        max_age = int(max_age)
    except ValueError:
        raise ProviderError(f"invalid cors.max_age_secs {max_age!r}: expected seconds") from None
    return Cors(
        allowed_origins=tuple(origins),
        allowed_headers=tuple(h.lower() for h in _str_list(headers, "allowed_headers"))
        if headers is not None else DEFAULT_ALLOWED_HEADERS,
        allowed_methods=tuple(m.upper() for m in _str_list(methods, "allowed_methods"))
        if methods is not None else DEFAULT_ALLOWED_METHODS,
        exposed_headers=tuple(_str_list(exposed, "exposed_headers")) if exposed else (),
        max_age_secs=max(max_age, 0),
    )


def _json_doc(text: str, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ProviderError(f"invalid {what}: not JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ProviderError(f"invalid {what}: expected a JSON object")
    return doc


def _b64_doc(text: str) -> dict[str, Any]:
    raw = text.strip().rstrip("=")
    raw += "=" * (-len(raw) % 4)  # the reference decodes unpadded; accept both
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        try:
            decoded = base64.urlsafe_b64decode(raw)
        except (binascii.Error, ValueError):
            raise ProviderError("invalid config_b64: not base64") from None
    try:
        return _json_doc(decoded.decode(), "config_b64")
    except UnicodeDecodeError:
        raise ProviderError("invalid config_b64: not UTF-8 JSON") from None


def _file_doc(path_text: str) -> dict[str, Any]:
    path = Path(path_text)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ProviderError(f"invalid config_file {path_text}: {exc.strerror or exc}") from None
    if path.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ProviderError(f"invalid config_file {path_text}: {exc}") from None
    return _json_doc(text, f"config_file {path_text}")


def link_values(values: Mapping[str, str]) -> dict[str, str]:
    """Lower-cased keys; two keys differing only by case are refused, as the reference does."""
    out: dict[str, str] = {}
    for key, value in values.items():
        low = key.lower()
        if low in out:
            raise ProviderError(f"duplicate link value {key!r} (keys are case-insensitive)")
        out[low] = value
    return out


def parse_settings(values: Mapping[str, str], base: Mapping[str, Any] | None = None
                   ) -> Settings:
    """The effective settings of a link: ``base`` (provider config), then config_file,
    config_b64, config_json, then the plain link values. Raises ProviderError."""
    vals = link_values(values)
    doc: dict[str, Any] = dict(base or {})
    if "config_file" in vals:
        doc.update(_file_doc(vals["config_file"]))
    if "config_b64" in vals:
        doc.update(_b64_doc(vals["config_b64"]))
    if "config_json" in vals:
        doc.update(_json_doc(vals["config_json"], "config_json"))
    # Plain link values override the settings documents (address first: port wins over it).
    for key in ("address", "cache_control", "readonly_mode", "timeout_ms", "max_content_len"):
        if key in vals:
            doc[key] = vals[key]
    host, port = DEFAULT_HOST, DEFAULT_PORT
    if doc.get("address") is not None:
        host, port = parse_address(doc["address"])
    if "port" in vals:
        host, port = DEFAULT_HOST, _port(vals["port"])  # loopback only, like the reference
    tls = doc.get("tls") or {}
    if not isinstance(tls, dict):
        raise ProviderError("invalid tls settings: expected {cert_file, priv_key_file}")
    cert, key = tls.get("cert_file"), tls.get("priv_key_file")
    if bool(cert) != bool(key):
        raise ProviderError("invalid tls settings: both tls.cert_file and tls.priv_key_file "
                            "are needed")
    timeout: float | None = None
    if doc.get("timeout_ms") not in (None, ""):
        try:
            timeout_ms = int(str(doc["timeout_ms"]).strip())
        except ValueError:
            raise ProviderError(f"invalid timeout_ms {doc['timeout_ms']!r}: expected "
                                "milliseconds") from None
        if timeout_ms <= 0:
            raise ProviderError(f"invalid timeout_ms {timeout_ms}: must be positive")
        timeout = timeout_ms / 1000
    cache = doc.get("cache_control")
    if cache is not None and (not isinstance(cache, str) or not _VALUE.fullmatch(cache)):
        raise ProviderError(f"invalid cache_control {cache!r}: not a valid header value")
    return Settings(
        host=host, port=port,
        tls_cert_file=str(cert) if cert else None, tls_priv_key_file=str(key) if key else None,
        cors=_cors(doc.get("cors")), timeout=timeout, cache_control=cache or None,
        readonly_mode=_bool(doc.get("readonly_mode", False), "readonly_mode"),
        max_content_len=parse_size(doc["max_content_len"])
        if doc.get("max_content_len") not in (None, "") else DEFAULT_MAX_CONTENT_LEN,
    )


# ---- one listener -------------------------------------------------------------------------------


def _plain(status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers)


class Listener:
    """The HTTP server of one linked actor."""

    def __init__(self, provider: HttpServerProvider, actor: str, settings: Settings) -> None:
        self.provider = provider
        self.actor = actor
        self.settings = settings
        self.runner: web.ServerRunner | None = None

    async def start(self) -> None:
        s = self.settings
        context: ssl.SSLContext | None = None
        if s.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            try:
                context.load_cert_chain(s.tls_cert_file or "", s.tls_priv_key_file or "")
            except (OSError, ssl.SSLError) as exc:
                raise ProviderError(f"cannot load the TLS certificate {s.tls_cert_file} / key "
                                    f"{s.tls_priv_key_file}: {exc}") from None
        # Low-level server: no router, and access_log=None keeps per-request logging off.
        server = web.Server(self.handle, access_log=None)
        runner = web.ServerRunner(server, shutdown_timeout=STOP_GRACE)
        await runner.setup()
        deadline = time.monotonic() + BIND_GRACE
        while True:
            site = web.TCPSite(runner, s.host, s.port, ssl_context=context)
            try:
                await site.start()
                break
            except OSError as exc:
                with contextlib.suppress(Exception):
                    await site.stop()
                if exc.errno == errno.EADDRINUSE and time.monotonic() < deadline:
                    log.debug("address in use; trying again", extra={
                        "actor": self.actor, "address": s.host, "port": s.port})
                    await asyncio.sleep(0.05)
                    continue
                await runner.cleanup()
                reason = exc.strerror or str(exc)
                raise ProviderError(f"cannot listen on {s.where} (address {s.host}, port "
                                    f"{s.port}) for actor {self.actor}: {reason}; give the link "
                                    "its own port or address") from None
        self.runner = runner

    async def stop(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        s = self.settings
        method = request.method.upper()
        headers = request.headers
        origin = headers.get("Origin")
        if origin is not None:
            if not s.cors.origin_allowed(origin):
                return _plain(403)
            if method == "OPTIONS" and "Access-Control-Request-Method" in headers:
                return self.preflight(origin, headers)
        if s.readonly_mode and method != "GET" and method != "HEAD":
            return _plain(405, {"Allow": "GET, HEAD"})
        body = _EMPTY
        if request.body_exists:
            length = request.content_length
            if length is not None and length > s.max_content_len:
                return _plain(413)
            parts: list[bytes] = []
            total = 0
            async for chunk in request.content.iter_any():
                total += len(chunk)
                if total > s.max_content_len:  # chunked uploads have no Content-Length
                    return _plain(413)
                parts.append(chunk)
            body = parts[0] if len(parts) == 1 else b"".join(parts)
        header: dict[str, list[str]] = {}
        for name, value in headers.items():
            if not value.isascii():
                continue  # non-ASCII values are dropped, as by the reference provider
            key = name.lower()
            bucket = header.get(key)
            if bucket is None:
                header[key] = [value]
            else:
                bucket.append(value)
        raw = request.raw_path
        path, _, query = raw.partition("?")
        if not path.startswith("/"):  # absolute-form target (proxy style): use the parsed URL
            path, query = request.rel_url.raw_path, request.rel_url.raw_query_string
        payload = _OP.encode_input(HttpRequest(method=method, path=path, query_string=query,
                                               header=header, body=body))
        return self.answer(await self.call(payload), origin)

    async def call(self, payload: bytes) -> HttpResponse | int:
        """The actor's HttpResponse, or the status to answer with when there is none."""
        bridge = self.provider.bridge
        if bridge is None:
            return 500
        try:
            data = await bridge.call_actor(self.actor, HANDLE_REQUEST, payload,
                                           timeout=self.settings.timeout)
        except RpcError as exc:
            # The HTTP client only sees a bare 500/503 (as from the reference provider), so the
            # reason must reach the operator's log.
            log.warning("actor call failed", extra={"actor": self.actor, "error": str(exc),
                                                    "kind": exc.kind})
            return 503 if exc.kind == "timeout" else 500
        except Exception as exc:
            log.warning("actor call failed", extra={"actor": self.actor, "error": str(exc)})
            return 500
        try:
            return _OP.decode_output(data)
        except contracts.CodecError as exc:
            log.warning("undecodable HttpResponse", extra={"actor": self.actor,
                                                           "error": str(exc)})
            return 500

    def answer(self, result: HttpResponse | int, origin: str | None) -> web.Response:
        s = self.settings
        out: CIMultiDict[str] = CIMultiDict()
        if isinstance(result, int):
            status, body = result, _EMPTY
        else:
            status, body = result.status_code, result.body
            if not 200 <= status <= 599:  # not a usable HTTP status: the reference sends 500
                status, body = 500, _EMPTY
            else:
                for name, values in result.header.items():
                    if not _TOKEN.fullmatch(name) or name.lower() in _HOP_HEADERS:
                        continue  # invalid names are skipped, not fatal
                    for value in values:
                        if _VALUE.fullmatch(value):
                            out.add(name, value)
        if s.cache_control is not None:
            out["Cache-Control"] = s.cache_control
        if origin is not None:
            out["Access-Control-Allow-Origin"] = origin
            if s.cors.exposed_headers:
                out["Access-Control-Expose-Headers"] = ", ".join(s.cors.exposed_headers)
            out.add("Vary", "Origin")
        return web.Response(status=status, body=body, headers=out)

    def preflight(self, origin: str, headers: Mapping[str, str]) -> web.Response:
        """Answer a CORS preflight (warp::cors semantics: anything not allowed → 403)."""
        cors = self.settings.cors
        method = headers.get("Access-Control-Request-Method", "").strip().upper()
        if method not in cors.allowed_methods:
            return _plain(403)
        requested = [h.strip().lower()
                     for h in headers.get("Access-Control-Request-Headers", "").split(",")
                     if h.strip()]
        if any(h not in cors.allowed_headers for h in requested):
            return _plain(403)
        out = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ", ".join(cors.allowed_methods),
            "Access-Control-Allow-Headers": ", ".join(cors.allowed_headers),
            "Access-Control-Max-Age": str(cors.max_age_secs),
            "Vary": "Origin",
        }
        return web.Response(status=200, headers=out)


# ---- the provider -------------------------------------------------------------------------------


class HttpServerProvider(Provider):
    contract_id = CONTRACT_ID
    name = "httpserver"

    def __init__(self) -> None:
        self.listeners: dict[str, Listener] = {}  # actor key → its listener
        self.base: dict[str, Any] = {}  # provider-level settings (HostData config_json)

    async def init(self, host_data: HostData) -> None:
        if host_data.config_json and host_data.config_json.strip():
            try:
                self.base = _json_doc(host_data.config_json, "provider config_json")
            except ProviderError as exc:
                # A bad provider config must not kill the provider; links can still configure.
                log.warning("ignoring the provider configuration", extra={"error": str(exc)})

    async def put_link(self, link: LinkDefinition) -> None:
        settings = parse_settings(link.values, self.base)
        old = self.listeners.pop(link.actor_id, None)
        if old is not None:  # a re-put after a missed delete: the new values win
            await old.stop()
        listener = Listener(self, link.actor_id, settings)
        await listener.start()
        self.listeners[link.actor_id] = listener
        log.info("http listener started", extra={
            "actor": link.actor_id, "address": settings.host, "port": settings.port,
            "tls": settings.tls})

    async def del_link(self, link: LinkDefinition) -> None:
        listener = self.listeners.pop(link.actor_id, None)
        if listener is not None:
            await listener.stop()
            log.info("http listener stopped", extra={
                "actor": link.actor_id, "address": listener.settings.host,
                "port": listener.settings.port})

    async def health(self) -> tuple[bool, str | None]:
        return True, f"{len(self.listeners)} listener(s)"

    async def shutdown(self) -> None:
        listeners = list(self.listeners.values())
        self.listeners.clear()
        # Concurrently: the SDK gives the whole hook 1.5 s.
        results = await asyncio.gather(*(lst.stop() for lst in listeners),
                                       return_exceptions=True)
        for listener, result in zip(listeners, results, strict=True):
            if isinstance(result, BaseException):
                with contextlib.suppress(Exception):
                    log.warning("http listener did not stop cleanly", extra={
                        "actor": listener.actor, "error": str(result)})


PROVIDER = HttpServerProvider
