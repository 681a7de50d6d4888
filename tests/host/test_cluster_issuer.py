"""``lattice host --cluster-issuer``: trusting invocations signed by another cluster key.

Two hosts with different cluster seeds share one real nats-server: host A in this process, host
B a real ``lattice host`` process. An actor on A calls an actor and a provider on B, so B (and
the provider it runs) receive invocations signed by A's cluster key. Without
``--cluster-issuer`` B refuses them with the anti-forgery error of WIRE.md (``Issuer of this
invocation is not among the list of valid issuers``); restarted with ``--cluster-issuer <A's
public key>`` it accepts them. A malformed value is refused by the CLI before it connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

import contracts
from contracts.httpserver import HttpRequest
from contracts.keyvalue import GetResponse, SetRequest
from lattice.cli import main
from lattice.connect import NatsOptions, connect
from lattice.host import Host, HostConfig
from lattice.host.providers import derived_key
from lattice.keys import KeyPair, KeyRole
from lattice.rpc import Entity, RpcClient, RpcError
from tests.actors import forward_payload, signed
from tests.harness import until

pytestmark = pytest.mark.service

REPO = Path(__file__).resolve().parents[2]
LATTICE = "issuers"
KV = "wasmcloud:keyvalue"
UNTRUSTED = "Issuer of this invocation is not among the list of valid issuers"
HANDLE = contracts.operation("HttpServer.HandleRequest")
SET, GET = contracts.operation("KeyValue.Set"), contracts.operation("KeyValue.Get")
KVMEM = derived_key(b"kvmem").public_key


class HostProcess:
    """``lattice host`` as a user runs it, with its own cluster seed."""

    def __init__(self, url: str, cluster: KeyPair, state: Path, *extra: str) -> None:
        self.url, self.cluster, self.state, self.extra = url, cluster, state, extra
        self.key = KeyPair.generate(KeyRole.SERVER)
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def host_id(self) -> str:
        return self.key.public_key

    async def start(self, nc: Any) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        log = open(self.state / "host.log", "wb")  # noqa: SIM115 - closed when it stops
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lattice", "host", "--nats-url", self.url, "--lattice", LATTICE,
            "--cluster-seed", self.cluster.seed, "--host-seed", self.key.seed, *self.extra,
            stdout=asyncio.subprocess.DEVNULL, stderr=log, cwd=REPO,
            env={**os.environ, "LATTICE_STATE_DIR": str(self.state)})
        log.close()

        async def answers() -> bool:
            assert self.proc is not None and self.proc.returncode is None, self.log()
            with contextlib.suppress(Exception):
                await nc.request(f"wasmbus.ctl.{LATTICE}.get.{self.host_id}.inv", b"{}",
                                 timeout=0.5)
                return True
            return False

        await until(answers, timeout=30)

    def log(self) -> str:
        path = self.state / "host.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 20)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def ctl(nc: Any, *parts: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    reply = await nc.request(f"wasmbus.ctl.{LATTICE}." + ".".join(parts),
                             json.dumps(body or {}).encode(), timeout=10)
    return json.loads(reply.data)


async def start_actor(nc: Any, host_id: str, path: Path) -> str:
    ack = await ctl(nc, "cmd", host_id, "la", body={"actor_ref": str(path)})
    assert ack["accepted"], ack

    async def started() -> str | None:
        inv = await ctl(nc, "get", host_id, "inv")
        return next((a["id"] for a in inv["actors"] if a["image_ref"] == str(path)), None)

    return await until(started, timeout=30)


async def start_kvmem(nc: Any, host_id: str) -> None:
    ack = await ctl(nc, "cmd", host_id, "lp", body={"provider_ref": "kvmem"})
    assert ack["accepted"], ack

    async def running() -> bool:
        inv = await ctl(nc, "get", host_id, "inv")
        return any(p["id"] == KVMEM and p.get("state") == "running" for p in inv["providers"])

    await until(running, timeout=30)


@pytest.fixture
async def nc(nats_server: Any) -> Any:
    client = await connect(NatsOptions(url=nats_server.url), name="issuer-test")
    yield client
    await client.close()


async def test_a_foreign_cluster_is_refused_unless_trusted_with_cluster_issuer(
        nats_server: Any, nc: Any, tmp_path: Path) -> None:
    cluster_a, cluster_b = KeyPair.generate(KeyRole.CLUSTER), KeyPair.generate(KeyRole.CLUSTER)
    host_a = Host(HostConfig(nats=NatsOptions(url=nats_server.url), lattice=LATTICE,
                             cluster_seed=cluster_a.seed, state_dir=tmp_path / "a",
                             reconciler=False))
    echo_file, fwd_file = tmp_path / "echo.wasm", tmp_path / "forward.wasm"
    echo_file.write_bytes(signed("echo", caps=["wasmcloud:httpserver"]))
    fwd_file.write_bytes(signed("forward", caps=[KV]))
    me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
    as_a = RpcClient(nc, LATTICE, cluster_a, host_a.host_id, timeout=10)
    as_b = RpcClient(nc, LATTICE, cluster_b, host_a.host_id, timeout=10)
    hosts: list[HostProcess] = []
    await host_a.start()
    try:
        fwd = await start_actor(nc, host_a.host_id, fwd_file)

        async def b_side(*extra: str) -> str:
            """Host B (a process), running echo and kvmem; returns echo's key."""
            host_b = HostProcess(nats_server.url, cluster_b, tmp_path / f"b{len(hosts)}", *extra)
            hosts.append(host_b)
            await host_b.start(nc)
            echo = await start_actor(nc, host_b.host_id, echo_file)
            await start_kvmem(nc, host_b.host_id)
            return echo

        async def a_calls_echo_on_b(echo: str) -> Any:
            request = HANDLE.encode_input(HttpRequest(method="GET", path="/from-a"))
            out = await as_a.invoke(me, Entity.actor(fwd), HANDLE.name,
                                    forward_payload("default", echo, request))
            return HANDLE.decode_output(out)

        async def a_calls_kvmem_on_b(operation: Any, value: Any) -> Any:
            out = await as_a.invoke(me, Entity.actor(fwd), operation.name, forward_payload(
                "default", KV, operation.encode_input(value)))
            return operation.decode_output(out)

        # B trusts only its own cluster: A's actor reaches it, and is refused, by B and by the
        # provider B runs (providers get the host's trusted issuers in their HostData).
        echo = await b_side()
        ack = await ctl(nc, "linkdefs", "put", body={
            "actor_id": fwd, "provider_id": KVMEM, "contract_id": KV})
        assert ack["accepted"], ack
        await until(lambda: host_a.store.links.get(fwd, KV, "default"))
        with pytest.raises(RpcError, match=UNTRUSTED):
            await a_calls_echo_on_b(echo)
        with pytest.raises(RpcError, match=UNTRUSTED):
            await a_calls_kvmem_on_b(SET, SetRequest("k", "v"))
        # B itself is fine: an invocation signed with B's own cluster key is served.
        direct = await as_b.invoke(me, Entity.actor(echo), HANDLE.name,
                                   HANDLE.encode_input(HttpRequest(method="GET", path="/own")))
        assert json.loads(HANDLE.decode_output(direct).body)["path"] == "/own"
        await hosts[-1].stop()
        assert hosts[-1].proc is not None and hosts[-1].proc.returncode == 0, hosts[-1].log()

        # The same B, started with --cluster-issuer <A's public key>: accepted.
        echo = await b_side("--cluster-issuer", cluster_a.public_key)
        reply = await until(lambda: _quietly(a_calls_echo_on_b(echo)), timeout=15)
        assert reply.status_code == 200
        assert json.loads(reply.body)["path"] == "/from-a"
        await _eventually_ok(lambda: a_calls_kvmem_on_b(SET, SetRequest("k", "v")))
        assert await a_calls_kvmem_on_b(GET, "k") == GetResponse("v", True)
        # and B says whom it trusts
        [b_info] = [h for h in await _pongs(nc) if h["id"] == hosts[-1].host_id]
        assert set(b_info["cluster_issuers"].split(",")) == {cluster_a.public_key,
                                                            cluster_b.public_key}
    finally:
        for host in hosts:
            await host.stop()
        await host_a.stop()


