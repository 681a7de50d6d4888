"""Where Lattice keeps its files on the user's machine (XDG base directories).

Every location can be moved with one environment variable, which tests use to stay hermetic.
"""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, default: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / default


def cache_dir() -> Path:
    """Compiled-module cache and other disposable data (``$LATTICE_CACHE_DIR``)."""
    override = os.environ.get("LATTICE_CACHE_DIR")
    return Path(override) if override else _xdg("XDG_CACHE_HOME", ".cache") / "lattice"


def keys_dir() -> Path:
    """Generated nkey seeds (``$LATTICE_KEYS_DIR``); created with mode 0700."""
    override = os.environ.get("LATTICE_KEYS_DIR")
    if override:
        return Path(override)
    return _xdg("XDG_DATA_HOME", ".local/share") / "lattice" / "keys"


def state_dir() -> Path:
    """Runtime state: logs, pid files, the embedded NATS data (``$LATTICE_STATE_DIR``)."""
    override = os.environ.get("LATTICE_STATE_DIR")
    return Path(override) if override else _xdg("XDG_STATE_HOME", ".local/state") / "lattice"


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) readable only by the current user, and return it."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
