"""Shared plumbing of the typed clients: one contract operation through ``host_call``."""

from __future__ import annotations

from typing import Any

import contracts
from contracts import CodecError

from ._errors import HostError
from ._host import host_call

DEFAULT_LINK = "default"


def check_link(link_name: str) -> str:
    if not isinstance(link_name, str) or not link_name:
        raise ValueError(f"link_name must be a non-empty string, got {link_name!r}")
    return link_name


def invoke(binding: str, op: contracts.Operation, value: Any = None) -> Any:
    """Encode ``value`` with ``op``'s input codec, call the host, decode the reply.

    Encoding errors (wrong argument types) propagate as ``CodecError``; a reply that does not
    decode raises :class:`HostError` ("deserialization: ...").
    """
    payload = op.encode_input(value)
    reply = host_call(binding, op.contract_id, op.name, payload)
    try:
        return op.decode_output(reply)
    except CodecError as exc:
        raise HostError(f"deserialization: {exc}", binding=binding,
                        namespace=op.contract_id, operation=op.name) from None
