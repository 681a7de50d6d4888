"""Fixtures for the runtime tests: Runtimes and LocalHosts that are always closed, with their
module cache in the test's tmp_path, and the recorded wasmbus vectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lattice.local import LocalHost
from lattice.runtime import Runtime, RuntimeConfig
from tests.conftest import load_vectors


def config(tmp_path: Path, **overrides) -> RuntimeConfig:
    settings = {"call_timeout": 10.0, "memory_limit": 64 << 20, "max_instances": 4,
                "cache_dir": tmp_path / "modules"}
    settings.update(overrides)
    return RuntimeConfig(**settings)


@pytest.fixture
async def make_runtime(tmp_path):
    """``make_runtime(**RuntimeConfig overrides)`` -> Runtime, closed after the test."""
    made: list[Runtime] = []

    def make(**overrides) -> Runtime:
        rt = Runtime(config(tmp_path, **overrides))
        made.append(rt)
        return rt

    yield make
    for rt in made:
        await rt.close()


@pytest.fixture
async def runtime(make_runtime) -> Runtime:
    return make_runtime()


@pytest.fixture
async def make_host(tmp_path):
    """``make_host(enforce_builtin_caps=True, **RuntimeConfig overrides)`` -> LocalHost."""
    made: list[LocalHost] = []

    def make(*, enforce_builtin_caps: bool = True, **overrides) -> LocalHost:
        host = LocalHost(config(tmp_path, **overrides), lattice="default",
                         enforce_builtin_caps=enforce_builtin_caps)
        made.append(host)
        return host

    yield make
    for host in made:
        await host.close()


@pytest.fixture
async def host(make_host) -> LocalHost:
    return make_host()


@pytest.fixture(scope="session")
def vectors() -> dict:
    """The exchanges recorded from real actors (tests/data/vectors/wasmbus-recorded.json)."""
    return load_vectors("wasmbus-recorded")
