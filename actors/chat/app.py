"""chat: a tiny chat relay on wasmcloud:messaging.

Subscribe it (link value SUBSCRIPTION=chat.in.*) and publish JSON {"user": "…", "text": "…"} to
chat.in.ROOM: it numbers the message per room and republishes
{"room", "seq", "user", "text"} to chat.out.ROOM, and answers a request (reply-to) with
{"ok": true, "seq": N}. Room counters live in this instance only (a demo, not a log).
"""

import json

from lattice_actor import Message, message_handler, messaging

_seq: dict[str, int] = {}


@message_handler
def relay(msg: Message) -> None:
    room = msg.subject.rsplit(".", 1)[-1]
    try:
        body = msg.json()
        user, text = str(body["user"]), str(body["text"])
    except (ValueError, KeyError, TypeError):
        if msg.reply_to:
            msg.reply(json.dumps({"ok": False, "error": 'send {"user": …, "text": …}'}))
        return
    _seq[room] = seq = _seq.get(room, 0) + 1
    out = {"room": room, "seq": seq, "user": user, "text": text}
    messaging.publish(f"chat.out.{room}", json.dumps(out))
    if msg.reply_to:
        msg.reply(json.dumps({"ok": True, "seq": seq}))
