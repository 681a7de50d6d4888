"""Exceptions raised by the SDK."""

from __future__ import annotations


class HostError(Exception):
    """A host call failed: no capability claim, no link, the provider's error text, ...

    ``str(err)`` is the host's text verbatim; the call that failed is kept for diagnostics::

        try:
            keyvalue.get("k")
        except HostError as err:
            logging.warn(f"{err.operation} on {err.namespace} failed: {err}")
    """

    def __init__(
        self,
        message: str,
        *,
        binding: str | None = None,
        namespace: str | None = None,
        operation: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.binding = binding
        self.namespace = namespace
        self.operation = operation

    def __str__(self) -> str:
        return self.message


class OperationNotHandled(LookupError):
    """An invocation named an operation this actor registered no handler for."""

    def __str__(self) -> str:  # LookupError would not repr() it, but be explicit
        return str(self.args[0]) if self.args else "operation not handled"


class RegistrationError(ValueError):
    """A handler could not be registered (e.g. a second handler for the same operation)."""
