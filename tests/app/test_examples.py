"""Every manifest in examples/ is valid and names a sample actor that exists."""

from __future__ import annotations

from pathlib import Path

import pytest

import actors
from lattice.app.manifest import load_manifest

EXAMPLES = sorted((actors.ROOT.parent / "examples").glob("*.yaml"))


def test_there_is_a_manifest_per_sample_app() -> None:
    assert {p.stem for p in EXAMPLES} >= {"echo", "kvcounter", "todo", "uploader", "fetcher",
                                          "pingpong", "chat"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_is_valid(path: Path) -> None:
    manifest = load_manifest(path.read_text()).resolve_paths(path.parent)
    assert not manifest.warnings
    for comp in manifest.components:
        if comp.type == "actor":  # the built output of a sample actor directory
            actor_dir = Path(comp.image).parent.parent
            assert (actor_dir / "pyproject.toml").is_file(), comp.image
