"""Exponential backoff for commands that keep failing (cf. wadm#253: no retry storms).

A start that always fails — a bad image reference, a registry refusing the credentials, a
provider that cannot run — must not be re-sent on every reconcile pass, or on every failure
event (each of which triggers a pass). Each command gets its own entry, keyed by
:func:`lattice.app.scalers.retry_key` (kind, host, image, link name), so one bad host or one bad
component never slows down the others:

* a failure (the host's ``*_start_failed`` event, or a refused command) holds the command back
  for ``base`` seconds, doubling with every consecutive failure up to ``cap``;
* a success (``actors_started`` / ``provider_started``, an accepted command) forgets it, so
  the next failure starts again at ``base``.

Pure bookkeeping: every method takes ``now`` (any monotonic clock) and nothing here reads a
clock, sleeps or talks to NATS, so the schedule is tested without waiting for it. The scalers
take :meth:`Backoff.holds` as input and leave held commands out of their plan
(:func:`lattice.app.scalers.reconcile`).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

DEFAULT_BASE = 1.0   # seconds before the first retry
DEFAULT_CAP = 60.0   # the longest wait between two attempts


@dataclass(frozen=True)
class Hold:
    """Why and until when a command is held back."""

    error: str         # the last failure, as the host reported it
    attempts: int      # consecutive failed attempts
    retry_at: float    # on the caller's clock: the command may be sent again from then on
    delay: float       # the wait that led to retry_at


@dataclass
class _Entry:
    failures: int = 0
    error: str = ""
    retry_at: float = 0.0
    delay: float = 0.0
    in_flight: bool = False  # sent and not answered by a failure yet


class Backoff:
    def __init__(self, base: float = DEFAULT_BASE, cap: float = DEFAULT_CAP) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap (got base={base}, cap={cap})")
        self.base = base
        self.cap = cap
        self._entries: dict[Hashable, _Entry] = {}

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` consecutive failures: base, 2·base, 4·base … cap."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.base * 2.0 ** min(failures - 1, 62))

    def sent(self, key: Hashable) -> None:
        """The command was sent: its next failure counts as one more attempt."""
        self._entries.setdefault(key, _Entry()).in_flight = True

    def failed(self, key: Hashable, error: str, now: float) -> Hold | None:
        """An attempt failed; the hold it starts, or ``None`` when no attempt of ours was
        outstanding (a duplicate report of the same failure, or someone else's start): then only
        the error text is refreshed and the schedule is left alone."""
        entry = self._entries.get(key)
        if entry is None or not entry.in_flight:
            if entry is not None and entry.failures:
                entry.error = error
            return None
        entry.in_flight = False
        entry.failures += 1
        entry.error = error
        entry.delay = self.delay(entry.failures)
        entry.retry_at = now + entry.delay
        return self._hold(entry)

    def succeeded(self, key: Hashable) -> None:
        """The command worked: forget its failures (the next one waits ``base`` again)."""
        self._entries.pop(key, None)

    def holds(self, now: float) -> dict[Hashable, Hold]:
        """Commands that must not be sent at ``now``."""
        return {k: self._hold(e) for k, e in self._entries.items()
                if e.failures and not e.in_flight and e.retry_at > now}

    def failing(self) -> dict[Hashable, Hold]:
        """Every command whose last attempt failed, held or due."""
        return {k: self._hold(e) for k, e in self._entries.items() if e.failures}

    def next_due(self, now: float) -> float | None:
        """The earliest time a held command becomes due again (for the driver's timer)."""
        times = [e.retry_at for e in self._entries.values()
                 if e.failures and not e.in_flight and e.retry_at > now]
        return min(times, default=None)

    def became_due(self, since: float, now: float) -> bool:
        """Whether a held command became due in ``(since, now]``: time for a pass."""
        return any(e.failures and not e.in_flight and since < e.retry_at <= now
                   for e in self._entries.values())

    def retain(self, keys: Iterable[Hashable]) -> None:
        """Forget every command not in ``keys`` (the plans no longer ask for it: the
        component is running, was removed, or got another image)."""
        keep = set(keys)
        for key in [k for k in self._entries if k not in keep]:
            del self._entries[key]

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    @staticmethod
    def _hold(entry: _Entry) -> Hold:
        return Hold(entry.error, entry.failures, entry.retry_at, entry.delay)
