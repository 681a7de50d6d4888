"""httpclient: request encoding and the response wrapper."""

from __future__ import annotations

import json

import pytest

from contracts import httpclient as hc
from lattice_actor import HostError, httpclient


def echo(req: hc.HttpRequest) -> hc.HttpResponse:
    return hc.HttpResponse(201, {"content-type": ["application/json"], "x-multi": ["1", "2"]},
                           json.dumps({"method": req.method, "url": req.url}).encode())


def test_request_encoding_and_response(host):
    host.on("HttpClient.Request", echo)
    resp = httpclient.request("patch", "https://example.com/a?b=1",
                              {"X-Token": "t", "accept": ["a", "b"]}, "body é")
    call = host.last
    assert (call.binding, call.namespace, call.operation) == (
        "default", "wasmcloud:httpclient", "HttpClient.Request")
    assert call.value == hc.HttpRequest(method="PATCH", url="https://example.com/a?b=1",
                                        headers={"X-Token": ["t"], "accept": ["a", "b"]},
                                        body="body é".encode())
    assert b"\xa7headers" in call.payload  # request: headers (plural)
    assert resp.status == 201 and resp.ok
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers.get_all("x-multi") == ["1", "2"]
    assert resp.json() == {"method": "PATCH", "url": "https://example.com/a?b=1"}
    assert resp.text.startswith("{") and resp.raise_for_status() is resp


def test_helpers_and_json_body(host):
    host.on("HttpClient.Request", lambda req: hc.HttpResponse(200, {}, req.body))
    assert httpclient.get("http://x/").status == 200
    assert host.last.value == hc.HttpRequest("GET", "http://x/", {}, b"")
    resp = httpclient.post("http://x/", json={"a": [1, "é"]})
    assert resp.json() == {"a": [1, "é"]}
    assert host.last.value.headers == {"content-type": ["application/json"]}
    httpclient.post("http://x/", json=None, headers={"Content-Type": "application/vnd+json"})
    assert host.last.value.body == b"null"
    assert host.last.value.headers == {"Content-Type": ["application/vnd+json"]}
    httpclient.put("http://x/", b"raw")
    httpclient.patch("http://x/", "txt")
    httpclient.delete("http://x/")
    httpclient.head("http://x/")
    assert [c.value.method for c in host.calls[-4:]] == ["PUT", "PATCH", "DELETE", "HEAD"]
    with pytest.raises(ValueError, match=r"either body or json"):
        httpclient.post("http://x/", b"a", json={})


def test_status_errors_and_transport_errors(host):
    host.on("HttpClient.Request", lambda req: hc.HttpResponse(503, {}, b"busy"))
    resp = httpclient.get("http://x/")
    assert resp.status == 503 and not resp.ok  # not an exception by itself
    with pytest.raises(httpclient.StatusError, match=r"HTTP 503: busy") as info:
        resp.raise_for_status()
    assert info.value.response is resp

    def fail(req):
        raise RuntimeError("sending request: dns error")

    host.on("HttpClient.Request", fail)
    with pytest.raises(HostError, match=r"^sending request: dns error$"):
        httpclient.get("http://nowhere/")


def test_other_link(host):
    host.on("HttpClient.Request", lambda req: hc.HttpResponse())
    httpclient.HttpClient("internal").get("http://x/")
    assert host.last.binding == "internal"
