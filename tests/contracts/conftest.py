import json
import os
from pathlib import Path

import pytest


def _vectors_dir() -> Path | None:
    candidates = [Path(__file__).parents[2].parent / "shared" / "vectors"]
    env = os.environ.get("LATTICE_SHARED_DIR")
    if env:
        candidates += [Path(env) / "vectors", Path(env)]
    for c in candidates:
        if (c / "wasmbus-recorded.json").is_file():
            return c
    return None


@pytest.fixture(scope="session")
def recorded() -> dict:
    """The byte-exact recordings from real actors. Missing vectors are a failure, not a skip."""
    where = _vectors_dir()
    if where is None:
        pytest.fail(
            "wasmbus-recorded.json not found: expected ../shared/vectors next to the repo "
            "or LATTICE_SHARED_DIR pointing at the shared directory"
        )
    return json.loads((where / "wasmbus-recorded.json").read_text())["cases"]
