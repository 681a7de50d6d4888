"""`lattice host` as a real process: it joins the lattice, and SIGTERM stops it gracefully
(host_stopped published, its provider children gone, exit status 0)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from lattice.connect import NatsOptions, connect
from tests.harness import until

pytestmark = pytest.mark.service


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_a_host_gracefully(nats_server, tmp_path, sig):
    nc = await connect(NatsOptions(url=nats_server.url), name="test")
    events: list[dict] = []

    async def on_event(msg):
        events.append(json.loads(msg.data))

    await nc.subscribe("wasmbus.evt.default", cb=on_event)
    env = {**os.environ, "LATTICE_STATE_DIR": str(tmp_path / "state")}
    proc = subprocess.Popen([sys.executable, "-m", "lattice", "host", "--nats-url",
                             nats_server.url], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        started = await until(lambda: next((e for e in events
                                            if e["type"].endswith("host_started")), None),
                              timeout=20)
        host_id = started["source"]
        ack = await nc.request(f"wasmbus.ctl.default.cmd.{host_id}.lp",
                               json.dumps({"provider_ref": "kvmem"}).encode(), timeout=5)
        assert json.loads(ack.data)["accepted"]
        provider = await until(lambda: next((e for e in events
                                             if e["type"].endswith("provider_started")), None),
                               timeout=20)
        assert provider["source"] == host_id
        children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                  text=True).stdout.split()
        assert children, "the provider should run as a child of the host"

        proc.send_signal(sig)
        assert await asyncio.to_thread(proc.wait, 20) == 0, proc.stderr.read().decode()
        await until(lambda: any(e["type"].endswith("host_stopped") and e["source"] == host_id
                                for e in events))
        assert any(e["type"].endswith("provider_stopped") for e in events)
        for child in children:  # the provider went down with the host
            await until(lambda child=child: not os.path.exists(f"/proc/{child}"), timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        await nc.close()
