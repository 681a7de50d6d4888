"""The supervisor's restart policy and health checks, with real provider processes.

* A provider that keeps crashing is restarted with growing delays (doubling from
  ``backoff_start`` up to ``backoff_max``), and the backoff starts over once a restarted
  provider has run for ``backoff_reset``. The supervisor is given small constants; the test
  reads the delays it scheduled (its log records) and the times the attempts really happened
  (stamped by the provider executable itself) and asserts their order and ratios only.
* A provider that stops answering health checks (SIGSTOP) or answers them unhealthy publishes
  ``health_check_failed`` and shows as "unhealthy" in the host inventory and in
  ``lattice get inventory``; when it recovers (SIGCONT) ``health_check_passed`` follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from contracts.keyvalue import GetResponse, SetRequest
from lattice.host.providers import derived_key
from tests.harness import Lattice as HostLattice
from tests.harness import until
from tests.providers.conftest import KV, Lattice, alive, eventually, new_actor

pytestmark = pytest.mark.service  # real nats-server and provider processes

REPO = Path(__file__).resolve().parents[2]


def flaky_provider(tmp: Path) -> tuple[Path, Path, Path]:
    """An executable kvmem that stamps the time of each start into ``starts`` and serves only
    while the file ``up`` exists (otherwise it exits with status 3 at once)."""
    script = tmp / "flaky.sh"
    starts, up = tmp / "starts", tmp / "up"
    script.write_text(
        "#!/bin/sh\n"
        f'date +%s.%N >> "{starts}"\n'
        f'if [ -e "{up}" ]; then exec "{sys.executable}" -m providers.kvmem "$@"; fi\n'
        "echo 'not today' >&2\n"
        "exit 3\n")
    script.chmod(0o755)
    return script, starts, up


def stamps(starts: Path) -> list[float]:
    return [float(line) for line in starts.read_text().split()] if starts.exists() else []


def scheduled(caplog: pytest.LogCaptureFixture) -> list[tuple[str, float]]:
    """(what, delay) for every restart the supervisor scheduled, in order."""
    return [(r.getMessage(), float(r.__dict__["restart_in"])) for r in caplog.records
            if r.name == "lattice.providers" and "restart_in" in r.__dict__]


async def running(lat: Lattice, restarts: int) -> Any:
    """Until the one provider is running again after ``restarts`` restarts; its info."""
    return await eventually(lambda: next(
        (p for p in lat.sup.list() if p.state == "running" and p.restarts == restarts), None),
        timeout=30)


async def test_crash_loop_backs_off_doubling_to_the_cap_and_resets_after_running(
        lattice: Lattice, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lattice.providers")
    lat = lattice
    sup = lat.sup
    sup.backoff_start, sup.backoff_max, sup.backoff_reset = 0.25, 2.0, 3.0
    script, starts, up = flaky_provider(tmp_path)
    key = derived_key(script.read_bytes()).public_key
    actor = new_actor()
    lat.link(actor, key)
    up.touch()
    info = await sup.start(str(script), contract_id=KV)
    await lat.kv(actor, key, "KeyValue.Set", SetRequest("k", "v"))

    # 1. It crashes and every restart attempt fails: delays 0.25, 0.5, 1, 2 (cap), 2, 2.
    up.unlink()
    os.kill(info.pid, signal.SIGKILL)
    stopped = await lat.wait_event("provider_stopped")
    assert stopped["data"]["reason"] == "killed by signal SIGKILL"
    await until(lambda: len(stamps(starts)) >= 1 + 6, timeout=30)
    # Between attempts it is "restarting", with no pid (the last attempt's process is gone).
    await eventually(lambda: [(p.state, p.pid, p.restarts) for p in sup.list()]
                     == [("restarting", None, 0)], timeout=10, interval=0.01)
    delays = [d for _, d in scheduled(caplog)]
    assert delays[:6] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert scheduled(caplog)[0][0] == "provider crashed; restarting"
    assert {m for m, _ in scheduled(caplog)[1:]} == {"provider restart failed"}
    # The attempts really came that far apart: never early, growing, then flat at the cap.
    times = stamps(starts)[1:7]
    gaps = [b - a for a, b in itertools.pairwise(times)]  # after 0.5, 1, 2, 2, 2
    for gap, delay in zip(gaps, delays[1:6], strict=True):
        assert gap >= delay * 0.95, (gaps, delays)
    assert gaps[0] < gaps[1] < gaps[2], gaps
    assert max(gaps[2:]) < 1.5 * min(gaps[2:]), gaps  # capped: no more doubling
    assert len([e for e in lat.events if e["type"].endswith("provider_started")]) == 1

    # 2. It comes back: the next attempt serves, with the links, as restart number 1.
    up.touch()
    back = await running(lat, 1)
    assert back.instance_id != info.instance_id and alive(back.pid)
    await lat.wait_event("provider_started", where=lambda d: d["instance_id"] == back.instance_id)
    assert await lat.kv(actor, key, "KeyValue.Contains", "k") is False  # a new process
    await lat.kv(actor, key, "KeyValue.Set", SetRequest("k", "again"))

    # 3. A crash soon after that restart: the backoff goes on from the cap, no reset.
    os.kill(back.pid, signal.SIGKILL)
    again = await running(lat, 2)
    crashes = [d for m, d in scheduled(caplog) if m == "provider crashed; restarting"]
    assert crashes == [0.25, 2.0]

    # 4. Once it has run for backoff_reset, a crash starts over from backoff_start.
    up_since = time.monotonic()
    await until(lambda: time.monotonic() - up_since > sup.backoff_reset + 0.2,
                timeout=sup.backoff_reset + 5)
    os.kill(again.pid, signal.SIGKILL)
    last = await running(lat, 3)
    crashes = [d for m, d in scheduled(caplog) if m == "provider crashed; restarting"]
    assert crashes == [0.25, 2.0, 0.25]
    assert await lat.kv(actor, key, "KeyValue.Get", "k") == GetResponse("", False)
    assert last.pid != again.pid and not alive(again.pid)


def sick_provider(tmp: Path) -> tuple[Path, Path]:
    """A tiny provider executable whose health answer is unhealthy (with the flag file's text
    as the message) while ``sick`` exists."""
    code = tmp / "sick.py"
    flag = tmp / "sick"
    code.write_text(
        "from pathlib import Path\n"
        "from lattice.provider import Provider, run_provider\n"
        f"FLAG = Path({str(flag)!r})\n"
        "class Sick(Provider):\n"
        "    contract_id = 'lattice:sick'\n"
        "    name = 'sick'\n"
        "    async def health(self):\n"
        "        if FLAG.exists():\n"
        "            return False, FLAG.read_text()\n"
        "        return True, None\n"
        "run_provider(Sick)\n")
    script = tmp / "sick.sh"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{code}" "$@"\n')
    script.chmod(0o755)
    return script, flag


async def test_an_unhealthy_answer_fails_the_check_until_it_recovers(
        lattice: Lattice, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lattice.providers")
    lat = lattice
    script, flag = sick_provider(tmp_path)
    info = await lat.sup.start(str(script), contract_id="lattice:sick")
    await lat.wait_event("health_check_passed")
    flag.write_text("disk full")
    failed = await lat.wait_event("health_check_failed", timeout=15)
    assert failed["data"] == {"public_key": info.public_key, "contract_id": "lattice:sick",
                              "link_name": "default"}
    assert [p.state for p in lat.sup.list()] == ["unhealthy"]
    changed = [r for r in caplog.records if r.getMessage() == "provider health changed"]
    assert changed and changed[-1].__dict__["detail"] == "disk full"
    assert changed[-1].__dict__["healthy"] is False
    # Unhealthy is not dead: no restart, the same process.
    [now] = lat.sup.list()
    assert (now.pid, now.restarts) == (info.pid, 0)

    passed = [e for e in lat.events if e["type"].endswith("health_check_passed")]
    flag.unlink()
    await eventually(lambda: len([e for e in lat.events
                                  if e["type"].endswith("health_check_passed")]) > len(passed),
                     timeout=15)
    assert [p.state for p in lat.sup.list()] == ["running"]


# ---- a stopped process, seen through the host inventory and the CLI -----------------------------


@pytest.fixture
async def hosted(nats_server: Any, tmp_path: Path) -> AsyncIterator[HostLattice]:
    """The hosts-on-NATS lattice of tests/harness.py (health checks every second)."""
    lat = HostLattice(nats_server, tmp_path)
    await lat.connect()
    try:
        yield lat
    finally:
        await lat.close()


async def cli_inventory(url: str) -> list[dict[str, Any]]:
    """``lattice get inventory --json``, run as the user runs it."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lattice", "get", "inventory", "--json", "--nats-url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return json.loads(out)


