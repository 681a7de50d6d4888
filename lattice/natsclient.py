"""nats-py's client with one change: a server error ends in a reconnect, never a dead client.

nats-py answers every ``-ERR`` from the server other than a stale connection or a permissions
violation by closing the client for good: its subscriptions are dropped and it never
reconnects. nats-server sends such errors for one bad message (a control line over 4 KiB, a
malformed subject) and then closes that connection, so one oversized link name used to leave a
host heartbeating on its control connection while its RPC connection was silently gone.

:class:`ResilientClient` treats those errors as the outage they are: it logs the server's
reason and lets nats-py's own reconnect logic run, which replays every subscription. Errors
while connecting (bad credentials) and authorization failures keep nats-py's behaviour, so a
refused login still fails fast. Every close that Lattice did not ask for is logged as an error.

This overrides a private method of nats-py (``Client._process_err``): pyproject.toml pins
nats-py's exact version, and tests/unit/test_natsclient.py checks the behaviour against a real
nats-server, so an upgrade that changes it fails there first.
"""

from __future__ import annotations

import logging
from typing import Any

from nats import errors
from nats.aio.client import AUTHORIZATION_VIOLATION, PERMISSIONS_ERR, STALE_CONNECTION, Client

log = logging.getLogger("lattice.nats")

# The private hook overridden below; checked at import so a nats-py that lost it fails loudly.
if not callable(getattr(Client, "_process_err", None)) or \
        not callable(getattr(Client, "_process_op_err", None)):  # pragma: no cover
    raise ImportError("this nats-py has no Client._process_err/_process_op_err: install the "
                      "version pyproject.toml pins (pip install -e .)")


class ResilientClient(Client):
    """A :class:`nats.aio.client.Client` that reconnects after a server error."""

    def __init__(self) -> None:
        super().__init__()
        self._closing_on_request = False
        self.server_errors = 0  # server errors survived by reconnecting (for tests, metrics)

    async def _process_err(self, err_msg: str) -> None:
        text = err_msg.strip().strip("'")
        lowered = text.lower()
        if (self.is_connecting or STALE_CONNECTION in lowered
                or AUTHORIZATION_VIOLATION in lowered or PERMISSIONS_ERR in lowered):
            await super()._process_err(err_msg)
            return
        self.server_errors += 1
        log.error("NATS server reported an error and drops the connection; reconnecting",
                  extra={"connection": self.options.get("name"), "error": text})
        self._err = errors.Error(f"nats: {text}")
        await self._process_op_err(self._err)

    async def close(self) -> None:
        self._closing_on_request = True
        await super().close()

    async def drain(self) -> None:
        self._closing_on_request = True
        await super().drain()

    @property
    def closed_on_request(self) -> bool:
        """True once ``close()`` or ``drain()`` was called: a close that is not an outage."""
        return self._closing_on_request


async def connect_resilient(**options: Any) -> ResilientClient:
    """``nats.connect(**options)`` returning a :class:`ResilientClient`; a ``closed_cb`` in
    ``options`` still runs, after an unrequested close has been logged."""
    nc = ResilientClient()
    user_closed_cb = options.pop("closed_cb", None)

    async def on_closed() -> None:
        if not nc.closed_on_request:
            log.error("NATS connection closed without being asked to; it will not come back",
                      extra={"connection": options.get("name"), "error": str(nc.last_error)})
        if user_closed_cb is not None:
            await user_closed_cb()

    await nc.connect(closed_cb=on_closed, **options)
    return nc
