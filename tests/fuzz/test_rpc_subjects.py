"""Entry point 4: garbage straight onto the RPC subjects of a running actor and of running
providers (docs/wire.md §2-3, §7).

One host runs echo, a forward.wat actor linked to kvmem twice: embedded in the host (link name
``default``) and as a child process (link name ``proc``). Then:

* 10,000 messages on ``wasmbus.rpc.default.{actor}`` of echo and of the forwarder: random bytes,
  random msgpack, envelope maps with wrong-typed fields, mutated genuine invocations, genuine
  invocations carrying garbage payloads or operations (the forwarder turns them into host calls
  with garbage contract payloads, to kvmem and the builtins), signed by a foreign cluster key,
  claiming a chunked payload that is not there. Each request gets an InvocationResponse; an
  ``error`` in it is a message.
* 10,000 messages for each provider, spread over ``….{link}`` (the same kinds, with garbage
  contract payloads from the linked actor too), ``….linkdefs.put``/``.del`` (garbage link maps;
  no reply expected) and ``….health`` (must answer healthy).

Afterwards (and every 2,000 messages) echo still answers, the forwarder still increments a
counter through each provider, the provider process has not restarted, and nothing reached a
catch-all (no traceback in the host's log, no exception out of a NATS callback).
"""

from __future__ import annotations

import asyncio
import random

import msgpack
import pytest

