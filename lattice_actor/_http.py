"""HTTP types for ``HttpServer.HandleRequest`` handlers: Request, Response, Headers, HttpError.

::

    from lattice_actor import HttpError, Request, Response, http_handler

    @http_handler
    def handle(req: Request):
        if req.path == "/hello":
            return f"Hello, {req.query.get('name', 'world')}!"  # text/plain, 200
        if req.method == "POST" and req.path == "/items":
            item = req.json()                                   # invalid JSON -> 400
            return Response.json({"created": item}, status=201)
        raise HttpError(404)
"""

from __future__ import annotations

import http
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

from contracts import httpserver

from . import _json

HeaderInput = Mapping[str, "str | Iterable[str]"] | Iterable[tuple[str, str]] | None

TEXT = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
JSON = "application/json"
OCTET_STREAM = "application/octet-stream"


class Headers(MutableMapping[str, str]):
    """Case-insensitive, multi-valued HTTP headers.

    ``headers["Content-Type"]`` gives all values joined with ``", "``; :meth:`get_all` gives the
    list; assignment replaces, :meth:`add` appends::

        h = Headers({"Content-Type": "text/plain"})
        h.add("Set-Cookie", "a=1"); h.add("set-cookie", "b=2")
        h.get_all("SET-COOKIE")   # ['a=1', 'b=2']
    """

    __slots__ = ("_items",)

    def __init__(self, data: HeaderInput = None, /, **kwargs: str) -> None:
        self._items: dict[str, tuple[str, list[str]]] = {}
        if data is not None:
            self.update_from(data)
        for name, value in kwargs.items():
            self[name.replace("_", "-")] = value

    def update_from(self, data: HeaderInput) -> None:
        """Add every header of a mapping (values: str or list of str) or of (name, value) pairs."""
        if data is None:
            return
        if isinstance(data, Headers):
            for name, values in data._items.values():
                for value in values:
                    self.add(name, value)
            return
        pairs = data.items() if isinstance(data, Mapping) else data
        for name, value in pairs:
            if isinstance(value, str):
                self.add(name, value)
            else:
                for item in value:
                    self.add(name, item)

    def __getitem__(self, name: str) -> str:
        return ", ".join(self._items[name.lower()][1])

    def __setitem__(self, name: str, value: str | Iterable[str]) -> None:
        values = [value] if isinstance(value, str) else [str(v) for v in value]
        self._items[name.lower()] = (name, values)

    def __delitem__(self, name: str) -> None:
        del self._items[name.lower()]

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name`` (empty list when absent)."""
        entry = self._items.get(name.lower())
        return list(entry[1]) if entry else []

    def add(self, name: str, value: str) -> None:
        """Append a value, keeping the ones already there."""
        if not isinstance(value, str):
            raise TypeError(f"header {name!r}: value must be str, got {type(value).__name__}")
        entry = self._items.get(name.lower())
        if entry is None:
            self._items[name.lower()] = (name, [value])
        else:
            entry[1].append(value)

    def to_wire(self) -> dict[str, list[str]]:
        """The contract's ``HeaderMap``: name -> list of values."""
        return {name: list(values) for name, values in self._items.values()}

    def __repr__(self) -> str:
        return f"Headers({self.to_wire()!r})"


