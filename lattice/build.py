"""``lattice build``: turn a directory of Python actor code into a signed WebAssembly component.

Pipeline (:func:`build_actor`):

1. **Config** — ``[tool.lattice]`` in ``pyproject.toml`` or the top-level keys of ``actor.toml``
   (:func:`load_config`): name, handler module, capabilities and the other claims.
2. **Stage** — a temp dir holding ``.py`` copies of the SDK (``lattice_actor``), ``contracts``,
   ``msgpack`` and ``cbor2`` (no compiled extensions, so their pure-Python fallbacks load inside
   wasm) and a generated entry module that imports the actor's module and re-exports the SDK's
   ``Guest`` class for componentize-py.
3. **Componentize** — ``componentize-py`` against ``actors/wit`` (world ``actor``) in a
   subprocess; it pre-initializes CPython with the app imported and snapshots it.
4. **Cache** — the unsigned component is kept under ``cache_dir()/builds`` by a SHA-256 of every
   build input, so an unchanged actor never runs componentize-py (about ten seconds) again.
5. **Sign** — wascap claims with the same stored account/module keys ``lattice claims sign``
   uses (``{keys_dir}/{name}_account.nk`` / ``{name}_module.nk``), so the actor key stays stable
   across rebuilds, written atomically to ``DIR/build/{name}_s.wasm``.

Every failure is a :class:`BuildError` whose message says what was wrong and how to fix it.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.metadata
import importlib.util
import json
import keyword
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lattice import claims as wascap
from lattice import paths
from lattice.keys import KeyPair, KeyRole, NKeyError
from lattice.keystore import KeyStoreError, key_file_stem, key_from_arg, stored_key

log = logging.getLogger("lattice.build")

Progress = Callable[[str], None]

#: Keys of ``[tool.lattice]`` / ``actor.toml``.
CONFIG_KEYS = ("name", "module", "caps", "version", "rev", "call_alias", "tags", "python_path")
DEFAULT_MODULE = "app"
ACTOR_TOML = "actor.toml"
PYPROJECT = "pyproject.toml"

#: Packages copied into every build: the SDK and what it imports at run time.
BUNDLED_PACKAGES = ("lattice_actor", "contracts", "msgpack", "cbor2")
#: The generated module componentize-py wraps; it must not be any module of the app.
MAIN_MODULE = "_lattice_main"
#: Where the SDK's componentize-py export class lives.
GUEST_MODULE, GUEST_CLASS = "lattice_actor._guest", "Guest"
WORLD = "actor"

# Module names the actor cannot use for its own code: the bundled packages (ours would shadow
# or be shadowed) and the modules componentize-py generates into the component.
_RESERVED_MODULES = frozenset({*BUNDLED_PACKAGES, MAIN_MODULE, WORLD, "wit_world",
                               "componentize_py_types", "componentize_py_runtime",
                               "componentize_py_async_support", "poll_loop"})
# Directories that never hold actor code: build output, caches, tests, virtualenvs, VCS data.
_SKIP_DIRS = frozenset({"build", "dist", "__pycache__", "tests", "test", ".venv", "venv",
                        "node_modules"})
# Compiled files never go into the stage: a host-architecture extension cannot load inside
# wasm, and leaving it out makes e.g. msgpack and cbor2 pick their pure-Python code.
_COMPILED_SUFFIXES = (".so", ".pyd", ".dylib", ".dll", ".pyc", ".pyo")
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_CACHE_FORMAT = "lattice-build-1"


def _read_umask() -> int:
    # os.umask can only be read by setting it; do that once, at import, rather than while
    # other threads (a build runs in one under lattice.testing) might be creating files.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class BuildError(Exception):
    """The actor cannot be built; the message says what was wrong and how to fix it."""


@dataclass
class ActorConfig:
    """An actor's build settings, validated."""

    directory: Path
    name: str
    module: str = DEFAULT_MODULE
    caps: list[str] = field(default_factory=list)
    version: str | None = None
    rev: int | None = None
    call_alias: str | None = None
    tags: list[str] = field(default_factory=list)
    python_path: list[Path] = field(default_factory=list)
    source: Path | None = None  # the file the settings came from (None: all defaults)

    @property
    def file_stem(self) -> str:
        """The name as used in file names (keys, the output): what `lattice claims sign`
        does with ``--name``."""
        return _file_stem(self.name)


