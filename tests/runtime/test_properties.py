"""Property tests: whatever bytes reach echo, and whatever a guest does with the wasmbus imports
(fuzz.wat runs random programs of import calls with random pointers and lengths), the host
survives, each call ends in a result or a GuestCallError, and the actor keeps serving."""

from __future__ import annotations

import asyncio
import json
import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice.local import LocalHost
from lattice.runtime import GuestCallError
from tests.actors import signed
from tests.runtime.conftest import config

KV = "wasmcloud:keyvalue"
LOGGING = "wasmcloud:builtin:logging"
NUMBERGEN = "wasmcloud:builtin:numbergen"

SETTINGS = settings(max_examples=50, deadline=None)


@pytest.fixture
def sync_host(tmp_path):
    """A LocalHost driven from a private event loop, so hypothesis can run examples
    synchronously against one host: ``run(coro)`` runs a coroutine on that loop."""
    loop = asyncio.new_event_loop()
    host = LocalHost(config(tmp_path), lattice="default")
    yield host, loop.run_until_complete
    loop.run_until_complete(host.close())
    loop.close()


# ---- echo ----------------------------------------------------------------------------------------


def _expected_echo(method: str, path: str, query: str, body: bytes) -> bytes:
    text = json.dumps({"body": list(body), "method": method, "path": path, "query_string": query},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return msgpack.packb({"statusCode": 200, "header": {}, "body": text.encode()})


def test_echo_answers_any_well_formed_request_exactly(sync_host):
    host, run = sync_host
    echo = run(host.start_actor(signed("echo")))
    headers = st.dictionaries(st.text(max_size=10), st.lists(st.text(max_size=10), max_size=3),
                              max_size=3)

    @SETTINGS
    @given(st.text(max_size=40), st.text(max_size=200), st.text(max_size=100),
           st.binary(max_size=300), headers, st.booleans())
    def check(method, path, query, body, header, shuffled):
        fields = [("method", method), ("path", path), ("queryString", query),
                  ("header", header), ("body", body)]
        if shuffled:
            fields.reverse()
        out = run(host.call(echo.key, "HttpServer.HandleRequest", msgpack.packb(dict(fields))))
        assert out == _expected_echo(method, path, query, body)

    check()


def test_echo_survives_arbitrary_bytes(sync_host):
    host, run = sync_host
    echo = run(host.start_actor(signed("echo")))
    payloads = st.one_of(
        st.binary(max_size=600),
        st.binary(max_size=600).map(lambda b: b"\x85" + b),                  # a map header first
        st.binary(max_size=600).map(lambda b: b"\x81\xa6method" + b),         # a key, then junk
    )

    @SETTINGS
    @given(payloads)
    def check(payload):
        try:
            out = run(host.call(echo.key, "HttpServer.HandleRequest", payload))
        except GuestCallError as err:
            assert err.kind == "guest", str(err)    # echo answers bad input, it never traps
        else:
            assert msgpack.unpackb(out)["statusCode"] == 200
        assert run(host.call(echo.key, "Actor.HealthRequest", b"")) == b"\x81\xa7healthy\xc3"

    check()


# ---- fuzz: random programs of import calls -------------------------------------------------------

NARGS = (2, 2, 2, 8, 0, 1, 0, 1, 2, 1)      # i32 arguments of each fuzz.wat instruction
PROGRAM_AT = 65536                            # where fuzz.wat reads its payload
MEMORY = 2 * 65536                            # fuzz.wat's memory size

interesting = st.sampled_from([0, 1, 2, 16, 1024, PROGRAM_AT, MEMORY - 8, MEMORY - 1, MEMORY,
                               MEMORY + 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFF])
raw_arg = st.one_of(interesting, st.integers(0, MEMORY), st.integers(0, 2**32 - 1))


def _strings(echo_key: str) -> list[bytes]:
    """Strings the programs can point their host calls at (appended after the code)."""
    return [b"", b"default", NUMBERGEN.encode(), LOGGING.encode(), KV.encode(),
            b"wasmcloud:builtin:other", echo_key.encode(), b"NumberGen.Random32",
            b"NumberGen.GenerateGuid", b"NumberGen.RandomInRange", b"Logging.WriteLog",
            b"KeyValue.Get", b"Actor.HealthRequest", b"HttpServer.HandleRequest",
            msgpack.packb({"level": "info", "text": "fuzz"}), msgpack.packb({"min": 1, "max": 9}),
            msgpack.packb({"min": 9, "max": 1}), b"\xff\xfe\xfd", b"\x81\xa4path\xa2/x"]


def assemble(instructions, strings: list[bytes], ret: int = 1) -> bytes:
    """A fuzz.wat program: ``instructions`` = [(opcode, [arg, ...])], each arg an int or
    ``("ref", k)`` = the (address, length) pair of ``strings[k]``, which are appended after the
    code (behind a final `return ret`, so they are never run)."""
    code_len = sum(1 + 4 * NARGS[op % 10] for op, _ in instructions) + 5
    data, where = b"", []
    for s in strings:
        where.append((PROGRAM_AT + code_len + len(data), len(s)))
        data += s
    code = b""
    for op, args in instructions:
        code += bytes([op])
        for arg in args:
            code += struct.pack("<II", *where[arg[1]]) if isinstance(arg, tuple) \
                else struct.pack("<I", arg)
    code += bytes([9]) + struct.pack("<I", ret)
    assert len(code) == code_len
    return code + data


@st.composite
def programs(draw, strings: list[bytes]) -> bytes:
    ref = st.integers(0, len(strings) - 1)
    instructions = []
    for _ in range(draw(st.integers(0, 12))):
        ins = draw(st.integers(0, 9))
        if ins == 3 and draw(st.booleans()):     # a host call naming real strings
            args = [("ref", draw(ref)) for _ in range(4)]
        else:
            args = [draw(raw_arg) for _ in range(NARGS[ins])]
        instructions.append((ins + 10 * draw(st.integers(0, 24)), args))  # opcodes are mod 10
    return assemble(instructions, strings, draw(st.sampled_from([0, 1, 2, 0xFFFFFFFF])))


def test_random_import_programs_never_crash_the_host(sync_host):
    host, run = sync_host
    echo = run(host.start_actor(signed("echo")))
    fuzz = run(host.start_actor(signed("fuzz", caps=[NUMBERGEN, LOGGING, KV])))
    strings = _strings(echo.key)

    @SETTINGS
    @given(programs(strings))
    def check(program):
        try:
            out = run(host.call(fuzz.key, "Fuzz.Run", program))
        except GuestCallError as err:
            assert err.kind in ("guest", "abi", "trap"), (err.kind, str(err))
        else:
            assert isinstance(out, bytes)
        # the actor keeps serving: the empty program answers an empty success
        assert run(host.call(fuzz.key, "Fuzz.Run", b"")) == b""

    check()


def test_fuzz_program_encoding(sync_host):
    """The encoding itself works: host call GenerateGuid, copy the reply to 1024, respond with
    its 38 bytes (msgpack str8 of 36 characters), return 1."""
    host, run = sync_host
    fuzz = run(host.start_actor(signed("fuzz", caps=[NUMBERGEN])))
    strings = [b"default", NUMBERGEN.encode(), b"NumberGen.GenerateGuid", b""]
    program = assemble([(3, [("ref", 0), ("ref", 1), ("ref", 2), ("ref", 3)]),
                        (5, [1024]),
                        (1, [1024, 38])], strings)
    text = msgpack.unpackb(run(host.call(fuzz.key, "Fuzz.Run", program)))
    assert len(text) == 36 and text.count("-") == 4
    # a program ending in "return 0" without an error message is a failed call
    with pytest.raises(GuestCallError):
        run(host.call(fuzz.key, "Fuzz.Run", assemble([], [], ret=0)))
