"""``httpclient``: a ``wasmcloud:httpclient`` provider (docs/contracts.md §6.2) on aiohttp.

``HttpClient.Request`` sends the actor's request and returns the remote answer as an
``HttpResponse`` — any status, 404 and 500 included, is a normal response. Transport failures
are RPC errors ``sending request: …`` (``receiving response body: …`` once the headers arrived).

One pooled ``ClientSession`` serves every actor (no cookie jar, so actors never share cookies;
no transparent decompression, so ``body`` always matches the ``content-encoding`` header).
Per-link values (names matched case-insensitively): ``connect_timeout_ms`` (5000),
``read_timeout_ms`` (30000), ``max_response_bytes`` (100 MiB) and ``allowed_hosts`` (comma-
separated ``host`` or ``host:port``; empty = any host), enforced on every redirect hop too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from contracts.httpclient import CONTRACT_ID, HttpRequest, HttpResponse
from lattice.links import LinkDefinition
from lattice.provider import Context, InvalidParameter, Provider, ProviderError

log = logging.getLogger("providers.httpclient")

DEFAULT_CONNECT_TIMEOUT_MS = 5000
DEFAULT_READ_TIMEOUT_MS = 30000
DEFAULT_MAX_RESPONSE_BYTES = 100 * 1024 * 1024
MAX_REDIRECTS = 10  # reqwest's default policy
POOL_SIZE = 256

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r"[\t\x20-\x7e]*")
# aiohttp frames the body itself; an actor's copy could only contradict it.
_FRAMING = frozenset({"content-length", "transfer-encoding"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_SENSITIVE = ("Authorization", "Proxy-Authorization", "Cookie")


@dataclass(frozen=True, slots=True)
class ClientSettings:
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_MS / 1000
    read_timeout: float = DEFAULT_READ_TIMEOUT_MS / 1000
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    allowed_hosts: tuple[tuple[str, int | None], ...] = ()  # () = any host

    def allows(self, url: URL) -> bool:
        if not self.allowed_hosts:
            return True
        host, port = (url.host or "").lower(), url.port
        return any(h == host and (p is None or p == port) for h, p in self.allowed_hosts)

    @property
    def timeout(self) -> aiohttp.ClientTimeout:
        # sock_read bounds each wait for data (headers or body), not the whole transfer.
        return aiohttp.ClientTimeout(total=None, connect=self.connect_timeout,
                                     sock_connect=self.connect_timeout,
                                     sock_read=self.read_timeout)


def _positive_int(value: str, what: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        raise ProviderError(f"invalid {what} {value!r}: expected a positive integer") from None
    if number <= 0:
        raise ProviderError(f"invalid {what} {value!r}: expected a positive integer")
    return number


def _host_entry(entry: str) -> tuple[str, int | None]:
    """``example.com``, ``example.com:8080``, ``10.0.0.1:80``, ``[::1]:8080`` or ``::1``."""
    text = entry.strip().lower()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ProviderError(f"invalid allowed_hosts entry {entry!r}")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:  # a bare name or a bare IPv6 address
        host, port = text, ""
    if not host or "/" in host:
        raise ProviderError(f"invalid allowed_hosts entry {entry!r}: expected host or host:port")
    if not port:
        return host, None
    number = _positive_int(port, f"port in allowed_hosts entry {entry!r}")
    if number > 65535:
        raise ProviderError(f"invalid port in allowed_hosts entry {entry!r}")
    return host, number


def parse_settings(values: Mapping[str, str]) -> ClientSettings:
    """A link's settings from its values (keys case-insensitive). Raises ProviderError."""
    vals: dict[str, str] = {}
    for key, value in values.items():
        if key.lower() in vals:
            raise ProviderError(f"duplicate link value {key!r} (keys are case-insensitive)")
        vals[key.lower()] = value
    defaults = ClientSettings()
    connect = vals.get("connect_timeout_ms", "").strip()
    read = vals.get("read_timeout_ms", "").strip()
    cap = vals.get("max_response_bytes", "").strip()
    hosts = vals.get("allowed_hosts", "")
    return ClientSettings(
        connect_timeout=_positive_int(connect, "connect_timeout_ms") / 1000 if connect
        else defaults.connect_timeout,
        read_timeout=_positive_int(read, "read_timeout_ms") / 1000 if read
        else defaults.read_timeout,
        max_response_bytes=_positive_int(cap, "max_response_bytes") if cap
        else defaults.max_response_bytes,
        allowed_hosts=tuple(_host_entry(e) for e in hosts.split(",") if e.strip()),
    )


def _describe(exc: BaseException, settings: ClientSettings) -> str:
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connect timed out after {settings.connect_timeout * 1000:g} ms"
    if isinstance(exc, TimeoutError):  # aiohttp's read timeouts have no message
        return f"timed out after {settings.read_timeout * 1000:g} ms without data"
    return str(exc) or type(exc).__name__


