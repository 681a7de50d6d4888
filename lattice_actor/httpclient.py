"""``wasmcloud:httpclient`` client: outgoing HTTP requests.

::

    from lattice_actor import httpclient

    resp = httpclient.get("https://example.com/api/items", headers={"accept": "application/json"})
    if resp.ok:
        items = resp.json()
    resp = httpclient.post("https://example.com/api/items", json={"name": "x"})
    resp.raise_for_status()                 # StatusError for 4xx/5xx
    resp = httpclient.request("PATCH", url, {"x-token": "t"}, b"...")

    internal = httpclient.HttpClient("internal")    # the actor's link named "internal"

Non-2xx answers are normal responses; transport failures (DNS, connect, TLS, a host not allowed
by the link) raise :class:`~lattice_actor.HostError`.
"""

from __future__ import annotations

from typing import Any

import contracts
from contracts import httpclient as _hc

from . import _json
from ._client import DEFAULT_LINK, check_link, invoke
from ._http import JSON, HeaderInput, Headers

_REQUEST = contracts.operation(_hc.REQUEST)

_UNSET: Any = object()


class ClientResponse:
    """An HTTP response: ``status``, ``headers`` (:class:`Headers`), ``body`` (bytes), plus
    ``ok``, ``text``, ``json()`` and ``raise_for_status()``."""

    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: HeaderInput = None, body: bytes = b"") -> None:
        self.status = status
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = bytes(body)

    @classmethod
    def from_wire(cls, resp: Any) -> ClientResponse:
        """From an ``HttpResponse`` of wasmcloud:httpclient or wasmcloud:httpserver."""
        return cls(resp.status_code, resp.header, resp.body)

    @property
    def ok(self) -> bool:
        """True for a 2xx or 3xx status."""
        return 200 <= self.status < 400

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.body)

    def raise_for_status(self) -> ClientResponse:
        """Raise :class:`StatusError` for a 4xx/5xx status; otherwise return self."""
        if self.status >= 400:
            raise StatusError(self)
        return self

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} ({len(self.body)} bytes)>"


class StatusError(Exception):
    """``raise_for_status()`` on a 4xx/5xx response; ``.response`` holds it."""

    def __init__(self, response: ClientResponse) -> None:
        super().__init__(f"HTTP {response.status}: {response.text[:200]}")
        self.response = response


class HttpClient:
    """HTTP over one link (the module functions use ``HttpClient("default")``)."""

    def __init__(self, link_name: str = DEFAULT_LINK) -> None:
        self.link_name = check_link(link_name)

    def request(self, method: str, url: str, headers: HeaderInput = None,
                body: bytes | str = b"", *, json: Any = _UNSET) -> ClientResponse:
        """Send a request. ``body`` str is UTF-8 encoded; ``json=obj`` sends ``obj`` as JSON
        (and sets ``content-type: application/json`` unless given)."""
        head = Headers(headers)
        if json is not _UNSET:
            if body:
                raise ValueError("pass either body or json, not both")
            body = _json.dumps(json)
            if "content-type" not in head:
                head["content-type"] = JSON
        if isinstance(body, str):
            body = body.encode("utf-8")
        reply = invoke(self.link_name, _REQUEST, _hc.HttpRequest(
            method=method.upper(), url=url, headers=head.to_wire(), body=bytes(body)))
        return ClientResponse.from_wire(reply)

    def get(self, url: str, headers: HeaderInput = None) -> ClientResponse:
        return self.request("GET", url, headers)

    def head(self, url: str, headers: HeaderInput = None) -> ClientResponse:
        return self.request("HEAD", url, headers)

    def delete(self, url: str, headers: HeaderInput = None) -> ClientResponse:
        return self.request("DELETE", url, headers)

    def post(self, url: str, body: bytes | str = b"", headers: HeaderInput = None, *,
             json: Any = _UNSET) -> ClientResponse:
        return self.request("POST", url, headers, body, json=json)

    def put(self, url: str, body: bytes | str = b"", headers: HeaderInput = None, *,
            json: Any = _UNSET) -> ClientResponse:
        return self.request("PUT", url, headers, body, json=json)

    def patch(self, url: str, body: bytes | str = b"", headers: HeaderInput = None, *,
              json: Any = _UNSET) -> ClientResponse:
        return self.request("PATCH", url, headers, body, json=json)

    def __repr__(self) -> str:
        return f"HttpClient({self.link_name!r})"


_default = HttpClient()
request = _default.request
get = _default.get
head = _default.head
delete = _default.delete
post = _default.post
put = _default.put
patch = _default.patch

__all__ = ["ClientResponse", "HttpClient", "StatusError", "delete", "get", "head", "patch",
           "post", "put", "request"]
