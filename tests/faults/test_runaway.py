"""A runaway actor and a memory bomb are stopped at their limits while another actor answers.

One host with the default limits (10 s per guest call, 64 MiB per wasmbus instance). loop.wat
spins forever in pure wasm; hog.wat grows its memory until refused, over and over while the
loop runs. Meanwhile echo.wat is called back to back: every call must succeed. The loop is
stopped by the deadline (epoch interruption) with a timeout error, each hog call by the memory
cap with "ran out of memory", and both actors answer again afterwards.
"""

from __future__ import annotations

import asyncio
import statistics
import time

import msgpack
import pytest

from lattice.rpc import RpcError
from tests.faults.conftest import report
from tests.harness import Lattice

HTTP = "wasmcloud:httpserver"
REQUEST = msgpack.packb({"method": "GET", "path": "/", "queryString": "", "header": {},
                         "body": b"hi"})


pytestmark = pytest.mark.service

@pytest.mark.timeout(90)
async def test_runaway_and_memory_bomb_are_stopped_while_echo_answers(lattice: Lattice) -> None:
    host = await lattice.host()
    limits = host.runtime.config
    looper = await lattice.start_actor(host, lattice.module("loop"))
    hog = await lattice.start_actor(host, lattice.module("hog"))
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTP]))
    for actor in (looper, hog):
        assert await lattice.call(actor, "Ping", b"") == b"pong"
    assert await lattice.call(echo, "HttpServer.HandleRequest", REQUEST)

    started = time.monotonic()
    runaway = asyncio.create_task(lattice.call(looper, "Loop", b"",
                                               timeout=limits.call_timeout + 20))
    echoes: list[float] = []
    bombs: list[tuple[float, str]] = []
    while not runaway.done():
        t = time.monotonic()
        assert await lattice.call(echo, "HttpServer.HandleRequest", REQUEST, timeout=10)
        echoes.append(time.monotonic() - t)
        if len(echoes) % 50 == 1:  # a memory bomb now and then, while the loop still spins
            t = time.monotonic()
            with pytest.raises(RpcError) as err:
                await lattice.call(hog, "Hog", b"", timeout=10)
            bombs.append((time.monotonic() - t, str(err.value)))
    stopped = time.monotonic() - started
    with pytest.raises(RpcError) as err:
        await runaway
    loop_error = str(err.value)
    assert f"did not finish within its {limits.call_timeout:g} s deadline" in loop_error, \
        loop_error
    limit_mib = limits.memory_limit >> 20
    assert bombs and all("ran out of memory" in e and f"of its {limit_mib} MiB limit" in e
                         for _, e in bombs), bombs
    for actor in (looper, hog):  # both keep serving
        assert await lattice.call(actor, "Ping", b"") == b"pong"
    cuts = statistics.quantiles(echoes, n=100)
    report("runaway actor (pure-wasm loop) and memory bomb on one host, echo called meanwhile",
           runaway_stopped_after_s=stopped, deadline_s=limits.call_timeout,
           memory_bombs=len(bombs), memory_bomb_stopped_max_s=max(t for t, _ in bombs),
           memory_limit_mib=limit_mib, echo_calls_ok=len(echoes), echo_errors=0,
           echo_p50_ms=cuts[49] * 1000, echo_p99_ms=cuts[98] * 1000,
           runaway_error=loop_error, memory_bomb_error=bombs[0][1])