@dataclass
class BuildResult:
    path: Path  # the signed component
    key: str  # the actor's module public key (M…)
    name: str
    cached: bool  # componentize-py did not run (cached component, or the output was up to date)
    seconds: float
    up_to_date: bool = False  # the existing output was kept as it was (nothing re-signed)
    source_hash: str = ""
    issuer: str = ""
    caps: list[str] = field(default_factory=list)


# --- configuration ------------------------------------------------------------------------------


def load_config(directory: Path) -> ActorConfig:
    """Read and validate the actor's settings from ``pyproject.toml`` ``[tool.lattice]`` or
    ``actor.toml`` (defaults when neither has any)."""
    directory = Path(directory)
    if not directory.is_dir():
        hint = (" (give the actor's directory, not the file)" if directory.is_file()
                else "; create one with `lattice new actor NAME`")
        raise BuildError(f"{directory} is not a directory{hint}")
    directory = directory.resolve()
    raw, source, where = _read_settings(directory)
    unknown = [key for key in raw if key not in CONFIG_KEYS]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, CONFIG_KEYS, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise BuildError(f"{where}: unknown key '{key}'{hint} (valid keys: "
                         f"{', '.join(CONFIG_KEYS)})")
    config = ActorConfig(directory=directory, name=directory.name, source=source)
    if "name" in raw:
        config.name = _string(raw, "name", where, 'name = "kvcounter"')
    if not config.name.strip():
        raise BuildError(f"{where}: name must not be empty, e.g. name = \"kvcounter\"")
    config.name = config.name.strip()
    if "module" in raw:
        config.module = _string(raw, "module", where, 'module = "app"').strip()
    _check_module_name(config.module, where)
    config.caps = _caps(raw, where)
    if "version" in raw:
        config.version = _string(raw, "version", where, 'version = "0.1.0"')
    if "rev" in raw:
        config.rev = _rev(raw["rev"], where)
    if "call_alias" in raw:
        alias = _string(raw, "call_alias", where, 'call_alias = "myorg/kvcounter"')
        try:
            config.call_alias = wascap.validate_call_alias(alias)
        except wascap.SigningError as exc:
            raise BuildError(f"{where}: call_alias: {exc}") from None
    config.tags = _string_list(raw, "tags", where, 'tags = ["demo"]')
    config.python_path = _python_path(raw, directory, where)
    _find_module_file(config, where)
    return config


def _read_settings(directory: Path) -> tuple[dict[str, Any], Path | None, str]:
    """The raw settings table, the file it came from and how to name it in errors."""
    pyproject, actor_toml = directory / PYPROJECT, directory / ACTOR_TOML
    table: dict[str, Any] | None = None
    if pyproject.is_file():
        tool = _parse_toml(pyproject).get("tool", {})
        lattice = tool.get("lattice") if isinstance(tool, dict) else None
        if lattice is not None:
            if not isinstance(lattice, dict):
                raise BuildError(f"{pyproject}: tool.lattice must be a table: write the settings "
                                 "under a [tool.lattice] header")
            table = lattice
    if actor_toml.is_file():
        if table is not None:
            raise BuildError(f"{directory} has both {ACTOR_TOML} and a [tool.lattice] table in "
                             f"{PYPROJECT}; keep the settings in one place and delete the other")
        return _parse_toml(actor_toml), actor_toml, str(actor_toml)
    if table is not None:
        return table, pyproject, f"{pyproject} [tool.lattice]"
    return {}, None, str(directory)


def _parse_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise BuildError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path} is not valid TOML: {exc}") from None


def _string(raw: dict[str, Any], key: str, where: str, example: str) -> str:
    value = raw[key]
    if not isinstance(value, str):
        raise BuildError(f"{where}: {key} must be a string (in quotes), e.g. {example}; got "
                         f"{value!r}")
    return value


