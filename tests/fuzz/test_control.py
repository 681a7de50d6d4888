"""Entry point 3: the control interface (lattice/host/control.py, docs/wire.md §3.3).

One real host on a real nats-server gets 10,000 garbage and wrong-typed JSON bodies spread over
every ``wasmbus.ctl.default.*`` subject it serves: random bytes, non-UTF-8, JSON that is not an
object, JSON nested 100,000 deep, 5,000-digit numbers, NaN, and objects carrying the fields
each handler reads with values of random types. Each request must get a reply (auctions may
stay silent: that is how a host says "not me"), every refusal must be ``{"accepted": false,
"error": <a message>}``, no exception may reach a catch-all or a NATS callback, and afterwards
the host still answers a ping, an inventory and an echo call. Garbage events on
``wasmbus.evt.default`` (which every host's reconciler reads) are thrown in as well.

``cmd.{host}.stop`` is left out of the random run (a JSON object there stops the host,
whatever its fields say) and checked once at the end: garbage is refused, an object stops the
host cleanly.
"""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from tests.fuzz.garbage import (
    INPUTS,
    Findings,
    deep,
    describe_records,
    json_text,
    mutate,
    pack,
    rand_bytes,
    rand_str,
    rand_value,
    rng,
    unclear,
    unhandled_errors,
    wrong_typed,
)
from tests.harness import Lattice, until

pytestmark = pytest.mark.service  # a real nats-server

ACK, DOC, MAYBE = "ack", "doc", "maybe"

LINK_FIELDS = ["actor_id", "contract_id", "link_name", "provider_id", "values"]
FIELDS = {
    "linkdefs.put": LINK_FIELDS, "linkdefs.del": LINK_FIELDS, "linkdefs.bogus": LINK_FIELDS,
    "cmd.la": ["actor_ref", "count", "max_concurrent", "max_instances", "annotations",
               "memory_limit_mib"],
    "cmd.sa": ["actor_id", "actor_ref", "count", "annotations"],
    "cmd.scale": ["actor_ref", "actor_id", "count", "max_concurrent", "annotations"],
    "cmd.upd": ["new_actor_ref", "actor_id"],
    "cmd.lp": ["provider_ref", "link_name", "configuration", "config", "annotations",
               "embedded", "contract_id"],
    "cmd.sp": ["provider_ref", "provider_id", "link_name"],
    "auction": ["constraints", "actor_ref", "provider_ref", "link_name"],
    "labels": ["key", "value"],
    "registries.put": ["registryType", "username", "password"],
    "events": ["type", "source", "data", "id", "time", "specversion"],
}


def subjects_of(host_id: str) -> list[tuple[str, str, list[str]]]:
    """(subject suffix, what answers, fields its handler reads)"""
    f = FIELDS
    return [
        ("ping.hosts", DOC, []),
        ("linkdefs.put", ACK, f["linkdefs.put"]), ("linkdefs.del", ACK, f["linkdefs.del"]),
        ("linkdefs.bogus", ACK, f["linkdefs.bogus"]),
        ("get.claims", DOC, []), ("get.links", DOC, []), ("get.bogus", DOC, []),
        (f"get.{host_id}.inv", DOC, []),
        (f"cmd.{host_id}.la", ACK, f["cmd.la"]), (f"cmd.{host_id}.sa", ACK, f["cmd.sa"]),
        (f"cmd.{host_id}.scale", ACK, f["cmd.scale"]), (f"cmd.{host_id}.upd", ACK, f["cmd.upd"]),
        (f"cmd.{host_id}.lp", ACK, f["cmd.lp"]), (f"cmd.{host_id}.sp", ACK, f["cmd.sp"]),
        (f"cmd.{host_id}.bogus", ACK, f["cmd.la"]),
        ("auction.actor", MAYBE, f["auction"]), ("auction.provider", MAYBE, f["auction"]),
        ("auction.bogus", MAYBE, f["auction"]),
        (f"labels.{host_id}.put", ACK, f["labels"]), (f"labels.{host_id}.del", ACK, f["labels"]),
        (f"labels.{host_id}.bogus", ACK, f["labels"]),
        ("registries.put", ACK, f["registries.put"]),
        (f"reconciler.{host_id}", DOC, []),
    ]


