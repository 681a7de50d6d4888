import pytest

from tests.conftest import load_vectors


@pytest.fixture(scope="session")
def recorded() -> dict:
    """The byte-exact recordings from real actors (tests/data/vectors/wasmbus-recorded.json)."""
    return load_vectors("wasmbus-recorded")