def _string_list(raw: dict[str, Any], key: str, where: str, example: str) -> list[str]:
    value = raw.get(key, [])
    if isinstance(value, str):
        raise BuildError(f"{where}: {key} must be a list of strings, e.g. {example} (put the "
                         "value in [ ])")
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BuildError(f"{where}: {key} must be a list of strings, e.g. {example}; got "
                         f"{value!r}")
    return [v.strip() for v in value if v.strip()]


def _caps(raw: dict[str, Any], where: str) -> list[str]:
    caps = _string_list(raw, "caps", where, 'caps = ["wasmcloud:httpserver"]')
    for cap in caps:
        try:
            wascap.validate_caps([cap])
        except wascap.SigningError:
            fix = f"wasmcloud:{cap}" if ":" not in cap else "wasmcloud:keyvalue"
            raise BuildError(
                f"{where}: capability {cap!r} in caps is not a contract id: expected "
                f"namespace:name, e.g. caps = [\"{fix}\"]") from None
    return wascap.validate_caps(caps)


def _rev(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BuildError(f"{where}: rev must be a whole number (no quotes), e.g. rev = 3; got "
                         f"{value!r}")
    if not 0 <= value <= 2**31 - 1:
        raise BuildError(f"{where}: rev {value} is out of range (0 to 2147483647)")
    return value


def _check_module_name(module: str, where: str) -> None:
    if not _MODULE_NAME.fullmatch(module) or any(keyword.iskeyword(p) for p in module.split(".")):
        raise BuildError(f"{where}: module {module!r} is not a Python module name: give the "
                         "module with your handlers, dotted if in a package, e.g. module = "
                         "\"app\" or module = \"mypkg.handlers\"")
    top = module.split(".")[0]
    if top in _RESERVED_MODULES:
        raise BuildError(f"{where}: module {module!r} clashes with the module {top!r} that "
                         f"every build bundles or generates; rename your module (e.g. to "
                         "app.py) and set module accordingly")


def _python_path(raw: dict[str, Any], directory: Path, where: str) -> list[Path]:
    result: list[Path] = []
    for entry in _string_list(raw, "python_path", where, 'python_path = ["vendor"]'):
        path = (directory / entry).resolve()
        if not path.is_dir():
            raise BuildError(f"{where}: python_path entry {entry!r} is not a directory "
                             f"({path}); list directories relative to {directory} that hold "
                             "pure-Python dependencies, e.g. installed with `pip install "
                             "--target vendor PACKAGE`")
        if path == directory:
            continue  # already on the path
        result.append(path)
    return result


def _find_module_file(config: ActorConfig, where: str) -> Path:
    parts = config.module.split(".")
    for root in [config.directory, *config.python_path]:
        base = root.joinpath(*parts)
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                return candidate
    expected = config.directory.joinpath(*parts).with_suffix(".py")
    if config.source is None:
        hint = (f"put your handlers in {expected.name}, or name their module with `module = "
                f"\"...\"` in [tool.lattice] of {PYPROJECT} (or in {ACTOR_TOML}); "
                "`lattice new actor NAME` creates a working example")
    else:
        hint = (f"create it, or set module in {where} to the module that defines your "
                "handlers")
    raise BuildError(f"the actor's module {config.module!r} was not found: expected "
                     f"{expected}; {hint}")


# --- staging ------------------------------------------------------------------------------------


def _package_dir(name: str) -> Path:
    """The installed directory of a bundled package."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec else []
    if locations:
        return Path(locations[0]).resolve()
    # lattice_actor and contracts ship next to this package. An editable install made before
    # one of them existed does not map it (its finder lists the top-level packages of that
    # moment), so look beside lattice/ before giving up.
    sibling = Path(__file__).resolve().parent.parent / name
    if name in ("lattice_actor", "contracts") and (sibling / "__init__.py").is_file():
        return sibling
    fix = ("reinstall Lattice (pip install -e .)" if name in ("lattice_actor", "contracts")
           else f"pip install {name}")
    raise BuildError(f"the package {name!r} that every Python actor bundles is not installed "
                     f"(or is not a package); {fix}")


def _copy_package(src: Path, dst: Path, data_files: bool) -> dict[Path, Path]:
    """Copy a package's sources (no compiled files; no data files unless ``data_files``);
    returns staged file -> original file."""
    copied: dict[Path, Path] = {}
    for path in _walk(src, skip_dirs=frozenset({"__pycache__", "tests"})):
        if path.suffix in _COMPILED_SUFFIXES or (path.suffix != ".py" and not data_files):
            continue
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied[target] = path
    return copied


def _walk(root: Path, skip_dirs: frozenset[str] = _SKIP_DIRS) -> Iterator[Path]:
    """Files under ``root`` in a stable order, skipping ``skip_dirs`` and hidden entries."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs and not d.startswith("."))
        for filename in sorted(filenames):
            if not filename.startswith("."):
                yield Path(dirpath) / filename


# componentize-py snapshots the interpreter once this main module is imported: a module first
# imported later, inside a handler, does not exist in the component (standard library included).
# Importing the everyday ones here keeps a handler's lazy `import json` working; the snapshot
# grows by about a megabyte.
PREIMPORTED = (
    "base64", "bisect", "collections", "copy", "csv", "dataclasses", "datetime", "decimal",
    "enum", "fractions", "functools", "hashlib", "heapq", "hmac", "html", "io", "itertools",
    "json", "math", "operator", "random", "re", "secrets", "statistics", "string", "struct",
    "textwrap", "time", "typing", "unicodedata", "urllib.parse", "uuid", "zlib",
)


def _main_source(module: str) -> str:
    pre = "".join(f"    import {name}  # noqa: F401\n" for name in PREIMPORTED)
    return (
        "# Generated by `lattice build`: the module componentize-py wraps.\n"
        "try:  # see PREIMPORTED in lattice/build.py\n"
        f"{pre}"
        "except ImportError:\n"
        "    pass\n"
        f"import {module}  # registers the actor's handlers\n"
        f"from {GUEST_MODULE} import {GUEST_CLASS}  # the export componentize-py looks for\n"
        f"__all__ = [{GUEST_CLASS!r}]\n"
    )


@dataclass
class _Stage:
    root: Path
    sources: dict[Path, Path]  # staged file -> the original it was copied from
    search_path: list[Path]  # componentize-py -p, in order


def _stage(config: ActorConfig, root: Path) -> _Stage:
    sources: dict[Path, Path] = {}
    lib = root / "lib"
    for name in BUNDLED_PACKAGES:
        sources.update(_copy_package(_package_dir(name), lib / name,
                                     data_files=name == "lattice_actor"))
    (lib / f"{MAIN_MODULE}.py").write_text(_main_source(config.module))
    # The stage comes first, so the bundled SDK, contracts and codecs win over copies an actor
    # might vendor; then the actor's own directory and its python_path.
    return _Stage(root, sources, [lib, config.directory, *config.python_path])


def _source_hash(config: ActorConfig, stage: _Stage, wit_dir: Path, tool_version: str) -> str:
    """SHA-256 of everything that goes into the unsigned component.

    The claims settings (name, caps, version, …) are deliberately left out: they only affect
    signing, so changing a capability re-signs the cached component instead of rebuilding it.
    Of the actor's own files only ``.py`` count (not build/, tests/, virtualenvs or hidden
    directories): a data file read while the module is imported at build time needs
    ``--no-cache`` after a change.
    """
    digest = hashlib.sha256()

    def add(label: str, data: bytes) -> None:
        digest.update(label.encode() + b"\0" + len(data).to_bytes(8, "big") + data)

    add("format", _CACHE_FORMAT.encode())
    add("componentize-py", tool_version.encode())
    add("world", WORLD.encode())
    for path in sorted(wit_dir.rglob("*.wit")):
        add(f"wit/{path.relative_to(wit_dir)}", path.read_bytes())
    for path in _walk(stage.root / "lib", skip_dirs=frozenset()):
        add(f"stage/{path.relative_to(stage.root)}", path.read_bytes())
    for index, root in enumerate([config.directory, *config.python_path]):
        # Vendored packages may well have their own build/ or tests/ subpackages.
        skip = _SKIP_DIRS if index == 0 else frozenset({"__pycache__"})
        for path in _walk(root, skip_dirs=skip):
            if path.suffix == ".py":
                add(f"path{index}/{path.relative_to(root)}", path.read_bytes())
    return digest.hexdigest()


# --- componentize-py ----------------------------------------------------------------------------


def componentize_py_version() -> str:
    try:
        return importlib.metadata.version("componentize-py")
    except importlib.metadata.PackageNotFoundError:
        raise BuildError("componentize-py is not installed; it builds Python actors: "
                         "pip install 'componentize-py>=0.25,<0.26'") from None


def _componentize_command() -> list[str]:
    script = Path(sys.executable).with_name("componentize-py")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    # No console script next to this interpreter (e.g. a zipapp or an unusual install): the
    # same entry point through the module.
    return [sys.executable, "-c",
            "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; "
            "sys.exit(script())"]


def _componentize_env(stage_root: Path) -> dict[str, str]:
    env = dict(os.environ)
    # componentize-py adds a site-packages to the guest's search path when none is given:
    # $VIRTUAL_ENV's, else `pipenv --venv`'s, else the host interpreter's (`site` module). The
    # host's whole site-packages would then be importable while the actor is pre-initialized,
    # so a build would silently depend on whatever happens to be installed on this machine
    # (aiohttp, say, imports fine there through its pure-Python fallbacks) without being in
    # the cache key. Pointing VIRTUAL_ENV at an empty venv inside the stage stops that search:
    # only the stage, the actor's directory and its python_path are visible.
    venv = stage_root / "empty-venv"
    (venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages").mkdir(
        parents=True, exist_ok=True)
    env["VIRTUAL_ENV"] = str(venv)
    # Errors should be the Python traceback, not also a Rust backtrace of componentize-py.
    env["RUST_BACKTRACE"] = "0"
    env["RUST_LIB_BACKTRACE"] = "0"
    return env


def _run_componentize(stage: _Stage, wit_dir: Path, output: Path,
                      progress: Progress | None) -> None:
    argv = [*_componentize_command(), "-d", str(wit_dir), "-w", WORLD, "componentize"]
    for entry in stage.search_path:
        argv += ["-p", str(entry)]
    argv += [MAIN_MODULE, "-o", str(output)]
    log.debug("running componentize-py", extra={"argv": " ".join(argv)})
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=_componentize_env(stage.root), cwd=stage.root,
                                stdin=subprocess.DEVNULL)
    except OSError as exc:
        raise BuildError(f"cannot run componentize-py ({argv[0]}): {exc.strerror}; reinstall "
                         "it with pip install 'componentize-py>=0.25,<0.26'") from None
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.extend(proc.stderr or []), daemon=True)
    reader.start()
    try:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line and line != "Component built successfully" and progress:
                progress(f"  componentize-py: {line}")
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    reader.join()
    if code != 0 or not output.is_file():
        text = b"".join(stderr).decode("utf-8", "replace")
        raise BuildError(_explain_failure(text, stage, code))


