"""Real builds of the sample actor: claims, keys, the component cache, up-to-date outputs,
rebuilds on source changes and readable componentize-py failures."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from lattice import build as build_mod
from lattice import paths
from lattice.build import BuildError, build_actor, load_config
from lattice.claims import extract_claims, module_hash, verify_module
from tests.build.conftest import Built, build_cache, copy_sample


def test_claims_in_the_signed_component(built_sample: Built) -> None:
    result = built_sample.result
    assert result.path == built_sample.directory.resolve() / "build" / "buildsample_s.wasm"
    claims = verify_module(result.path.read_bytes())
    assert claims.name == result.name == "buildsample"
    assert claims.subject == result.key and result.key.startswith("M")
    assert claims.issuer == result.issuer and result.issuer.startswith("A")
    assert claims.caps == ["wasmcloud:httpserver", "wasmcloud:builtin:logging"] == result.caps
    assert (claims.ver, claims.rev, claims.call_alias) == ("1.2.3", 7, "tests/buildsample")
    assert claims.tags == ["test", "sample"]
    # The keys are the ones `lattice claims sign --name buildsample` stores and reuses.
    keys = paths.keys_dir()
    assert (keys / "buildsample_module.nk").is_file()
    assert (keys / "buildsample_account.nk").is_file()
    assert built_sample.progress[-1].startswith(f"signed as {result.key} (caps: "
                                                "wasmcloud:httpserver, wasmcloud:builtin:logging)")
    assert built_sample.progress[-1].endswith("buildsample_s.wasm")


def test_unchanged_actor_is_up_to_date(built_sample: Built) -> None:
    before = built_sample.result.path.stat().st_mtime_ns
    lines: list[str] = []
    started = time.monotonic()
    again = build_actor(built_sample.directory, cache_dir=build_cache(), progress=lines.append)
    assert again.cached and again.up_to_date
    assert time.monotonic() - started < 5  # no componentize-py (10+ s), no re-signing
    assert lines == [f"buildsample: up to date (cached build) → {again.path}"]
    assert again.key == built_sample.result.key
    assert again.path.stat().st_mtime_ns == before


def test_tests_and_build_dirs_do_not_count(built_sample: Built, tmp_path: Path) -> None:
    directory = copy_sample(tmp_path / "buildsample")
    shutil.copytree(built_sample.directory / "build", directory / "build")
    for junk in ("tests/test_x.py", "build/x.py", "__pycache__/x.py", ".venv/x.py", "notes.txt"):
        (directory / junk).parent.mkdir(parents=True, exist_ok=True)
        (directory / junk).write_text("CHANGED = 1\n")
    result = build_actor(directory, cache_dir=build_cache())
    assert result.up_to_date and result.source_hash == built_sample.result.source_hash


def test_cached_component_skips_componentize(built_sample: Built, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Claims-only changes (and a missing output) re-sign the cached component."""
    def no_componentize(*args: object) -> None:
        raise AssertionError("componentize-py ran despite a cached component")

    monkeypatch.setattr(build_mod, "_run_componentize", no_componentize)
    directory = copy_sample(tmp_path / "buildsample")
    pyproject = directory / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('version = "1.2.3"', 'version = "1.2.4"')
                         .replace("rev = 7", "rev = 8"))
    lines: list[str] = []
    result = build_actor(directory, cache_dir=build_cache(), progress=lines.append)
    assert result.cached and not result.up_to_date
    assert result.source_hash == built_sample.result.source_hash
    assert lines[0] == ("buildsample: sources unchanged, using the cached component "
                        "(componentize-py skipped)")
    assert lines[-1].startswith("signed as ")
    claims = verify_module(result.path.read_bytes())
    assert (claims.ver, claims.rev) == ("1.2.4", 8)
    assert claims.subject == built_sample.result.key  # same name, same stored key
    assert claims.module_hash == extract_claims(built_sample.result.path.read_bytes()).module_hash
    # An explicit issuer changes the claims: re-signed, not "up to date".
    from lattice.keys import KeyPair, KeyRole

    other = KeyPair.generate(KeyRole.ACCOUNT)
    resigned = build_actor(directory, cache_dir=build_cache(), issuer=other)
    assert not resigned.up_to_date and resigned.issuer == other.public_key
    assert verify_module(resigned.path.read_bytes()).issuer == other.public_key


