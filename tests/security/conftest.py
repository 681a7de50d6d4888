"""A real nats-server in operator mode (decentralized JWT auth) with TLS, and helpers to run
``lattice host`` and the CLI against it as subprocesses.

One server per module (its accounts live in memory; each test uses its own lattice prefix, so
what one test leaves in JetStream never meets another). The server trusts one operator whose
accounts are:

* ``SYS`` — the system account;
* ``APP`` — JetStream enabled: the lattice's account (user ``lattice``);
* ``OTHER`` — no JetStream: an application account (user ``app``) that only the
  messaging-nats provider's link credentials reach.

Users signed by an account the server never heard of (``intruder``) and a ``.creds`` file whose
seed belongs to another user (``mismatched``) are the wrong credentials.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer
from tests.conftest import REPO
from tests.security.natsauth import (
    Account,
    Operator,
    Pki,
    User,
    creds_text,
    make_ca,
    make_pki,
    tls_config,
)

# Variables a developer's shell may set that would change what the subprocesses connect with.
_AMBIENT = ("LATTICE_NATS_URL", "LATTICE_NATS_CREDS", "LATTICE_NATS_JWT", "LATTICE_NATS_SEED",
            "LATTICE_TLS_CA", "LATTICE_TLS_CERT", "LATTICE_TLS_KEY", "LATTICE_LATTICE",
            "LATTICE_CLUSTER_SEED", "LATTICE_HOST_SEED", "SSL_CERT_FILE", "SSL_CERT_DIR")
HOST_READY_TIMEOUT = 30.0
CLI_TIMEOUT = 60.0


@dataclass
class Secured:
    """The secured server and everything a client needs (or lacks) to use it."""

    server: NatsServer
    pki: Pki
    other_ca: Path                 # a CA that signed nothing the server uses
    operator: Operator
    app: Account
    other: Account
    lattice_user: User             # APP account: what hosts and the CLI use
    app_user: User                 # OTHER account: messaging-nats link credentials
    intruder: User                 # signed by an account the server does not know
    mismatched: Path               # lattice_user's JWT with another user's seed
    directory: Path
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def url(self) -> str:
        return self.server.url

    def lattice_prefix(self) -> str:
        """A lattice prefix of its own for each test on this shared server."""
        return f"sec{next(self._names)}"

    def creds_flags(self) -> list[str]:
        return ["--nats-url", self.url, "--nats-creds", str(self.lattice_user.creds),
                "--tls-ca", str(self.pki.ca)]

    def jwt_flags(self) -> list[str]:
        return ["--nats-url", self.url, "--nats-jwt", self.lattice_user.jwt,
                "--nats-seed", self.lattice_user.seed, "--tls-ca", str(self.pki.ca)]


def start_secured(directory: Path, *, verify_clients: bool) -> Secured:
    directory.mkdir(parents=True, exist_ok=True)
    pki = make_pki(directory / "pki")
    operator = Operator.create()
    app = operator.account("APP", jetstream=True)
    other = operator.account("OTHER", jetstream=False)
    stranger = Operator.create("stranger").account("STRANGER", jetstream=False)
    lattice_user = app.user("lattice", directory)
    mismatched = directory / "mismatched.creds"
    mismatched.write_text(creds_text(lattice_user.jwt, KeyPair.generate(KeyRole.USER).seed))
    config = (operator.server_config(directory, [app, other])
              + tls_config(pki, verify_clients=verify_clients))
    server = NatsServer(directory / "nats", extra_config=config).start()
    return Secured(server=server, pki=pki, other_ca=make_ca(directory, "other-ca"),
                   operator=operator, app=app, other=other, lattice_user=lattice_user,
                   app_user=other.user("app", directory),
                   intruder=stranger.user("intruder", directory), mismatched=mismatched,
                   directory=directory)


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """nats-server: operator/account/user JWTs (memory resolver), JetStream for APP, TLS."""
    sec = start_secured(tmp_path_factory.mktemp("secured-nats"), verify_clients=False)
    yield sec
    sec.server.stop()


@pytest.fixture(scope="module")
def mutual(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """The same, but the server also wants a client certificate signed by the test CA."""
    sec = start_secured(tmp_path_factory.mktemp("mtls-nats"), verify_clients=True)
    yield sec
    sec.server.stop()


# ---- subprocesses ---------------------------------------------------------------------------


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _AMBIENT}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


@dataclass
class Cli:
    """Runs ``python -m lattice …`` as a user would; every run must end on its own."""

    cluster_seed: str

    def __call__(self, *argv: str, env: dict[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "lattice", *argv], capture_output=True, text=True,
            timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL,
            env=subprocess_env(LATTICE_CLUSTER_SEED=self.cluster_seed, **(env or {})))


class HostProcess:
    """``lattice host …`` in the background; :meth:`wait_running` or :meth:`wait_exit`."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "lattice", "host", *argv], stdout=out,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_running(self) -> str:
        """The host id, once the host says it runs (it has joined NATS and JetStream)."""
        deadline = time.monotonic() + HOST_READY_TIMEOUT
        while True:
            for line in self.output.splitlines():
                if line.startswith("Host ") and line.endswith(" is running"):
                    return line.split()[1]
            if self.proc.poll() is not None:
                raise AssertionError(f"lattice host exited with {self.proc.returncode}:\n"
                                     f"{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"lattice host did not start:\n{self.output}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float = HOST_READY_TIMEOUT) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"lattice host is still running:\n{self.output}") from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@dataclass
class Hosts:
    """Starts ``lattice host`` processes for one test (all stopped afterwards)."""

    directory: Path
    lattice: str
    cluster_seed: str
    started: list[HostProcess] = field(default_factory=list)

    def start(self, *argv: str) -> HostProcess:
        n = len(self.started)
        env = subprocess_env(LATTICE_CLUSTER_SEED=self.cluster_seed,
                             LATTICE_STATE_DIR=str(self.directory / f"host{n}-state"))
        host = HostProcess([*argv, "--lattice", self.lattice], self.directory / f"host{n}.log",
                           env)
        self.started.append(host)
        return host

    def stop(self) -> None:
        for host in self.started:
            with contextlib.suppress(Exception):
                host.stop()


@pytest.fixture
def cluster_seed() -> str:
    """The lattice's cluster seed, shared by the test's hosts and CLI (``lattice call``)."""
    return KeyPair.generate(KeyRole.CLUSTER).seed


@pytest.fixture
def cli(cluster_seed: str) -> Cli:
    return Cli(cluster_seed)


@pytest.fixture
def hosts(secured: Secured, tmp_path: Path, cluster_seed: str) -> Iterator[Hosts]:
    group = Hosts(tmp_path, secured.lattice_prefix(), cluster_seed)
    yield group
    group.stop()
