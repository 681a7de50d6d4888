"""CloudEvents 1.0 on the lattice's event subjects (docs/wire.md §3.4).

Every event goes to ``wasmbus.evt.{lattice}`` (OTP) and ``wasmbus.evt.{lattice}.{type}`` (Rust
host), so clients of either generation see it.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from nats.aio.client import Client

from lattice.rpc import subjects

log = logging.getLogger("lattice.events")

EVENT_TYPE_PREFIX = "com.wasmcloud.lattice."


def cloud_event(name: str, data: dict[str, Any], source: str) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "type": EVENT_TYPE_PREFIX + name,
        "source": source,
        "datacontenttype": "application/json",
        "id": str(uuid.uuid4()),
        "data": data,
    }


class EventPublisher:
    def __init__(self, nc: Client, lattice: str, source: str) -> None:
        self.nc = nc
        self.lattice = lattice
        self.source = source

    async def publish(self, name: str, data: dict[str, Any], *, source: str | None = None) -> None:
        """Publish one event; a failure is logged, never raised (events are best effort)."""
        body = json.dumps(cloud_event(name, data, source or self.source)).encode()
        try:
            await self.nc.publish(subjects.events(self.lattice), body)
            await self.nc.publish(subjects.event(self.lattice, name), body)
        except Exception as exc:
            log.warning("could not publish event", extra={"event": name, "error": str(exc)})
            return
        log.debug("event", extra={"event": name})

    async def rpc_event(self, succeeded: bool, source: dict[str, str], dest: dict[str, str],
                        operation: str, size: int) -> None:
        name = "invocation_succeeded" if succeeded else "invocation_failed"
        body = json.dumps(cloud_event(name, {"source": source, "dest": dest,
                                             "operation": operation, "bytes": size},
                                      self.source)).encode()
        try:
            await self.nc.publish(subjects.rpc_events(self.lattice), body)
        except Exception as exc:
            log.debug("could not publish rpc event", extra={"error": str(exc)})
