"""Durations in error messages read as people write them."""

from lattice.runtime.errors import seconds


def test_seconds_rounds_remaining_deadlines() -> None:
    assert seconds(9.98077) == "10 s"
    assert seconds(10.0) == "10 s"
    assert seconds(2.5) == "2.5 s"
    assert seconds(0.3) == "300 ms"