def _explain_failure(stderr: str, stage: _Stage, code: int) -> str:
    """componentize-py's error, trimmed to the guest's traceback, with the guest's mount points
    (/0/, /1/, … for each -p entry) mapped back to the real files."""
    text = stderr
    # Guest-side Python failures come wrapped as `AssertionError: <guest traceback>` raised
    # from componentize-py's own entry point, followed by `Caused by:` and a Rust backtrace.
    marker = text.find("AssertionError: ")
    if marker >= 0:
        text = text[marker + len("AssertionError: "):]
    text = text.split("\n\nCaused by:")[0].split("\nStack backtrace:")[0].strip()

    def real(match: re.Match[str]) -> str:
        index, rel = int(match.group(1)), match.group(2)
        if index >= len(stage.search_path):
            return match.group(0)
        staged = stage.search_path[index] / rel
        original = stage.sources.get(staged)
        if original is not None:
            return f'File "{original}"'
        if staged.name == f"{MAIN_MODULE}.py":
            return f'File "{MAIN_MODULE}.py (generated by lattice build)"'
        return f'File "{staged}"'

    text = re.sub(r'File "/(\d+)/([^"]*)"', real, text)
    lines = text.splitlines()
    if len(lines) > 40:
        lines = ["…", *lines[-40:]]
    detail = "\n".join(lines) or f"(no output; exit status {code})"
    hint = ""
    if "ModuleNotFoundError" in detail or "ImportError" in detail:
        hint = ("\nonly the actor's directory, its python_path entries (pure-Python packages, "
                "e.g. `pip install --target vendor PACKAGE` and python_path = [\"vendor\"]) and "
                "the Python standard library can be imported")
    return f"componentize-py could not build the actor:\n{detail}{hint}"


