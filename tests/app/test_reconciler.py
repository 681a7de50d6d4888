"""The reconciler on a live lattice: hosts elect one leader, deploy/upgrade/undeploy manifests,
status from what the hosts report, and work moves off a host killed with SIGKILL."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import contracts
from contracts.keyvalue import IncrementRequest
from lattice.app.store import AppStore
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer
from tests.actors import signed
from tests.harness import HostProcesses, Lattice, eventually, until

KV = "wasmcloud:keyvalue"


def manifest(name: str, version: str, image: str, *, replicas: int = 2,
             requirements: dict | None = None, provider: bool = True) -> dict:
    actor: dict = {"name": "fwd", "type": "actor", "properties": {"image": image},
                   "traits": [{"type": "spreadscaler", "properties": {
                       "replicas": replicas,
                       "spread": [{"name": "any", "requirements": requirements or {}}]}}]}
    components = [actor]
    if provider:
        actor["traits"].append({"type": "linkdef", "properties": {"target": "kv"}})
        components.append({"name": "kv", "type": "capability", "properties": {
            "image": "kvmem", "contract": KV, "embedded": True},
            "traits": [{"type": "daemonscaler", "properties": {"replicas": 1}}]})
    return {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": name, "annotations": {"version": version}},
            "spec": {"components": components}}


async def deploy(lattice: Lattice, doc: dict, tmp: Path) -> None:
    path = tmp / f"{doc['metadata']['name']}-{doc['metadata']['annotations']['version']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lattice", "app", "deploy", str(path), "--wait", "0",
        "--nats-url", lattice.server.url, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()


async def state_of(lattice: Lattice, name: str):
    store = await AppStore(lattice.nc.jetstream(), "default").open()
    return await store.state(name)


def instances(hosts, image: str | Path) -> dict[str, int]:
    """Instances per host of the actor uploaded from ``image`` (deploy sends lattice:// refs)."""
    digest = hashlib.sha256(Path(image).read_bytes()).hexdigest()
    return {h.host_id: sum(len(r.instances) for r in h.actors.actors.values()
                           if r.image_ref.startswith(f"lattice://sha256:{digest}"))
            for h in hosts}


async def test_deploy_upgrade_undeploy(lattice: Lattice, tmp_path: Path) -> None:
    hosts = [await lattice.host(reconcile_interval=1.0, labels={"zone": z})
             for z in ("a", "b")]
    leaders = await until(lambda: [h for h in hosts if h.reconciler.leader], timeout=15)
    assert len(leaders) == 1  # one leader, elected through the KV lease

    issuer, subject = KeyPair.generate(KeyRole.ACCOUNT), KeyPair.generate(KeyRole.MODULE)
    v1 = tmp_path / "fwd-v1.wasm"
    v1.write_bytes(signed("forward", caps=[KV], issuer=issuer, subject=subject, rev=1))
    await deploy(lattice, manifest("shop", "v1", str(v1)), tmp_path)

    async def deployed(version: str):
        state = await state_of(lattice, "shop")
        return state if state and state.version == version and state.status == "deployed" \
            else None

    state = await until(lambda: deployed("v1"), timeout=30)
    assert sum(instances(hosts, str(v1)).values()) == 2
    assert instances(hosts, str(v1)) == {hosts[0].host_id: 1, hosts[1].host_id: 1}
    key = next(iter(hosts[0].actors.actors))
    # the linkdef trait put a link to the kvmem provider, and it works through either host
    assert any(ld["actor_id"] == key for ld in state.owned_links)
    # kvmem is a daemonscaler: each host has its own embedded copy, and a call is answered by
    # whichever host's instance takes it. So every reply continues one of the two counters, and
    # the two copies together hold exactly the increments made.
    incr = contracts.operation("KeyValue.Increment")
    replies = []
    for _ in range(4):
        reply = await eventually(lambda: lattice.host_call(
            key, KV, "KeyValue.Increment", incr.encode_input(IncrementRequest("n", 1))))
        replies.append(incr.decode_output(reply))
    stored = []
    for h in hosts:
        (kv,) = [p for p in h.providers.list() if p.contract_id == KV]
        bridge = h.providers.embedded(kv.public_key, kv.link_name)
        assert bridge is not None
        stored.append(int(bridge.provider.spaces[key].data.get("n", "0")))
    assert sum(stored) == 4, (stored, replies)
    assert sorted(replies) == sorted([*range(1, stored[0] + 1), *range(1, stored[1] + 1)]), \
        (stored, replies)

    # v2: a new revision of the same actor (same key) → live update in place, still deployed
    v2 = tmp_path / "fwd-v2.wasm"
    v2.write_bytes(signed("forward", caps=[KV], issuer=issuer, subject=subject, rev=2))
    await deploy(lattice, manifest("shop", "v2", str(v2), replicas=3), tmp_path)
    await until(lambda: deployed("v2"), timeout=30)
    assert sum(instances(hosts, str(v2)).values()) == 3
    assert sum(instances(hosts, str(v1)).values()) == 0

    # status never lies: a spread nobody can satisfy says why
    await deploy(lattice, manifest("shop", "v3", str(v2), requirements={"zone": "mars"}),
                 tmp_path)

    async def explained():
        st = await state_of(lattice, "shop")
        return st if st and st.version == "v3" and st.status == "reconciling" else None

    st = await until(explained, timeout=30)
    assert any("zone=mars" in r for r in st.reasons), st.reasons

    # undeploy: the app's actors, providers and links go away
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lattice", "app", "undeploy", "shop", "--nats-url",
        lattice.server.url, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "undeployed" in out.decode()
    assert all(not h.actors.actors for h in hosts)
    assert all(not h.providers.list() for h in hosts)
    assert not [ld for ld in await lattice_links(lattice) if ld.actor_id == key]


async def lattice_links(lattice: Lattice):
    from lattice.ctl import CtlClient
    return await CtlClient(lattice.nc, "default").get_links()




@pytest.mark.timeout(180)
async def test_sigkilled_host_work_is_rescheduled(nats_server: NatsServer, tmp_path: Path):
    """Three host processes; the app's 3 instances spread over them. SIGKILL one (possibly the
    leader): its instance comes back on the survivors within the documented bound."""
    hosts = HostProcesses(nats_server.url, tmp_path, KeyPair.generate(KeyRole.CLUSTER).seed)
    ids = [hosts.spawn(f"h{i}", heartbeat_interval=1.0, reconcile_interval=1.0, lease_ttl=3.0)
           for i in range(3)]
    lattice = Lattice(nats_server, tmp_path)
    await lattice.connect()
    try:
        image = tmp_path / "fwd.wasm"
        image.write_bytes(signed("forward", caps=[KV]))
        await deploy(lattice, manifest("survivor", "v1", str(image), replicas=3,
                                       provider=False), tmp_path)
        from lattice.ctl import CtlClient
        ctl = CtlClient(lattice.nc, "default", timeout=2)

        async def spread():
            c = await hosts.instance_counts(ctl)
            return c if c is not None and sum(c.values()) == 3 \
                and len([n for n in c.values() if n]) == 3 else None

        await until(spread, timeout=60)
        hosts.kill(ids[0])

        async def healed():
            c = await hosts.instance_counts(ctl)
            return c if c is not None and ids[0] not in c and sum(c.values()) == 3 else None

        # host_expiry here is 3 s (3 x 1 s heartbeat) and a killed process is usually noticed at
        # once (no responders); the bound is generous for a loaded machine, and the time it
        # really takes is a figure for benches, not an assertion.
        healed_counts = await until(healed, timeout=60)
        # The lost instance went to one survivor; the other kept its own: both still serve.
        assert sorted(healed_counts.values()) == [1, 2], healed_counts
        assert set(healed_counts) == set(ids[1:]), healed_counts
    finally:
        await lattice.nc.close()
        hosts.close()