class HttpClientProvider(Provider):
    contract_id = CONTRACT_ID
    name = "httpclient"

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None
        self.settings: dict[str, ClientSettings] = {}  # actor key → its link's settings

    def _session(self) -> aiohttp.ClientSession:
        # Created on first use: a session must be made inside the running loop.
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=POOL_SIZE, ttl_dns_cache=60),
                cookie_jar=aiohttp.DummyCookieJar(),  # actors must not see each other's cookies
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),  # we do not decompress: don't ask for it
            )
        return self.session

    async def put_link(self, link: LinkDefinition) -> None:
        self.settings[link.actor_id] = parse_settings(link.values)

    async def del_link(self, link: LinkDefinition) -> None:
        self.settings.pop(link.actor_id, None)

    async def shutdown(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            await session.close()

    def _settings_for(self, ctx: Context) -> ClientSettings:
        settings = self.settings.get(ctx.actor)
        if settings is None:  # e.g. a call racing put_link: the context carries the link
            settings = self.settings[ctx.actor] = parse_settings(ctx.values)
        return settings

    async def request(self, ctx: Context, req: HttpRequest) -> HttpResponse:
        settings = self._settings_for(ctx)
        method = req.method
        if not _TOKEN.fullmatch(method):
            raise InvalidParameter(f"method: invalid HTTP method {method!r}")
        try:
            url = URL(req.url)
        except (ValueError, TypeError) as exc:
            raise InvalidParameter(f"url: {req.url!r}: {exc}") from None
        if not url.absolute or url.scheme not in ("http", "https") or not url.host:
            raise InvalidParameter(f"url: {req.url!r} is not an absolute http(s) URL")
        headers: CIMultiDict[str] = CIMultiDict()
        for name, values in req.headers.items():
            if not _TOKEN.fullmatch(name) or name.lower() in _FRAMING:
                continue  # invalid names and values are skipped, as by the reference
            for value in values:
                if _VALUE.fullmatch(value):
                    headers.add(name, value)
        body: bytes | None = req.body or None
        session = self._session()
        # Redirects are followed here rather than by aiohttp so every hop meets allowed_hosts.
        for _ in range(MAX_REDIRECTS + 1):
            if not settings.allows(url):
                raise ProviderError(f"host not allowed: {url.host}:{url.port} (allowed_hosts: "
                                    + ", ".join(h if p is None else f"{h}:{p}"
                                                for h, p in settings.allowed_hosts) + ")")
            try:
                async with session.request(method, url, headers=headers, data=body,
                                           allow_redirects=False,
                                           timeout=settings.timeout) as resp:
                    location = resp.headers.get("Location")
                    if resp.status in _REDIRECTS and location:
                        try:
                            url = resp.url.join(URL(location))
                        except ValueError:
                            return await self._read(resp, settings)
                        if url.scheme not in ("http", "https"):
                            return await self._read(resp, settings)
                        if url.origin() != resp.url.origin():  # credentials stay with their host
                            for key in _SENSITIVE:
                                headers.popall(key, None)
                        if (resp.status == 303 and method != "HEAD") or (
                                resp.status in (301, 302) and method == "POST"):
                            method, body = "GET", None
                            for key in ("Content-Type", "Content-Encoding"):
                                headers.popall(key, None)
                        continue
                    return await self._read(resp, settings)
            except ProviderError:
                raise
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                raise ProviderError(f"sending request: {_describe(exc, settings)}") from None
        raise ProviderError(f"sending request: too many redirects (more than {MAX_REDIRECTS})")

    async def _read(self, resp: aiohttp.ClientResponse, settings: ClientSettings
                    ) -> HttpResponse:
        cap = settings.max_response_bytes
        length = resp.content_length
        if length is not None and length > cap:
            raise ProviderError(f"response too large: {length} bytes exceeds "
                                f"max_response_bytes ({cap})")
        parts: list[bytes] = []
        total = 0
        try:
            async for chunk in resp.content.iter_any():
                total += len(chunk)
                if total > cap:  # no (or a lying) Content-Length
                    raise ProviderError(f"response too large: more than {cap} bytes "
                                        "(max_response_bytes)")
                parts.append(chunk)
        except ProviderError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise ProviderError(f"receiving response body: {_describe(exc, settings)}"
                                ) from None
        header: dict[str, list[str]] = {}
        for name, value in resp.headers.items():
            if value.isascii():  # a str that was not ASCII on the wire cannot round-trip
                header.setdefault(name.lower(), []).append(value)
        return HttpResponse(status_code=resp.status, header=header, body=b"".join(parts))


PROVIDER = HttpClientProvider
