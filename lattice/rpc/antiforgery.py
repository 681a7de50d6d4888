"""Anti-forgery: every invocation carries a JWT signed with a cluster seed (docs/wire.md §2.5).

Signing binds origin, target, operation and the full payload (via the hash) to a trusted
cluster key; receivers check all of it, in the order the reference implementations do, and
report the first failure in their words.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from functools import lru_cache

from lattice import jwt
from lattice.keys import KeyPair
from lattice.rpc.invocation import Entity, Invocation, invocation_hash

WASCAP_REVISION = 3


class AntiForgeryError(Exception):
    """The invocation failed validation; ``str()`` is the reason in wasmCloud's words."""


@lru_cache(maxsize=1024)
def _verifier(public_key: str) -> KeyPair:
    # Decoding an nkey costs a base32 decode and a CRC; issuers repeat, so keep them.
    return KeyPair.from_public_key(public_key)


def new_invocation(origin: Entity, target: Entity, operation: str, msg: bytes, *,
                   cluster_key: KeyPair, host_id: str,
                   trace_context: dict[str, str] | None = None) -> Invocation:
    """A signed Invocation carrying the full ``msg`` (chunking happens later, in transport)."""
    inv_id = str(uuid.uuid4())
    target_url = f"{target.url}/{operation}"
    claims = {
        "jti": uuid.uuid4().hex,
        "iat": int(time.time()),
        "iss": cluster_key.public_key,
        "sub": inv_id,
        "wascap": {"target_url": target_url, "origin_url": origin.url,
                   "hash": invocation_hash(origin.url, target_url, operation, msg)},
        "wascap_revision": WASCAP_REVISION,
    }
    return Invocation(origin=origin, target=target, operation=operation, msg=msg, id=inv_id,
                      encoded_claims=jwt.encode(claims, cluster_key), host_id=host_id,
                      content_length=len(msg), trace_context=trace_context)


def validate(inv: Invocation, issuers: Collection[str], *, now: float | None = None) -> None:
    """Raise AntiForgeryError unless ``inv`` (with its full, dechunked msg) is genuine."""
    try:
        token = jwt.decode(inv.encoded_claims)
    except jwt.JwtError as exc:
        raise AntiForgeryError(f"invalid invocation token: {exc}") from None
    claims = token.claims
    iss, sub = claims.get("iss"), claims.get("sub")
    if token.header.get("alg") != "Ed25519" or token.header.get("typ") != "jwt":
        raise AntiForgeryError("invalid invocation token header")
    if not (isinstance(iss, str) and iss and isinstance(sub, str) and sub):
        raise AntiForgeryError("invocation token lacks an issuer or subject")
    try:
        verifier = _verifier(iss)
    except ValueError:
        raise AntiForgeryError("Invocation claims signature invalid") from None
    if not verifier.verify(token.signing_input, token.signature):
        raise AntiForgeryError("Invocation claims signature invalid")
    moment = time.time() if now is None else now
    if isinstance(claims.get("exp"), int) and claims["exp"] < moment:
        raise AntiForgeryError("Invocation claims token expired")
    if isinstance(claims.get("nbf"), int) and claims["nbf"] > moment:
        raise AntiForgeryError("Attempt to use invocation before claims token allows")
    meta = claims.get("wascap")
    if not isinstance(meta, dict):
        raise AntiForgeryError("No wascap metadata found on claims")
    actual = invocation_hash(inv.origin.url, inv.target_url, inv.operation, inv.msg)
    if meta.get("hash") != actual:
        raise AntiForgeryError(f"Invocation hash does not match signed claims hash "
                               f"({meta.get('hash')} / {actual})")
    if not (inv.host_id.startswith("N") or len(inv.host_id) == 56):
        raise AntiForgeryError(f"Invalid host ID on invocation: '{inv.host_id}'")
    if iss not in issuers:
        raise AntiForgeryError("Issuer of this invocation is not among the list of valid issuers")
    if meta.get("target_url") != inv.target_url:
        raise AntiForgeryError("Invocation claims and invocation target URL do not match")
    if meta.get("origin_url") != inv.origin.url:
        raise AntiForgeryError("Invocation claims and invocation origin URL do not match")
