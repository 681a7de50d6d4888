"""The README's main command: `lattice up --demo` brings up a lattice on embedded defaults with
kvcounter deployed and prints its URL; the counter counts; the README's next step (the app's
Redis version, examples/kvcounter-redis.yaml) moves it to Redis; `lattice down` stops it all.
In the foreground (the README's first command), Ctrl-C stops everything it started."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest
import redis
import yaml

import actors
from lattice.natsd import free_port, port_open

EXAMPLES = actors.ROOT.parent / "examples"


def test_up_demo_serves_kvcounter_then_down_stops_it(tmp_path, redis_url) -> None:
    env = {**os.environ, "LATTICE_STATE_DIR": str(tmp_path / "state")}
    nats_port, http_port = free_port(), free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"  # nothing answers there: `up` starts nats-server
    lattice = [sys.executable, "-m", "lattice"]
    up = subprocess.run([*lattice, "up", "--demo", "--detach", "--port", str(http_port),
                         "--nats-url", nats_url], env=env, capture_output=True, text=True,
                        timeout=240)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        url = f"http://127.0.0.1:{http_port}/"
        assert f"kvcounter is serving at {url}" in up.stdout
        for expected in (1, 2):
            with urllib.request.urlopen(url + "counter", timeout=10) as reply:
                assert reply.read() == (b'{"counter":%d,"key":"counter:/counter"}' % expected)

        # The README's Redis step, on the test's Redis database and the demo's port.
        doc = yaml.safe_load((EXAMPLES / "kvcounter-redis.yaml").read_text())
        for comp in doc["spec"]["components"]:
            for trait in comp.get("traits", []):
                values = trait.get("properties", {}).get("values")
                if trait["type"] == "linkdef" and values is not None:
                    if "URL" in values:
                        values["URL"] = redis_url
                    if "port" in values:
                        values["port"] = str(http_port)
        redis_manifest = EXAMPLES / f".test-redis-{http_port}.yaml"  # relative image paths
        redis_manifest.write_text(yaml.safe_dump(doc))
        try:
            deploy = subprocess.run([*lattice, "app", "deploy", str(redis_manifest),
                                     "--nats-url", nats_url], env=env, capture_output=True,
                                    text=True, timeout=120)
        finally:
            redis_manifest.unlink()
        assert deploy.returncode == 0, deploy.stderr + deploy.stdout
        assert "kvcounter v0.2.0: deployed" in deploy.stdout
        with urllib.request.urlopen(url + "counter", timeout=10) as reply:
            assert reply.read() == b'{"counter":1,"key":"counter:/counter"}'  # a fresh store
        assert redis.Redis.from_url(redis_url).get("counter:/counter") == b"1"
    finally:
        down = subprocess.run([*lattice, "down"], env=env, capture_output=True, text=True,
                              timeout=60)
    assert down.returncode == 0, down.stderr
    assert not port_open("127.0.0.1", http_port) and not port_open("127.0.0.1", nats_port)


def test_up_demo_refuses_a_busy_port_before_starting_anything(tmp_path) -> None:
    import socket

    env = {**os.environ, "LATTICE_STATE_DIR": str(tmp_path / "state")}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = subprocess.run([sys.executable, "-m", "lattice", "up", "--demo", "--detach",
                             "--port", str(port), "--nats-url",
                             f"nats://127.0.0.1:{free_port()}"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use: pick another with --port" in up.stderr
    assert not (tmp_path / "state" / "up.json").exists()


# --- foreground `up --demo` and Ctrl-C ---------------------------------------------------------

Proc = tuple[int, str, str]  # pid, start time (clock ticks since boot: tells a reused pid), cmdline


def _stat(pid: int) -> tuple[int, int, int, str, str] | None:
    """(ppid, pgid, session, state, start time) of a live pid, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[2]), int(fields[3]), fields[0], fields[19]


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return ""


