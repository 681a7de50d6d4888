"""Fixtures for artifact tests: a real OCI registry (Debian's ``docker-registry``, the CNCF
distribution registry) on a free loopback port, with and without htpasswd auth; a fresh
artifact cache per test; and a way to run the ``lattice`` CLI from async tests."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lattice.artifacts.credentials import clear_registry_credentials
from lattice.cli import main
from lattice.ctl import Event, EventStream
from lattice.natsd import free_port, port_open

REQUEST = bytes.fromhex(  # HttpRequest GET /foo?a=1, body "hello" (msgpack)
    "85a66d6574686f64a3474554a470617468a42f666f6fab7175657279537472696e67a3613d31a6686561646572"
    "81a661636365707491a32a2f2aa4626f6479c40568656c6c6f")

USER, PASSWORD = "alice", "s3cret-pw"


@dataclass
class Registry:
    address: str            # 127.0.0.1:PORT
    root: Path              # the registry's storage directory
    user: str | None = None
    password: str | None = None

    def blob_file(self, digest: str) -> Path:
        hexa = digest.removeprefix("sha256:")
        return (self.root / "docker" / "registry" / "v2" / "blobs" / "sha256" / hexa[:2] / hexa
                / "data")


def _bcrypt(password: str) -> str:
    try:  # the standard library's crypt (libxcrypt does bcrypt); deprecated but present in 3.11
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 5))
        if hashed and hashed.startswith("$2"):
            return hashed
    except (ImportError, AttributeError, ValueError, OSError):
        pass
    try:
        import bcrypt
    except ImportError:
        pytest.skip("no bcrypt implementation (crypt module or bcrypt package) for htpasswd")
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()


def _start_registry(folder: Path, *, auth: bool) -> Iterator[Registry]:
    binary = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    if not os.access(binary, os.X_OK):
        message = ("the OCI registry binary docker-registry is missing: install Debian's "
                   "package with `apt-get install -y docker-registry` (.ci/run does)")
        if os.environ.get("LATTICE_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    port = free_port()
    storage = folder / "storage"
    storage.mkdir()
    auth_section = ""
    if auth:
        htpasswd = folder / "htpasswd"
        htpasswd.write_text(f"{USER}:{_bcrypt(PASSWORD)}\n")
        auth_section = f"auth:\n  htpasswd:\n    realm: lattice-test\n    path: {htpasswd}\n"
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  secret: lattice-test-secret\n" + auth_section)
    log = (folder / "registry.log").open("wb")
    proc = subprocess.Popen([binary, "serve", str(config)], stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                output = (folder / "registry.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"docker-registry did not come up on 127.0.0.1:{port}:\n{output}")
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", storage, USER if auth else None,
                       PASSWORD if auth else None)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An anonymous OCI registry on loopback (plain HTTP)."""
    yield from _start_registry(tmp_path_factory.mktemp("registry"), auth=False)


@pytest.fixture(scope="module")
def auth_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """An OCI registry that wants user ``alice`` (htpasswd, bcrypt)."""
    yield from _start_registry(tmp_path_factory.mktemp("registry-auth"), auth=True)


@pytest.fixture(autouse=True)
def artifact_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh (empty) cache per test, so every fetch really travels; no OCI credentials from
    the environment or earlier tests."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("LATTICE_CACHE_DIR", str(cache))
    for var in ("LATTICE_OCI_USER", "LATTICE_OCI_PASSWORD", "LATTICE_OCI_REGISTRY",
                "LATTICE_OCI_INSECURE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.docker/config.json
    clear_registry_credentials()
    yield cache
    clear_registry_credentials()


class Cli:
    """Runs ``lattice …`` in a worker thread (the CLI runs its own event loop)."""

    def __init__(self, capsys: Any, nats_url: str) -> None:
        self.capsys, self.nats_url = capsys, nats_url

    async def __call__(self, *argv: str, ok: bool = True, nats: bool = True) -> tuple[str, str]:
        args = [*argv, "--nats-url", self.nats_url] if nats else list(argv)
        code = await asyncio.to_thread(main, args)
        out, err = self.capsys.readouterr()
        assert (code == 0) == ok, f"lattice {' '.join(args)} exited {code}: {err}"
        return out, err


@pytest.fixture
def cli(capsys: Any, nats_server: Any) -> Cli:
    return Cli(capsys, nats_server.url)


async def start_failure(lattice: Any, host: Any, verb: str, body: dict[str, Any],
                        failure: str, ref_field: str) -> Event:
    """Send a start command expected to fail; the host's failure event."""
    ref = body[ref_field]
    async with EventStream(lattice.nc, "default", {failure}) as stream:
        ack = await lattice.ctl("cmd", host.host_id, verb, body=body)
        assert ack["accepted"], ack
        return await stream.wait_for(lambda e: e.data.get(ref_field) == ref, 30)
