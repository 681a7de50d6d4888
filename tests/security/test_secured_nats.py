"""Lattice on a NATS secured the way production ones are: decentralized JWT auth (operator →
account → user, memory resolver, JetStream for the lattice's account) and TLS with a private CA
(plus one server that wants client certificates).

Everything runs as a user runs it — ``lattice host`` and CLI commands as subprocesses with the
connection flags — except the messaging test, which drives an in-process host to observe what
the messaging-nats provider process delivers. Failures must be one clear ``error:`` line and a
non-zero exit, never a traceback or a hang.
"""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

import contracts
from actors import ROOT as ACTORS
from contracts.messaging import CONTRACT_ID, PUBLISH, PubMessage, SubMessage
from lattice.connect import NatsOptions, connect, settle
from lattice.host import Host, HostConfig
from lattice.keys import KeyPair, KeyRole
from lattice.rpc import Entity, RpcClient
from tests.harness import TAP_CONTRACT, Lattice, TapProvider, eventually, until
from tests.providers_msg.test_messaging_nats import bodies, deliveries, eventually_true
from tests.security.conftest import Cli, Hosts, Secured

pytestmark = pytest.mark.service

ECHO = str(ACTORS / "echo-wasmbus" / "echo.wasm")
REQUEST = '{"method": "GET", "path": "/secured", "queryString": "", "body": "yo"}'


def ok(run: subprocess.CompletedProcess[str]) -> str:
    assert run.returncode == 0, f"exit {run.returncode}\nstdout: {run.stdout}\nstderr: {run.stderr}"
    clean(run)
    return run.stdout


def clean(run: subprocess.CompletedProcess[str]) -> None:
    """No traceback, and no library noise (asyncio's TLS warnings) for the user to read."""
    assert "Traceback" not in run.stderr + run.stdout, run.stderr
    assert "WARNING" not in run.stderr, run.stderr


def refused(run: subprocess.CompletedProcess[str]) -> str:
    """The one-line error of a failed command."""
    assert run.returncode == 1, f"exit {run.returncode}\nstdout: {run.stdout}\nstderr: {run.stderr}"
    clean(run)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), run.stderr
    return lines[0]


def listed_hosts(cli: Cli, *argv: str, env: dict[str, str] | None = None,
                 expect: str) -> list[dict[str, Any]]:
    """`get hosts --json` until host ``expect`` answers the ping (a busy machine may make a
    running host miss one short ping window)."""
    deadline = time.monotonic() + 20
    while True:
        hosts = json.loads(ok(cli("get", "hosts", "--json", "--wait", "0.5", *argv, env=env)))
        if any(h["id"] == expect for h in hosts) or time.monotonic() > deadline:
            return hosts


def start_call_echo(cli: Cli, flags: list[str], lattice: str, host_id: str) -> None:
    """`get hosts` lists the host; `start actor` runs echo there; `call` reaches it."""
    common = [*flags, "--lattice", lattice]
    assert [h["id"] for h in listed_hosts(cli, *common, expect=host_id)] == [host_id]
    started = json.loads(ok(cli("start", "actor", ECHO, "--host-id", host_id, "--json",
                                "--timeout", "10", *common)))
    assert started["name"] == "echo" and started["host_id"] == host_id
    reply = json.loads(ok(cli("call", started["actor_id"], "HttpServer.HandleRequest",
                              "--data", REQUEST, *common)))
    assert reply["statusCode"] == 200
    assert json.loads(reply["body"])["path"] == "/secured"  # echo's answer, through the host


# ---- a host and the CLI on the secured NATS -------------------------------------------------


def test_host_and_cli_with_a_creds_file(secured: Secured, hosts: Hosts, cli: Cli) -> None:
    host = hosts.start(*secured.creds_flags())
    host_id = host.wait_running()
    start_call_echo(cli, secured.creds_flags(), hosts.lattice, host_id)


