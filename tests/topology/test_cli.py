"""The topology options of ``lattice up`` and ``lattice host``: checked together before anything
starts, rendered into the nats-server config, and two real runs — a cluster of two ``up``
nodes, and an edge ``up`` behind a leaf node of a hub ``up`` (docs/operations.md)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest

from lattice.cli import build_parser, main
from lattice.cli._common import CliError
from lattice.cli.host import host_config
from lattice.cli.up import _server_name, plan_nats
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer, free_port

RUNNING: list[subprocess.Popen] = []


def up_args(*argv: str):
    return build_parser().parse_args(["up", *argv])


@pytest.mark.parametrize(("argv", "message"), [
    (["--routes", "h:6222"], "--routes needs --cluster NAME"),
    (["--cluster-port", "6222"], "--cluster-port needs --cluster NAME"),
    (["--gateways", "a=nats://h:7222"], "--gateways needs --gateway NAME"),
    (["--gateway-port", "7222"], "--gateway-port needs --gateway NAME"),
    (["--cluster", "a", "--gateway", "b"], "--cluster a and --gateway b differ"),
    (["--cluster", "a.b"], "--cluster 'a.b'"),
    (["--gateway", "g", "--gateways", "nats://h:7222"], "--gateways takes NAME=URL"),
    (["--leaf-remote", "nats-leaf://hub:7422"], "--leaf-remote needs --js-domain HUB"),
    (["--leaf-remote", "hub:7422", "--js-domain", "hub"], "needs --nats-js-domain EDGE"),
    (["--leaf-remote", "hub", "--js-domain", "hub", "--nats-js-domain", "hub"],
     "must differ from the hub's"),
    (["--leaf-remote", "http://hub", "--js-domain", "h", "--nats-js-domain", "e"],
     "is not a nats-leaf://"),
    (["--leaf-remote", "hub", "--gateway", "g"], "do not go together"),
    (["--leaf-creds", "x.creds"], "--leaf-creds needs --leaf-remote"),
    (["--leaf-remote", "hub", "--js-domain", "h", "--nats-js-domain", "e", "--leaf-creds",
      "/nonexistent.creds"], "no such file"),
    (["--nats-js-domain", "a", "--js-domain", "b"], "differ, but the host reaches another"),
    (["--js-domain", "hub.eu"], "is not a JetStream domain name"),
    (["--js-replicas", "0"], "out of range"),
    (["--leaf-port", "4222"], "--leaf-port and --nats-port are both port 4222"),
    (["--cluster", "c", "--cluster-port", "x:y"], "must be PORT or HOST:PORT"),
    (["--nats-url", "nats://127.0.0.1:4999", "--nats-port", "4000"], "contradicts --nats-url"),
    (["--nats-url", "nats://a:1,nats://b:2"], "give a single --nats-url"),
])
def test_bad_option_combinations_are_refused_before_anything_starts(
        capsys, argv: list[str], message: str) -> None:
    assert main(["up", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err, err


def test_the_plan_renders_each_topology(tmp_path: Path) -> None:
    plan = plan_nats(up_args("--nats-host", "0.0.0.0", "--nats-port", "4300", "--cluster", "c1",
                             "--routes", "10.0.0.1:6222,nats-route://10.0.0.2:6222,10.0.0.3"))
    assert plan.url == "nats://127.0.0.1:4300" and plan.required and plan.clustered
    text = NatsServer(tmp_path, **plan.server).render_config()
    assert f'server_name: "{_server_name(4300)}"' in text
    assert 'listen: "0.0.0.0:4300"' in text
    assert ('cluster: { name: "c1", listen: "0.0.0.0:6222", routes: ["nats-route://10.0.0.1:6222"'
            ', "nats-route://10.0.0.2:6222", "nats-route://10.0.0.3:6222"] }') in text

    # A gateway alone still gets the cluster block clustered JetStream needs (self-route).
    plan = plan_nats(up_args("--gateway", "east", "--gateway-port", "7300",
                             "--gateways", "east=10.0.1.5,west=nats://10.0.2.5:7222"))
    text = NatsServer(tmp_path, **plan.server).render_config()
    assert ('gateway: { name: "east", listen: "127.0.0.1:7300", gateways: [{ name: "east", url: '
            '"nats://10.0.1.5:7222" }, { name: "west", url: "nats://10.0.2.5:7222" }] }') in text
    assert ('cluster: { name: "east", listen: "127.0.0.1:6222", '
            'routes: ["nats-route://127.0.0.1:6222"] }') in text

    # An edge: its own domain for the node, the hub's for the host; the leaf's credentials.
    creds = tmp_path / "leaf.creds"
    creds.write_text("creds")
    plan = plan_nats(up_args("--leaf-remote", "tls://hub.example.com", "--leaf-creds",
                             str(creds), "--js-domain", "hub", "--nats-js-domain", "edge-1"))
    text = NatsServer(tmp_path, **plan.server).render_config()
    assert 'domain: "edge-1"' in text
    assert (f'leafnodes: {{ remotes: [{{ url: "tls://hub.example.com:7422", credentials: '
            f'"{creds}" }}] }}') in text

    # A hub: the node's domain is the lattice's.
    plan = plan_nats(up_args("--js-domain", "hub", "--leaf-port", "0.0.0.0:7422"))
    text = NatsServer(tmp_path, **plan.server).render_config()
    assert 'domain: "hub"' in text and 'leafnodes: { listen: "0.0.0.0:7422" }' in text

    # No topology option: `up` keeps reusing a NATS that answers, and the URL as given.
    plan = plan_nats(up_args("--nats-url", "nats://localhost:4222"))
    assert not plan.required and plan.url == "nats://localhost:4222" and not plan.server


def test_host_takes_a_cluster_of_urls_and_the_lattice_domain() -> None:
    args = build_parser().parse_args([
        "host", "--nats-url", "nats://10.0.0.1:4222, nats://10.0.0.2:4222,10.0.0.3:4222",
        "--js-domain", "hub", "--js-replicas", "3"])
    config = host_config(args)
    assert config.nats.servers == ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222",
                                   "nats://10.0.0.3:4222"]
    assert (config.js_domain, config.nats.js_domain, config.js_replicas) == ("hub", "hub", 3)
    for argv, message in ((["--js-domain", "a b"], "not a JetStream domain"),
                          (["--js-replicas", "6"], "out of range"),
                          (["--nats-url", " , "], "--nats-url is empty")):
        with pytest.raises(CliError, match=message):
            host_config(build_parser().parse_args(["host", *argv]))


def test_a_host_without_the_lattice_domain_says_what_to_check(capsys, nats_server) -> None:
    started = time.monotonic()
    assert main(["host", "--nats-url", nats_server.url, "--js-domain", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert "could not open the lattice store in JetStream domain 'nosuch'" in err
    assert "--js-domain must be the hub's domain" in err
    assert time.monotonic() - started < 15


# --- real runs ----------------------------------------------------------------------------------


def _lattice(*argv: str, state: Path, wait: bool = True, timeout: float = 90
             ) -> subprocess.CompletedProcess | subprocess.Popen:
    env = {**os.environ, "LATTICE_STATE_DIR": str(state)}
    for var in ("LATTICE_CLUSTER_SEED", "LATTICE_JS_DOMAIN", "LATTICE_NATS_URL"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "lattice", *argv]
    if not wait:
        proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        RUNNING.append(proc)
        return proc
    return subprocess.run(cmd, env=env, text=True, capture_output=True, timeout=timeout)


def _record(state: Path) -> dict:
    return json.loads((state / "up.json").read_text())


@pytest.fixture
def states(tmp_path: Path) -> Iterator[list[Path]]:
    """State directories of `lattice up` runs; whatever happens, nothing is left running."""
    made: list[Path] = []
    yield made
    for proc in RUNNING:  # an `up` still starting: SIGTERM makes it stop its nats-server
        if proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
    RUNNING.clear()
    for state in made:
        with contextlib.suppress(OSError, ValueError):
            record = _record(state)
            for key in ("host_pid", "nats_pid"):
                with contextlib.suppress(OSError, TypeError):
                    os.kill(int(record[key]), signal.SIGKILL)


def _down(state: Path) -> None:
    """Stop the host at once (SIGKILL), then `lattice down` stops the nats-server it recorded.
    (A graceful host stop is test_ctl_cli's business; this keeps these tests quick.)"""
    with contextlib.suppress(OSError):
        os.kill(int(_record(state)["host_pid"]), signal.SIGKILL)
    down = _lattice("down", state=state)
    assert down.returncode == 0, down.stderr
    assert "nats-server" in down.stdout and not (state / "up.json").exists()


async def _host_ids(url: str, count: int, timeout: float = 15.0) -> dict[str, dict]:
    """Hosts answering a ping at ``url``, once ``count`` of them do."""
    from lattice.ctl import CtlClient

    nc = await nats.connect(url)
    try:
        ctl = CtlClient(nc, "default", timeout=2.0)
        deadline = time.monotonic() + timeout
        while True:
            hosts = {h.id: h.labels for h in await ctl.ping_hosts(0.5)}
            if len(hosts) >= count or time.monotonic() > deadline:
                return hosts
    finally:
        await nc.close()


async def test_an_edge_up_behind_a_leaf_node_of_a_hub_up(tmp_path: Path, states) -> None:
    hub_state, edge_state = tmp_path / "hub", tmp_path / "edge"
    states.extend([hub_state, edge_state])
    hub_port, leaf_port, edge_port = free_port(), free_port(), free_port()
    hub = _lattice("up", "--detach", "--json", "--nats-port", str(hub_port), "--js-domain", "hub",
                   "--leaf-port", str(leaf_port), "--label", "site=hub", state=hub_state)
    assert hub.returncode == 0, hub.stderr
    seed = (hub_state / "cluster.nk").read_text().strip()
    edge = _lattice("up", "--detach", "--json", "--nats-port", str(edge_port),
                    "--leaf-remote", f"127.0.0.1:{leaf_port}", "--nats-js-domain", "edge",
                    "--js-domain", "hub", "--cluster-seed", seed, "--label", "site=edge",
                    state=edge_state)
    assert edge.returncode == 0, edge.stderr
    record = json.loads(edge.stdout)
    assert record["js_domain"] == "hub" and "leaf node of" in record["topology"][0]
    assert (edge_state / "cluster.nk").read_text().strip() == seed  # one lattice, one seed
    conf = (edge_state / "nats" / "nats-server.conf").read_text()
    assert 'domain: "edge"' in conf and f"nats-leaf://127.0.0.1:{leaf_port}" in conf

    # Both hosts are one lattice: the hub sees the edge host across the leaf connection...
    hosts = await _host_ids(f"nats://127.0.0.1:{hub_port}", 2)
    assert {labels.get("site") for labels in hosts.values()} == {"hub", "edge"}
    # ...and the edge host keeps the lattice state in the hub's domain, not in its own.
    nc = await nats.connect(f"nats://127.0.0.1:{edge_port}")
    try:
        assert await nc.jetstream(domain="hub").stream_info("KV_LATTICEDATA_default")
        own = [s.config.name for s in await nc.jetstream().streams_info()]
        assert not any(name.startswith("KV_LATTICEDATA") for name in own), own
    finally:
        await nc.close()
    _down(edge_state)
    _down(hub_state)


async def test_two_up_nodes_form_a_cluster(tmp_path: Path, states) -> None:
    a_state, b_state = tmp_path / "a", tmp_path / "b"
    states.extend([a_state, b_state])
    ports = [free_port() for _ in range(4)]  # client a, client b, route a, route b
    routes = f"127.0.0.1:{ports[2]},127.0.0.1:{ports[3]}"
    seed = KeyPair.generate(KeyRole.CLUSTER).seed
    # Started together: a new cluster's JetStream answers once every node in --routes runs,
    # and each `up` waits for it before starting its host.
    runs = [_lattice("up", "--detach", "--json", "--nats-port", str(ports[i]), "--cluster",
                     "lc", "--routes", routes, "--cluster-port", str(ports[2 + i]),
                     "--js-replicas", "2", "--cluster-seed", seed, state=state, wait=False)
            for i, state in enumerate((a_state, b_state))]
    for run in runs:
        out, err = run.communicate(timeout=90)
        assert run.returncode == 0, err
        assert json.loads(out)["topology"][0].startswith("cluster lc")
    hosts = await _host_ids(f"nats://127.0.0.1:{ports[0]}", 2)
    assert len(hosts) == 2
    nc = await nats.connect(f"nats://127.0.0.1:{ports[1]}")
    try:
        info = await nc.jetstream().stream_info("KV_LATTICEDATA_default")
        assert info.config.num_replicas == 2 and info.cluster.name == "lc"
    finally:
        await nc.close()
    _down(a_state)
    _down(b_state)
