"""The wasmtime Engine shared by every actor of a Runtime, and the clock that enforces deadlines.

Deadlines use epoch interruption: one daemon thread bumps the engine's epoch every ``tick``
seconds and each Store is told how many ticks its current call may run. That costs nothing
per call (unlike fuel) and also stops loops that never call back into the host.
"""

from __future__ import annotations

import importlib.metadata
import math
import threading

import wasmtime

# Settings that change compiled code; part of the on-disk cache key so an upgrade of wasmtime
# or of these settings never loads an incompatible artifact.
_ENGINE_SETTINGS = {"epoch_interruption": True, "cranelift_opt_level": "speed"}


def make_engine() -> wasmtime.Engine:
    config = wasmtime.Config()
    config.epoch_interruption = True
    config.cranelift_opt_level = "speed"
    return wasmtime.Engine(config)


def engine_fingerprint() -> str:
    version = importlib.metadata.version("wasmtime")
    settings = ",".join(f"{k}={v}" for k, v in sorted(_ENGINE_SETTINGS.items()))
    return f"wasmtime-{version};{settings}"


class EpochTicker:
    """Advances ``engine``'s epoch every ``tick`` seconds on a daemon thread until stopped."""

    def __init__(self, engine: wasmtime.Engine, tick: float) -> None:
        self.tick = tick
        self._engine = engine
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lattice-epoch", daemon=True)
        self._thread.start()

    def ticks_for(self, seconds: float) -> int:
        """How many ticks a call may run to last at least ``seconds`` (never zero)."""
        return max(1, math.ceil(seconds / self.tick) + 1)

    def _run(self) -> None:
        # Event.wait doubles as the sleep, so stop() takes effect within one tick.
        while not self._stop.wait(self.tick):
            self._engine.increment_epoch()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1.0)
