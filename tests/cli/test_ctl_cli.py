"""The networked CLI against a real lattice: a :class:`lattice.host.Host` on a real nats-server,
driven through ``lattice get|start|stop|scale|update|link|call`` and ``lattice up|down``."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from actors import ROOT as ACTORS
from lattice.cli import main
from lattice.cli.up import pid_alive
from lattice.connect import NatsOptions
from lattice.host import Host, HostConfig
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import free_port
from tests.actors import signed
from tests.cli.conftest import BackgroundLoop

pytestmark = pytest.mark.service

ECHO = str(ACTORS / "echo-wasmbus" / "echo.wasm")
REQUEST = '{"method": "GET", "path": "/hi", "queryString": "", "body": "yo"}'


class Lattice:
    """One host on a fresh NATS server; ``cli(...)`` runs a command against it."""

    def __init__(self, url: str, host: Host, seed: str, capsys: Any) -> None:
        self.url, self.host, self.seed, self._capsys = url, host, seed, capsys

    def cli(self, *argv: str, ok: bool = True) -> tuple[str, str]:
        code = main([*argv, "--nats-url", self.url])
        out, err = self._capsys.readouterr()
        assert (code == 0) == ok, f"lattice {' '.join(argv)} exited {code}: {err}"
        return out, err

    def json(self, *argv: str) -> Any:
        return json.loads(self.cli(*argv, "--json")[0])

    def inventory(self) -> dict[str, Any]:
        return self.json("get", "inventory", self.host.host_id)

    def count(self, key: str) -> int:
        actors = {a["id"]: a for a in self.inventory()["actors"]}
        return len(actors[key]["instances"]) if key in actors else 0


@pytest.fixture
def lattice(nats_server, background: BackgroundLoop, tmp_path: Path, capsys) -> Iterator[Lattice]:
    seed = KeyPair.generate(KeyRole.CLUSTER).seed
    config = HostConfig(nats=NatsOptions(url=nats_server.url), cluster_seed=seed,
                        labels={"zone": "test"}, state_dir=tmp_path / "host-state",
                        heartbeat_interval=60)

    async def start() -> Host:
        host = Host(config)  # created on the loop that runs it
        await host.start()
        return host

    host = background.run(start())
    try:
        yield Lattice(nats_server.url, host, seed, capsys)
    finally:
        background.run(host.stop(), timeout=30)


def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Lattice state (links, claims) reaches every host through a KV watch: poll briefly."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_get_shows_what_runs(lattice: Lattice):
    host = lattice.host
    out, _ = lattice.cli("get", "hosts", "--wait", "0.5")
    assert host.host_id in out and host.friendly_name in out and "zone=test" in out
    out, _ = lattice.cli("start", "actor", ECHO, "--host-id", host.friendly_name)
    assert out.startswith("Started 1 instance of actor echo (M") and host.host_id[:8] in out
    (hosts,) = lattice.json("get", "hosts", "--wait", "0.5")
    assert hosts["id"] == host.host_id and hosts["labels"]["zone"] == "test"
    inv = lattice.inventory()
    (actor,) = inv["actors"]
    assert actor["name"] == "echo" and len(actor["instances"]) == 1
    digest = hashlib.sha256(Path(ECHO).read_bytes()).hexdigest()
    assert actor["image_ref"] == f"lattice://sha256:{digest}/echo.wasm"  # uploaded, not a path
    out, _ = lattice.cli("get", "inventory")
    assert f"Host {host.host_id} ({host.friendly_name})" in out and actor["id"] in out
    eventually(lambda: any(c["sub"] == actor["id"] for c in lattice.json("get", "claims")))
    claims = {c["sub"]: c for c in lattice.json("get", "claims")}
    assert claims[actor["id"]]["name"] == "echo"
    assert claims[actor["id"]]["caps"] == "wasmcloud:httpserver"


def test_actor_lifecycle_waits_for_each_outcome(lattice: Lattice, tmp_path: Path):
    account = KeyPair.generate(KeyRole.ACCOUNT)
    module = KeyPair.generate(KeyRole.MODULE)
    v1, v2 = tmp_path / "v1.wasm", tmp_path / "v2.wasm"
    v1.write_bytes(signed("echo", name_claim="lifecycle", issuer=account, subject=module, rev=1))
    v2.write_bytes(signed("echo", name_claim="lifecycle", issuer=account, subject=module, rev=2))
    key = module.public_key

    # No --host-id: an auction among hosts with the label picks ours.
    doc = lattice.json("start", "actor", str(v1), "--constraint", "zone=test")
    assert (doc["actor_id"], doc["name"], doc["host_id"]) == (key, "lifecycle",
                                                              lattice.host.host_id)
    out, _ = lattice.cli("scale", "actor", "lifecycle", "--count", "3")
    assert "from 1 to 3" in out and lattice.count(key) == 3
    out, _ = lattice.cli("stop", "actor", key, "--count", "1")
    assert "Stopped 1 instance(s)" in out and lattice.count(key) == 2
    out, _ = lattice.cli("update", "actor", "lifecycle", str(v2))
    assert f"Updated actor {key}" in out
    revisions = {i["revision"] for i in lattice.inventory()["actors"][0]["instances"]}
    assert revisions == {2}
    _, err = lattice.cli("update", "actor", key, str(v1), ok=False)
    assert "revision" in err  # the host's reason: not higher than the running one
    lattice.cli("stop", "actor", "lifecycle")
    assert lattice.count(key) == 0
    _, err = lattice.cli("stop", "actor", "lifecycle", ok=False)
    assert "no actor 'lifecycle' runs" in err


def test_failed_start_reports_the_hosts_reason(lattice: Lattice, tmp_path: Path):
    unsigned = tmp_path / "plain.wasm"
    from tests.actors import wat

    unsigned.write_bytes(wat("echo"))
    _, err = lattice.cli("start", "actor", str(unsigned), "--host-id", lattice.host.host_id,
                         ok=False)
    assert "could not start actor" in err and "claims" in err


def test_links_by_name_and_providers(lattice: Lattice):
    lattice.cli("start", "actor", ECHO, "--host-id", lattice.host.host_id)
    out, _ = lattice.cli("start", "provider", "kvmem", "--embedded", "--host-id",
                         lattice.host.host_id)
    assert "Started provider" in out and "wasmcloud:keyvalue" in out
    (prov,) = lattice.inventory()["providers"]
    eventually(lambda: {"echo", prov["name"]} <= {c["name"] for c in lattice.json("get",
                                                                                  "claims")})
    lattice.cli("link", "put", "echo", prov["name"], "wasmcloud:keyvalue", "BUCKET=demo")
    eventually(lambda: len(lattice.json("get", "links")) == 1)
    (link,) = lattice.json("get", "links")
    assert link["provider_id"] == prov["id"] and link["values"] == {"BUCKET": "demo"}
    out, _ = lattice.cli("get", "links")
    assert "BUCKET=demo" in out
    lattice.cli("link", "del", "echo", "wasmcloud:keyvalue")
    eventually(lambda: lattice.json("get", "links") == [])
    _, err = lattice.cli("link", "del", "echo", "wasmcloud:keyvalue", ok=False)
    assert "no link" in err
    out, _ = lattice.cli("stop", "provider", prov["name"])
    assert f"Stopped provider {prov['id']}" in out
    assert lattice.inventory()["providers"] == []


def test_call_over_the_lattice(lattice: Lattice, monkeypatch):
    lattice.cli("start", "actor", ECHO, "--host-id", lattice.host.host_id)
    eventually(lambda: any(c["name"] == "echo" for c in lattice.json("get", "claims")))
    out, _ = lattice.cli("call", "echo", "HttpServer.HandleRequest", "--data", REQUEST,
                         "--cluster-seed", lattice.seed)
    reply = json.loads(out)
    assert reply["statusCode"] == 200 and json.loads(reply["body"])["path"] == "/hi"
    # The cluster seed also comes from the environment.
    monkeypatch.setenv("LATTICE_CLUSTER_SEED", lattice.seed)
    doc = lattice.json("call", "echo", "HttpServer.HandleRequest", "--data", REQUEST)
    assert doc["name"] == "echo" and doc["actor"].startswith("M")
    # A seed the host does not trust: the host's own words, plus what to do.
    monkeypatch.delenv("LATTICE_CLUSTER_SEED")
    _, err = lattice.cli("call", doc["actor"], "HttpServer.HandleRequest", "--data", REQUEST,
                         ok=False)
    assert "Anti-forgery check failed" in err and "--cluster-seed" in err
    _, err = lattice.cli("call", "nobody", "X.Y", ok=False)
    assert "no actor named 'nobody'" in err


# --- lattice up / down ----------------------------------------------------------------------


def _lattice(*argv: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lattice", *argv], env=env, text=True,
                          capture_output=True, timeout=timeout)


def _kill_recorded(state: Path) -> None:
    """Whatever happens in the test, leave no process behind."""
    with contextlib.suppress(OSError, ValueError):
        record = json.loads((state / "up.json").read_text())
        for key in ("host_pid", "nats_pid"):
            with contextlib.suppress(OSError, TypeError):
                os.kill(int(record[key]), signal.SIGKILL)


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_up_detach_then_down(tmp_path: Path, capsys, monkeypatch):
    state = tmp_path / "state"
    url = f"nats://127.0.0.1:{free_port()}"
    env = {**os.environ, "LATTICE_STATE_DIR": str(state)}
    env.pop("LATTICE_CLUSTER_SEED", None)
    try:
        up = _lattice("up", "--detach", "--nats-url", url, "--label", "site=lab", "--json",
                      env=env)
        assert up.returncode == 0, up.stderr
        record = json.loads(up.stdout)
        assert record["nats_url"] == url and record["host_id"].startswith("N")
        for pid in (record["host_pid"], record["nats_pid"]):
            os.kill(pid, 0)  # both run, detached from `up`, which has exited
        assert (state / "host.log").is_file() and (state / "cluster.nk").is_file()
        again = _lattice("up", "--detach", "--nats-url", url, env=env)
        assert again.returncode == 1 and "lattice down" in again.stderr

        # The in-process CLI shares the state dir: `call` signs with the shared cluster seed.
        monkeypatch.setenv("LATTICE_STATE_DIR", str(state))
        monkeypatch.delenv("LATTICE_CLUSTER_SEED", raising=False)
        assert main(["get", "hosts", "--nats-url", url, "--wait", "0.5", "--json"]) == 0
        (host,) = json.loads(capsys.readouterr().out)
        assert host["id"] == record["host_id"] and host["labels"]["site"] == "lab"
        assert main(["start", "actor", ECHO, "--nats-url", url]) == 0
        capsys.readouterr()
        assert main(["call", "echo", "HttpServer.HandleRequest", "--data", REQUEST,
                     "--nats-url", url]) == 0
        assert json.loads(capsys.readouterr().out)["statusCode"] == 200

        down = _lattice("down", env=env)
        assert down.returncode == 0, down.stderr
        assert f"host {record['host_id']}" in down.stdout and "nats-server" in down.stdout
        for pid in (record["host_pid"], record["nats_pid"]):
            assert _gone(pid), f"pid {pid} still runs after `lattice down`"
        assert not (state / "up.json").exists()
        down = _lattice("down", env=env)
        assert down.returncode == 0 and "Nothing to stop" in down.stdout
    finally:
        _kill_recorded(state)
