"""Control commands with wrong-typed fields are refused in the acknowledgement, with the field
named, instead of being acked and then failing where only the host log sees it; a body nested
too deeply still gets an answer."""

from __future__ import annotations

import json

import pytest

from tests.harness import Lattice

BAD_COMMANDS = [
    ("la", {"actor_ref": 42}, "actor_ref must be a string"),
    ("la", {"actor_ref": "x.wasm", "count": "3"}, "count must be a whole number"),
    ("la", {"actor_ref": "x.wasm", "count": -1}, "count must be a whole number"),
    ("la", {"actor_ref": "x.wasm", "count": True}, "count must be a whole number"),
    ("la", {"actor_ref": "x.wasm", "annotations": ["a"]}, "annotations must be an object"),
    ("la", {"actor_ref": "x.wasm", "annotations": {"a": 1}}, "annotations must be an object"),
    ("sa", {"actor_ref": ["M"]}, "actor_ref must be a string"),
    ("scale", {"actor_ref": {"x": 1}}, "actor_ref must be a string"),
    ("scale", {"actor_ref": "x.wasm", "count": 1.5}, "count must be a whole number"),
    ("upd", {"actor_id": "M", "new_actor_ref": 7}, "new_actor_ref must be a string"),
    ("lp", {"provider_ref": 1}, "provider_ref must be a string"),
    ("lp", {"provider_ref": "kvmem", "link_name": 5}, "link_name must be a string"),
    ("lp", {"provider_ref": "kvmem", "embedded": "yes"}, "embedded must be true or false"),
    ("lp", {"provider_ref": "kvmem", "annotations": "a=b"}, "annotations must be an object"),
    ("lp", {"provider_ref": "kvmem", "configuration": 3}, "configuration must be a string"),
    ("lp", {"provider_ref": "kvmem", "contract_id": ["c"]}, "contract_id must be a string"),
    ("sp", {"provider_ref": 3}, "provider_ref must be a string"),
]


@pytest.mark.parametrize(("verb", "body", "expected"), BAD_COMMANDS,
                         ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(BAD_COMMANDS)])
async def test_wrong_typed_fields_are_refused_in_the_ack(lattice: Lattice, verb: str,
                                                         body: dict, expected: str) -> None:
    host = await lattice.host()
    ack = await lattice.ctl("cmd", host.host_id, verb, body=body)
    assert ack["accepted"] is False, ack
    assert expected in ack["error"], ack
    assert not host.actors.actors and not host.providers.list()


@pytest.mark.parametrize("body", [
    {"actor_id": 1, "contract_id": "wasmcloud:keyvalue", "provider_id": "V"},
    {"actor_id": "M", "contract_id": "wasmcloud:keyvalue", "provider_id": "V", "values": [1]},
    {"actor_id": "M", "contract_id": "wasmcloud:keyvalue", "provider_id": "V",
     "values": {"URL": 5}},
])
async def test_wrong_typed_link_fields_are_refused(lattice: Lattice, body: dict) -> None:
    host = await lattice.host()
    ack = await lattice.ctl("linkdefs", "put", body=body)
    assert ack["accepted"] is False and "must be" in ack["error"], ack
    assert list(host.store.links) == []


@pytest.mark.parametrize("subject", ["cmd.{host}.la", "linkdefs.put", "labels.{host}.put"])
async def test_json_nested_too_deeply_gets_an_answer(lattice: Lattice, subject: str) -> None:
    host = await lattice.host()
    deep = ("[" * 100_000 + "]" * 100_000).encode()
    reply = await lattice.nc.request(
        "wasmbus.ctl.default." + subject.format(host=host.host_id), deep, timeout=10)
    doc = json.loads(reply.data)
    assert doc["accepted"] is False and "nested too deeply" in doc["error"], doc
    # the host still answers normally afterwards
    assert (await lattice.ctl("get", host.host_id, "inv"))["host_id"] == host.host_id
