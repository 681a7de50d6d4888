"""``wasmcloud:messaging`` (crate 0.11.0): ``Messaging`` (actor -> provider) and
``MessageSubscriber`` (provider -> actor) share the contract id."""

from dataclasses import dataclass

from ._codec import U32
from ._operation import ACTOR_TO_PROVIDER, PROVIDER_TO_ACTOR, Operation

CONTRACT_ID = "wasmcloud:messaging"

PUBLISH = "Messaging.Publish"
REQUEST = "Messaging.Request"
HANDLE_MESSAGE = "MessageSubscriber.HandleMessage"


@dataclass(slots=True)
class PubMessage:
    subject: str = ""
    reply_to: str | None = None  # omitted when None; never send "" (Rust reads it as Some(""))
    body: bytes = b""


@dataclass(slots=True)
class RequestMessage:
    subject: str = ""
    body: bytes = b""
    timeout_ms: U32 = 0  # 0 = immediate timeout with the NATS provider


@dataclass(slots=True)
class ReplyMessage:
    subject: str = ""
    reply_to: str | None = None
    body: bytes = b""


@dataclass(slots=True)
class SubMessage:
    subject: str = ""
    reply_to: str | None = None  # reply by publishing to this subject
    body: bytes = b""


OPERATIONS = (
    Operation(CONTRACT_ID, PUBLISH, PubMessage, None, ACTOR_TO_PROVIDER),
    Operation(CONTRACT_ID, REQUEST, RequestMessage, ReplyMessage, ACTOR_TO_PROVIDER),
    Operation(CONTRACT_ID, HANDLE_MESSAGE, SubMessage, None, PROVIDER_TO_ACTOR),
)
