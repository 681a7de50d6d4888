"""echo: answers every HTTP request with what it received, as JSON."""

from lattice_actor import Request, http_handler


@http_handler
def echo(req: Request) -> dict:
    return {
        "method": req.method,
        "path": req.path,
        "query": req.query,
        "headers": dict(req.headers),
        "body": req.body.decode("utf-8", errors="replace"),
    }
