"""fetcher: fetches a URL through the linked HTTP client and reports on it.

GET /fetch?url=https://example.com/  → {"url", "status", "content_type", "length", "sha256", "text"}
                                       ("text": the first 200 characters of a text body)
"""

import hashlib

from lattice_actor import HostError, HttpError, Request, Response, http_handler, httpclient

PREVIEW = 200


@http_handler
def fetch(req: Request) -> Response:
    if req.path != "/fetch":
        return Response.not_found("try /fetch?url=…")
    url = req.query.get("url", "")
    if not url.startswith(("http://", "https://")):
        raise HttpError(400, "give an http:// or https:// URL: /fetch?url=…")
    try:
        upstream = httpclient.get(url)
    except HostError as exc:
        return Response.error(502, f"could not fetch {url}: {exc}")
    content_type = upstream.headers.get("content-type", "")
    text = upstream.body.decode("utf-8", errors="replace")[:PREVIEW] \
        if content_type.startswith(("text/", "application/json")) else None
    return Response.json({
        "url": url,
        "status": upstream.status,
        "content_type": content_type,
        "length": len(upstream.body),
        "sha256": hashlib.sha256(upstream.body).hexdigest(),
        "text": text,
    })
