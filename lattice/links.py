"""Link definitions (docs/wire.md §4): (actor, contract id, link name) → provider, plus config
values."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lattice.rpc import subjects

# A contract id travels in payloads and KV values, not in subjects; it still gets a bound.
MAX_CONTRACT_ID = 256


def link_id(actor_id: str, contract_id: str, link_name: str) -> str:
    """The linkdef id OTP ≥0.60 and the control-interface client agree on (docs/wire.md §3.6)."""
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


def check_link(link: LinkDefinition) -> LinkDefinition:
    """``link`` if every part of it can be stored and delivered, else
    :class:`~lattice.rpc.subjects.InvalidSubjectToken` naming the part.

    The actor id, provider id and link name become subject tokens
    (``wasmbus.rpc.{lattice}.{provider}.{link name}.linkdefs.put``), so they are checked
    before a link is acknowledged, stored, or delivered from the store."""
    subjects.check_token("actor id", link.actor_id)
    subjects.check_token("provider id", link.provider_id)
    subjects.check_link_name(link.link_name)
    contract = link.contract_id
    if not contract or len(contract) > MAX_CONTRACT_ID or any(c.isspace() for c in contract):
        raise subjects.InvalidSubjectToken(
            f"the contract id {contract[:80]!r} must be 1 to {MAX_CONTRACT_ID} characters "
            "with no white space, e.g. wasmcloud:keyvalue")
    return link


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