def body(r: random.Random, fields: list[str]) -> bytes:
    roll = r.randrange(12)
    if roll == 0:
        return b""
    if roll == 1:
        return rand_bytes(r)
    if roll == 2:
        return json_text(r, rand_value(r, json_only=True))
    if roll == 3:
        return deep(r, "[", "]").encode() if r.random() < 0.5 else \
            deep(r, '{"a":', "}", "1").encode()
    if roll == 4:
        return b'{"count": ' + b"9" * r.choice((4301, 10000)) + b"}"
    if roll == 5:
        return mutate(r, json_text(r, wrong_typed(r, fields or ["x"])))
    if roll == 6:
        return pack(wrong_typed(r, fields or ["x"]))  # the wrong encoding
    if roll == 7 and fields is FIELDS["registries.put"]:
        return json_text(r, {rand_str(r, 8): wrong_typed(r, fields) for _ in range(2)})
    return json_text(r, wrong_typed(r, fields or ["x"]))


def check_reply(kind: str, data: bytes) -> str | None:
    try:
        doc = json.loads(data)
    except ValueError:
        return f"reply is not JSON: {data[:200]!r}"
    if not isinstance(doc, dict):
        return f"reply is not a JSON object: {data[:200]!r}"
    if kind == ACK:
        if not isinstance(doc.get("accepted"), bool) or not isinstance(doc.get("error"), str):
            return f"not an ack: {doc!r:.200}"
        if not doc["accepted"]:
            return unclear(doc["error"])
    elif "error" in doc:
        return unclear(doc["error"])
    return None


async def alive(lattice: Lattice, host, echo: str) -> None:
    pong = await lattice.nc.request("wasmbus.ctl.default.ping.hosts", b"", timeout=10)
    assert json.loads(pong.data)["id"] == host.host_id
    inv = await lattice.ctl("get", host.host_id, "inv")
    assert inv["host_id"] == host.host_id
    assert echo in {a["id"] for a in inv["actors"]}
    reply = await lattice.call(echo, "Actor.HealthRequest", b"")
    assert reply == b"\x81\xa7healthy\xc3"


