"""``lattice_actor``: write Lattice (wasmCloud 0.x) actors in Python.

An actor is a module whose functions are registered as handlers; it calls capability providers
through the typed clients. ``lattice build`` turns it into a WebAssembly component::

    from lattice_actor import Request, Response, http_handler, keyvalue, logging

    @http_handler
    def handle(req: Request):
        if req.path == "/hits":
            hits = keyvalue.increment("hits")
            logging.info("hit number %d", hits)
            return {"hits": hits}                  # JSON, 200
        return Response.not_found()

Handlers: :func:`http_handler`, :func:`message_handler`, :func:`chunk_handler`,
:func:`health_handler`, :func:`operation`. Clients (modules, link ``"default"``; each has a
class taking another ``link_name``): :mod:`~lattice_actor.keyvalue`,
:mod:`~lattice_actor.sqldb`, :mod:`~lattice_actor.blobstore`, :mod:`~lattice_actor.httpclient`,
:mod:`~lattice_actor.messaging`; builtins :mod:`~lattice_actor.logging` and
:mod:`~lattice_actor.numbergen`; other actors :mod:`~lattice_actor.actors`. A failed host call
raises :class:`HostError`. Unit tests: :mod:`lattice_actor.testing`.
"""

from contracts.blobstore import Chunk, ChunkResponse
from contracts.core import HealthCheckResponse

from . import actors as actors
from . import blobstore as blobstore
from . import httpclient as httpclient
from . import keyvalue as keyvalue
from . import logging as logging
from . import messaging as messaging
from . import numbergen as numbergen
from . import sqldb as sqldb
from ._dispatch import dispatch, handled_operations
from ._errors import HostError, OperationNotHandled, RegistrationError
from ._handlers import (
    chunk_handler,
    health_handler,
    http_handler,
    message_handler,
    operation,
)
from ._http import Headers, HttpError, InvalidJSON, Request, Response
from .messaging import Message

__all__ = [
    "Chunk",
    "ChunkResponse",
    "Headers",
    "HealthCheckResponse",
    "HostError",
    "HttpError",
    "InvalidJSON",
    "Message",
    "OperationNotHandled",
    "RegistrationError",
    "Request",
    "Response",
    "chunk_handler",
    "dispatch",
    "handled_operations",
    "health_handler",
    "http_handler",
    "message_handler",
    "operation",
]

# The client modules are re-exported as attributes (``from . import x as x``) but deliberately
# left out of __all__: a star import must not shadow the standard library's ``logging``.