def _started_by(root: int) -> list[Proc]:
    """Every live process ``root`` started: its descendants by parent pid (nats-server runs in
    a session of its own, so the process group alone would miss it), plus anything left in its
    process group or session (a grandchild whose parent exited is reparented away)."""
    stats = {int(d): st for d in os.listdir("/proc") if d.isdigit()
             if (st := _stat(int(d))) is not None}
    found = {pid for pid, (_, pgid, sid, _, _) in stats.items()
             if pid != root and root in (pgid, sid)}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, *_rest) in stats.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                frontier.append(pid)
    return sorted((pid, stats[pid][4], _cmdline(pid)) for pid in found)


def _alive(proc: Proc) -> bool:
    """Still running: the same pid with the same start time, and not a zombie (exited, only
    waiting to be reaped)."""
    st = _stat(proc[0])
    return st is not None and st[4] == proc[1] and st[3] != "Z"


def test_foreground_up_demo_counts_then_ctrl_c_stops_everything(tmp_path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "LATTICE_STATE_DIR": str(state)}
    nats_port, http_port = free_port(), free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"  # nothing answers there: `up` starts nats-server
    url = f"http://127.0.0.1:{http_port}/"
    err_path = tmp_path / "up.stderr"
    with open(err_path, "wb") as err_file:
        # A session of its own = a terminal's foreground job: Ctrl-C signals its process group.
        up = subprocess.Popen([sys.executable, "-m", "lattice", "up", "--demo", "--port",
                               str(http_port), "--nats-url", nats_url],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=err_file, text=True, start_new_session=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert up.stdout is not None
        for line in up.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []

    def read_until(text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in out):
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            if line is None or time.monotonic() > deadline:
                pytest.fail(f"`lattice up --demo` did not print {text!r} (exit status "
                            f"{up.poll()}); stdout:\n{''.join(out)}\nstderr:\n"
                            f"{err_path.read_text(errors='replace')}")
            out.append(line)

    children: list[Proc] = []
    try:
        read_until(f"kvcounter is serving at {url}", 300)  # a cold cache builds kvcounter
        assert "press Ctrl-C (or run `lattice down`) to stop it" in "".join(out)
        for expected in (1, 2):
            with urllib.request.urlopen(url + "counter", timeout=30) as reply:
                assert reply.read() == (b'{"counter":%d,"key":"counter:/counter"}' % expected)

        # The demo's providers are embedded; a provider of its own process as well, so Ctrl-C
        # has a host child to stop besides nats-server.
        start = subprocess.run([sys.executable, "-m", "lattice", "start", "provider", "kvmem",
                                "--nats-url", nats_url], env=env, capture_output=True,
                               text=True, timeout=120)
        assert start.returncode == 0, start.stderr + start.stdout

        children = _started_by(up.pid)
        commands = [cmd for _, _, cmd in children]
        assert any("nats-server" in cmd for cmd in commands), children
        assert any("-m providers.kvmem" in cmd for cmd in commands), children

        os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C in its terminal does
        try:
            code = up.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`lattice up` still runs 90 s after Ctrl-C; stderr:\n"
                        f"{err_path.read_text(errors='replace')}")
        stderr = err_path.read_text(errors="replace")
        assert code == 0, stderr
        read_until("stopped", 30)
        left = [p for p in children if _alive(p)]
        assert not left, f"still running after `lattice up` exited: {left}\n{stderr}"
        assert not [p for p in _started_by(up.pid) if _alive(p)]
        assert f"stopped nats-server at {nats_url}" in stderr
        assert any(line.startswith("Host N") and line.strip().endswith("stopped")
                   for line in out), out
        assert not port_open("127.0.0.1", http_port)
        assert not port_open("127.0.0.1", nats_port)
        assert not (state / "up.json").exists()  # `lattice down` has nothing left to stop
    finally:
        if up.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGKILL)
            up.wait(10)
        for proc in children or []:
            if _alive(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc[0], signal.SIGKILL)
