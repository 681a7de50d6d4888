"""`lattice build` and `lattice new actor` through lattice.cli.main: output and exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest

from lattice.cli import main
from tests.build.conftest import Built


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_build_prints_the_path(built_sample: Built, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "build", str(built_sample.directory))
    assert code == 0
    assert out == f"{built_sample.result.path}\n"
    assert "buildsample: up to date (cached build)" in err


def test_build_quiet_and_default_dir(built_sample: Built, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(built_sample.directory)
    code, out, err = run(capsys, "build", "--quiet")
    assert (code, out, err) == (0, f"{built_sample.result.path}\n", "")


def test_build_output_option(built_sample: Built, capsys: pytest.CaptureFixture[str],
                             tmp_path: Path) -> None:
    target = tmp_path / "copy.wasm"
    code, out, err = run(capsys, "build", str(built_sample.directory), "-o", str(target))
    assert code == 0 and out == f"{target}\n"
    assert "componentize-py skipped" in err and "signed as" in err
    assert target.read_bytes()[:4] == b"\0asm"


@pytest.mark.parametrize(("setup", "expected"), [
    (None, "is not a directory; create one with `lattice new actor NAME`"),
    ("", "the actor's module 'app' was not found"),
    ('[tool.lattice]\ncaps = ["httpserver"]\n',
     'capability \'httpserver\' in caps is not a contract id: expected namespace:name, e.g. caps '
     '= ["wasmcloud:httpserver"]'),
    ('[tool.lattice]\nversoin = "1"\n', "unknown key 'versoin'; did you mean 'version'?"),
])
def test_build_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str | None,
                      expected: str) -> None:
    directory = tmp_path / "actor"
    if setup is not None:
        directory.mkdir()
        if setup:
            (directory / "pyproject.toml").write_text(setup)
            (directory / "app.py").write_text("")
    code, out, err = run(capsys, "build", str(directory))
    assert code == 1 and out == ""
    assert err.startswith("error: ") and expected in err


def test_new_actor_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("1abc", "a b", "../x", "a/b", ""):
        code, out, err = run(capsys, "new", "actor", bad, "--dir", str(tmp_path))
        assert code == 1 and out == ""
        assert f"error: actor name {bad!r} is not valid: start with a letter" in err
    assert list(tmp_path.iterdir()) == []

    (tmp_path / "taken").mkdir()
    code, _, err = run(capsys, "new", "actor", "taken", "--dir", str(tmp_path))
    assert code == 1 and f"error: {tmp_path / 'taken'} already exists" in err

    (tmp_path / "file").write_text("")
    code, _, err = run(capsys, "new", "actor", "x", "--dir", str(tmp_path / "file"))
    assert code == 1 and "is not a directory" in err


def test_new_actor_in_current_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "new", "actor", "My_Actor-2")
    assert code == 0 and out == f"{tmp_path / 'My_Actor-2'}\n"
    text = (tmp_path / "My_Actor-2" / "pyproject.toml").read_text()
    assert 'name = "My_Actor-2"' in text and 'call_alias = "myorg/my_actor_2"' in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging leftovers
