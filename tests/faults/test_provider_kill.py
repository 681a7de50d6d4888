"""keyvalue-redis SIGKILLed under HTTP load: the calls in flight to it fail at once, the ones
arriving while it restarts fail at once, and no acknowledged increment is lost.

HTTP (8 keep-alive connections, tests/faults/loadgen.py in its own process) → httpserver
(a process) → kvcounter.wat (8 instances on a host) → keyvalue-redis (a process) → a Redis of
the test's own. After ~1.5 s of load the keyvalue-redis process gets SIGKILL; the host's
supervisor sees it exit, fails the host's calls still waiting for it with "provider … exited
(killed by signal SIGKILL) while handling this call; it is being restarted", and restarts it
(backoff 0.25 s). Two variants: the kill lands wherever the requests happen to be
(``as-it-comes``: 0 to 8 of them inside the provider), and with Redis writes paused 0.2 s before
the kill so that all 8 wait inside the provider (``calls-waiting``: the worst case).

What must hold (asserted):
* every failed request failed for one of the two fast reasons — the provider exited under it,
  or it was not running yet (no responders) — never at the 2 s RPC timeout (a 503);
* every 200 carried a distinct counter, and Redis holds exactly the 200s plus at most the
  requests in flight at the kill: those may have reached Redis before the process died and
  still be answered with an error (the write happened, its acknowledgement was lost — what an
  at-most-once RPC gives), but no acknowledged increment may be missing;
* requests succeed again after the kill.
Printed: restart time, time until the first request started after the kill succeeds, failures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from lattice.natsd import free_port
from tests.faults.conftest import Clock, report
from tests.harness import Lattice, until
from tests.providers_http.conftest import wait_listening

pytestmark = pytest.mark.service

KV, HTTP = "wasmcloud:keyvalue", "wasmcloud:httpserver"
CONNECTIONS = 8
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("waiting", [False, True], ids=["as-it-comes", "calls-waiting"])
async def test_keyvalue_redis_sigkill_under_http_load(lattice: Lattice, private_redis: str,
                                                      caplog: pytest.LogCaptureFixture,
                                                      waiting: bool) -> None:
    redis_url = private_redis
    caplog.set_level(logging.WARNING)
    host = await lattice.host()
    actor = await lattice.start_actor(host, lattice.module("kvcounter", caps=[HTTP, KV]),
                                      count=CONNECTIONS)
    kv = await lattice.start_provider(host, "keyvalue-redis")
    http = await lattice.start_provider(host, "httpserver")
    port = free_port()
    await lattice.link(actor, kv, KV, URL=redis_url)
    await lattice.link(actor, http, HTTP, port=str(port))
    url = f"http://127.0.0.1:{port}/counter"
    await wait_listening(url)
    db = aioredis.from_url(redis_url)
    await until(lambda: _ok(url), timeout=15)  # the whole path works before the load starts
    baseline = int(await db.get("counter::counter") or 0)

    load = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.faults.loadgen", url, "5", str(CONNECTIONS),
        stdout=asyncio.subprocess.PIPE, cwd=REPO, limit=1 << 24)
    try:
        assert load.stdout is not None
        assert (await load.stdout.readline()).strip() == b"started"
        await asyncio.sleep(1.5)
        if waiting:  # hold Redis writes so every connection's call waits inside the provider
            await db.execute_command("CLIENT", "PAUSE", "500", "WRITE")
            await asyncio.sleep(0.2)
        [before] = [p for p in host.providers.list() if p.public_key == kv]
        assert before.pid is not None
        os.kill(before.pid, signal.SIGKILL)
        clock = Clock()
        await until(lambda: any(p.public_key == kv and p.restarts == 1 and p.state == "running"
                                for p in host.providers.list()), timeout=30)
        restarted = clock.since()
        records = json.loads((await load.stdout.readline()).decode())
        await load.wait()
    finally:
        if load.returncode is None:
            load.kill()
            await load.wait()
    final = int(await db.get("counter::counter"))
    await db.aclose()

    kill = clock.at
    ok = [r for r in records if r[2] == 200]
    failed = [r for r in records if r[2] != 200]
    in_flight = [r for r in records if r[0] < kill < r[1]]
    after = sorted(r[1] for r in ok if r[0] > kill)
    assert after, "no request succeeded after the kill"
    recovered = after[0] - kill
    assert {r[2] for r in failed} <= {500}, sorted({r[2] for r in failed})

    # Why each failed (the httpserver logs the actor's error, its host forwards the log line).
    def reasons() -> list[str]:
        return [str(getattr(r, "error", "")) for r in caplog.records
                if r.name == "provider.httpserver" and r.getMessage() == "actor call failed"]

    await until(lambda: len(reasons()) >= len(failed), timeout=10)
    exited = [e for e in reasons() if "exited (killed by signal SIGKILL) while handling this "
              "call; it is being restarted" in e]
    absent = [e for e in reasons() if "is not running in lattice" in e]
    assert len(exited) + len(absent) == len(reasons()) == len(failed), \
        sorted(set(reasons()) - set(exited) - set(absent))
    assert len(exited) <= len(in_flight)  # only calls waiting at the kill can see it exit
    failed_at_kill = [r for r in failed if r[0] < kill]
    assert len(failed_at_kill) <= len(in_flight)

    values = [r[3] for r in ok]
    assert len(values) == len(set(values)), "a counter value was handed out twice"
    assert all(baseline < v <= final for v in values)
    extra = final - baseline - len(ok)  # increments done whose 200 never came
    assert 0 <= extra <= len(in_flight), (final, baseline, len(ok), len(in_flight))
    if waiting:  # all of them were inside the provider, so all saw it exit
        assert len(exited) == CONNECTIONS, (len(exited), len(in_flight))
    report("keyvalue-redis SIGKILL under 8-connection HTTP load"
           + (", its calls waiting on Redis" if waiting else ""),
           restarted_s=restarted, first_success_after_kill_s=recovered,
           requests=len(records), ok=len(ok), failed=len(failed),
           failed_provider_exited=len(exited), failed_not_running=len(absent),
           in_flight_at_kill=len(in_flight),
           slowest_failure_s=max((r[1] - r[0] for r in failed), default=0.0),
           last_failure_after_kill_s=max((r[1] - kill for r in failed), default=0.0),
           redis_counter=final - baseline, counter_minus_200s=extra)


async def _ok(url: str) -> bool:
    import aiohttp

    try:
        async with aiohttp.ClientSession() as s, s.get(url) as r:
            return r.status == 200
    except aiohttp.ClientError:
        return False


async def test_only_the_exit_of_the_provider_called_fails_a_call() -> None:
    """The bookkeeping behind it (Host._awaiting_provider / _provider_exited), without NATS:
    an exit fails exactly the calls to that provider and link with its reason; a cancellation
    from elsewhere still cancels, even if the provider exits at the same time."""
    from types import SimpleNamespace

    from lattice.host import Host
    from lattice.runtime import HostCallError

    host = SimpleNamespace(_provider_calls={})

    def call(key: tuple[str, str]) -> asyncio.Task[bytes]:
        return asyncio.create_task(Host._awaiting_provider(host, key, asyncio.sleep(30)))

    hit, other_link, other = call(("VP", "default")), call(("VP", "b")), call(("VQ", "default"))
    await asyncio.sleep(0)
    Host._provider_exited(host, "VP", "default", "provider P exited (boom)")
    with pytest.raises(HostCallError, match=r"^provider P exited \(boom\)$"):
        await hit
    assert not other_link.done() and not other.done()
    other_link.cancel()  # e.g. the host stopping: stays a cancellation
    Host._provider_exited(host, "VP", "b", "too late")
    with pytest.raises(asyncio.CancelledError):
        await other_link
    Host._provider_exited(host, "VQ", "default", "exited")
    other.cancel()  # cancelled twice: by the exit and by someone else
    with pytest.raises(asyncio.CancelledError):
        await other
    assert host._provider_calls == {}  # nothing left behind
