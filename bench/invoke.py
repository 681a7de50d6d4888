"""Lattice invocation of the echo actor vs raw nats-py request/reply, measured in the same run.

    python bench/invoke.py [--seconds S] [--concurrency N]

Both sides cross the same nats-server and process boundaries:
  raw      client (this process) → NATS → a nats-py responder process that answers at once
  lattice  client (RpcClient: signed Invocation) → NATS → a host process (verifies the JWT,
           runs echo in wasmtime) → InvocationResponse
Each is measured sequentially (one caller) and with --concurrency callers; prints req/s, p50,
p99 and the lattice/raw ratios. Machines here are noisy: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lattice.connect import NatsOptions, connect  # noqa: E402
from lattice.keys import KeyPair, KeyRole  # noqa: E402
from lattice.natsd import NatsServer  # noqa: E402
from lattice.rpc import Entity, RpcClient  # noqa: E402

REQUEST = bytes.fromhex(
    "85a66d6574686f64a3474554a470617468a42f666f6fab7175657279537472696e67a3613d31a6686561646572"
    "81a661636365707491a32a2f2aa4626f6479c40568656c6c6f")
OP = "HttpServer.HandleRequest"
RAW_SUBJECT = "bench.raw.echo"

RESPONDER = """
import asyncio, sys, nats
async def main():
    nc = await nats.connect(sys.argv[1])
    async def on(msg):
        await msg.respond(msg.data)
    await nc.subscribe(sys.argv[2], queue="q", cb=on)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""

HOST = """
import asyncio, sys
from lattice.connect import NatsOptions
from lattice.host import Host, HostConfig
from lattice.runtime import RuntimeConfig
async def main():
    host = Host(HostConfig(nats=NatsOptions(url=sys.argv[1]), cluster_seed=sys.argv[2],
                           rpc_events=False, runtime=RuntimeConfig(max_instances=8)))
    await host.start()
    running = await host.actors.start(sys.argv[3], count=int(sys.argv[4]))
    print("ready", running.key, flush=True)
    await host.run_until_stopped()
asyncio.run(main())
"""


def spawn(code: str, *args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("ready"):
        proc.kill()
        raise SystemExit(f"benchmark peer failed to start: {line!r}")
    return proc, line


async def drive(call, seconds: float, concurrency: int) -> dict[str, float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    for _ in range(20):  # warm up
        await call()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"rps": len(latencies) / elapsed,
            "p50": statistics.median(latencies) * 1000,
            "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000}


async def measure(url: str, cluster: KeyPair, actor_key: str, seconds: float,
                  concurrency: int) -> dict[str, dict[str, dict[str, float]]]:
    nc = await connect(NatsOptions(url=url), name="bench-client")
    rpc = RpcClient(nc, "default", cluster, KeyPair.generate(KeyRole.SERVER).public_key,
                    timeout=10.0)
    origin = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
    target = Entity.actor(actor_key)
    expected = await rpc.invoke(origin, target, OP, REQUEST)

    async def raw() -> None:
        reply = await nc.request(RAW_SUBJECT, REQUEST, timeout=10)
        assert reply.data == REQUEST

    async def lattice() -> None:
        assert await rpc.invoke(origin, target, OP, REQUEST) == expected

    results: dict[str, dict[str, dict[str, float]]] = {}
    for mode, n in (("sequential", 1), (f"{concurrency} concurrent", concurrency)):
        results[mode] = {"raw": await drive(raw, seconds, n),
                         "lattice": await drive(lattice, seconds, n)}
    await nc.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per measurement")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--instances", type=int, default=8, help="echo instances on the host")
    args = parser.parse_args()

    cluster = KeyPair.generate(KeyRole.CLUSTER)
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        procs = []
        try:
            responder, _ = spawn(RESPONDER, server.url, RAW_SUBJECT)
            procs.append(responder)
            echo = ROOT / "actors" / "echo-wasmbus" / "echo.wasm"
            host, line = spawn(HOST, server.url, cluster.seed, str(echo), str(args.instances))
            procs.append(host)
            actor_key = line.split()[1]
            results = asyncio.run(measure(server.url, cluster, actor_key, args.seconds,
                                          args.concurrency))
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
            server.stop()

    print(f"echo invocation, {args.seconds:g} s per measurement, host with {args.instances} "
          "echo instances, one nats-server, client/host/responder in separate processes")
    print(f"  {'mode':<15}{'side':<9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'ratio':>9}")
    for mode, sides in results.items():
        raw, lat = sides["raw"], sides["lattice"]
        for side, r in (("raw", raw), ("lattice", lat)):
            ratio = f"{r['rps'] / raw['rps']:.2f}x" if side == "lattice" else ""
            print(f"  {mode:<15}{side:<9}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
                  f"{ratio:>9}")
    print(json.dumps({m: {s: {k: round(v, 3) for k, v in r.items()} for s, r in sides.items()}
                      for m, sides in results.items()}))


if __name__ == "__main__":
    main()