# --- keys, signing, output ----------------------------------------------------------------------


def _file_stem(name: str) -> str:
    # Same rule as `lattice claims sign --name NAME` uses for its key files.
    return key_file_stem(name)


def _stored_keys(name: str) -> tuple[KeyPair, KeyPair] | None:
    """The stored account and module keys of actor ``name`` if both exist (never generates)."""
    stem = _file_stem(name)
    found = []
    for role in (KeyRole.ACCOUNT, KeyRole.MODULE):
        path = paths.keys_dir() / f"{stem}_{role.name.lower()}.nk"
        if not path.is_file():
            return None
        try:
            found.append(key_from_arg(str(path), role, f"stored {role.name.lower()} key"))
        except KeyStoreError as exc:
            raise BuildError(str(exc)) from None
    return found[0], found[1]


def actor_keys(name: str, issuer: KeyPair | None = None,
               subject: KeyPair | None = None) -> tuple[KeyPair, KeyPair, list[str]]:
    """The account (issuer) and module (subject) keys for actor ``name``: the ones given, else
    those `lattice claims sign --name NAME` stores (generated on first use). Also returns notes
    about keys that were generated."""
    stem = _file_stem(name)
    notes: list[str] = []
    try:
        if issuer is None:
            issuer, note = stored_key(stem, KeyRole.ACCOUNT)
            if note.startswith("generated"):
                notes.append(note)
        if subject is None:
            subject, note = stored_key(stem, KeyRole.MODULE)
            if note.startswith("generated"):
                notes.append(note)
    except KeyStoreError as exc:
        raise BuildError(str(exc)) from None
    if issuer.role is not KeyRole.ACCOUNT or not issuer.has_seed:
        raise BuildError("the issuer must be an account key pair with its seed (SA…)")
    if subject.role is not KeyRole.MODULE:
        raise BuildError("the subject must be a module key (M…/SM…)")
    return issuer, subject, notes