import contracts
from contracts.keyvalue import IncrementRequest
from lattice.keys import KeyPair, KeyRole
from lattice.rpc import Entity, EnvelopeError, InvocationResponse, new_invocation, subjects
from tests.actors import forward_payload
from tests.fuzz.garbage import (
    INPUTS,
    Findings,
    describe_records,
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
from tests.harness import Lattice

pytestmark = pytest.mark.service  # a real nats-server

KV = "wasmcloud:keyvalue"
INV_KEYS = ["origin", "target", "operation", "msg", "id", "encoded_claims", "host_id",
            "content_length", "traceContext"]
LINK_KEYS = ["actor_id", "provider_id", "contract_id", "link_name", "values", "id"]
FOREIGN = KeyPair.generate(KeyRole.CLUSTER)
KV_OPS = [op.name for op in contracts.keyvalue.OPERATIONS]


def utf8(r: random.Random, max_len: int = 24) -> str:
    """A random string that can travel (msgpack strings are UTF-8: no lone surrogates)."""
    return rand_str(r, max_len).encode("utf-8", "replace").decode()


class Garbage:
    """Invocations for one target, from harmless-looking to hostile."""

    def __init__(self, r: random.Random, lattice: Lattice, target: Entity, origins: list[Entity],
                 operations: list[str], *, forwarder: bool = False) -> None:
        self.r, self.lattice, self.target = r, lattice, target
        self.origins, self.operations = origins, operations
        self.forwarder = forwarder  # the target is forward.wat: payloads say what to call
        self.valid = [self.genuine().encode() for _ in range(8)]

    def genuine(self, *, msg: bytes | None = None, key: KeyPair | None = None,
                operation: str | None = None):
        r = self.r
        op = operation or (r.choice(self.operations) if r.random() < 0.8 else utf8(r))
        if msg is None:
            msg = rand_bytes(r) if r.random() < 0.5 else self.payload(op)
        return new_invocation(r.choice(self.origins), self.target, op, msg,
                              cluster_key=key or self.lattice.cluster,
                              host_id=KeyPair.generate(KeyRole.SERVER).public_key)

    def payload(self, op: str) -> bytes:
        """A contract payload of the right type but garbage content (or a forward.wat one)."""
        r = self.r
        spec = contracts.OPERATIONS[op].input if op in contracts.OPERATIONS else None
        if spec is None:
            body = rand_bytes(r)
        elif r.random() < 0.7:
            node = contracts._codec._compile(spec)
            body = pack(wrong_typed(r, [f.wire for f in getattr(node, "fields", ())] or ["x"],
                                    json_only=False))
        else:
            body = pack(rand_value(r))
        if self.forwarder:  # one host call: to a provider link, a builtin, or nowhere
            return forward_payload(r.choice(("default", "proc", utf8(r, 8))),
                                   r.choice((KV, KV, "wasmcloud:builtin:numbergen",
                                             "wasmcloud:builtin:logging", utf8(r, 12))), body)
        return body

    def one(self) -> bytes:
        r = self.r
        roll = r.randrange(10)
        if roll == 0:
            return rand_bytes(r)
        if roll == 1:
            return pack(rand_value(r))
        if roll == 2:
            doc = wrong_typed(r, INV_KEYS, json_only=False)
            if r.random() < 0.5:
                doc["target"] = self.target.to_wire()
            return pack(doc)
        if roll == 3:
            return mutate(r, r.choice(self.valid))
        if roll == 4:
            return self.genuine(key=FOREIGN).encode()
        if roll == 5:  # claims a chunked payload that is not in the object store
            inv = self.genuine()
            inv.content_length = len(inv.msg) + r.randint(1, 10**6)
            if r.random() < 0.5:
                inv.id = utf8(r)
            return inv.encode()
        return self.genuine().encode()


def check_response(data: bytes) -> tuple[str | None, bool]:
    """(what is wrong with the answer, whether it is a refusal)"""
    try:
        resp = InvocationResponse.decode(data)
    except EnvelopeError as exc:
        return f"undecodable InvocationResponse: {exc}", True
    if resp.error is not None:
        return unclear(resp.error), True
    return None, False


async def send_all(nc, items, findings: Findings, run) -> None:
    """``items``: (subject, data, kind) with kind "request" (must be answered), "health"
    (must be answered healthy) or "publish" (no answer expected)."""
    async def one(subject: str, data: bytes, kind: str) -> None:
        if kind == "publish":
            await nc.publish(subject, data)
            run.ok()
            return
        try:
            reply = await nc.request(subject, data, timeout=15)
        except Exception as exc:
            findings.add(f"no answer on {subject.rsplit('.', 1)[-1]}: {type(exc).__name__}",
                         data[:200])
            run.refused()
            return
        if kind == "health":
            doc = msgpack.unpackb(reply.data)
            if doc.get("healthy") is not True:
                findings.add(f"unhealthy: {doc!r:.100}", data[:200])
            run.ok()
            return
        problem, refused = check_response(reply.data)
        findings.add(problem, (subject, data[:200], reply.data[:300]))
        if refused:
            run.refused()
        else:
            run.ok()

    await asyncio.gather(*(one(*item) for item in items))


async def test_rpc_subjects_answer_garbage_and_keep_serving(lattice: Lattice, fuzz_run):
    host = await lattice.host()
    echo = await lattice.start_actor(host, lattice.module("echo"))
    fwd = await lattice.forwarder(host, KV)
    embedded = await lattice.start_provider(host, "kvmem", embedded=True)
    process = await lattice.start_provider(host, "kvmem", link_name="proc")
    await lattice.link(fwd, embedded, KV)
    await lattice.link(fwd, process, KV, link_name="proc")
    counters = {"default": 0, "proc": 0}

    async def alive() -> None:
        assert await lattice.call(echo, "Actor.HealthRequest", b"") == b"\x81\xa7healthy\xc3"
        for link in counters:
            counters[link] += 1
            op = contracts.operation("KeyValue.Increment")
            out = await lattice.host_call(fwd, KV, op.name,
                                          op.encode_input(IncrementRequest("fuzz", 1)),
                                          link_name=link)
            assert op.decode_output(out) == counters[link], link

    await alive()
    [proc_info] = [p for p in host.providers.list() if p.link_name == "proc"]
    findings = Findings()
    r = rng("rpc")
    nc = lattice.nc
    me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)

    with unhandled_errors() as errors:
        to_echo = Garbage(r, lattice, Entity.actor(echo), [me, Entity.actor(fwd)],
                          ["HttpServer.HandleRequest", "Actor.HealthRequest"])
        to_fwd = Garbage(r, lattice, Entity.actor(fwd), [me],
                         [*KV_OPS, "NumberGen.RandomInRange", "Logging.WriteLog"],
                         forwarder=True)
        run = fuzz_run("rpc subject of an actor (echo, forward.wat)")
        while run.inputs < INPUTS:
            batch = []
            for _ in range(min(64, INPUTS - run.inputs)):
                gen = r.choice((to_echo, to_fwd))
                batch.append((subjects.actor("default", gen.target.public_key), gen.one(),
                              "request" if r.random() < 0.95 else "publish"))
            await send_all(nc, batch, findings, run)
            if run.inputs % 2048 < 64:
                await alive()

        for label, key, link in (("embedded kvmem", embedded, "default"),
                                 ("process kvmem", process, "proc")):
            target = Entity.provider(key, KV, link)
            gen = Garbage(r, lattice, target, [Entity.actor(fwd), me], KV_OPS)
            base = subjects.provider("default", key, link)
            run = fuzz_run(f"rpc subjects of a provider ({label}): rpc, linkdefs, health")
            while run.inputs < INPUTS:
                batch = []
                for _ in range(min(64, INPUTS - run.inputs)):
                    roll = r.random()
                    if roll < 0.6:
                        batch.append((base, gen.one(), "request"))
                    elif roll < 0.85:
                        verb = r.choice(("put", "del"))
                        doc = wrong_typed(r, LINK_KEYS, json_only=False)
                        data = pack(doc) if r.random() < 0.8 else rand_bytes(r)
                        batch.append((f"{base}.linkdefs.{verb}", data, "publish"))
                    else:
                        batch.append((f"{base}.health", rand_bytes(r), "health"))
                await send_all(nc, batch, findings, run)
                if run.inputs % 2048 < 64:
                    await alive()
        await nc.flush()
        await asyncio.sleep(0.5)
        await alive()
    [after] = [p for p in host.providers.list() if p.link_name == "proc"]
    assert (after.pid, after.restarts, after.state) == (proc_info.pid, 0, "running"), after
    for rec in errors:
        findings.add(f"unhandled error logged by {rec.name}: {rec.getMessage()[:60]} "
                     f"{getattr(rec, 'error', '')!s:.60}", describe_records([rec]))
    assert not findings, findings.report()
