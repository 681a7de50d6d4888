"""Signed link traffic between a Lattice host and its providers (a Lattice extension).

wasmCloud 0.x delivers link definitions to a provider as plain messages on
``wasmbus.rpc.{lattice}.{provider}.{link}.linkdefs.put|del``: anyone on the lattice's NATS can
unlink an actor at a provider while the lattice still lists the link. Lattice hosts sign what
they send with their cluster key, and a provider whose HostData says ``lattice_signed_links``
ignores link messages not signed by one of its ``cluster_issuers``. A provider started by a
wasmCloud host gets no such flag and accepts plain messages, as the protocol says.

The signature covers the subject (so a put cannot be replayed as a delete, or at another
provider), the payload, and a timestamp; a message older than ``MAX_AGE`` is refused, which
bounds replays of a captured message (the host also reconciles links, so a replay that slips
through is undone).
"""

from __future__ import annotations

import base64
import time
from collections.abc import Collection, Mapping

from lattice.keys import KeyPair, KeyRole, NKeyError

SIGNER = "Lattice-Link-Signer"
SIGNATURE = "Lattice-Link-Signature"
TIME = "Lattice-Link-Time"
MAX_AGE = 300.0  # seconds either way: allows for clock skew between machines


def _signed_bytes(subject: str, payload: bytes, millis: str) -> bytes:
    return b"\n".join((b"lattice-link-v1", subject.encode(), millis.encode(), payload))


def sign(cluster: KeyPair, subject: str, payload: bytes, *,
         now: float | None = None) -> dict[str, str]:
    """The NATS headers that authenticate ``payload`` on ``subject``."""
    millis = str(int((time.time() if now is None else now) * 1000))
    signature = cluster.sign(_signed_bytes(subject, payload, millis))
    return {SIGNER: cluster.public_key, TIME: millis,
            SIGNATURE: base64.urlsafe_b64encode(signature).decode().rstrip("=")}


def check(headers: Mapping[str, str] | None, subject: str, payload: bytes,
          trusted: Collection[str], *, now: float | None = None) -> str | None:
    """None if the message is signed by a trusted cluster key, else why it is refused."""
    if not headers or SIGNATURE not in headers:
        return "the message is not signed by a Lattice host"
    signer, millis = headers.get(SIGNER, ""), headers.get(TIME, "")
    if signer not in trusted:
        return f"it is signed by {signer[:60]!r}, which is not a trusted cluster key"
    try:
        sent = int(millis) / 1000
    except ValueError:
        return "its timestamp is not a number"
    if abs((time.time() if now is None else now) - sent) > MAX_AGE:
        return f"it is older than {MAX_AGE:g} s (or the clocks disagree by more)"
    try:
        key = KeyPair.from_public_key(signer, KeyRole.CLUSTER)
        raw = headers[SIGNATURE]
        signature = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (NKeyError, ValueError):
        return "its signature cannot be read"
    if not key.verify(_signed_bytes(subject, payload, millis), signature):
        return "its signature does not match"
    return None
