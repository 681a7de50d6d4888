"""Entry point 5: the wasmbus ABI (docs/wire.md §1; lattice/runtime/wasmbus.py).

10,000 guest calls on one host, seeded:

* fuzz.wat programs (tests/runtime/test_properties.py explains the encoding): up to 16 random
  import calls each, with pointers and lengths from the interesting edges (0, the end of memory,
  0x7fffffff, 0xffffffff, …) or random, host calls naming real or bogus bindings, namespaces,
  operations and payloads (builtins, a link that is not there, another actor: re-entry into
  the host while the guest is suspended), a second __guest_request (re-entry), and random
  return codes;
* every misuse.wat operation (each breaks the ABI in one way) and random operation names;
* every trap.wat operation (unreachable, division by zero, out-of-bounds load, stack overflow);
* calls with random operation names and payload lengths up to 70,000 bytes.

Each call ends in a result or a GuestCallError of kind ``guest`` (the actor said no), ``abi``
(it broke the ABI) or ``trap``; ``abi`` and ``trap`` carry a message from the host, a ``guest``
error is never empty; the same actor answers its next call correctly (a trapped instance is
replaced, never reused: trap.wat's Ping would say "poisoned"); and the host logs no traceback.
"""

from __future__ import annotations

import random

import msgpack

from lattice.local import LocalHost
from lattice.runtime import GuestCallError
from tests.actors import signed
from tests.fuzz.garbage import (
    INPUTS,
    Findings,
    describe_records,
    rand_bytes,
    rand_str,
    rng,
    unclear,
    unhandled_errors,
)
from tests.runtime.conftest import config
from tests.runtime.test_properties import MEMORY, NARGS, PROGRAM_AT, assemble

KV = "wasmcloud:keyvalue"
LOGGING = "wasmcloud:builtin:logging"
NUMBERGEN = "wasmcloud:builtin:numbergen"

EDGES = [0, 1, 2, 16, 1024, PROGRAM_AT, MEMORY - 8, MEMORY - 1, MEMORY, MEMORY + 1,
         0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF]

MISUSES = ["GuestRequestOOB", "GuestRequestOpOOB", "ResponseHugeLength", "ResponseOutOfBounds",
           "ErrorHugeLen", "NegativeLen", "ErrorInvalidUtf8", "HostCallBadPtr",
           "HostCallHugeLength", "HostResponseNoCall", "HostErrorWithoutCall",
           "HostResponseOutOfBounds", "ConsoleLogOutOfBounds", "DoubleRequest", "ReturnTwo",
           "ReturnNegative", "NoResponse"]
TRAPS = ["Trap", "Poison", "DivZero", "OutOfBounds", "StackOverflow"]


def strings(echo_key: str) -> list[bytes]:
    return [b"", b"default", b"proc", NUMBERGEN.encode(), LOGGING.encode(), KV.encode(),
            b"wasmcloud:builtin:other", echo_key.encode(), b"wasmcloud/nobody",
            b"NumberGen.Random32", b"NumberGen.GenerateGuid", b"NumberGen.RandomInRange",
            b"Logging.WriteLog", b"KeyValue.Get", b"Actor.HealthRequest",
            b"HttpServer.HandleRequest", msgpack.packb({"level": "info", "text": "fuzz"}),
            msgpack.packb({"min": 1, "max": 9}), msgpack.packb({"min": 9, "max": 1}),
            b"\xff\xfe\xfd", b"\x81\xa4path\xa2/x", b"\xc1", "é".encode() * 40]