async def _quietly(call: Any) -> Any:
    """The call's result, or None when it fails (for ``until``)."""
    try:
        return await call
    except RpcError:
        return None


async def _eventually_ok(make_call: Any, timeout: float = 15.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await make_call()
        except RpcError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


async def _pongs(nc: Any, wait: float = 1.0) -> list[dict[str, Any]]:
    """Every host's answer to the ctl ping (scatter-gather)."""
    inbox = nc.new_inbox()
    answers: list[dict[str, Any]] = []

    async def collect(msg: Any) -> None:
        answers.append(json.loads(msg.data))

    sub = await nc.subscribe(inbox, cb=collect)
    await nc.publish(f"wasmbus.ctl.{LATTICE}.ping.hosts", b"", reply=inbox)
    await asyncio.sleep(wait)
    await sub.unsubscribe()
    return answers


@pytest.mark.parametrize("kind", ["garbage", "account-key", "truncated"])
def test_a_malformed_cluster_issuer_is_refused_by_the_cli(
        capsys: pytest.CaptureFixture[str], nats_server: Any, kind: str) -> None:
    value = {"garbage": "bogus",
             "account-key": KeyPair.generate(KeyRole.ACCOUNT).public_key,  # a valid key, not C…
             "truncated": KeyPair.generate(KeyRole.CLUSTER).public_key[:-2]}[kind]
    good = KeyPair.generate(KeyRole.CLUSTER).public_key
    code = main(["host", "--nats-url", nats_server.url, "--lattice", LATTICE,
                 "--cluster-issuer", good, "--cluster-issuer", value])
    err = capsys.readouterr().err
    assert code != 0
    assert f"--cluster-issuer {value!r} is not a cluster public key (C…)" in err


def test_a_cluster_seed_given_as_issuer_is_refused_without_echoing_it(
        capsys: pytest.CaptureFixture[str], nats_server: Any) -> None:
    seed = KeyPair.generate(KeyRole.CLUSTER).seed
    code = main(["host", "--nats-url", nats_server.url, "--cluster-issuer", seed])
    err = capsys.readouterr().err
    assert code != 0
    assert "--cluster-issuer takes a cluster public key (C…), not a seed" in err
    assert seed not in err and seed[:12] not in err
