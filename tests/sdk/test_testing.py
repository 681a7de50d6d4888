"""lattice_actor.testing: FakeHost and the inbound helpers actor authors use."""

from __future__ import annotations

import pytest

import lattice_actor as la
from contracts.keyvalue import IncrementRequest
from lattice_actor import HostError, keyvalue, testing


def test_fake_host_answers_with_decoded_values_and_records_calls():
    host = testing.FakeHost()
    host.on("KeyValue.Increment", lambda req: 41 + req.value)
    host.on("Pingpong.Ping", lambda payload: b"pong")
    host.fail("KeyValue.Get", "redis error: down")
    testing.set_host(host)

    @la.http_handler
    def handle(req):
        return {"hits": keyvalue.increment("hits")}

    resp = testing.http_request("GET", "/hits?x=1", headers={"Accept": "application/json"})
    assert resp.status == 200 and resp.json() == {"hits": 42}
    assert host.calls[0].value == IncrementRequest(key="hits", value=1)
    assert host.calls_to("KeyValue.Increment") == host.calls
    assert la.actors.call("ponger", "Pingpong.Ping") == b"pong"
    assert host.calls[-1].value == b""
    with pytest.raises(HostError, match=r"^redis error: down$"):
        keyvalue.get("k")
    with pytest.raises(HostError, match=r"FakeHost has no answer for KeyValue.Del.*host.on"):
        keyvalue.delete("k")


def test_http_request_splits_the_query():
    seen = []
    la.http_handler(lambda req: seen.append((req.path, req.query_string, req.text)))
    assert testing.http_request("post", "/a?b=1", body="x").status == 200
    assert seen == [("/a", "b=1", "x")]


def test_send_message():
    got = []
    la.message_handler(lambda msg: got.append(msg))
    testing.send_message("subj", "hi", reply_to="r")
    assert got == [la.Message("subj", b"hi", "r")]


def test_call_runs_dispatch():
    la.operation("A.B")(lambda payload: payload * 2)
    assert testing.call("A.B", b"xy") == b"xyxy"
