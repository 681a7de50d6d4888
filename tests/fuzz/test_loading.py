"""Entry point 6: loading a module (docs/wire.md §5.2; lattice/runtime/runtime.py, claims.py,
wasm.py, local.read_module).

10,000 loads, seeded: random bytes (with and without the wasm magic, module or component
header), truncated signed modules, signed modules with flipped/overwritten/inserted bytes
(loaded as they are, and, one in ten, with unsigned modules allowed so that wasmtime's parser
and compiler see the damage), modules whose claims expired or are not valid yet, claims tokens
that are garbage or carry fields of the wrong type (signed by a real account key), lying
section sizes, initial memories and tables past the host's limits, and files handed to
``read_module`` (which also compiles WAT text). Each one loads, or fails with ActorLoadError
and a message saying what is wrong; nothing else escapes.

Then the same kinds of bad module are started on a real host through ``cmd.{host}.la``: each
is acknowledged, then reported by an ``actor_start_failed`` event carrying that message.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest
import wasmtime

from lattice import jwt
from lattice.claims import SECTION_NAMES, module_hash
from lattice.keys import KeyPair, KeyRole
from lattice.local import read_module
from lattice.runtime import ActorLoadError, Runtime
from lattice.wasm import append_custom_section, strip_custom_sections
from tests.actors import signed, wat
from tests.fuzz.garbage import (
    INPUTS,
    Findings,
    check_error,
    describe_records,
    mutate,
    rand_bytes,
    rand_value,
    rng,
    unhandled_errors,
    wrong_typed,
)
from tests.harness import Lattice, until
from tests.runtime.conftest import config

pytestmark = pytest.mark.service  # a real nats-server

ACCOUNT = KeyPair.generate(KeyRole.ACCOUNT)
MODULE = KeyPair.generate(KeyRole.MODULE)
ECHO_WAT = (Path(__file__).resolve().parents[1] / "actors" / "echo.wat").read_text()
MEMORY_LINE = '(memory (export "memory") 1)'


def echo_variant(replacement: str) -> bytes:
    assert MEMORY_LINE in ECHO_WAT
    return bytes(wasmtime.wat2wasm(ECHO_WAT.replace(MEMORY_LINE, replacement)))


def sign(module: bytes, **kw) -> bytes:
    return signed("echo", module=module, issuer=ACCOUNT, subject=MODULE, **kw)


def with_token(module: bytes, token: bytes, section: str = "wasmcloud_jwt") -> bytes:
    return append_custom_section(strip_custom_sections(module, SECTION_NAMES), section, token)


def forged_token(r: random.Random, module: bytes) -> str:
    """Claims signed by a real account key, with some fields of the wrong type or missing."""
    claims = {"jti": "x", "iat": int(time.time()), "iss": ACCOUNT.public_key,
              "sub": MODULE.public_key, "wascap_revision": 3,
              "wascap": {"name": "echo", "hash": module_hash(module), "tags": [], "caps": []}}
    for key in r.sample(["jti", "iat", "iss", "sub", "exp", "nbf", "wascap_revision",
                         "wascap"], r.randint(1, 3)):
        if r.random() < 0.2:
            claims.pop(key, None)
        else:
            claims[key] = rand_value(r, 2, json_only=True)
    if isinstance(claims.get("wascap"), dict) and r.random() < 0.6:
        claims["wascap"].update(wrong_typed(r, ["name", "hash", "tags", "caps", "rev", "ver",
                                                "call_alias"]))
    head = jwt.b64url_encode(json.dumps(jwt.HEADER).encode())
    body = jwt.b64url_encode(json.dumps(claims).encode())
    signature = ACCOUNT.sign(f"{head}.{body}".encode())
    return f"{head}.{body}.{jwt.b64url_encode(signature)}"


class Modules:
    def __init__(self, r: random.Random) -> None:
        self.r = r
        self.plain = [wat(n) for n in ("echo", "fuzz", "trap", "misuse", "forward")]
        now = int(time.time())
        self.good = [sign(m) for m in self.plain]
        self.fixed = {
            "expired": sign(self.plain[0], now=now - 7200, expires=now - 3600),
            "not yet valid": sign(self.plain[0], not_before=now + 3600),
            "memory over the limit": sign(echo_variant('(memory (export "memory") 2000)')),
            "memory of 4 GiB": sign(echo_variant('(memory (export "memory") 65536)')),
            "huge table": sign(echo_variant(MEMORY_LINE + " (table 10000000 funcref)")),
            "lying section size": self.good[0][:8] + b"\x01\xff\xff\xff\xff\x0f",
            "no claims": self.plain[0],
            "claims not UTF-8": with_token(self.plain[0], b"\xff\xfe"),
        }

    def one(self) -> tuple[str, bytes, bool]:
        """(what, bytes, allow_unsigned)"""
        r = self.r
        roll = r.randrange(12)
        good = r.choice(self.good)
        if roll == 0:
            return "random bytes", rand_bytes(r, 256), False
        if roll == 1:
            header = r.choice((b"\x00asm\x01\x00\x00\x00", b"\x00asm\x0d\x00\x01\x00"))
            return "random after a header", header + rand_bytes(r, 256), r.random() < 0.5
        if roll == 2:
            return "truncated", good[:r.randrange(len(good))], False
        if roll in (3, 4, 5):
            return "tampered", mutate(r, good), False
        if roll == 6:
            return "tampered unsigned module", mutate(r, r.choice(self.plain)), True
        if roll == 7:
            now = int(time.time())
            if r.random() < 0.5:
                return "expired", sign(r.choice(self.plain), now=now - 10**6,
                                       expires=now - r.randint(1, 10**6)), False
            return "not yet valid", sign(r.choice(self.plain),
                                         not_before=now + r.randint(60, 10**9)), False
        if roll == 8:
            module = r.choice(self.plain)
            return "forged claims", with_token(module, forged_token(r, module).encode(),
                                               r.choice(SECTION_NAMES)), False
        if roll == 9:
            token = good.rsplit(b"\x0dwasmcloud_jwt", 1)[-1]
            return "garbage token", with_token(r.choice(self.plain), mutate(r, token)), False
        name = r.choice(sorted(self.fixed))
        return name, self.fixed[name], r.random() < 0.3


async def test_bad_modules_fail_with_actor_load_error(tmp_path, fuzz_run):
    runtime = Runtime(config(tmp_path, disk_cache=False, memory_limit=64 << 20))
    r = rng("loading")
    modules = Modules(r)
    findings = Findings()
    loaded: dict[str, int] = {}
    run = fuzz_run("module loading: Runtime.load / read_module")
    try:
        with unhandled_errors("lattice.host", "lattice.providers") as errors:
            while run.inputs < INPUTS:
                what, data, allow = modules.one()
                try:
                    if r.random() < 0.1:  # through a file, as a host reads one
                        path = tmp_path / f"m{run.inputs}{r.choice(('.wasm', '.wat', ''))}"
                        path.write_bytes(data if r.random() < 0.8 else
                                         b"(module " + rand_bytes(r, 32) + b")")
                        data = read_module(path)
                        path.unlink()
                    actor = await runtime.load(data, allow_unsigned=allow)
                except Exception as exc:
                    findings.add(check_error(exc, (ActorLoadError,)), (what, data[:120]))
                    run.refused()
                    continue
                run.ok()
                what += " (unsigned allowed)" if allow else ""
                loaded[what] = loaded.get(what, 0) + 1
                await runtime.unload(actor)
        for rec in errors:
            findings.add(f"unhandled error logged by {rec.name}", describe_records([rec]))
    finally:
        await runtime.close()
    print(f"loading: loaded anyway {loaded}")
    assert not findings, findings.report()
    # what must never load: tampered signed modules, expired and forged claims
    assert not {"tampered", "expired", "not yet valid", "garbage token",
                "memory over the limit", "memory of 4 GiB", "lying section size",
                "truncated"} & set(loaded), loaded


async def test_bad_modules_on_a_host_report_actor_start_failed(lattice: Lattice, tmp_path):
    host = await lattice.host()
    modules = Modules(rng("loading-host"))
    cases = {k: v for k, v in modules.fixed.items() if k != "huge table"}  # that one runs
    cases["tampered"] = mutate(random.Random(5), modules.good[0], 8)
    cases["random bytes"] = b"\x00asm\x01\x00\x00\x00" + bytes(range(256))
    cases["not wasm at all"] = b"hello, world"
    failures: dict[str, str] = {}

    async def on_event(msg) -> None:
        doc = json.loads(msg.data)
        if doc["type"].endswith(".actor_start_failed"):
            failures[doc["data"]["actor_ref"]] = doc["data"]["error"]

    await lattice.nc.subscribe("wasmbus.evt.default", cb=on_event)
    paths = {}
    for name, data in cases.items():
        path = tmp_path / f"{name.replace(' ', '-')}.wasm"
        path.write_bytes(data)
        paths[name] = str(path)
        ack = await lattice.ctl("cmd", host.host_id, "la", body={"actor_ref": str(path)})
        assert ack == {"accepted": True, "error": ""}, (name, ack)
    await until(lambda: len(failures) == len(cases), timeout=30)
    for name, path in paths.items():
        error = failures[path]
        assert check_error(ActorLoadError(error), (ActorLoadError,)) is None, (name, error)
    assert "expired" in failures[paths["expired"]]
    assert "memory" in failures[paths["memory over the limit"]]
    assert not host.actors.actors
    await asyncio.sleep(0)
