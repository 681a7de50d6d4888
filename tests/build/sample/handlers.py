"""The `lattice build` test actor: an HTTP greeting and a raw operation."""

import greetlib  # from python_path = ["vendor"]

from lattice_actor import Request, http_handler, logging, operation

REPLY_PREFIX = ""  # tests rewrite this line to prove a rebuild picked up a change


@http_handler
def handle(req: Request) -> str:
    name = req.query.get("name", "world")
    logging.info("greeting %s", name)
    return REPLY_PREFIX + greetlib.greet(name)


@operation("Sample.Reverse")
def reverse(payload: bytes) -> bytes:
    return payload[::-1]
