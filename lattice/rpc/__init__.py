"""Lattice RPC (docs/wire.md §2-3): the invocation envelope, anti-forgery JWTs, chunking of large
payloads, subjects, and the client/server halves of an invocation over NATS."""

from lattice.rpc.antiforgery import AntiForgeryError, new_invocation, validate
from lattice.rpc.chunking import ChunkStore
from lattice.rpc.client import DEFAULT_TIMEOUT, Rejected, RpcClient, RpcError, accept, reply
from lattice.rpc.invocation import Entity, EnvelopeError, Invocation, InvocationResponse

__all__ = [
    "DEFAULT_TIMEOUT",
    "AntiForgeryError",
    "ChunkStore",
    "Entity",
    "EnvelopeError",
    "Invocation",
    "InvocationResponse",
    "Rejected",
    "RpcClient",
    "RpcError",
    "accept",
    "new_invocation",
    "reply",
    "validate",
]