def _expected_claims(config: ActorConfig, issuer: KeyPair, subject: KeyPair) -> dict[str, Any]:
    return {"name": config.name, "caps": config.caps, "tags": config.tags, "ver": config.version,
            "rev": config.rev, "call_alias": config.call_alias, "issuer": issuer.public_key,
            "subject": subject.public_key}


def _claims_of(claims: wascap.ActorClaims) -> dict[str, Any]:
    return {"name": claims.name, "caps": claims.caps, "tags": claims.tags, "ver": claims.ver,
            "rev": claims.rev, "call_alias": claims.call_alias, "issuer": claims.issuer,
            "subject": claims.subject}


# The output's provenance lives in a sidecar next to it (``.NAME_s.wasm.build.json``) rather
# than in the claims' tags: tags are the user's (and show up in `lattice get claims`), and the
# sidecar can be deleted to force a re-sign. It is only trusted together with the output: the
# output must still verify, carry the recorded module hash and exactly the configured claims.
def _sidecar(output: Path) -> Path:
    return output.with_name(f".{output.name}.build.json")


def _output_up_to_date(output: Path, source_hash: str, expected: dict[str, Any]) -> bool:
    try:
        record = json.loads(_sidecar(output).read_text())
        if record.get("source_hash") != source_hash:
            return False
        claims = wascap.verify_module(output.read_bytes())
    except (OSError, ValueError, wascap.ClaimsError):
        return False
    return (claims.module_hash.upper() == str(record.get("module_hash", "")).upper()
            and _claims_of(claims) == expected)