class Request:
    """An inbound HTTP request (``wasmcloud:httpserver`` HttpRequest).

    Attributes: ``method`` (upper-case), ``path`` (leading ``/``, no query), ``query_string``
    (raw, without ``?``), ``headers`` (:class:`Headers`, names lower-case from the provider),
    ``body`` (bytes). Derived: ``query`` (first value per name), ``query_all``, ``text``,
    ``json()``, ``url``.
    """

    __slots__ = ("_query", "body", "headers", "method", "path", "query_string")

    def __init__(self, method: str = "GET", path: str = "/", query_string: str = "",
                 headers: HeaderInput = None, body: bytes | str = b"") -> None:
        self.method = method
        self.path = path
        self.query_string = query_string
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body.encode() if isinstance(body, str) else bytes(body)
        self._query: list[tuple[str, str]] | None = None

    @classmethod
    def from_wire(cls, req: httpserver.HttpRequest) -> Request:
        return cls(req.method, req.path, req.query_string, req.header, req.body)

    def to_wire(self) -> httpserver.HttpRequest:
        return httpserver.HttpRequest(method=self.method, path=self.path,
                                      query_string=self.query_string,
                                      header=self.headers.to_wire(), body=self.body)

    def _pairs(self) -> list[tuple[str, str]]:
        if self._query is None:
            self._query = parse_qsl(self.query_string, keep_blank_values=True)
        return self._query

    @property
    def query(self) -> dict[str, str]:
        """Query parameters, the first value of each name: ``?a=1&a=2&b`` -> ``{a: 1, b: ""}``."""
        out: dict[str, str] = {}
        for name, value in self._pairs():
            out.setdefault(name, value)
        return out

    @property
    def query_all(self) -> dict[str, list[str]]:
        """Query parameters with every value: ``?a=1&a=2`` -> ``{a: ["1", "2"]}``."""
        out: dict[str, list[str]] = {}
        for name, value in self._pairs():
            out.setdefault(name, []).append(value)
        return out

    @property
    def url(self) -> str:
        """Path plus query string, as the client sent it."""
        return f"{self.path}?{self.query_string}" if self.query_string else self.path

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON. Invalid JSON raises :class:`InvalidJSON`: a ``ValueError``
        (catch it to answer your own way) that, left uncaught, answers 400."""
        try:
            return _json.loads(self.body)
        except ValueError as exc:
            raise InvalidJSON(400, f"invalid JSON body: {exc}") from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url} ({len(self.body)} bytes)>"


class Response:
    """An HTTP response. ``Response(body, status=200, headers=None, content_type=None)``; a
    ``str`` body is UTF-8 encoded and defaults to ``text/plain``. Shortcuts::

        Response.json({"ok": True}, status=201)
        Response.text("hi")           Response.html("<p>hi</p>")
        Response.redirect("/login")   Response.no_content()
        Response.not_found()          Response.bad_request("missing id")
        Response.internal_error()     Response.error(429, "slow down")
    """

    __slots__ = ("body", "headers", "status")

    def __init__(self, body: bytes | str = b"", status: int = 200, headers: HeaderInput = None,
                 *, content_type: str | None = None) -> None:
        if isinstance(body, str):
            body = body.encode("utf-8")
            content_type = content_type or TEXT
        elif not isinstance(body, bytes):
            body = bytes(body)
        self.status = check_status(status)
        self.headers = Headers(headers)
        self.body = body
        if content_type and "content-type" not in self.headers:
            self.headers["content-type"] = content_type

    # -- shortcuts ---------------------------------------------------------------------------

    @classmethod
    def json(cls, obj: Any, status: int = 200, headers: HeaderInput = None) -> Response:
        """``obj`` as compact UTF-8 JSON with ``content-type: application/json``."""
        return cls(_json.dumps(obj), status, headers, content_type=JSON)

    @classmethod
    def text(cls, text: str, status: int = 200, headers: HeaderInput = None) -> Response:
        return cls(text.encode("utf-8"), status, headers, content_type=TEXT)

    @classmethod
    def html(cls, html: str, status: int = 200, headers: HeaderInput = None) -> Response:
        return cls(html.encode("utf-8"), status, headers, content_type=HTML)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        return cls(b"", status, {"location": location})

    @classmethod
    def no_content(cls) -> Response:
        return cls(b"", 204)

    @classmethod
    def error(cls, status: int, message: str | None = None,
              headers: HeaderInput = None) -> Response:
        """A text response; the message defaults to the status phrase (``404`` -> Not Found)."""
        return cls.text(reason(status) if message is None else message, status, headers)

    @classmethod
    def not_found(cls, message: str = "Not Found") -> Response:
        return cls.error(404, message)

    @classmethod
    def bad_request(cls, message: str = "Bad Request") -> Response:
        return cls.error(400, message)

    @classmethod
    def internal_error(cls, message: str = "Internal Server Error") -> Response:
        return cls.error(500, message)

    # -- wire --------------------------------------------------------------------------------

    def to_wire(self) -> httpserver.HttpResponse:
        return httpserver.HttpResponse(status_code=self.status, header=self.headers.to_wire(),
                                       body=self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} ({len(self.body)} bytes)>"


class HttpError(Exception):
    """Raise inside an HTTP handler to answer with an error status::

        raise HttpError(404)                        # body "Not Found"
        raise HttpError(403, "members only")
    """

    def __init__(self, status: int, message: str | None = None,
                 headers: HeaderInput = None) -> None:
        self.status = status
        self.message = reason(status) if message is None else message
        self.headers = headers
        super().__init__(f"{status} {self.message}")

    def to_response(self) -> Response:
        return Response.error(self.status, self.message, self.headers)


class InvalidJSON(HttpError, ValueError):
    """``Request.json()`` on a body that is not JSON: a ValueError and an ``HttpError(400)``."""


def check_status(status: int) -> int:
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 999:
        raise ValueError(f"HTTP status must be an int in 100..999, got {status!r}")
    return status


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def to_response(result: Any) -> Response:
    """Turn what an HTTP handler returned into a Response.

    ``Response`` as is; ``str`` -> text/plain; ``bytes`` -> application/octet-stream;
    ``dict``/``list`` -> JSON; ``None`` -> empty 200; ``(value, status)`` or
    ``(value, status, headers)`` -> the value's response with that status/extra headers.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, tuple):
        if len(result) not in (2, 3) or not isinstance(result[1], int):
            raise TypeError("an HTTP handler may return (value, status) or "
                            f"(value, status, headers), got a tuple of {len(result)}")
        response = to_response(result[0])
        response.status = check_status(result[1])
        if len(result) == 3:
            extra = Headers(result[2])
            for name in extra:
                response.headers[name] = extra.get_all(name)
        return response
    if result is None:
        return Response()
    if isinstance(result, str):
        return Response.text(result)
    if isinstance(result, bytes | bytearray | memoryview):
        return Response(bytes(result), content_type=OCTET_STREAM)
    if isinstance(result, dict | list):
        return Response.json(result)
    if isinstance(result, httpserver.HttpResponse):
        return Response(result.body, result.status_code, result.header)
    raise TypeError(
        f"an HTTP handler returned {type(result).__name__}; return a Response, str, bytes, "
        "dict, list or None (or a (value, status) tuple)")
