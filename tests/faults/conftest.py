"""Shared pieces of the fault tests (docs/reliability.md "Faults").

Every test here injects one fault into a real lattice on loopback (real nats-server, hosts,
provider processes, Redis, wasmtime), asserts what must hold — nothing acknowledged is lost, the
lattice serves again, errors are clear — and prints its figures as one JSON line starting with
``FAULT`` (run with ``pytest -s``). Times are printed, never asserted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lattice.natsd import free_port, port_open
from tests.conftest import service_missing


def report(fault: str, **figures: Any) -> dict[str, Any]:
    """Print the figures of one fault as a JSON line (rounded to ms) and return them."""
    doc = {"fault": fault, **{k: round(v, 3) if isinstance(v, float) else v
                              for k, v in figures.items()}}
    print("FAULT " + json.dumps(doc), flush=True)
    return doc


class Clock:
    """Seconds since a fault was injected (``time.monotonic()``, as tests/faults/loadgen.py)."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def since(self, t: float | None = None) -> float:
        return (time.monotonic() if t is None else t) - self.at


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test's own on a free loopback port (URL of database 0).

    Not the shared Redis of the ``redis_url`` fixture: a fault test pauses its Redis, and a
    suite running elsewhere flushes the shared database under a counter being checked."""
    exe = shutil.which("redis-server")
    if exe is None:
        service_missing("redis-server (the Redis package)")
    port = free_port()
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_open("127.0.0.1", port):
            if proc.poll() is not None or time.monotonic() > deadline:
                service_missing(f"a redis-server on port {port}")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()
