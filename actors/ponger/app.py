"""ponger: answers Pingpong.Ping from other actors (call alias "ponger").

Payload (msgpack): {"from": "…", "n": int}  →  {"pong": n + 1, "to": "…", "by": "ponger"}
"""

from lattice_actor import operation


@operation("Pingpong.Ping", msgpack=True)
def ping(message: dict) -> dict:
    if not isinstance(message, dict) or not isinstance(message.get("n"), int):
        raise ValueError('Pingpong.Ping wants a map {"from": str, "n": int}')
    return {"pong": message["n"] + 1, "to": message.get("from", ""), "by": "ponger"}