def program(r: random.Random, table: list[bytes]) -> bytes:
    """A random fuzz.wat program; string arguments point into ``table``, appended after it."""
    instructions = []
    for _ in range(r.randint(0, 16)):
        ins = r.randrange(10)
        if ins == 3 and r.random() < 0.6:
            args: list = [("ref", r.randrange(len(table))) for _ in range(4)]
        else:
            args = [r.choice(EDGES) if r.random() < 0.4 else r.randrange(MEMORY + 2)
                    if r.random() < 0.7 else r.getrandbits(32) for _ in range(NARGS[ins])]
        instructions.append((ins + 10 * r.randrange(25), args))  # opcodes are taken mod 10
    out = assemble(instructions, table, ret=r.choice([0, 1, 1, 1, 2, 0xFFFFFFFF]))
    if r.random() < 0.05:  # a truncated last instruction
        out = out[:r.randrange(len(out) + 1)]
    return out


async def test_wasmbus_abi_survives_random_programs_and_misuse(tmp_path, fuzz_run):
    host = LocalHost(config(tmp_path, disk_cache=False), lattice="default")
    findings = Findings()
    kinds: dict[str, int] = {}
    try:
        echo = await host.start_actor(signed("echo"))
        fuzz = await host.start_actor(signed("fuzz", caps=[NUMBERGEN, LOGGING, KV]))
        misuse = await host.start_actor(signed("misuse"))
        trap = await host.start_actor(signed("trap"))
        table = strings(echo.key)
        r = rng("abi")
        healthy = {fuzz.key: ("Fuzz.Run", b"", b""), misuse.key: ("Ping", b"", b"pong"),
                   trap.key: ("Ping", b"", b"pong")}
        run = fuzz_run("wasmbus ABI: fuzz.wat programs, misuse.wat, trap.wat")
        with unhandled_errors() as errors:
            while run.inputs < INPUTS:
                roll = r.random()
                if roll < 0.7:
                    actor, op, payload = fuzz, "Fuzz.Run", program(r, table)
                elif roll < 0.82:
                    actor = misuse
                    op = r.choice(MISUSES) if r.random() < 0.9 else rand_str(r, 20)
                    payload = rand_bytes(r, 32)
                elif roll < 0.92:
                    actor = trap
                    op = r.choice([*TRAPS, "Ping"]) if r.random() < 0.9 else rand_str(r, 20)
                    payload = rand_bytes(r, 32)
                else:
                    actor = r.choice((fuzz, misuse, trap))
                    op = rand_str(r, r.choice((8, 300)))
                    payload = r.randbytes(r.choice((0, 10, 60000, 60001, 70000)))
                op = op.encode("utf-8", "replace").decode()
                failed = True
                try:
                    await host.call(actor.key, op, payload)
                except GuestCallError as err:
                    run.refused()
                    kinds[err.kind] = kinds.get(err.kind, 0) + 1
                    if err.kind not in ("guest", "abi", "trap"):
                        findings.add(f"kind {err.kind}: {err}", (actor.name, op, payload[:64]))
                    elif err.kind != "guest":
                        findings.add(unclear(str(err)), (actor.name, op, payload[:64]))
                    elif not str(err).strip():
                        findings.add("a failed guest call with an empty error message",
                                     (actor.name, op, payload[:64]))
                except Exception as exc:
                    findings.add(f"{type(exc).__name__} escaped: {exc}", (actor.name, op))
                    run.refused()
                else:
                    run.ok()
                    failed = False
                if failed:  # the actor keeps serving, and correctly
                    probe_op, probe, want = healthy[actor.key]
                    got = await host.call(actor.key, probe_op, probe)
                    if got != want:
                        findings.add(f"{actor.name} answers {got[:40]!r} after a failed call",
                                     (op, payload[:64]))
            assert await host.call(echo.key, "Actor.HealthRequest", b"") == \
                b"\x81\xa7healthy\xc3"
        for rec in errors:
            findings.add(f"unhandled error logged by {rec.name}: {rec.getMessage()[:60]}",
                         describe_records([rec]))
    finally:
        await host.close()
    print(f"abi: outcomes by kind {kinds}")
    assert not findings, findings.report()
    assert kinds.get("abi") and kinds.get("trap"), kinds  # both were reported, as themselves
