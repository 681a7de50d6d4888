"""`[tool.lattice]` / `actor.toml` parsing and every configuration error (no builds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lattice.build import BuildError, load_config

FULL = """
[project]
name = "unrelated"

[tool.lattice]
name = "kvcounter"
module = "handlers"
caps = ["wasmcloud:httpserver", "wasmcloud:keyvalue", "wasmcloud:keyvalue"]
version = "0.2.0"
rev = 4
call_alias = "MyOrg/KVCounter"
tags = ["demo", " "]
python_path = ["vendor"]
"""


def make(tmp_path: Path, *, pyproject: str | None = None, actor_toml: str | None = None,
         files: tuple[str, ...] = ("app.py",), name: str = "myactor") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    if pyproject is not None:
        (directory / "pyproject.toml").write_text(pyproject)
    if actor_toml is not None:
        (directory / "actor.toml").write_text(actor_toml)
    for file in files:
        path = directory / file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    return directory


def error(directory: Path) -> str:
    with pytest.raises(BuildError) as info:
        load_config(directory)
    return str(info.value)


def test_defaults_without_any_config(tmp_path: Path) -> None:
    config = load_config(make(tmp_path))
    assert config.name == "myactor" and config.module == "app"
    assert config.caps == [] and config.tags == [] and config.python_path == []
    assert config.version is None and config.rev is None and config.call_alias is None
    assert config.source is None


def test_pyproject_tool_lattice(tmp_path: Path) -> None:
    directory = make(tmp_path, pyproject=FULL, files=("handlers.py", "vendor/dep.py"))
    config = load_config(directory)
    assert config.name == "kvcounter" and config.module == "handlers"
    assert config.caps == ["wasmcloud:httpserver", "wasmcloud:keyvalue"]  # repeats dropped
    assert config.version == "0.2.0" and config.rev == 4
    assert config.call_alias == "myorg/kvcounter"  # normalized like wascap
    assert config.tags == ["demo"]
    assert config.python_path == [(directory / "vendor").resolve()]
    assert config.source == directory.resolve() / "pyproject.toml"


def test_actor_toml(tmp_path: Path) -> None:
    directory = make(tmp_path, actor_toml='name = "echo"\ncaps = ["wasmcloud:httpserver"]\n')
    config = load_config(directory)
    assert (config.name, config.caps) == ("echo", ["wasmcloud:httpserver"])
    assert config.source is not None and config.source.name == "actor.toml"


def test_pyproject_without_tool_lattice_defers_to_actor_toml(tmp_path: Path) -> None:
    directory = make(tmp_path, pyproject='[project]\nname = "x"\n', actor_toml='name = "y"\n')
    assert load_config(directory).name == "y"


def test_module_in_a_package_and_on_python_path(tmp_path: Path) -> None:
    directory = make(tmp_path, pyproject='[tool.lattice]\nmodule = "pkg.handlers"\n',
                     files=("pkg/__init__.py", "pkg/handlers.py"))
    assert load_config(directory).module == "pkg.handlers"
    other = make(tmp_path, name="other", files=("src/app.py",),
                 pyproject='[tool.lattice]\npython_path = ["src"]\n')
    assert load_config(other).module == "app"


@pytest.mark.parametrize(("pyproject", "expected"), [
    ('[tool.lattice]\ncap = ["wasmcloud:httpserver"]\n',
     "unknown key 'cap'; did you mean 'caps'?"),
    ('[tool.lattice]\ncallalias = "a/b"\n', "unknown key 'callalias'; did you mean 'call_alias'?"),
    ('[tool.lattice]\nfrobnicate = 1\n',
     "unknown key 'frobnicate' (valid keys: name, module, caps, version, rev, call_alias, tags, "
     "python_path)"),
    ('[tool.lattice]\ncaps = ["keyvalue"]\n',
     "capability 'keyvalue' in caps is not a contract id: expected namespace:name, e.g. caps = "
     '["wasmcloud:keyvalue"]'),
    ('[tool.lattice]\ncaps = ["wasm cloud:x"]\n', "capability 'wasm cloud:x' in caps is not a "
     "contract id"),
    ('[tool.lattice]\ncaps = "wasmcloud:httpserver"\n',
     "caps must be a list of strings, e.g. caps = [\"wasmcloud:httpserver\"] (put the value in "
     "[ ])"),
    ('[tool.lattice]\ncaps = [1]\n', "caps must be a list of strings"),
    ('[tool.lattice]\nversion = 0.1\n',
     'version must be a string (in quotes), e.g. version = "0.1.0"; got 0.1'),
    ('[tool.lattice]\nname = 5\n', "name must be a string (in quotes)"),
    ('[tool.lattice]\nname = "  "\n', "name must not be empty"),
    ('[tool.lattice]\nrev = "3"\n', "rev must be a whole number (no quotes), e.g. rev = 3"),
    ('[tool.lattice]\nrev = true\n', "rev must be a whole number"),
    ('[tool.lattice]\nrev = -1\n', "rev -1 is out of range (0 to 2147483647)"),
    ('[tool.lattice]\ncall_alias = "my org!"\n', "call_alias: call alias 'my org!'"),
    ('[tool.lattice]\ncall_alias = "MBCFOPM6JW2APJLXJD3Z5O4ROR4LWVRVK2ZWUVAE6A7IVCMSEWKN7WKP"\n',
     "looks like a public key"),
    ('[tool.lattice]\ntags = "demo"\n', "tags must be a list of strings"),
    ('[tool.lattice]\npython_path = ["missing"]\n',
     "python_path entry 'missing' is not a directory"),
    ('[tool.lattice]\nmodule = "my-app"\n', "module 'my-app' is not a Python module name"),
    ('[tool.lattice]\nmodule = "class"\n', "module 'class' is not a Python module name"),
    ('[tool.lattice]\nmodule = "contracts"\n',
     "module 'contracts' clashes with the module 'contracts' that every build bundles"),
    ('[tool.lattice]\nmodule = "handlers"\n',
     "the actor's module 'handlers' was not found: expected"),
    ("tool.lattice = 3\n", "tool.lattice must be a table"),
    ("[tool.lattice\n", "is not valid TOML"),
])
def test_config_errors(tmp_path: Path, pyproject: str, expected: str) -> None:
    message = error(make(tmp_path, pyproject=pyproject))
    assert expected in message
    assert "pyproject.toml" in message


def test_error_names_the_file_and_table(tmp_path: Path) -> None:
    directory = make(tmp_path, pyproject='[tool.lattice]\ncap = []\n')
    assert error(directory).startswith(f"{directory.resolve()}/pyproject.toml [tool.lattice]: ")
    other = make(tmp_path, name="other", actor_toml='cap = []\n')
    assert error(other).startswith(f"{other.resolve()}/actor.toml: unknown key 'cap'")


def test_both_config_files_is_an_error(tmp_path: Path) -> None:
    directory = make(tmp_path, pyproject='[tool.lattice]\nname = "a"\n', actor_toml='name = "b"\n')
    assert "has both actor.toml and a [tool.lattice] table in pyproject.toml; keep the settings " \
        "in one place" in error(directory)


def test_missing_module_file(tmp_path: Path) -> None:
    directory = make(tmp_path, files=())
    message = error(directory)
    assert f"the actor's module 'app' was not found: expected {directory.resolve()}/app.py" in \
        message
    assert "`lattice new actor NAME`" in message
    configured = make(tmp_path, name="configured", files=(),
                      pyproject='[tool.lattice]\nmodule = "svc"\n')
    assert "create it, or set module in" in error(configured)


def test_not_a_directory(tmp_path: Path) -> None:
    assert "is not a directory; create one with `lattice new actor NAME`" in error(tmp_path / "x")
    (tmp_path / "app.py").write_text("")
    assert "give the actor's directory, not the file" in error(tmp_path / "app.py")
