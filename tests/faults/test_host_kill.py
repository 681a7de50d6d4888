"""A host SIGKILLed under an app spread over two hosts: the app heals on the survivor.

Host processes (as in tests/app/test_reliability.py: heartbeats and reconciler passes every
second, the lease's default TTL of 6 s); an app whose actor runs 2 instances spread over the
hosts. First the host that is not the reconciler's leader is killed: the leader starts the lost
instance on itself. A third host joins; then the leader is killed: the newcomer takes the lease
over (it sees the leader gone, it does not wait for the lease to run out) and starts both
instances. Each time the test watches the hosts' inventories and the app's status until 2
instances run on live hosts and the status is ``deployed`` again — and asserts it is never
``deployed`` while fewer run. tests/app/test_reliability.py measures the same for a leader
killed under 3 hosts with 3 instances.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from lattice.app.lease import lease_holder
from lattice.app.observe import observe
from lattice.app.store import AppStore
from lattice.ctl import CtlClient
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer
from tests.actors import signed
from tests.app.test_reconciler import KV, deploy, manifest
from tests.app.test_reliability import FAST
from tests.faults.conftest import report
from tests.harness import HostProcesses, Lattice, until

pytestmark = pytest.mark.service


@pytest.mark.timeout(150)
async def test_host_sigkill_with_an_app_spread_over_two_hosts(nats_server: NatsServer,
                                                              tmp_path: Path) -> None:
    hosts = HostProcesses(nats_server.url, tmp_path, KeyPair.generate(KeyRole.CLUSTER).seed)

    def spawn(name: str) -> str:
        return hosts.spawn(name, **FAST)

    lattice = Lattice(nats_server, tmp_path)
    await lattice.connect()
    try:
        for name in ("h0", "h1"):
            spawn(name)
        image = tmp_path / "fwd.wasm"
        image.write_bytes(signed("forward", caps=[KV]))
        await deploy(lattice, manifest("spread", "v1", str(image), replicas=2,
                                       provider=False), tmp_path)
        js = lattice.nc.jetstream()
        store = await AppStore(js, "default").open()
        ctl = CtlClient(lattice.nc, "default", timeout=2)

        async def status() -> str:
            return (await observe(store, lattice.nc, js, "default", "spread")).status

        async def spread_over(n: int) -> bool:
            c = await hosts.instance_counts(ctl)
            return bool(c and sum(c.values()) == 2 and len([v for v in c.values() if v]) == n
                        and await status() == "deployed")

        async def kill_and_heal(victim: str) -> tuple[float, float]:
            """SIGKILL ``victim``; seconds until 2 instances run again, and until deployed."""
            hosts.kill(victim)
            killed = time.monotonic()
            back = None
            while True:
                c, seen = await hosts.instance_counts(ctl), await status()
                t = time.monotonic() - killed
                running = sum(c.values()) if c is not None else None
                if seen == "deployed" and c is not None:
                    assert running == 2, (t, c, seen)  # never "deployed" with fewer
                if back is None and running == 2:
                    back = t
                if back is not None and seen == "deployed" and running == 2:
                    return back, t
                assert t < 60, (c, seen)
                await asyncio.sleep(0.05)

        await until(lambda: spread_over(2), timeout=60)
        leader = await until(lambda: lease_holder(js, "default"), timeout=15)
        follower = next(h for h in hosts.procs if h != leader)
        follower_back, follower_deployed = await kill_and_heal(follower)
        assert (await hosts.instance_counts(ctl)) == {leader: 2}

        newcomer = spawn("h2")
        await until(lambda: _pinged(ctl, newcomer), timeout=20)
        await asyncio.sleep(2 * FAST["heartbeat_interval"])  # the leader has heard of it
        # 2 unless the newcomer already took one
        lost = (await hosts.instance_counts(ctl) or {}).get(leader)
        leader_back, leader_deployed = await kill_and_heal(leader)
        assert (await hosts.instance_counts(ctl)) == {newcomer: 2}
        assert await lease_holder(js, "default") == newcomer
    finally:
        await lattice.nc.close()
        hosts.close()
    report("host SIGKILL, an app's 2 instances spread over 2 hosts",
           non_leader_killed_instances_back_s=follower_back,
           non_leader_killed_deployed_s=follower_deployed,
           leader_killed_instances_lost=lost, leader_killed_instances_back_s=leader_back,
           leader_killed_deployed_s=leader_deployed)


async def _pinged(ctl: CtlClient, host_id: str) -> bool:
    return host_id in {h.id for h in await ctl.ping_hosts(0.5)}