def test_host_and_cli_with_jwt_and_seed(secured: Secured, hosts: Hosts, cli: Cli) -> None:
    host = hosts.start(*secured.jwt_flags())
    host_id = host.wait_running()
    start_call_echo(cli, secured.jwt_flags(), hosts.lattice, host_id)
    # The same credentials from the environment (how `lattice up --detach` hands them on).
    env = {"LATTICE_NATS_JWT": secured.lattice_user.jwt,
           "LATTICE_NATS_SEED": secured.lattice_user.seed, "LATTICE_TLS_CA": str(secured.pki.ca)}
    listed = listed_hosts(cli, "--nats-url", secured.url, "--lattice", hosts.lattice, env=env,
                          expect=host_id)
    assert [h["id"] for h in listed] == [host_id]


def test_host_and_cli_with_a_client_certificate(mutual: Secured, hosts: Hosts,
                                                cli: Cli) -> None:
    pki = mutual.pki
    client_cert = ["--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key)]
    host = hosts.start(*mutual.creds_flags(), *client_cert)
    host_id = host.wait_running()
    start_call_echo(cli, [*mutual.creds_flags(), *client_cert], hosts.lattice, host_id)
    # Without a client certificate this server closes the connection during the handshake.
    error = refused(cli("get", "hosts", "--wait", "0.5", *mutual.creds_flags()))
    assert f"the TLS handshake with NATS at {mutual.url} failed" in error, error
    assert "the server wants a client certificate" in error and "--tls-cert" in error, error


def test_up_detached_joins_the_secured_nats(secured: Secured, cli: Cli, tmp_path: Path) -> None:
    """`lattice up` finds the secured NATS answering, checks its JetStream with the flags and
    hands them to the host it starts; `lattice down` stops that host."""
    lattice = secured.lattice_prefix()
    env = {"LATTICE_STATE_DIR": str(tmp_path / "up-state")}
    record: dict[str, Any] = {}
    try:
        record = json.loads(ok(cli("up", "--detach", "--json", *secured.creds_flags(),
                                   "--lattice", lattice, env=env)))
        assert record["nats_pid"] is None  # reused, not started
        start_call_echo(cli, secured.creds_flags(), lattice, record["host_id"])
    finally:
        down = cli("down", "--json", env=env)  # stops the host even if a step above failed
    stopped = json.loads(ok(down))["stopped"]
    assert [(s["what"], s["id"]) for s in stopped] == [("host", record["host_id"])]


# ---- wrong or missing credentials and CAs: a clear message, exit 1 ---------------------------


def _creds_case(sec: Secured, case: str, tmp: Path) -> tuple[list[str], list[str]]:
    """(flags, substrings the error must contain)."""
    tls = ["--nats-url", sec.url, "--tls-ca", str(sec.pki.ca)]
    if case == "none":
        return tls, ["wants credentials and we gave none", "Authorization Violation",
                     "--nats-creds"]
    if case == "unknown-account":
        return [*tls, "--nats-creds", str(sec.intruder.creds)], [
            "refused our credentials", "Authorization Violation", "--nats-creds"]
    if case == "seed-of-another-user":
        return [*tls, "--nats-creds", str(sec.mismatched)], [
            "refused our credentials", "Authorization Violation"]
    if case == "jwt-without-seed":
        return [*tls, "--nats-jwt", sec.lattice_user.jwt], ["--nats-jwt and --nats-seed go "
                                                           "together"]
    if case == "not-a-creds-file":
        path = tmp / "notes.creds"
        path.write_text("just some text\n")
        return [*tls, "--nats-creds", str(path)], [f"{path} is not a NATS .creds file"]
    if case == "missing-creds-file":
        path = tmp / "absent.creds"
        return [*tls, "--nats-creds", str(path)], [f"cannot read NATS credentials {path}",
                                                   "No such file"]
    raise AssertionError(case)


def _tls_case(sec: Secured, case: str, tmp: Path) -> tuple[list[str], list[str]]:
    creds = ["--nats-url", sec.url, "--nats-creds", str(sec.lattice_user.creds)]
    handshake = [f"the TLS handshake with NATS at {sec.url} failed",
                 "certificate verify failed: unable to get local issuer certificate", "--tls-ca"]
    if case == "no-ca":  # the system's CAs do not know the test CA
        return creds, handshake
    if case == "wrong-ca":
        return [*creds, "--tls-ca", str(sec.other_ca)], handshake
    if case == "missing-ca-file":
        path = tmp / "absent-ca.pem"
        return [*creds, "--tls-ca", str(path)], [f"cannot load the TLS CA certificate {path}",
                                                 "No such file"]
    if case == "ca-file-not-a-certificate":
        return [*creds, "--tls-ca", str(sec.lattice_user.creds)], [
            f"cannot load the TLS CA certificate {sec.lattice_user.creds}: it holds no PEM "
            "certificate"]
    if case == "key-not-matching-cert":
        return [*creds, "--tls-ca", str(sec.pki.ca), "--tls-cert", str(sec.pki.client_cert),
                "--tls-key", str(sec.pki.server_key)], [
            f"cannot load the TLS client certificate {sec.pki.client_cert} and key "
            f"{sec.pki.server_key}", "key values mismatch"]
    if case == "key-without-cert":
        return [*creds, "--tls-ca", str(sec.pki.ca), "--tls-key", str(sec.pki.client_key)], [
            "--tls-key needs --tls-cert"]
    raise AssertionError(case)


CREDS_CASES = ["none", "unknown-account", "seed-of-another-user", "jwt-without-seed",
               "not-a-creds-file", "missing-creds-file"]
TLS_CASES = ["no-ca", "wrong-ca", "missing-ca-file", "ca-file-not-a-certificate",
             "key-not-matching-cert", "key-without-cert"]


@pytest.mark.parametrize("case", CREDS_CASES)
def test_cli_refuses_bad_credentials(secured: Secured, cli: Cli, tmp_path: Path,
                                     case: str) -> None:
    flags, expected = _creds_case(secured, case, tmp_path)
    error = refused(cli("get", "hosts", "--wait", "0.5", *flags))
    assert all(text in error for text in expected), error


@pytest.mark.parametrize("case", TLS_CASES)
def test_cli_refuses_bad_tls(secured: Secured, cli: Cli, tmp_path: Path, case: str) -> None:
    flags, expected = _tls_case(secured, case, tmp_path)
    error = refused(cli("get", "hosts", "--wait", "0.5", *flags))
    assert all(text in error for text in expected), error


@pytest.mark.parametrize("case", ["creds:unknown-account", "creds:none", "tls:no-ca",
                                  "tls:wrong-ca"])
def test_host_refuses_bad_credentials_and_tls(secured: Secured, hosts: Hosts, tmp_path: Path,
                                              case: str) -> None:
    kind, name = case.split(":")
    flags, expected = (_creds_case if kind == "creds" else _tls_case)(secured, name, tmp_path)
    host = hosts.start(*flags)
    assert host.wait_exit() == 1, host.output
    output = host.output
    assert "Traceback" not in output and "WARNING" not in output, output
    (line,) = output.strip().splitlines()
    assert line.startswith("error: ") and all(text in line for text in expected), output


# ---- messaging-nats: a provider process on the secured lattice, link credentials and TLS ------


class SecuredLattice(Lattice):
    """tests.harness.Lattice with every connection (hosts, the test client) authenticated."""

    def __init__(self, sec: Secured, tmp: Path) -> None:
        super().__init__(sec.server, tmp)
        self.nats = NatsOptions(url=sec.url, creds=str(sec.lattice_user.creds),
                                tls_ca=str(sec.pki.ca))

    async def host(self, **overrides: Any) -> Host:
        config = HostConfig(nats=self.nats, cluster_seed=self.cluster.seed,
                            provider_health_first=0.3, provider_health_interval=1.0,
                            state_dir=self.tmp / f"host{len(self.hosts)}", **overrides)
        host = Host(config)
        await host.start()
        self.hosts.append(host)
        return host

    async def connect(self) -> None:
        self.nc = await connect(self.nats, name="test-client")
        self.rpc = RpcClient(self.nc, "default", self.cluster,
                             KeyPair.generate(KeyRole.SERVER).public_key, timeout=10.0)
        self.me = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)


