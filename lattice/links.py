"""Link definitions (WIRE.md §4): (actor, contract id, link name) → provider, plus config values."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def link_id(actor_id: str, contract_id: str, link_name: str) -> str:
    """The linkdef id OTP ≥0.60 and the control-interface client agree on (WIRE.md §3.6)."""
    return hashlib.sha256(f"{actor_id}{contract_id}{link_name}".encode()).hexdigest().upper()


@dataclass(frozen=True)
class LinkDefinition:
    actor_id: str
    provider_id: str
    contract_id: str
    link_name: str = "default"
    values: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return link_id(self.actor_id, self.contract_id, self.link_name)

    @classmethod
    def from_wire(cls, doc: Mapping[str, Any]) -> LinkDefinition:
        """From the JSON/msgpack map every peer writes; a missing ``id`` is fine (it is derived)
        and a missing link name means ``default``."""
        values = doc.get("values") or {}
        return cls(actor_id=str(doc.get("actor_id") or ""),
                   provider_id=str(doc.get("provider_id") or ""),
                   contract_id=str(doc.get("contract_id") or ""),
                   link_name=str(doc.get("link_name") or "default"),
                   values={str(k): str(v) for k, v in values.items() if v is not None})

    def to_wire(self) -> dict[str, object]:
        """The msgpack/JSON map providers and the KV bucket use (snake_case keys)."""
        return {"id": self.id, "actor_id": self.actor_id, "provider_id": self.provider_id,
                "link_name": self.link_name, "contract_id": self.contract_id,
                "values": dict(self.values)}


class LinkTable:
    """The links a host knows, keyed by their identity; at most one link per identity."""

    def __init__(self) -> None:
        self._links: dict[tuple[str, str, str], LinkDefinition] = {}

    def put(self, link: LinkDefinition) -> None:
        self._links[(link.actor_id, link.contract_id, link.link_name)] = link

    def delete(self, actor_id: str, contract_id: str, link_name: str) -> LinkDefinition | None:
        return self._links.pop((actor_id, contract_id, link_name), None)

    def get(self, actor_id: str, contract_id: str, link_name: str) -> LinkDefinition | None:
        return self._links.get((actor_id, contract_id, link_name))

    def __iter__(self):
        return iter(list(self._links.values()))

    def __len__(self) -> int:
        return len(self._links)
