"""Built components run: lattice.testing.load_actor, and the `lattice new actor` scaffold's own
test (run with pytest in a subprocess, as a user would)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest

from lattice.build import build_actor
from lattice.cli import main
from lattice.runtime import GuestCallError
from lattice.testing import load_actor
from tests.build.conftest import Built, build_cache


async def test_load_actor_from_directory(built_sample: Built) -> None:
    async with load_actor(built_sample.directory, cache_dir=build_cache()) as actor:
        assert actor.build is not None and actor.build.up_to_date
        assert actor.key == built_sample.result.key
        response = await actor.http("GET", "/hello?name=Lattice")
        assert response.status_code == 200
        assert response.body == b"Hello, Lattice!"  # greetlib from python_path
        assert response.header["content-type"] == ["text/plain; charset=utf-8"]
        default = await actor.http(path="/", headers={"X-Test": "1"})
        assert default.body == b"Hello, world!"
        assert await actor.call("Sample.Reverse", b"abc") == b"cba"
        with pytest.raises(GuestCallError):
            await actor.call("Sample.Missing", msgpack.packb(None))


async def test_load_actor_from_wasm(built_sample: Built) -> None:
    async with load_actor(built_sample.result.path) as actor:
        assert actor.build is None and actor.name == "buildsample"
        response = await actor.http("POST", "/", body="ignored", query_string="name=wasm")
        assert response.body == b"Hello, wasm!"
    with pytest.raises(TypeError, match="only apply to an actor directory"):
        async with load_actor(built_sample.result.path, use_cache=False):
            pass


def test_new_actor_scaffold_builds_and_its_test_passes(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new", "actor", "greeter", "--dir", str(tmp_path)]) == 0
    out, err = capsys.readouterr()
    directory = tmp_path / "greeter"
    assert out.strip() == str(directory)
    assert "created greeter: " in err and "lattice build" in err
    files = sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
    assert files == [".gitignore", "README.md", "app.py", "pyproject.toml", "tests/test_app.py"]
    readme = (directory / "README.md").read_text()
    assert "lattice call --wasm build/greeter_s.wasm HttpServer.HandleRequest" in readme
    assert "{{" not in readme + (directory / "pyproject.toml").read_text()

    # The scaffold builds as it is (the unsigned component comes from the shared cache)...
    result = build_actor(directory)
    assert result.path == directory / "build" / "greeter_s.wasm"
    assert result.caps == ["wasmcloud:httpserver", "wasmcloud:builtin:logging"]
    # ...and its own test passes, run the way the README says.
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                          cwd=directory, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
