"""Runtime costs next to bare wasmtime doing the same work, measured in the same run.

    python bench/runtime.py [--calls N] [--rounds N] [--filler N]

Stages (median of --rounds):
  cold load       Runtime.load with an empty cache: verify claims, compile, persist, warm instance
                  vs bare: wasmtime.Module(...) + instantiate
  cache load      Runtime.load in a fresh Runtime whose on-disk cache has the module
                  vs bare: Module.deserialize_file + instantiate
  instantiate     a pooled instance (Store, limits, WASI, start functions)
                  vs bare: Store + WASI + linker.instantiate
  warm echo call  Actor.call on the echo actor (worker thread, per-call state, deadline)
                  vs bare: __guest_call on the same thread with minimal Python imports
Run for the bundled echo actor and for echo padded with --filler extra functions (so compile
time is visible). Ratios are lattice / bare; machines here are noisy, so compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import statistics
import sys
import tempfile
import time
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lattice.claims import sign_actor  # noqa: E402
from lattice.keys import KeyPair, KeyRole  # noqa: E402
from lattice.runtime import Runtime, RuntimeConfig  # noqa: E402
from lattice.runtime.wasmbus import WasmbusInstance  # noqa: E402

REQUEST = bytes.fromhex(
    "85a66d6574686f64a3474554a470617468a42f666f6fab7175657279537472696e67a3613d31a6686561646572"
    "81a661636365707491a32a2f2aa4626f6479c40568656c6c6f")
OP = "HttpServer.HandleRequest"


def echo_wat(filler: int) -> str:
    text = (ROOT / "actors" / "echo-wasmbus" / "echo.wat").read_text()
    if not filler:
        return text
    # Extra, never-called functions: same ABI surface, more code to compile.
    body = "".join(
        f"(func $filler{i} (param i32) (result i32) (i32.add (i32.mul (local.get 0) "
        f"(i32.const {i + 3})) (i32.const {i})))\n" for i in range(filler))
    head, _, tail = text.rpartition(")")
    return head + body + ")" + tail


def signed(wasm: bytes) -> bytes:
    return sign_actor(wasm, issuer=KeyPair.generate(KeyRole.ACCOUNT),
                      subject=KeyPair.generate(KeyRole.MODULE), name="bench-echo",
                      caps=["wasmcloud:httpserver"])


class Bare:
    """The same ABI done the plainest way wasmtime-py allows: no pool, threads or checks."""

    def __init__(self, engine: wasmtime.Engine) -> None:
        self.engine = engine
        self.linker = wasmtime.Linker(engine)
        self.linker.define_wasi()
        self.op = b""
        self.payload = b""
        self.response = b""
        self.memory: wasmtime.Memory | None = None
        i32 = wasmtime.ValType.i32()

        def guest_request(caller, op_ptr, payload_ptr):
            self.memory.write(caller, self.op, op_ptr)
            self.memory.write(caller, self.payload, payload_ptr)

        def guest_response(caller, ptr, length):
            self.response = bytes(self.memory.read(caller, ptr, ptr + length))

        def noop(*_args):
            return None

        sigs = {"__guest_request": ([i32, i32], [], guest_request),
                "__guest_response": ([i32, i32], [], guest_response),
                "__guest_error": ([i32, i32], [], noop),
                "__console_log": ([i32, i32], [], noop),
                "__host_call": ([i32] * 8, [i32], lambda *a: 0),
                "__host_response_len": ([], [i32], lambda *a: 0),
                "__host_response": ([i32], [], noop),
                "__host_error_len": ([], [i32], lambda *a: 0),
                "__host_error": ([i32], [], noop)}
        for name, (params, results, fn) in sigs.items():
            self.linker.define_func("wasmbus", name, wasmtime.FuncType(params, results), fn,
                                    access_caller=True)

    def instantiate(self, module: wasmtime.Module):
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasmtime.WasiConfig())
        inst = self.linker.instantiate(store, module)
        exports = inst.exports(store)
        self.memory = exports["memory"]
        return store, exports["__guest_call"]

    def call(self, store, guest_call, op: str, payload: bytes) -> bytes:
        self.op, self.payload = op.encode(), payload
        assert guest_call(store, len(self.op), len(payload)) == 1
        return self.response


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def measure(wasm: bytes, rounds: int, calls: int) -> dict[str, tuple[float, float]]:
    results: dict[str, tuple[float, float]] = {}
    bare_engine = wasmtime.Engine()  # default config, as a plain embedder would have
    bare = Bare(bare_engine)

    # cold load
    ours, theirs = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as tmp:
            rt = Runtime(RuntimeConfig(cache_dir=Path(tmp)))
            t = time.perf_counter()
            actor = await rt.load(wasm)
            ours.append(time.perf_counter() - t)
            await rt.close()
        t = time.perf_counter()
        module = wasmtime.Module(bare_engine, wasm)
        bare.instantiate(module)
        theirs.append(time.perf_counter() - t)
    results["cold load"] = (median_ms(ours), median_ms(theirs))

    # cache load (fresh Runtime each round, artifact on disk)
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(RuntimeConfig(cache_dir=Path(tmp)))
        await rt.load(wasm)
        await rt.close()
        artifact = Path(tmp) / "bare.cwasm"
        artifact.write_bytes(wasmtime.Module(bare_engine, wasm).serialize())
        ours, theirs = [], []
        for _ in range(rounds):
            rt = Runtime(RuntimeConfig(cache_dir=Path(tmp)))
            t = time.perf_counter()
            actor = await rt.load(wasm)
            ours.append(time.perf_counter() - t)
            assert rt.cache.last_source == "disk", rt.cache.last_source
            await rt.close()
            t = time.perf_counter()
            module = wasmtime.Module.deserialize_file(bare_engine, str(artifact))
            bare.instantiate(module)
            theirs.append(time.perf_counter() - t)
        results["cache load"] = (median_ms(ours), median_ms(theirs))

    # instantiate, and warm calls
    with tempfile.TemporaryDirectory() as tmp:
        rt = Runtime(RuntimeConfig(cache_dir=Path(tmp)))
        actor = await rt.load(wasm)
        factory = actor.pool._factory
        module = wasmtime.Module(bare_engine, wasm)
        ours, theirs = [], []
        for _ in range(rounds * 5):
            t = time.perf_counter()
            inst: WasmbusInstance = factory()
            ours.append(time.perf_counter() - t)
            inst.close()
            t = time.perf_counter()
            bare.instantiate(module)
            theirs.append(time.perf_counter() - t)
        results["instantiate"] = (median_ms(ours), median_ms(theirs))

        expected = await actor.call(OP, REQUEST)
        store, guest_call = bare.instantiate(module)
        assert bare.call(store, guest_call, OP, REQUEST) == expected
        for _ in range(50):  # warm both paths
            await actor.call(OP, REQUEST)
            bare.call(store, guest_call, OP, REQUEST)
        t = time.perf_counter()
        for _ in range(calls):
            await actor.call(OP, REQUEST)
        ours_call = (time.perf_counter() - t) / calls
        t = time.perf_counter()
        for _ in range(calls):
            bare.call(store, guest_call, OP, REQUEST)
        theirs_call = (time.perf_counter() - t) / calls
        results["warm echo call"] = (ours_call * 1000, theirs_call * 1000)
        await rt.close()
    return results


def report(title: str, results: dict[str, tuple[float, float]]) -> None:
    print(f"\n{title}")
    print(f"  {'stage':<16}{'lattice':>14}{'bare wasmtime':>16}{'ratio':>9}")
    for stage, (ours, theirs) in results.items():
        unit, scale = ("µs", 1000) if ours < 1 else ("ms", 1)
        print(f"  {stage:<16}{ours * scale:>11.1f} {unit}{theirs * scale:>13.1f} {unit}"
              f"{ours / theirs:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="warm calls per side")
    parser.add_argument("--rounds", type=int, default=5, help="repetitions of the load stages")
    parser.add_argument("--filler", type=int, default=3000,
                        help="extra functions in the padded echo (0 skips that run)")
    args = parser.parse_args()
    version = importlib.metadata.version("wasmtime")
    print(f"wasmtime {version}: lattice vs bare wasmtime, in the same process")
    for title, filler in (("echo actor", 0), (f"echo + {args.filler} functions", args.filler)):
        if title != "echo actor" and not args.filler:
            continue
        wasm = signed(wasmtime.wat2wasm(echo_wat(filler)))
        report(f"{title} ({len(wasm)} bytes)", asyncio.run(measure(wasm, args.rounds, args.calls)))


if __name__ == "__main__":
    main()