async def test_control_interface_answers_garbage_and_keeps_serving(lattice: Lattice, fuzz_run):
    host = await lattice.host()
    echo = await lattice.start_actor(host, lattice.module("echo"))
    r = rng("control")
    table = subjects_of(host.host_id)
    findings = Findings()
    nc = lattice.nc
    silent_replies: dict[str, bytes] = {}
    inbox = nc.new_inbox()

    async def on_auction_reply(msg) -> None:
        silent_replies[msg.subject] = msg.data

    await nc.subscribe(f"{inbox}.*", cb=on_auction_reply)
    run = fuzz_run("control interface: wasmbus.ctl.default.* (23 subjects)")
    answered = silent = 0

    async def one(i: int) -> None:
        nonlocal answered
        suffix, kind, fields = r.choice(table)
        data = body(r, fields)
        subject = f"wasmbus.ctl.default.{suffix}"
        if kind == MAYBE:
            await nc.publish(subject, data, reply=f"{inbox}.{i}")
            run.ok()
            return
        try:
            reply = await nc.request(subject, data, timeout=15)
        except Exception as exc:
            findings.add(f"no reply on {suffix}: {type(exc).__name__}", data[:200])
            run.refused()
            return
        answered += 1
        findings.add(check_reply(kind, reply.data), (suffix, data[:200], reply.data[:200]))
        if kind == ACK and b'"accepted": false' in reply.data:
            run.refused()
        else:
            run.ok()

    with unhandled_errors() as errors:
        i = 0
        while run.inputs < INPUTS:
            batch = min(64, INPUTS - run.inputs)
            await asyncio.gather(*(one(i + k) for k in range(batch)))
            i += batch
            if i % 2048 < batch:
                await alive(lattice, host, echo)
        await alive(lattice, host, echo)
        await asyncio.sleep(1.0)  # stragglers: auction answers, background command outcomes
        for reply in silent_replies.values():
            findings.add(check_reply(DOC, reply), reply[:200])
        silent = run.inputs - answered - len(silent_replies)

        events = fuzz_run("reconciler: garbage on wasmbus.evt.default")
        while events.inputs < INPUTS:
            for _ in range(256):
                data = body(r, FIELDS["events"])
                if r.random() < 0.3:
                    data = json_text(r, {"type": f"com.wasmcloud.lattice.{rand_str(r, 20)}",
                                         "source": rand_value(r, 1, json_only=True),
                                         "data": wrong_typed(r, ["host_id", "error",
                                                                 "public_key", "actor_ref",
                                                                 "annotations"])})
                await nc.publish("wasmbus.evt.default", data)
                events.ok()
            await nc.flush()
        await asyncio.sleep(0.5)
        await alive(lattice, host, echo)
        assert host.reconciler is not None and not host.reconciler._task.done()
    for rec in errors:
        findings.add(f"unhandled error logged by {rec.name}: {rec.getMessage()[:60]} "
                     f"{getattr(rec, 'error', '')!s:.60}", describe_records([rec]))
    print(f"control: {answered} replies, {len(silent_replies)} auction answers, "
          f"{silent} auctions silent")
    assert not findings, findings.report()

    # the one subject left out: stop. A body that is not JSON is refused (and the host
    # stays); any JSON object, whatever its fields, stops the host, cleanly.
    stop = f"wasmbus.ctl.default.cmd.{host.host_id}.stop"
    ack = json.loads((await nc.request(stop, b"\xff garbage", timeout=10)).data)
    assert ack["accepted"] is False and unclear(ack["error"]) is None, ack
    await alive(lattice, host, echo)
    ack = json.loads((await nc.request(stop, b'{"timeout": "soon", "host_id": 7}',
                                       timeout=10)).data)
    assert ack == {"accepted": True, "error": ""}, ack
    await asyncio.wait_for(host.run_until_stopped(), 30)
    assert not host.running


async def test_commands_with_unusable_refs_report_their_failure(lattice: Lattice):
    """Accepted commands whose reference cannot even be looked at (a file name too long for
    the file system, the home directory of a user that does not exist) end in a failure event
    with the reason, not in an exception in the host's log (found by the run above)."""
    host = await lattice.host()
    failed: dict[str, str] = {}

    async def on_event(msg) -> None:
        doc = json.loads(msg.data)
        if doc["type"].rsplit(".", 1)[-1] in ("actor_start_failed", "provider_start_failed"):
            data = doc["data"]
            failed[data.get("actor_ref") or data.get("provider_ref")] = data["error"]

    await lattice.nc.subscribe("wasmbus.evt.default", cb=on_event)
    refs = {"la": ["x" * 300, "a/" * 20 + "y" * 300 + ".wasm"],
            "lp": ["z." * 200, "~nosuchuser-fuzz/provider", "file:///" + "w" * 300]}
    with unhandled_errors() as errors:
        for verb, names in refs.items():
            for ref in names:
                field = "actor_ref" if verb == "la" else "provider_ref"
                body = {field: ref, "contract_id": "wasmcloud:keyvalue"} if verb == "lp" \
                    else {field: ref}
                ack = await lattice.ctl("cmd", host.host_id, verb, body=body)
                assert ack == {"accepted": True, "error": ""}, (ref, ack)
        await until(lambda: len(failed) == 5, timeout=20)
    for ref, error in failed.items():
        assert unclear(error) is None and len(error) < 1000, (ref, error)
    assert not errors, describe_records(errors)
