"""Sending and serving invocations over NATS.

:class:`RpcClient` is the outbound half (sign, chunk, request, decode, dechunk, explain
failures). :func:`accept` and :func:`reply` are the inbound half shared by hosts (serving
actors) and providers: decode, dechunk, validate, then answer or chunk the answer.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from lattice.keys import KeyPair
from lattice.rpc import subjects
from lattice.rpc.antiforgery import AntiForgeryError, new_invocation, validate
from lattice.rpc.chunking import (
    CHUNKED_EXTRA_TIMEOUT,
    ChunkStore,
    needs_chunking,
    response_object,
)
from lattice.rpc.invocation import Entity, EnvelopeError, Invocation, InvocationResponse

log = logging.getLogger("lattice.rpc")

DEFAULT_TIMEOUT = 2.0


class RpcError(Exception):
    """An invocation failed. ``kind``: ``no-responders``, ``timeout``, ``remote`` (the target
    answered with an error), ``protocol`` (an answer we could not use)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Rejected(Exception):
    """An inbound invocation must be refused with this text as the response's ``error``."""


def describe(entity: Entity, label: str | None = None) -> str:
    if entity.is_actor:
        return f"actor {entity.public_key}" + (f" ({label})" if label else "")
    name = f" ({label})" if label else ""
    return (f"provider {entity.public_key}{name} for {entity.contract_id} "
            f"(link name {entity.link_name})")


def subject_for(lattice: str, target: Entity) -> str:
    if target.link_name:
        return subjects.provider(lattice, target.public_key, target.link_name)
    return subjects.actor(lattice, target.public_key)


class RpcClient:
    """Outbound invocations for one lattice, signed with one cluster key."""

    def __init__(self, nc: Client, lattice: str, cluster_key: KeyPair, host_id: str, *,
                 timeout: float = DEFAULT_TIMEOUT, chunks: ChunkStore | None = None) -> None:
        self.nc = nc
        self.lattice = lattice
        self.cluster_key = cluster_key
        self.host_id = host_id
        self.timeout = timeout
        self.chunks = chunks or ChunkStore(nc, lattice)

    async def invoke(self, origin: Entity, target: Entity, operation: str, payload: bytes, *,
                     timeout: float | None = None, label: str | None = None,
                     trace_context: dict[str, str] | None = None) -> bytes:
        """Send one invocation and return the result bytes; raises RpcError."""
        inv = new_invocation(origin, target, operation, payload, cluster_key=self.cluster_key,
                             host_id=self.host_id, trace_context=trace_context)
        wait = self.timeout if timeout is None else timeout
        if needs_chunking(payload):
            await self.chunks.put(inv.id, payload)
            inv.msg = b""
            wait += CHUNKED_EXTRA_TIMEOUT
        subject = subject_for(self.lattice, target)
        try:
            reply = await self.nc.request(subject, inv.encode(), timeout=wait)
        except NoRespondersError:
            await self._discard_chunks(inv)
            raise RpcError(self._nobody(target, label), "no-responders") from None
        except (TimeoutError, NatsTimeoutError):
            await self._discard_chunks(inv)
            raise RpcError(f"{describe(target, label)} did not answer {operation} within "
                           f"{wait:g} s in lattice {self.lattice}: it may be overloaded or stuck; "
                           "check its host's log, or allow more time with --timeout",
                           "timeout") from None
        return await self._result(inv, reply.data, target, label)

    async def _discard_chunks(self, inv: Invocation) -> None:
        """Nobody read the chunked request: delete it rather than leave it in the bucket."""
        if inv.chunked:
            await self.chunks.discard(inv.id)

    async def _result(self, inv: Invocation, data: bytes, target: Entity,
                      label: str | None) -> bytes:
        try:
            resp = InvocationResponse.decode(data)
        except EnvelopeError as exc:
            raise RpcError(f"{describe(target, label)} sent an unusable answer: {exc}",
                           "protocol") from None
        if resp.invocation_id and resp.invocation_id != inv.id:
            raise RpcError(f"invocation ID mismatch: sent {inv.id}, answer is for "
                           f"{resp.invocation_id}", "protocol")
        if resp.error is not None:
            raise RpcError(resp.error, "remote")
        if resp.content_length is not None and resp.content_length > len(resp.msg):
            try:
                return await self.chunks.take(response_object(inv.id), resp.content_length)
            except LookupError as exc:
                raise RpcError(str(exc), "protocol") from None
        return resp.msg

    def _nobody(self, target: Entity, label: str | None) -> str:
        if target.is_actor:
            return (f"no host runs {describe(target, label)} in lattice {self.lattice}: start it "
                    "with `lattice start actor …`")
        return (f"{describe(target, label)} is not running in lattice {self.lattice}: start it "
                "with `lattice start provider …`")


async def accept(data: bytes, *, issuers: Collection[str], chunks: ChunkStore) -> Invocation:
    """Decode, dechunk and validate an inbound invocation; raises Rejected with the reply text."""
    try:
        inv = Invocation.decode(data)
    except EnvelopeError as exc:
        log.debug("undecodable invocation", extra={"error": str(exc)})
        raise Rejected("Failed to deserialize invocation") from None
    if inv.chunked:
        try:
            inv.msg = await chunks.take(inv.id, inv.content_length)
        except LookupError as exc:
            raise Rejected(f"cannot read the chunked payload: {exc}") from None
    try:
        validate(inv, issuers)
    except AntiForgeryError as exc:
        raise Rejected(f"Anti-forgery check failed: {exc}") from None
    except Exception as exc:  # malformed claims of any shape: refuse, never crash the server
        log.debug("unvalidatable invocation", extra={"error": repr(exc)})
        raise Rejected("Anti-forgery check failed: malformed invocation token") from None
    return inv


async def reply(invocation_id: str, *, result: bytes | None = None, error: str | None = None,
                chunks: ChunkStore) -> bytes:
    """The encoded InvocationResponse for a result or an error (chunking large results)."""
    if error is not None:
        return InvocationResponse(invocation_id, b"", error, 0).encode()
    result = result or b""
    if needs_chunking(result):
        await chunks.put(response_object(invocation_id), result)
        return InvocationResponse(invocation_id, b"", None, len(result)).encode()
    return InvocationResponse(invocation_id, result).encode()