async def cli_inventory_text(url: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lattice", "get", "inventory", "--nats-url", url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_a_stopped_provider_is_unhealthy_in_the_inventory_until_it_resumes(
        hosted: HostLattice, nats_server: Any) -> None:
    lat = hosted
    events: list[dict[str, Any]] = []

    async def record(msg: Any) -> None:
        events.append(json.loads(msg.data))

    await lat.nc.subscribe("wasmbus.evt.default", cb=record)
    host = await lat.host()
    key = await lat.start_provider(host, "kvmem")
    [info] = host.providers.list()
    assert info.pid is not None

    def seen(kind: str) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] == f"com.wasmcloud.lattice.{kind}"
                and e["data"]["public_key"] == key]

    async def states() -> list[str]:
        inv = await lat.ctl("get", host.host_id, "inv")
        return [p["state"] for p in inv["providers"]]

    await until(lambda: seen("health_check_passed"), timeout=15)
    assert await states() == ["running"]
    os.kill(info.pid, signal.SIGSTOP)
    try:
        failed = await until(lambda: seen("health_check_failed"), timeout=30)
        assert failed[0]["source"] == host.host_id
        assert failed[0]["data"] == {"public_key": key, "contract_id": KV,
                                     "link_name": "default"}
        assert await states() == ["unhealthy"]
        [(provider,)] = [inv["providers"] for inv in await cli_inventory(nats_server.url)]
        assert (provider["id"], provider["state"]) == (key, "unhealthy")
        text = await cli_inventory_text(nats_server.url)
        assert "STATE" in text and "unhealthy" in text
        [now] = host.providers.list()
        assert (now.pid, now.restarts) == (info.pid, 0)  # not restarted: it is not dead
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(info.pid, signal.SIGCONT)
    passed_before = len(seen("health_check_passed"))
    await until(lambda: len(seen("health_check_passed")) > passed_before, timeout=30)
    assert await states() == ["running"]
    [(provider,)] = [inv["providers"] for inv in await cli_inventory(nats_server.url)]
    assert provider["state"] == "running"
