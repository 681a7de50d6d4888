"""kvcounter: counts requests per path in the linked key-value store.

GET /anything   → {"counter": N, "key": "counter:/anything"}   (adds one each time)
"""

from lattice_actor import Request, Response, http_handler, keyvalue, logging


@http_handler
def count(req: Request) -> Response:
    if req.method not in ("GET", "POST"):
        return Response.error(405, "use GET or POST", headers={"allow": "GET, POST"})
    key = f"counter:{req.path}"
    value = keyvalue.increment(key, 1)
    logging.debug("%s is now %d", key, value)
    return Response.json({"counter": value, "key": key})