def test_source_change_runs_componentize(built_sample: Built, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Any .py change (actor or python_path) misses the cache; a stand-in componentize-py
    keeps this fast (the real rebuild is test_rebuild_with_componentize below)."""
    calls: list[list[Path]] = []
    component = built_sample.result.path.read_bytes()

    def fake(stage: build_mod._Stage, wit: Path, output: Path, progress: object) -> None:
        calls.append(stage.search_path)
        output.write_bytes(component)

    monkeypatch.setattr(build_mod, "_run_componentize", fake)
    cache = tmp_path / "cache"
    directory = copy_sample(tmp_path / "buildsample")
    first = build_actor(directory, cache_dir=cache)
    assert len(calls) == 1 and not first.cached
    assert first.source_hash == built_sample.result.source_hash
    assert calls[0][1:] == [directory.resolve(), (directory / "vendor").resolve()]

    (directory / "vendor" / "greetlib.py").write_text("def greet(name):\n    return name\n")
    second = build_actor(directory, cache_dir=cache)
    assert len(calls) == 2 and not second.cached and second.source_hash != first.source_hash

    (directory / "helpers.py").write_text("X = 1\n")  # a new module, imported or not
    third = build_actor(directory, cache_dir=cache)
    assert len(calls) == 3 and third.source_hash != second.source_hash
    assert third.key == first.key == built_sample.result.key

    # Back to a source seen before: the cache has it.
    (directory / "helpers.py").unlink()
    again = build_actor(directory, cache_dir=cache)
    assert len(calls) == 3 and again.cached and again.source_hash == second.source_hash


def test_cache_keeps_the_newest_builds_per_actor(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for n in range(build_mod.CACHE_KEEP_PER_ACTOR + 2):
        build_mod._cache_store(cache, "a", f"{n:064x}", b"x")
        os.utime(cache / f"a-{n:064x}.wasm", (n, n))
    build_mod._cache_store(cache, "other", "f" * 64, b"y")
    kept = sorted(p.name for p in cache.glob("a-*.wasm"))
    assert len(kept) == build_mod.CACHE_KEEP_PER_ACTOR
    assert (cache / f"other-{'f' * 64}.wasm").is_file()


def test_source_change_rebuilds_the_component(built_sample: Built, tmp_path: Path) -> None:
    """A changed handler gives a new component with the same actor key. With a cold cache this
    runs componentize-py; later sessions find the changed source in the persistent cache too
    (test_source_change_runs_componentize covers the cache decision itself)."""
    directory = copy_sample(tmp_path / "buildsample")
    handlers = directory / "handlers.py"
    handlers.write_text(handlers.read_text().replace('REPLY_PREFIX = ""',
                                                     'REPLY_PREFIX = "rebuilt: "'))
    lines: list[str] = []
    output = tmp_path / "out" / "sample.wasm"
    result = build_actor(directory, output=output, cache_dir=build_cache(), progress=lines.append)
    assert result.path == output and result.source_hash != built_sample.result.source_hash
    if result.cached:
        assert lines[0] == ("buildsample: sources unchanged, using the cached component "
                            "(componentize-py skipped)")
    else:
        assert lines[0] == f"building buildsample from {directory.resolve()} (componentize-py)…"
        assert lines[1].startswith("built in ") and lines[1].endswith(" s")
    assert lines[-1] == (f"signed as {built_sample.result.key} (caps: wasmcloud:httpserver, "
                         f"wasmcloud:builtin:logging) → {output}")
    wasm = output.read_bytes()
    assert verify_module(wasm).subject == built_sample.result.key
    assert module_hash(wasm) != module_hash(built_sample.result.path.read_bytes())
    assert b"rebuilt: " in wasm  # the new source is in the snapshot
    assert (build_cache() / f"buildsample-{result.source_hash}.wasm").is_file()


def test_import_error_at_build_time_is_readable(tmp_path: Path) -> None:
    """The actor's traceback from componentize-py's pre-initialization, with real file names.
    aiohttp is installed on this machine (Lattice depends on it) and would even import through
    its pure-Python fallbacks: the build must not see the host's site-packages."""
    directory = tmp_path / "broken"
    directory.mkdir()
    (directory / "app.py").write_text("import lattice_actor\n\nimport aiohttp\n")
    lines: list[str] = []
    with pytest.raises(BuildError) as info:
        build_actor(directory, cache_dir=tmp_path / "cache", progress=lines.append)
    # componentize-py really ran (no cache can hold a failed build).
    assert lines == [f"building broken from {directory.resolve()} (componentize-py)…"]
    message = str(info.value)
    assert message.startswith("componentize-py could not build the actor:\nTraceback")
    assert f'File "{directory.resolve()}/app.py", line 3, in <module>' in message
    assert "ModuleNotFoundError: No module named 'aiohttp'" in message
    assert "pip install --target vendor PACKAGE" in message
    assert "Stack backtrace" not in message and "Caused by" not in message
    assert not (directory / "build").exists()
    # Nothing was signed, so no keys were generated for it.
    assert not (paths.keys_dir() / "broken_module.nk").exists()


def test_output_errors(built_sample: Built, tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="is a directory; give a file path"):
        build_actor(built_sample.directory, output=tmp_path, cache_dir=build_cache())


def test_staged_sources_have_no_compiled_extensions(tmp_path: Path) -> None:
    config = load_config(copy_sample(tmp_path / "buildsample"))
    stage = build_mod._stage(config, tmp_path / "stage")
    lib = tmp_path / "stage" / "lib"
    names = {p.relative_to(lib).parts[0] for p in lib.rglob("*")}
    assert names == {"lattice_actor", "contracts", "msgpack", "cbor2", "_lattice_main.py"}
    assert not [p for p in lib.rglob("*") if p.suffix in (".so", ".pyd", ".pyc")]
    assert (lib / "msgpack" / "fallback.py").is_file() and (lib / "cbor2" / "_decoder.py").is_file()
    main = (lib / "_lattice_main.py").read_text()
    assert "import handlers" in main and "from lattice_actor._guest import Guest" in main
    assert stage.search_path == [lib, config.directory, *config.python_path]
