"""The fuzz tests' report: every test records how many inputs it fed to which entry point and
what came of them; the summary at the end of the run prints the table (docs/reliability.md)."""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field

import pytest


@dataclass
class Run:
    entry: str
    inputs: int = 0
    rejected: int = 0  # refused with a clear error (the expected outcome for garbage)
    accepted: int = 0  # decoded/served anyway (garbage that happens to be valid)
    started: float = field(default_factory=time.monotonic)
    seconds: float = 0.0

    def ok(self) -> None:
        self.inputs += 1
        self.accepted += 1

    def refused(self) -> None:
        self.inputs += 1
        self.rejected += 1


_RUNS: list[Run] = []


@pytest.fixture(autouse=True)
def _collect_earlier_garbage():
    """Run the finalizers of what earlier tests left behind (unclosed sockets warn in them) now,
    at a shallow stack: run during a deep-nesting input, their warnings cannot even be
    formatted, and pytest reports that as an error of the fuzz test."""
    gc.collect()


@pytest.fixture
def fuzz_run():
    """``run = fuzz_run("entry point")``; count with ``run.ok()`` / ``run.refused()``."""
    mine: list[Run] = []

    def finish() -> None:
        if mine and not mine[-1].seconds:
            mine[-1].seconds = time.monotonic() - mine[-1].started

    def make(entry: str) -> Run:
        finish()  # one run at a time: a new one ends the previous
        run = Run(entry)
        mine.append(run)
        return run

    yield make
    finish()
    _RUNS.extend(mine)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    if not _RUNS:
        return
    write = terminalreporter.write_line
    write("")
    write("bad-input fuzzing (tests/fuzz):")
    write(f"  {'entry point':<58} {'inputs':>8} {'refused':>8} {'accepted':>8} {'seconds':>8}")
    for run in _RUNS:
        write(f"  {run.entry:<58} {run.inputs:>8,} {run.rejected:>8,} {run.accepted:>8,} "
              f"{run.seconds:>8.1f}")
