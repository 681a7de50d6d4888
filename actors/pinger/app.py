"""pinger: an HTTP front that calls the ponger actor by its call alias.

GET /ping?n=41  → {"sent": 41, "reply": {"pong": 42, "to": "pinger", "by": "ponger"}}
"""

from lattice_actor import HostError, HttpError, Request, Response, actors, http_handler

PONGER = actors.Actor("ponger")  # a call alias; an actor key (M…) works the same way


@http_handler
def ping(req: Request) -> Response:
    if req.path != "/ping":
        return Response.not_found("try /ping?n=1")
    try:
        n = int(req.query.get("n", "0"))
    except ValueError:
        raise HttpError(400, "n must be an integer") from None
    try:
        reply = PONGER.call_msgpack("Pingpong.Ping", {"from": "pinger", "n": n})
    except HostError as exc:
        return Response.error(502, f"ponger did not answer: {exc}")
    return Response.json({"sent": n, "reply": reply})
