"""``wasmcloud:messaging`` client, and the :class:`Message` handlers receive.

::

    from lattice_actor import messaging, message_handler

    messaging.publish("orders.created", b'{"id": 7}')
    reply = messaging.request("prices.get", b"ACME", timeout_ms=500)
    print(reply.text)

    @message_handler
    def on_message(msg: messaging.Message) -> None:
        if msg.reply_to:
            msg.reply(msg.body.upper())

    other = messaging.Messaging("events")      # another link name
    other.publish("audit", "hello")
"""

from __future__ import annotations

from typing import Any

import contracts
from contracts import messaging as _m

from . import _json
from ._client import DEFAULT_LINK, check_link, invoke

_PUBLISH = contracts.operation(_m.PUBLISH)
_REQUEST = contracts.operation(_m.REQUEST)

DEFAULT_TIMEOUT_MS = 1000  # below the host's 2 s RPC timeout, so the provider's timeout wins


def _body(body: bytes | str) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    raise TypeError(f"a message body must be bytes or str, got {type(body).__name__}")


class Message:
    """A message: ``subject``, ``reply_to`` (None when no reply is expected), ``body`` (bytes),
    plus ``text``, ``json()`` and ``reply(body)``."""

    __slots__ = ("body", "reply_to", "subject")

    def __init__(self, subject: str, body: bytes | str = b"", reply_to: str | None = None) -> None:
        self.subject = subject
        self.body = _body(body)
        self.reply_to = reply_to or None

    @classmethod
    def from_wire(cls, msg: _m.SubMessage | _m.ReplyMessage) -> Message:
        return cls(msg.subject, msg.body, msg.reply_to)

    def to_wire(self) -> _m.SubMessage:
        return _m.SubMessage(subject=self.subject, reply_to=self.reply_to, body=self.body)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes become U+FFFD)."""
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.body)

    def reply(self, body: bytes | str, link_name: str = DEFAULT_LINK) -> None:
        """Publish ``body`` to this message's ``reply_to`` subject."""
        if not self.reply_to:
            raise ValueError(f"message on {self.subject!r} has no reply_to subject")
        Messaging(link_name).publish(self.reply_to, body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return (self.subject, self.reply_to, self.body) == (other.subject, other.reply_to,
                                                            other.body)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        reply = f", reply_to={self.reply_to!r}" if self.reply_to else ""
        return f"Message({self.subject!r}, {len(self.body)} bytes{reply})"


class Messaging:
    """Messaging over one link (``Messaging("default")`` is what the module functions use)."""

    def __init__(self, link_name: str = DEFAULT_LINK) -> None:
        self.link_name = check_link(link_name)

    def publish(self, subject: str, body: bytes | str = b"", reply_to: str | None = None) -> None:
        """Publish a message (fire and forget)."""
        invoke(self.link_name, _PUBLISH,
               _m.PubMessage(subject=subject, reply_to=reply_to or None, body=_body(body)))

    def request(self, subject: str, body: bytes | str = b"",
                timeout_ms: int = DEFAULT_TIMEOUT_MS) -> Message:
        """Send a request and wait up to ``timeout_ms`` for the reply (timeout: HostError)."""
        reply = invoke(self.link_name, _REQUEST,
                       _m.RequestMessage(subject=subject, body=_body(body), timeout_ms=timeout_ms))
        return Message.from_wire(reply)

    def __repr__(self) -> str:
        return f"Messaging({self.link_name!r})"


_default = Messaging()
publish = _default.publish
request = _default.request

__all__ = ["DEFAULT_TIMEOUT_MS", "Message", "Messaging", "publish", "request"]
