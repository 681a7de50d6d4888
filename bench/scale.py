"""One lattice app on 1, 2 and 3 hosts, and same-cluster vs cross-gateway call latency, measured
in the same run.

    python bench/scale.py [--seconds 5] [--concurrency 50] [--latency-calls 500]

Throughput: the app is the wasmbus echo actor, deployed with `lattice app deploy` as a
spreadscaler of 4 instances per host; N host processes (N = 1, 2, 3) share one nats-server, and
this process drives signed RPC invocations at --concurrency for --seconds. On a 2-core machine
the hosts, nats-server and the load generator share two cores, so more hosts add capacity only
until the cores are busy: the figures say how far that goes here, not how the lattice scales on
real machines.

Latency: two one-node clusters joined by a gateway (a supercluster). A host in cluster A runs
the echo actor; sequential calls from a client connected to A (same cluster) and from a client
connected to B (every call crosses the gateway both ways). Ratio = cross / same.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lattice.app.manifest import load_manifest  # noqa: E402
from lattice.app.store import AppStore  # noqa: E402
from lattice.connect import NatsOptions, connect  # noqa: E402
from lattice.ctl import CtlClient  # noqa: E402
from lattice.keys import KeyPair, KeyRole  # noqa: E402
from lattice.natsd import NatsServer, free_port, wait_jetstream  # noqa: E402
from lattice.rpc import Entity, RpcClient, RpcError  # noqa: E402

OP = "HttpServer.HandleRequest"
REQUEST = bytes.fromhex(
    "85a66d6574686f64a3474554a470617468a42f666f6fab7175657279537472696e67a3613d31a6686561646572"
    "81a661636365707491a32a2f2aa4626f6479c40568656c6c6f")
ECHO = ROOT / "actors" / "echo-wasmbus" / "echo.wasm"

HOST = """
import asyncio, sys
from lattice.connect import NatsOptions
from lattice.host import Host, HostConfig
from lattice.runtime import RuntimeConfig
async def main():
    host = Host(HostConfig(nats=NatsOptions(url=sys.argv[1]), cluster_seed=sys.argv[2],
                           rpc_events=False, heartbeat_interval=2.0, reconcile_interval=1.0,
                           state_dir=sys.argv[3], runtime=RuntimeConfig(max_instances=4)))
    await host.start()
    print("ready", host.host_id, flush=True)
    await host.run_until_stopped()
