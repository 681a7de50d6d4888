"""Shared artifacts for the `lattice build` tests.

Building a Python actor runs componentize-py (10-20 s on a 2-core machine), so the sample actor
is built once per session, and unsigned components are cached across sessions by source hash
in ``$LATTICE_TEST_BUILD_CACHE`` (default: the test cache's ``builds/``, the place
``build_actor`` uses under the session's ``LATTICE_CACHE_DIR``). Keys live in the session's
temporary ``LATTICE_KEYS_DIR``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lattice import paths
from lattice.build import BuildResult, build_actor

SAMPLE = Path(__file__).resolve().parent / "sample"


def build_cache() -> Path:
    override = os.environ.get("LATTICE_TEST_BUILD_CACHE")
    return Path(override) if override else paths.cache_dir() / "builds"


def copy_sample(dest: Path) -> Path:
    """A fresh copy of the sample actor (never build inside the repo)."""
    shutil.copytree(SAMPLE, dest, ignore=shutil.ignore_patterns("build", "__pycache__"))
    return dest


@dataclass
class Built:
    directory: Path
    result: BuildResult
    progress: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sample actor, built (componentize-py only if the persistent cache misses)."""
    directory = copy_sample(tmp_path_factory.mktemp("sample") / "buildsample")
    lines: list[str] = []
    result = build_actor(directory, cache_dir=build_cache(), progress=lines.append)
    return Built(directory, result, lines)
