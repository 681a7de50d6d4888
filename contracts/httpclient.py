"""``wasmcloud:httpclient`` (crate 0.11.0): actors issue outgoing HTTP requests.

Careful: the request carries ``headers`` (plural), the response ``header`` (singular).
"""

from dataclasses import dataclass, field

from ._codec import U16
from ._operation import ACTOR_TO_PROVIDER, Operation

CONTRACT_ID = "wasmcloud:httpclient"
REQUEST = "HttpClient.Request"

HeaderMap = dict[str, list[str]]


@dataclass(slots=True)
class HttpRequest:
    method: str = "GET"  # Rust SDK default
    url: str = ""  # absolute URL
    headers: HeaderMap = field(default_factory=dict)
    body: bytes = b""


@dataclass(slots=True)
class HttpResponse:
    status_code: U16 = 200  # non-2xx are normal responses, not errors
    header: HeaderMap = field(default_factory=dict)
    body: bytes = b""


OPERATIONS = (Operation(CONTRACT_ID, REQUEST, HttpRequest, HttpResponse, ACTOR_TO_PROVIDER),)
