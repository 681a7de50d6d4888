"""Loading an actor (docs/wire.md §5.2): claims are required and verified, bad modules are refused
with an ActorLoadError that says what to do, and good ones expose their identity."""

from __future__ import annotations

import time

import pytest
import wasmtime

from lattice.keys import KeyPair, KeyRole
from lattice.runtime import ActorLoadError
from tests.actors import signed, wat

HEALTHY = b"\x81\xa7healthy\xc3"


async def test_unsigned_module_is_refused_with_signing_advice(runtime):
    with pytest.raises(ActorLoadError) as err:
        await runtime.load(wat("echo"))
    message = str(err.value)
    assert "sign" in message.lower()
    assert "lattice claims sign" in message


async def test_unsigned_module_runs_when_allowed(runtime, vectors):
    case = vectors["echo"]
    actor = await runtime.load(wat("echo"), allow_unsigned=True)
    assert actor.claims is None
    assert actor.key.startswith("M") and len(actor.key) == 56
    assert (await actor.call(case["operation"], bytes.fromhex(case["request_hex"]))).hex() \
        == case["response_hex"]


async def test_signed_actor_identity(runtime):
    subject = KeyPair.generate(KeyRole.MODULE)
    issuer = KeyPair.generate(KeyRole.ACCOUNT)
    actor = await runtime.load(signed("echo", name_claim="echo-demo", subject=subject,
                                      issuer=issuer, caps=["wasmcloud:httpserver"],
                                      call_alias="demo/echo", rev=3, ver="1.2.3"))
    assert actor.key == subject.public_key
    assert actor.name == "echo-demo"
    assert actor.claims is not None
    assert actor.claims.issuer == issuer.public_key
    assert actor.claims.caps == ["wasmcloud:httpserver"]
    assert actor.claims.call_alias == "demo/echo"
    assert (actor.claims.rev, actor.claims.ver) == (3, "1.2.3")
    assert await actor.call("Actor.HealthRequest", b"") == HEALTHY


async def test_tampered_module_is_refused(runtime):
    module = signed("echo")
    marker = b"HttpServer.HandleRequest"
    at = module.index(marker)   # inside echo's data segment
    tampered = module[:at] + b"J" + module[at + 1:]
    assert len(tampered) == len(module)
    with pytest.raises(ActorLoadError):
        await runtime.load(tampered)


async def test_expired_module_is_refused(runtime):
    now = int(time.time())
    with pytest.raises(ActorLoadError, match=r"(?i)expired"):
        await runtime.load(signed("echo", now=now - 7200, expires=now - 3600))


async def test_not_yet_valid_module_is_refused(runtime):
    now = int(time.time())
    with pytest.raises(ActorLoadError):
        await runtime.load(signed("echo", not_before=now + 3600))


@pytest.mark.parametrize("allow_unsigned", [False, True])
@pytest.mark.parametrize("data", [b"", b"hello", b"\x00asm", b"\x00asm\x01\x00\x00\x00\x01"],
                         ids=["empty", "text", "magic-only", "truncated-section"])
async def test_not_wasm_is_refused(runtime, data, allow_unsigned):
    with pytest.raises(ActorLoadError):
        await runtime.load(data, allow_unsigned=allow_unsigned)


def _module(text: str) -> bytes:
    return bytes(wasmtime.wat2wasm(text))


@pytest.mark.parametrize(("text", "mentions"), [
    ('(module (memory (export "memory") 1))', "__guest_call"),
    ('(module (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1)))',
     "memory"),
    ('(module (import "env" "abort" (func)) (memory (export "memory") 1)'
     ' (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1)))', "env"),
    ('(module (import "wasmbus" "__not_an_abi_function" (func)) (memory (export "memory") 1)'
     ' (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1)))',
     "__not_an_abi_function"),
], ids=["no-guest-call", "no-memory", "foreign-import", "unknown-wasmbus-import"])
async def test_modules_that_are_not_wasmbus_actors_are_refused(runtime, text, mentions):
    with pytest.raises(ActorLoadError) as err:
        await runtime.load(signed("echo", module=_module(text)))
    assert mentions in str(err.value)


async def test_wrong_import_signature_is_refused(runtime):
    text = ('(module (import "wasmbus" "__guest_request" (func (param i32))) '
            '(memory (export "memory") 1) '
            '(func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1)))')
    with pytest.raises(ActorLoadError):
        await runtime.load(signed("echo", module=_module(text)))


async def test_legacy_wapc_import_module_is_accepted(runtime):
    text = ('(module (import "wapc" "__guest_response" (func $r (param i32 i32)))'
            ' (memory (export "memory") 1) (data (i32.const 0) "hi")'
            ' (func (export "__guest_call") (param i32 i32) (result i32)'
            '   (call $r (i32.const 0) (i32.const 2)) (i32.const 1)))')
    actor = await runtime.load(signed("wapc", module=_module(text)))
    assert await actor.call("Any", b"") == b"hi"


async def test_trapping_start_function_is_a_load_error(runtime):
    text = ('(module (memory (export "memory") 1) (func (export "_start") unreachable)'
            ' (func (export "__guest_call") (param i32 i32) (result i32) (i32.const 1)))')
    with pytest.raises(ActorLoadError):
        await runtime.load(signed("bad-start", module=_module(text)))


async def test_compiled_modules_are_cached_on_disk(make_runtime, vectors):
    case = vectors["echo"]
    module = signed("echo")
    for _ in range(2):   # the second runtime finds the compiled module in cache_dir
        runtime = make_runtime()
        actor = await runtime.load(module)
        out = await actor.call(case["operation"], bytes.fromhex(case["request_hex"]))
        assert out.hex() == case["response_hex"]


async def test_a_broken_file_is_called_broken_not_unsigned(runtime):
    # A truncated signed module used to be refused with "Sign it with `lattice claims sign`".
    good = signed("echo")
    with pytest.raises(ActorLoadError) as err:
        await runtime.load(good[: len(good) // 2])
    message = str(err.value)
    assert "not a valid WebAssembly file: section at offset" in message
    assert "claims sign" not in message
