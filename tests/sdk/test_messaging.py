"""messaging client: publish and request encoding, the Message wrapper."""

from __future__ import annotations

import pytest

from contracts import messaging as cm
from lattice_actor import HostError, Message, messaging


def test_publish(host):
    host.on("Messaging.Publish", lambda msg: None)
    assert messaging.publish("orders", b"\x00\x01") is None
    call = host.last
    assert (call.binding, call.namespace, call.operation) == (
        "default", "wasmcloud:messaging", "Messaging.Publish")
    assert call.value == cm.PubMessage("orders", None, b"\x00\x01")
    assert b"replyTo" not in call.payload  # omitted, never "" (docs/contracts.md §9.4)
    messaging.publish("orders", "text", reply_to="_INBOX.x")
    assert host.last.value == cm.PubMessage("orders", "_INBOX.x", b"text")
    messaging.publish("orders", reply_to="")
    assert b"replyTo" not in host.last.payload
    with pytest.raises(TypeError, match=r"bytes or str"):
        messaging.publish("orders", 5)  # type: ignore[arg-type]


def test_request(host):
    host.on("Messaging.Request", lambda req: cm.ReplyMessage("prices", None, b'{"p": 3}'))
    reply = messaging.request("prices.get", "ACME")
    assert host.last.value == cm.RequestMessage("prices.get", b"ACME", 1000)
    assert isinstance(reply, Message)
    assert (reply.subject, reply.reply_to, reply.body, reply.text, reply.json()) == (
        "prices", None, b'{"p": 3}', '{"p": 3}', {"p": 3})
    messaging.request("prices.get", b"", timeout_ms=250)
    assert host.last.value.timeout_ms == 250

    def timeout(req):
        raise RuntimeError("timeout: nats request timed out")

    host.on("Messaging.Request", timeout)
    with pytest.raises(HostError, match=r"^timeout: nats request timed out$"):
        messaging.request("slow", b"")


def test_other_link_and_message_reply_link(host):
    host.on("Messaging.Publish", lambda msg: None)
    messaging.Messaging("events").publish("audit", b"x")
    assert host.last.binding == "events"
    Message("in", b"x", "_INBOX.1").reply("y", link_name="events")
    assert host.last.binding == "events" and host.last.value.subject == "_INBOX.1"
    assert repr(Message("s", b"ab", "r")) == "Message('s', 2 bytes, reply_to='r')"
    assert Message("s", b"", "").reply_to is None
