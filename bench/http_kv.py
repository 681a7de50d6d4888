"""HTTP → httpserver → counter actor → keyvalue-redis, next to a plain aiohttp + redis counter.

    python bench/http_kv.py [--seconds S] [--connections N]

Three servers answer GET /counter by incrementing a Redis counter and returning it as JSON:
  plain     an aiohttp app calling redis.asyncio INCRBY (the baseline)
  remote    a Lattice host running the kvcounter actor, httpserver and keyvalue-redis as
            separate provider processes (every hop crosses NATS)
  embedded  the same, with both providers embedded in the host (no NATS hop for the actor's
            calls; the host still runs in its own process)
Load comes from wrk when it is installed, else from a Python load generator in a separate
process. Prints req/s, p50 and p99 for each and the ratios to the baseline, measured in the
same run. Targets: remote >= 0.35x, embedded >= 0.7x.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import wasmtime  # noqa: E402

from lattice.claims import sign_actor  # noqa: E402
from lattice.keys import KeyPair, KeyRole  # noqa: E402
from lattice.natsd import NatsServer, free_port, port_open  # noqa: E402

REDIS = os.environ.get("LATTICE_BENCH_REDIS", "redis://127.0.0.1:6379/14")

PLAIN = """
import sys, json, redis.asyncio as redis
from aiohttp import web
pool = redis.from_url(sys.argv[2])
async def counter(request):
    n = await pool.incrby("counter:" + request.path.replace("/", ":"), 1)
    return web.Response(body=json.dumps({"counter": n}).encode(), status=200)
app = web.Application()
app.router.add_get("/{tail:.*}", counter)
print("ready", flush=True)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

HOST = """
import asyncio, sys
from lattice.connect import NatsOptions
from lattice.host import Host, HostConfig
from lattice.links import LinkDefinition
from lattice.runtime import RuntimeConfig
url, seed, actor_path, port, redis_url, embedded = sys.argv[1:7]
embedded = embedded == "1"
async def main():
    host = Host(HostConfig(nats=NatsOptions(url=url), cluster_seed=seed, rpc_events=False,
                           runtime=RuntimeConfig(max_instances=8)))
    await host.start()
    running = await host.actors.start(actor_path, count=8)
    keys = {}
    for name, contract in (("keyvalue-redis", "wasmcloud:keyvalue"),
                           ("httpserver", "wasmcloud:httpserver")):
        await host.start_provider(name, embedded=embedded)
        keys[contract] = next(p.public_key for p in host.providers.list() if p.image_ref == name)
    await host.store.put_link(LinkDefinition(running.key, keys["wasmcloud:keyvalue"],
                                             "wasmcloud:keyvalue", values={"URL": redis_url}))
    await host.store.put_link(LinkDefinition(running.key, keys["wasmcloud:httpserver"],
                                             "wasmcloud:httpserver", values={"port": port}))
    print("ready", flush=True)
    await host.run_until_stopped()
asyncio.run(main())
"""

LOADGEN = """
import asyncio, json, sys, time
import aiohttp
url, seconds, conns = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
async def main():
    lat = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as s:
        for _ in range(50):
            async with s.get(url) as r:
                await r.read()
        end = time.perf_counter() + seconds
        async def worker():
            nonlocal errors
            while time.perf_counter() < end:
                t = time.perf_counter()
                async with s.get(url) as r:
                    await r.read()
                    if r.status != 200:
                        errors += 1
                lat.append(time.perf_counter() - t)
        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.perf_counter() - start
    lat.sort()
    print(json.dumps({"rps": len(lat) / elapsed, "p50": lat[len(lat) // 2] * 1000,
                      "p99": lat[int(len(lat) * 0.99) - 1] * 1000, "errors": errors}))
asyncio.run(main())
"""


def spawn(code: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise SystemExit(f"benchmark server failed to start: {line!r}")
    return proc


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise SystemExit(f"nothing listens on port {port}")
        time.sleep(0.05)


def _ms(text: str) -> float:
    """wrk latency like "456.78us", "1.23ms" or "1.02s" in milliseconds."""
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def load(url: str, seconds: float, conns: int) -> dict[str, float]:
    wrk = shutil.which("wrk")
    if wrk:
        out = subprocess.run([wrk, "-t2", f"-c{conns}", f"-d{seconds:g}s", "--latency", url],
                             capture_output=True, text=True, check=True).stdout
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
        p50 = _ms(re.search(r"50%\s+(\S+)", out)[1])
        p99 = _ms(re.search(r"99%\s+(\S+)", out)[1])
        errors = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
        return {"rps": rps, "p50": p50, "p99": p99, "errors": errors}
    out = subprocess.run([sys.executable, "-c", LOADGEN, url, str(seconds), str(conns)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()

    wasm = wasmtime.wat2wasm((ROOT / "tests" / "actors" / "kvcounter.wat").read_text())
    signed = sign_actor(wasm, issuer=KeyPair.generate(KeyRole.ACCOUNT),
                        subject=KeyPair.generate(KeyRole.MODULE), name="kvcounter",
                        caps=["wasmcloud:httpserver", "wasmcloud:keyvalue"])
    cluster = KeyPair.generate(KeyRole.CLUSTER)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        actor = Path(tmp) / "kvcounter.wasm"
        actor.write_bytes(signed)
        server = NatsServer(Path(tmp) / "nats").start()
        try:
            for label, setup in (("plain", None), ("remote", "0"), ("embedded", "1")):
                port = free_port()
                if setup is None:
                    proc = spawn(PLAIN, str(port), REDIS)
                else:
                    proc = spawn(HOST, server.url, cluster.seed, str(actor), str(port), REDIS,
                                 setup)
                try:
                    wait_port(port)
                    results[label] = load(f"http://127.0.0.1:{port}/counter", args.seconds,
                                          args.connections)
                finally:
                    proc.terminate()
                    proc.wait(20)
        finally:
            server.stop()

    tool = "wrk" if shutil.which("wrk") else "python load generator"
    print(f"GET /counter, {args.connections} connections, {args.seconds:g} s each, load from "
          f"{tool}; Redis {REDIS}")
    base = results["plain"]["rps"]
    print(f"  {'server':<10}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'ratio':>8}")
    for label, r in results.items():
        print(f"  {label:<10}{r['rps']:>9.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}"
              f"{int(r.get('errors', 0)):>8}{r['rps'] / base:>7.2f}x")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