asyncio.run(main())
"""


def spawn_host(url: str, seed: str, state: Path) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", HOST, url, seed, str(state)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("ready"):
        raise SystemExit(f"a host did not start: {line!r}")
    return proc, line.split()[1]


def app(replicas: int) -> dict:
    return {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": "bench", "annotations": {"version": f"r{replicas}"}},
            "spec": {"components": [{"name": "echo", "type": "actor",
                                     "properties": {"image": str(ECHO)},
                                     "traits": [{"type": "spreadscaler",
                                                 "properties": {"replicas": replicas}}]}]}}


async def drive(rpc: RpcClient, me: Entity, target: Entity, seconds: float,
                concurrency: int) -> tuple[float, float]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                await rpc.invoke(me, target, OP, REQUEST)
            except RpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - began)

    began = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.monotonic() - began
    if errors:
        print(f"  ({errors} failed calls)", file=sys.stderr)
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(len(latencies) * 0.99) - 1] if latencies else 0


async def throughput(seconds: float, concurrency: int) -> dict[int, tuple[float, float]]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    server = NatsServer(tmp / "nats").start()
    cluster = KeyPair.generate(KeyRole.CLUSTER)
    procs: list[subprocess.Popen[str]] = []
    results = {}
    nc = await connect(NatsOptions(url=server.url), name="bench-scale")
    try:
        store = await AppStore(nc.jetstream(), "default").open()
        ctl = CtlClient(nc, "default", timeout=5)
        rpc = RpcClient(nc, "default", cluster, KeyPair.generate(KeyRole.SERVER).public_key,
                        timeout=10.0)
        me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
        for n in (1, 2, 3):
            while len(procs) < n:
                proc, _ = spawn_host(server.url, cluster.seed, tmp / f"h{len(procs)}")
                procs.append(proc)
            await store.deploy(load_manifest(app(4 * n)))
            key = ""
            while True:  # the reconciler placed 4 instances on each host
                state = await store.state("bench")
                if state and state.version == f"r{4 * n}" and state.status == "deployed":
                    hosts = await ctl.ping_hosts(0.5)
                    invs = [await ctl.inventory(h.id) for h in hosts]
                    counts = [sum(a.count for a in inv.actors) for inv in invs]
                    if len(counts) == n and all(c == 4 for c in counts):
                        key = next(a.id for inv in invs for a in inv.actors)
                        break
                await asyncio.sleep(0.2)
            target = Entity.actor(key)
            await drive(rpc, me, target, 1.0, concurrency)  # warm-up
            results[n] = await drive(rpc, me, target, seconds, concurrency)
    finally:
        await nc.close()
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
        server.stop()
    return results


async def gateway_latency(calls: int) -> tuple[float, float]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-gw-"))
    gw_a, gw_b = free_port(), free_port()
    gateways = {"A": f"nats://127.0.0.1:{gw_a}", "B": f"nats://127.0.0.1:{gw_b}"}
    a = NatsServer(tmp / "a", gateway_name="A", gateway_port=gw_a, gateways=gateways)
    b = NatsServer(tmp / "b", gateway_name="B", gateway_port=gw_b, gateways=gateways)
    a.start()
    b.start()
    cluster = KeyPair.generate(KeyRole.CLUSTER)
    near = await connect(NatsOptions(url=a.url), name="bench-near")
    far = await connect(NatsOptions(url=b.url), name="bench-far")
    for nc in (near, far):  # a new supercluster elects its JetStream leader first (5-10 s)
        await wait_jetstream(nc, timeout=60)
    proc, host_id = spawn_host(a.url, cluster.seed, tmp / "host")
    try:
        ctl = CtlClient(near, "default", timeout=10)
        await ctl.start_actor(host_id, str(ECHO))
        key = ""
        while not key:
            inv = await ctl.inventory(host_id)
            key = next((x.id for x in inv.actors), "")
            await asyncio.sleep(0.1)
        me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
        out = []
        for nc in (near, far):
            rpc = RpcClient(nc, "default", cluster, KeyPair.generate(KeyRole.SERVER).public_key,
                            timeout=10.0)
            target = Entity.actor(key)
            for _ in range(3000):  # until the gateway has learned the interest (interest-only)
                try:
                    await rpc.invoke(me, target, OP, REQUEST)
                    break
                except RpcError:
                    await asyncio.sleep(0.05)
            for _ in range(50):
                await rpc.invoke(me, target, OP, REQUEST)
            samples = []
            for _ in range(calls):
                began = time.perf_counter()
                await rpc.invoke(me, target, OP, REQUEST)
                samples.append(time.perf_counter() - began)
            out.append(statistics.median(samples))
        return out[0], out[1]
    finally:
        await near.close()
        await far.close()
        proc.terminate()
        proc.wait(timeout=20)
        a.stop()
        b.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--latency-calls", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scale = await throughput(args.seconds, args.concurrency)
    same, cross = await gateway_latency(args.latency_calls)
    if args.json:
        print(json.dumps({"throughput": {n: {"rps": r, "p99_ms": p * 1000}
                                         for n, (r, p) in scale.items()},
                          "latency_ms": {"same_cluster": same * 1000,
                                         "cross_gateway": cross * 1000}}))
        return
    base = scale[1][0]
    print(f"echo app, {args.concurrency} concurrent callers, {args.seconds:g} s per point")
    print(f"{'hosts':>6}{'req/s':>10}{'vs 1 host':>11}{'p99':>10}")
    for n, (rps, p99) in scale.items():
        print(f"{n:>6}{rps:>10.0f}{rps / base:>10.2f}x{p99 * 1000:>8.1f} ms")
    print(f"median call latency, {args.latency_calls} sequential calls")
    print(f"  same cluster   {same * 1000:7.2f} ms")
    print(f"  cross gateway  {cross * 1000:7.2f} ms   ({cross / same:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
