"""Test-session wiring shared by every test.

* Keeps each session hermetic: module cache and key directories point into a temp dir.
* Enforces the CI rule that a service-backed test never skips when ``LATTICE_REQUIRE_SERVICES=1``
  (set by .ci/run): the service fixtures fail instead of skipping, and any skip of a test marked
  ``service`` or raised while collecting fails the run.
* Loads the byte-exact vectors recorded from real actors (tests/data/vectors) for all tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[1]


# Recordings of real wasmCloud actors and published nkeys vectors: data, copied into the repo so a
# plain clone tests itself (tests/data/README.md says where they come from).
VECTORS = REPO / "tests" / "data" / "vectors"


def load_vectors(name: str) -> dict:
    """The ``cases`` of tests/data/vectors/NAME.json (a missing file fails the test)."""
    import json

    path = VECTORS / f"{name}.json"
    if not path.is_file():
        pytest.fail(f"recorded vectors missing: {path} (they are part of the repository)")
    return json.loads(path.read_text())["cases"]


def services_required() -> bool:
    """True under .ci/run: a service that is not there is a failure, never a skip."""
    return os.environ.get("LATTICE_REQUIRE_SERVICES") == "1"


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory):
    """A fresh nats-server with JetStream on a free loopback port, stopped after the test."""
    from lattice.natsd import NatsServer

    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.kill()


@pytest.fixture
async def lattice(nats_server, tmp_path):
    """A test lattice on a fresh nats-server (see tests/harness.py); hosts stop afterwards."""
    from tests.harness import Lattice, TapProvider

    TapProvider.calls.clear()
    lat = Lattice(nats_server, tmp_path)
    await lat.connect()
    yield lat
    await lat.close()


def service_missing(what: str) -> NoReturn:
    """Skip a test whose real service is not there; under LATTICE_REQUIRE_SERVICES=1 fail it.

    Every service fixture goes through here, so the CI rule holds whether or not a test remembers
    its ``service`` marker."""
    message = f"{what} is not reachable (CI starts it; see .ci/run)"
    if services_required():
        pytest.fail(f"{message}; LATTICE_REQUIRE_SERVICES=1 forbids skipping it", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def redis_url():
    """A real Redis (127.0.0.1:6379 or $LATTICE_TEST_REDIS), database 15 flushed per test."""
    import redis

    base = os.environ.get("LATTICE_TEST_REDIS", "redis://127.0.0.1:6379")
    url = f"{base.rstrip('/')}/15"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.exceptions.ConnectionError:
        service_missing(f"Redis at {base}")
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
async def postgres_dsn():
    """A fresh PostgreSQL database (trust auth on 127.0.0.1:5432 or $LATTICE_TEST_POSTGRES),
    dropped after the test."""
    import uuid

    import asyncpg

    base = os.environ.get("LATTICE_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
    name = f"lattice_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(f"{base}/postgres", timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing(f"PostgreSQL at {base} ({exc})")
    await admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{base}/{name}"
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory):
    """moto's S3 server mode on a free loopback port (a real HTTP S3 endpoint, not a mock of
    boto); yields its URL. Credentials: any, e.g. AWS_ACCESS_KEY_ID=test."""
    import shutil
    import subprocess
    import sys
    import time

    from lattice.natsd import free_port, port_open

    port = free_port()
    exe = shutil.which("moto_server")
    argv = ([exe] if exe else [sys.executable, "-m", "moto.server"]) + [
        "-H", "127.0.0.1", "-p", str(port)]
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            service_missing("moto's S3 server")
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)
    log.close()


# Persistent across test runs (see _hermetic_dirs); $LATTICE_TEST_CACHE moves it.
TEST_CACHE = Path(os.environ.get("LATTICE_TEST_CACHE")
                  or Path.home() / ".cache" / "lattice-tests")




@pytest.fixture(autouse=True, scope="session")
def _hermetic_dirs(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("lattice-home")
    saved = {k: os.environ.get(k) for k in ("LATTICE_CACHE_DIR", "LATTICE_KEYS_DIR",
                                            "LATTICE_STATE_DIR")}
    # The cache is content-addressed (compiled artifacts by module hash and engine, builds by
    # source hash), so it is shared between runs: Python actors take ~20 s to build and compile
    # from scratch, and CI runs on the same machine.
    os.environ["LATTICE_CACHE_DIR"] = str(TEST_CACHE)
    os.environ["LATTICE_KEYS_DIR"] = str(base / "keys")
    os.environ["LATTICE_STATE_DIR"] = str(base / "state")
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def _restore_logging():
    """CLI tests run lattice.cli.main(), which configures logging for a whole process (root
    handler on the then-current stderr, logger levels); undo that after every test."""
    import logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level
              for name in list(logging.root.manager.loggerDict) if name.startswith("lattice")}
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("lattice"):
            logging.getLogger(name).setLevel(levels.get(name, logging.NOTSET))


_skipped_services: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and "service" in report.keywords:
        _skipped_services.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    # A module that skips itself while collecting (pytest.skip(allow_module_level=True),
    # importorskip) takes all its tests with it, unseen by the per-test rule above.
    if report.skipped:
        _skipped_services.append(f"{report.nodeid} (skipped while collecting)")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_services and services_required():
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _skipped_services and services_required():
        terminalreporter.write_line(
            "FAILED: service-backed tests were skipped (every service must be up in CI):",
            red=True)
        for nodeid in _skipped_services:
            terminalreporter.write_line(f"  {nodeid}", red=True)