def _write_atomic(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual mode
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise BuildError(f"cannot write {path}: {exc.strerror}") from None


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it."""
    try:
        relative = path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return str(path)
    return str(relative) if relative.parts else str(path.resolve())


# --- the component cache -----------------------------------------------------------------------

#: Cached components kept per actor name (each is ~20 MB: the CPython runtime and a snapshot).
CACHE_KEEP_PER_ACTOR = 3


def _cache_entry(builds: Path, stem: str, source_hash: str) -> Path:
    return builds / f"{stem}-{source_hash}.wasm"


def _cache_load(builds: Path, stem: str, source_hash: str) -> bytes | None:
    entry = _cache_entry(builds, stem, source_hash)
    try:
        data = entry.read_bytes()
        os.utime(entry)  # most recently used: kept longest by _cache_store's pruning
    except OSError:
        return None
    return data


def _cache_store(builds: Path, stem: str, source_hash: str, component: bytes) -> None:
    """Keep ``component`` for this source hash, and only the newest few of this actor's."""
    try:
        paths.private_dir(builds)
        _write_atomic(_cache_entry(builds, stem, source_hash), component)
        # The stem has no glob characters (see _file_stem); the hash part matches exactly.
        entries = sorted(builds.glob(f"{stem}-{'[0-9a-f]' * 64}.wasm"),
                         key=lambda e: e.stat().st_mtime, reverse=True)
        for old in entries[CACHE_KEEP_PER_ACTOR:]:
            old.unlink(missing_ok=True)
    except (BuildError, OSError) as exc:  # a read-only cache costs time, not correctness
        log.warning("cannot cache the built component", extra={"error": str(exc)})


# --- the build ----------------------------------------------------------------------------------


def default_output(config: ActorConfig) -> Path:
    return config.directory / "build" / f"{config.file_stem}_s.wasm"


def wit_dir() -> Path:
    from actors import ROOT

    return ROOT / "wit"


def build_actor(
    directory: Path,
    *,
    output: Path | None = None,
    cache_dir: Path | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    issuer: KeyPair | None = None,
    subject: KeyPair | None = None,
) -> BuildResult:
    """Build, cache and sign the Python actor in ``directory``; see the module docstring.

    ``use_cache=False`` runs componentize-py even when a cached component exists (and refreshes
    the cache); ``issuer``/``subject`` override the stored account/module keys.
    """
    started = time.monotonic()
    say: Progress = progress or (lambda _message: None)
    config = load_config(Path(directory))
    output = Path(output) if output is not None else default_output(config)
    if output.exists() and output.is_dir():
        raise BuildError(f"the output {output} is a directory; give a file path such as "
                         f"{output / (config.file_stem + '_s.wasm')}")
    builds = Path(cache_dir) if cache_dir is not None else paths.cache_dir() / "builds"
    wit = wit_dir()
    version = componentize_py_version()
    # Keys are generated only when something gets signed, so a build that fails leaves no
    # stray seed files; the up-to-date check only needs keys that already exist.
    known = (issuer, subject)
    if issuer is None or subject is None:
        stored = _stored_keys(config.name)
        if stored is not None:
            known = (issuer or stored[0], subject or stored[1])

    with tempfile.TemporaryDirectory(prefix="lattice-build-") as tmp:
        stage = _stage(config, Path(tmp))
        source_hash = _source_hash(config, stage, wit, version)
        log.debug("actor sources hashed", extra={"actor": config.name, "hash": source_hash})

        if (use_cache and known[0] is not None and known[1] is not None
                and _output_up_to_date(output, source_hash,
                                       _expected_claims(config, known[0], known[1]))):
            say(f"{config.name}: up to date (cached build) → {_display(output)}")
            return BuildResult(path=output, key=known[1].public_key, name=config.name,
                               cached=True, seconds=time.monotonic() - started, up_to_date=True,
                               source_hash=source_hash, issuer=known[0].public_key,
                               caps=list(config.caps))

        component = _cache_load(builds, config.file_stem, source_hash) if use_cache else None
        cached = component is not None
        if component is not None:
            say(f"{config.name}: sources unchanged, using the cached component "
                "(componentize-py skipped)")
        else:
            say(f"building {config.name} from {_display(config.directory)} (componentize-py)…")
            built_at = time.monotonic()
            target = Path(tmp) / "component.wasm"
            _run_componentize(stage, wit, target, progress)
            component = target.read_bytes()
            say(f"built in {time.monotonic() - built_at:.1f} s")
            _cache_store(builds, config.file_stem, source_hash, component)

    issuer, subject, key_notes = actor_keys(config.name, issuer, subject)
    for note in key_notes:
        say(note)
    expected = _expected_claims(config, issuer, subject)
    try:
        signed = wascap.sign_actor(
            component, issuer=issuer, subject=subject, name=config.name, caps=config.caps,
            tags=config.tags, rev=config.rev, ver=config.version, call_alias=config.call_alias)
    except (wascap.SigningError, NKeyError) as exc:
        raise BuildError(f"cannot sign {config.name}: {exc}") from None
    except wascap.ClaimsError as exc:
        raise BuildError(f"componentize-py produced an unreadable component ({exc.message}); "
                         "rebuild with --no-cache") from None
    _write_atomic(output, signed)
    record = {"source_hash": source_hash, "module_hash": wascap.module_hash(signed),
              "componentize_py": version, "claims": expected}
    try:
        _sidecar(output).write_text(json.dumps(record, indent=2) + "\n")
    except OSError as exc:  # only costs a re-sign next time
        log.warning("cannot record the build", extra={"path": str(_sidecar(output)),
                                                      "error": exc.strerror})
    say(f"signed as {subject.public_key} (caps: {', '.join(config.caps) or 'none'}) → "
        f"{_display(output)}")
    return BuildResult(path=output, key=subject.public_key, name=config.name, cached=cached,
                       seconds=time.monotonic() - started, source_hash=source_hash,
                       issuer=issuer.public_key, caps=list(config.caps))


# --- scaffold -----------------------------------------------------------------------------------

_ACTOR_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def new_actor(name: str, parent: Path | None = None) -> tuple[Path, list[Path]]:
    """Create ``PARENT/NAME/`` from the actor template (an HTTP greeter with a README and a
    test); returns the directory and the files written, relative to it."""
    from lattice.templates import ROOT as TEMPLATES

    if not _ACTOR_NAME.fullmatch(name):
        raise BuildError(f"actor name {name!r} is not valid: start with a letter and use only "
                         "letters, digits, '-' and '_' (at most 64 characters), e.g. "
                         "`lattice new actor kvcounter`")
    parent = Path(parent) if parent is not None else Path.cwd()
    if parent.exists() and not parent.is_dir():
        raise BuildError(f"--dir {parent} is not a directory")
    target = parent / name
    if target.exists() or target.is_symlink():
        raise BuildError(f"{target} already exists; choose another name, or another parent "
                         "directory with --dir")
    values = {"name": name, "stem": _file_stem(name),
              "alias": re.sub(r"[^a-z0-9_]", "_", name.lower())}
    template = TEMPLATES / "actor"
    written: list[Path] = []
    try:
        parent.mkdir(parents=True, exist_ok=True)
        # Render next to the target and rename at the end, so a failure leaves nothing behind.
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=parent))
        try:
            for source in sorted(template.rglob("*.tmpl")):
                relative = source.relative_to(template).with_suffix("")
                if relative.name == "gitignore":
                    relative = relative.with_name(".gitignore")
                text = source.read_text()
                for key, value in values.items():
                    text = text.replace("{{" + key + "}}", value)
                (staging / relative).parent.mkdir(parents=True, exist_ok=True)
                (staging / relative).write_text(text)
                written.append(relative)
            staging.chmod(0o777 & ~_UMASK)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    except OSError as exc:
        raise BuildError(f"cannot create {target}: {exc.strerror or exc}") from None
    return target, written
