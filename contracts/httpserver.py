"""``wasmcloud:httpserver`` (crate 0.12.0): the provider calls the linked actor per HTTP request."""

from dataclasses import dataclass, field

from ._codec import U16
from ._operation import PROVIDER_TO_ACTOR, Operation

CONTRACT_ID = "wasmcloud:httpserver"
HANDLE_REQUEST = "HttpServer.HandleRequest"

HeaderMap = dict[str, list[str]]  # multi-valued headers; names are lower-case from the provider


@dataclass(slots=True)
class HttpRequest:
    method: str = "GET"  # upper-case HTTP method (Rust's Default would be "")
    path: str = ""  # leading '/', no query
    query_string: str = ""  # raw query without '?'
    header: HeaderMap = field(default_factory=dict)  # key must always be written
    body: bytes = b""


@dataclass(slots=True)
class HttpResponse:
    status_code: U16 = 200  # SDK default per docs/contracts.md (a missing key still decodes as 0)
    header: HeaderMap = field(default_factory=dict)
    body: bytes = b""


OPERATIONS = (Operation(CONTRACT_ID, HANDLE_REQUEST, HttpRequest, HttpResponse, PROVIDER_TO_ACTOR),)
