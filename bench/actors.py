"""Python actor (component) vs wasmbus actor: cold start and warm call, measured in the same run.

    python bench/actors.py [--rounds 7] [--calls 2000]

Actors: actors/echo (Python, built with `lattice build`, cached) and actors/echo-wasmbus (the
hand-written wasmbus echo), both answering HttpServer.HandleRequest.

  cold start, in-process  Runtime.load (compiled artifact from a warm disk cache) + first call
  cold start, lattice     `start actor` control command → actors_started → first RPC reply,
                          on a host in this process, over a nats-server on loopback
  warm call, in-process   Actor.call on a warm instance
  warm call, lattice      signed RPC invocation over NATS, one caller

Target: Python actor cold start ≤ 250 ms. Machines here are noisy; compare within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lattice.build import build_actor  # noqa: E402
from lattice.connect import NatsOptions, connect  # noqa: E402
from lattice.ctl import CtlClient  # noqa: E402
from lattice.host import Host, HostConfig  # noqa: E402
from lattice.keys import KeyPair, KeyRole  # noqa: E402
from lattice.natsd import NatsServer  # noqa: E402
from lattice.rpc import Entity, RpcClient, RpcError  # noqa: E402
from lattice.runtime import Runtime, RuntimeConfig  # noqa: E402

OP = "HttpServer.HandleRequest"
REQUEST = bytes.fromhex(  # GET /foo?a=1, accept: */*, body "hello" (the recorded echo request)
    "85a66d6574686f64a3474554a470617468a42f666f6fab7175657279537472696e67a3613d31a6686561646572"
    "81a661636365707491a32a2f2aa4626f6479c40568656c6c6f")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def us(seconds: float) -> str:
    return f"{seconds * 1e6:8.0f} µs"


async def in_process(wasm: bytes, cache: Path, rounds: int, calls: int) -> tuple[float, float]:
    warm = Runtime(RuntimeConfig(cache_dir=cache))
    await warm.load(wasm)  # compiles once into the disk cache
    await warm.close()
    starts = []
    for _ in range(rounds):
        rt = Runtime(RuntimeConfig(cache_dir=cache))
        began = time.perf_counter()
        actor = await rt.load(wasm)
        await actor.call(OP, REQUEST)
        starts.append(time.perf_counter() - began)
        await rt.close()
    rt = Runtime(RuntimeConfig(cache_dir=cache))
    actor = await rt.load(wasm)
    for _ in range(50):
        await actor.call(OP, REQUEST)
    began = time.perf_counter()
    for _ in range(calls):
        await actor.call(OP, REQUEST)
    per_call = (time.perf_counter() - began) / calls
    await rt.close()
    return statistics.median(starts), per_call


async def on_lattice(paths: dict[str, Path], cache: Path, rounds: int,
                     calls: int) -> dict[str, tuple[float, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-actors-"))
    server = NatsServer(tmp / "nats").start()
    cluster = KeyPair.generate(KeyRole.CLUSTER)
    host = Host(HostConfig(nats=NatsOptions(url=server.url), cluster_seed=cluster.seed,
                           state_dir=tmp / "host", rpc_events=False,
                           runtime=RuntimeConfig(cache_dir=cache)))
    await host.start()
    nc = await connect(NatsOptions(url=server.url), name="bench")
    ctl = CtlClient(nc, "default", timeout=5.0)
    rpc = RpcClient(nc, "default", cluster, KeyPair.generate(KeyRole.SERVER).public_key,
                    timeout=10.0)
    me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
    results = {}
    try:
        for name, path in paths.items():
            ref = path.resolve().as_uri()
            starts = []
            key = ""
            for _ in range(rounds + 1):  # the first round warms the host's module cache
                began = time.perf_counter()
                await ctl.start_actor(host.host_id, ref)
                while not (key := next((r.key for r in host.actors.actors.values()
                                        if r.image_ref == ref), "")):
                    await asyncio.sleep(0.001)
                while True:
                    try:
                        await rpc.invoke(me, Entity.actor(key), OP, REQUEST)
                        break
                    except RpcError:
                        await asyncio.sleep(0.001)
                starts.append(time.perf_counter() - began)
                if _ < rounds:
                    await ctl.stop_actor(host.host_id, key)
                    while key in host.actors.actors:
                        await asyncio.sleep(0.005)
            for _ in range(50):
                await rpc.invoke(me, Entity.actor(key), OP, REQUEST)
            began = time.perf_counter()
            for _ in range(calls):
                await rpc.invoke(me, Entity.actor(key), OP, REQUEST)
            results[name] = (statistics.median(starts[1:]), (time.perf_counter() - began) / calls)
            await ctl.stop_actor(host.host_id, key)
    finally:
        await nc.close()
        await host.stop()
        server.stop()
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()

    python = build_actor(ROOT / "actors" / "echo", output=Path(tempfile.mkdtemp()) / "echo_s.wasm",
                         progress=lambda line: print(f"  build: {line}", file=sys.stderr))
    paths = {"python": python.path, "wasmbus": ROOT / "actors" / "echo-wasmbus" / "echo.wasm"}
    cache = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    local = {name: await in_process(path.read_bytes(), cache, args.rounds, args.calls)
             for name, path in paths.items()}
    remote = await on_lattice(paths, cache, args.rounds, max(200, args.calls // 4))

    print(f"echo actor, median of {args.rounds} cold starts (warm module cache), "
          f"mean of {args.calls} warm calls")
    print(f"{'':28}{'python':>12}{'wasmbus':>12}{'ratio':>8}")
    rows = [
        ("cold start, in-process", local["python"][0], local["wasmbus"][0], ms),
        ("cold start, lattice", remote["python"][0], remote["wasmbus"][0], ms),
        ("warm call, in-process", local["python"][1], local["wasmbus"][1], us),
        ("warm call, lattice", remote["python"][1], remote["wasmbus"][1], us),
    ]
    for label, py, wb, fmt in rows:
        print(f"{label:28}{fmt(py):>12}{fmt(wb):>12}{py / wb:7.1f}x")
    cold = remote["python"][0]
    verdict = "meets" if cold <= 0.25 else "MISSES"
    print(f"Python actor cold start on the lattice: {cold * 1000:.0f} ms — {verdict} the "
          "250 ms target")


if __name__ == "__main__":
    asyncio.run(main())
