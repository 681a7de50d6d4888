"""Reliability of the reconciler on a live lattice (real nats-server, real hosts):

* a start that always fails is retried with exponential backoff, not in a tight loop, and the
  status says so ("retrying in N s: <error>");
* with the leader killed (SIGKILL), ``lattice app status`` never says ``deployed`` while fewer
  instances run than the manifest asks for — it says ``unknown since …`` until a new leader has
  recomputed it — and the app heals without waiting for the old leader's lease to expire.

Timing is never asserted as speed: counts and ordering with generous bounds, timeouts only as
pytest's; the heal time is printed for benches.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from pathlib import Path

import pytest

from lattice.app.backoff import Backoff
from lattice.app.lease import lease_holder
from lattice.app.manifest import Manifest
from lattice.app.observe import observe
from lattice.app.store import AppStore
from lattice.ctl import CtlClient
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer
from tests.actors import signed
from tests.app.test_cli_app import app_cli
from tests.app.test_reconciler import KV, deploy, manifest
from tests.harness import HostProcesses, Lattice, until

BAD_ACTOR = "lattice://sha256:" + "0" * 64   # no such artifact in the lattice
BAD_PROVIDER = "no-such-provider"             # no such built-in provider, file or reference


def failing_app() -> dict:
    return {"apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
            "metadata": {"name": "broken", "annotations": {"version": "v1"}},
            "spec": {"components": [
                {"name": "ghost", "type": "actor", "properties": {"image": BAD_ACTOR},
                 "traits": [{"type": "spreadscaler", "properties": {"replicas": 1}}]},
                {"name": "phantom", "type": "capability", "properties": {
                    "image": BAD_PROVIDER, "contract": KV},
                 "traits": [{"type": "daemonscaler", "properties": {"replicas": 1}}]}]}}


@pytest.mark.timeout(90)
async def test_failing_starts_back_off_on_a_live_lattice(lattice: Lattice, tmp_path: Path):
    base, cap = 0.3, 2.4
    # Passes every second (and on every failure event) must not bypass the backoff.
    host = await lattice.host(reconcile_interval=1.0, retry_backoff=base, retry_backoff_max=cap)
    sent: dict[str, list[float]] = {"la": [], "lp": []}      # commands the host received
    failed: dict[str, list[float]] = {"actors_start_failed": [], "provider_start_failed": []}

    async def on_command(msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        body = json.loads(msg.data)
        if body.get("actor_ref") == BAD_ACTOR or body.get("provider_ref") == BAD_PROVIDER:
            sent[verb].append(time.monotonic())

    async def on_event(msg) -> None:
        doc = json.loads(msg.data)
        name = doc["type"].rsplit(".", 1)[-1]
        if name in failed:
            failed[name].append(time.monotonic())

    subs = [await lattice.nc.subscribe(f"wasmbus.ctl.default.cmd.{host.host_id}.*",
                                       cb=on_command),
            await lattice.nc.subscribe("wasmbus.evt.default", cb=on_event)]
    store = await AppStore(lattice.nc.jetstream(), "default").open()
    await store.deploy(Manifest.from_dict(failing_app()))

    attempts = 6
    await until(lambda: len(sent["la"]) >= attempts and len(sent["lp"]) >= attempts, timeout=60)
    window = {verb: list(times) for verb, times in sent.items()}
    for sub in subs:
        await sub.unsubscribe()

    schedule = Backoff(base, cap)
    for verb, times in window.items():
        gaps = [b - a for a, b in itertools.pairwise(times)]
        delays = [schedule.delay(n) for n in range(1, len(gaps) + 1)]
        elapsed = times[-1] - times[0]
        tight = elapsed / 0.2  # a pass per failure event, 0.2 s debounce: the old behaviour
        print(f"{verb}: {len(times)} attempts in {elapsed:.1f} s (a tight loop: ~{tight:.0f}); "
              f"gaps {[round(g, 2) for g in gaps]}, backoff {delays}")
        # Each retry waits at least its backoff delay (a little slack for when the test's own
        # subscription saw the command)...
        for gap, delay in zip(gaps, delays, strict=True):
            assert gap >= 0.8 * delay, (verb, gaps, delays)
        # ...so the intervals grow: the early ones are shorter than any once the cap is reached
        assert max(gaps[:2]) < min(gaps[3:]), (verb, gaps)
        # and within the window no more attempts happened than the schedule allows.
        allowed = 1 + sum(1 for n in range(1, 100)
                          if sum(schedule.delay(k) for k in range(1, n + 1)) * 0.8 <= elapsed)
        assert len(times) <= allowed, (verb, len(times), allowed)
    # every attempt was a real start that failed on the host (one failure event per command;
    # the latest may still be on its way)
    for verb, event in (("la", "actors_start_failed"), ("lp", "provider_start_failed")):
        assert len(sent[verb]) - 1 <= len(failed[event]) <= len(sent[verb]), (sent, failed)

    # The status says what fails and that it is waiting: human output and --json.
    code, out, err = await app_cli(lattice, "status", "broken")
    assert code == 0, err
    print(out)
    assert out.startswith("broken v1: failed"), out
    lines = out.splitlines()
    ghost = lines.index("  …  ghost: 0/1 instances")
    assert lines[ghost + 1].strip().startswith("retrying "), out
    assert "no artifact store" in lines[ghost + 1] and "StartActor on host" in lines[ghost + 1]
    phantom = lines.index("  …  phantom: 0/1 instances")
    assert lines[phantom + 1].strip().startswith("retrying "), out
    assert "no provider named" in lines[phantom + 1], out
    code, out, err = await app_cli(lattice, "status", "broken", "--json")
    doc = json.loads(out)
    assert doc["status"] == "failed", doc
    retries = {r["component"]: r for r in doc["retries"]}
    assert set(retries) == {"ghost", "phantom"}, doc["retries"]
    for r in retries.values():
        assert r["error"] and r["attempts"] >= attempts - 1 and r["retry_in"] <= cap, r
        assert r["host_id"] == host.host_id


# Heartbeats and passes every second; the lease keeps its default TTL (6 s): a killed leader is
# replaced because the followers see it gone, not because its lease runs out.
FAST = {"heartbeat_interval": 1.0, "reconcile_interval": 1.0}


@pytest.mark.timeout(120)
async def test_leader_sigkill_status_never_lies_and_heals(nats_server: NatsServer,
                                                          tmp_path: Path):
    hosts = HostProcesses(nats_server.url, tmp_path, KeyPair.generate(KeyRole.CLUSTER).seed)
    ids = [hosts.spawn(f"h{i}", **FAST) for i in range(3)]
    lattice = Lattice(nats_server, tmp_path)
    await lattice.connect()
    try:
        image = tmp_path / "fwd.wasm"
        image.write_bytes(signed("forward", caps=[KV]))
        await deploy(lattice, manifest("survivor", "v1", str(image), replicas=3,
                                       provider=False), tmp_path)
        js = lattice.nc.jetstream()
        store = await AppStore(js, "default").open()
        ctl = CtlClient(lattice.nc, "default", timeout=2)

        async def status():
            return await observe(store, lattice.nc, js, "default", "survivor")

        async def spread():
            c, seen = await hosts.instance_counts(ctl), await status()
            return (c and sorted(c.values()) == [1, 1, 1] and seen.status == "deployed")

        await until(spread, timeout=60)
        leader = await lease_holder(js, "default")
        samples = []  # (seconds since the kill, count before, status, count after)
        killed = time.monotonic()
        hosts.kill(leader)
        while True:
            before = await hosts.instance_counts(ctl)
            seen = await status()
            after = await hosts.instance_counts(ctl)
            t = time.monotonic() - killed
            samples.append((t, before, seen.status, after, seen.stale))
            if (seen.status == "deployed" and seen.state.leader != leader and after
                    and sum(after.values()) == 3):
                heal = t
                break
            await asyncio.sleep(0.05)
        print(f"leader {leader[:8]}… killed: deployed again with 3 instances after {heal:.2f} s "
              f"({len(samples)} observations)")
        shown = []
        for t, _, st, after, why in samples:
            seen_now = f"{st} with {sum(after.values()) if after else '?'}"
            if not shown or shown[-1][1] != seen_now:
                shown.append((round(t, 2), seen_now, why[:60]))
        print("  status over time:", shown)
        for t, before, st, after, _why in samples:
            if st == "deployed" and before is not None and after is not None:
                # deployed although fewer than 3 instances ran both just before and just after
                assert sum(before.values()) == 3 or sum(after.values()) == 3, \
                    (t, before, st, after, samples)
        outage = [s for s in samples if s[3] is not None and sum(s[3].values()) < 3]
        assert outage, samples  # the lost instance was observed missing...
        assert all(s[2] != "deployed" for s in outage), outage  # ...and never called deployed
        assert leader not in (await hosts.instance_counts(ctl) or {})
        final = await status()
        assert final.current and final.state.hosts and leader not in final.state.hosts

        # With every host gone, nobody can recompute it: the last status is "unknown since".
        for host_id in ids:
            if hosts.alive(host_id):
                hosts.kill(host_id)
        code, out, err = await app_cli(lattice, "status", "survivor")
        assert code == 0, err
        print(out)
        assert out.startswith("survivor v1: unknown since ") and "(last known: deployed)" in out
        assert "why: the leader that computed it" in out and "is gone" in out, out
        code, out, _ = await app_cli(lattice, "status", "survivor", "--json")
        doc = json.loads(out)
        assert (doc["status"], doc["last_status"]) == ("unknown", "deployed"), doc
        assert doc["unknown_since"] == final.state.updated_at or doc["unknown_since"] > 0
        code, out, _ = await app_cli(lattice, "list", "--json")
        assert json.loads(out)[0]["status"] == "unknown"
    finally:
        await lattice.nc.close()
        hosts.close()
