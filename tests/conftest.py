"""Test-session wiring shared by every test.

* Keeps each session hermetic: module cache and key directories point into a temp dir.
* Enforces the CI rule that a service-backed test (marked ``service``) never skips when
  ``LATTICE_REQUIRE_SERVICES=1`` (set by .ci/run): such a skip fails the run.
* Locates ../shared (the wire documents and recorded vectors) once for all tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """../shared next to the repo (or $LATTICE_SHARED_DIR). Tests that need it fail without it."""
    override = os.environ.get("LATTICE_SHARED_DIR")
    path = Path(override) if override else REPO.parent / "shared"
    if not (path / "vectors").is_dir():
        pytest.fail(f"the shared wire documents and vectors are missing: expected {path}/vectors "
                    "(set LATTICE_SHARED_DIR to their location)")
    return path


@pytest.fixture
def nats_server(tmp_path_factory: pytest.TempPathFactory):
    """A fresh nats-server with JetStream on a free loopback port, stopped after the test."""
    from lattice.natsd import NatsServer

    server = NatsServer(tmp_path_factory.mktemp("nats")).start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()


@pytest.fixture(autouse=True, scope="session")
def _hermetic_dirs(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("lattice-home")
    saved = {k: os.environ.get(k) for k in ("LATTICE_CACHE_DIR", "LATTICE_KEYS_DIR",
                                            "LATTICE_STATE_DIR")}
    os.environ["LATTICE_CACHE_DIR"] = str(base / "cache")
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


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_services and os.environ.get("LATTICE_REQUIRE_SERVICES") == "1":
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    if _skipped_services and os.environ.get("LATTICE_REQUIRE_SERVICES") == "1":
        terminalreporter.write_line(
            "FAILED: service-backed tests were skipped (every service must be up in CI):",
            red=True)
        for nodeid in _skipped_services:
            terminalreporter.write_line(f"  {nodeid}", red=True)