def refusals(caplog: pytest.LogCaptureFixture) -> dict[str, str]:
    """actor → error of every "link refused" record (relayed from the provider process)."""
    return {getattr(r, "actor", ""): str(getattr(r, "error", ""))
            for r in caplog.records if r.getMessage() == "link refused by the provider"}


async def test_messaging_nats_with_link_credentials_and_tls(
        secured: Secured, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    TapProvider.calls.clear()
    # The harness speaks to lattice "default": on this shared server, only this test uses it.
    lat = SecuredLattice(secured, tmp_path)
    await lat.connect()
    app = await connect(NatsOptions(url=secured.url, jwt=secured.app_user.jwt,
                                    seed=secured.app_user.seed, tls_ca=str(secured.pki.ca)),
                        name="app-client")
    try:
        host = await lat.host()
        # A child process: it joins the lattice with the host's JWT, seed and CA (HostData).
        provider = await lat.start_provider(host, "messaging-nats")
        tap = await lat.start_provider(host, "tap", provider_cls=TapProvider)
        link = {"URI": secured.url, "CLIENT_JWT": secured.app_user.jwt,
                "CLIENT_SEED": secured.app_user.seed, "TLS_CA_FILE": str(secured.pki.ca)}

        # Inbound: OTHER's subject reaches the actor only over the link's own connection
        # (accounts share no subjects: the lattice's APP user could not see it).
        subscriber = await lat.start_actor(
            host, lat.module("tap", caps=[CONTRACT_ID, TAP_CONTRACT]))
        await lat.link(subscriber, tap, TAP_CONTRACT)
        await lat.link(subscriber, provider, CONTRACT_ID, SUBSCRIPTION="orders.in", **link)

        async def probed() -> bool:
            await app.publish("orders.in", b"probe")
            await app.flush()
            return bool(deliveries(subscriber))

        await eventually_true(probed, timeout=15)
        await app.publish("orders.in", b"order-1", reply="orders.reply")
        await app.flush()
        await until(lambda: bodies(subscriber, b"order-"))
        assert [m for m in deliveries(subscriber) if m.body == b"order-1"] == [
            SubMessage(subject="orders.in", reply_to="orders.reply", body=b"order-1")]

        # Outbound: the actor's Publish goes out in the OTHER account.
        outbox = await app.subscribe("orders.out")
        await settle(app)
        publisher = await lat.forwarder(host, CONTRACT_ID)
        await lat.link(publisher, provider, CONTRACT_ID, **link)
        payload = contracts.operation(PUBLISH).encode_input(
            PubMessage(subject="orders.out", body=b"shipped"))
        await eventually(lambda: lat.host_call(publisher, CONTRACT_ID, PUBLISH, payload),
                         timeout=15)
        assert (await outbox.next_msg(timeout=5)).data == b"shipped"

        # No link values: the provider connects to the lattice's NATS with the lattice's
        # credentials and TLS files.
        inbox = await lat.nc.subscribe("lattice.out")
        await settle(lat.nc)
        default = await lat.forwarder(host, CONTRACT_ID)
        await lat.link(default, provider, CONTRACT_ID)
        payload = contracts.operation(PUBLISH).encode_input(
            PubMessage(subject="lattice.out", body=b"in-app"))
        await eventually(lambda: lat.host_call(default, CONTRACT_ID, PUBLISH, payload),
                         timeout=15)
        assert (await inbox.next_msg(timeout=5)).data == b"in-app"

        # A wrong CA or wrong credentials: the link is refused, saying why.
        bad = {
            "wrong-ca": {**link, "TLS_CA_FILE": str(secured.other_ca)},
            "intruder": {**link, "CLIENT_JWT": secured.intruder.jwt,
                         "CLIENT_SEED": secured.intruder.seed},
        }
        actors = {}
        for what, values in bad.items():
            actors[what] = KeyPair.generate(KeyRole.MODULE).public_key
            await lat.link(actors[what], provider, CONTRACT_ID, **values)
        await until(lambda: set(actors.values()) <= refusals(caplog).keys(), timeout=20)
        errors = refusals(caplog)
        assert "TLS handshake" in errors[actors["wrong-ca"]], errors
        assert "certificate verify failed" in errors[actors["wrong-ca"]], errors
        assert "TLS_CA_FILE" in errors[actors["wrong-ca"]], errors
        assert "refused our credentials" in errors[actors["intruder"]], errors
        assert "CLIENT_JWT" in errors[actors["intruder"]], errors
    finally:
        await app.close()
        await lat.close()
