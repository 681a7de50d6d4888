"""Log through the host (builtin ``wasmcloud:builtin:logging``, ``Logging.WriteLog``).

::

    from lattice_actor import logging as log

    log.info("request for %s", path)      # %-style arguments, like the standard library
    log.warn("slow backend")
    log.error("failed: %s", err)

    import logging
    log.install()                         # stdlib logging records go to the host too
    logging.getLogger(__name__).warning("via the standard library")

The host prefixes each line with the actor's key. Levels: debug, info, warn, error. The actor's
claims need the ``wasmcloud:builtin:logging`` capability.
"""

from __future__ import annotations

import logging as _stdlog  # the standard library (absolute import), not this module
from typing import Any

import contracts
from contracts import builtin_logging as _bl

from ._client import DEFAULT_LINK, invoke

_WRITE = contracts.operation(_bl.WRITE_LOG)

LEVELS = _bl.LEVELS  # ("debug", "info", "warn", "error")
_ALIASES = {"warning": "warn", "critical": "error", "fatal": "error", "trace": "debug"}


def log(level: str, message: str, *args: Any) -> None:
    """Write ``message % args`` (or ``message`` when there are no args) at ``level``."""
    level = _ALIASES.get(level.lower(), level.lower())
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    text = str(message) % args if args else str(message)
    invoke(DEFAULT_LINK, _WRITE, _bl.LogEntry(level=level, text=text))


def debug(message: str, *args: Any) -> None:
    log("debug", message, *args)


def info(message: str, *args: Any) -> None:
    log("info", message, *args)


def warn(message: str, *args: Any) -> None:
    log("warn", message, *args)


warning = warn


def error(message: str, *args: Any) -> None:
    log("error", message, *args)


def _level_of(levelno: int) -> str:
    if levelno >= _stdlog.ERROR:
        return "error"
    if levelno >= _stdlog.WARNING:
        return "warn"
    if levelno >= _stdlog.INFO:
        return "info"
    return "debug"


class HostHandler(_stdlog.Handler):
    """A standard-library logging handler that writes records through the host."""

    def emit(self, record: _stdlog.LogRecord) -> None:
        try:
            log(_level_of(record.levelno), self.format(record))
        except Exception:
            self.handleError(record)


def install(level: int = _stdlog.INFO, logger: _stdlog.Logger | None = None) -> HostHandler:
    """Send standard-library logging (the root logger by default) to the host."""
    target = logger if logger is not None else _stdlog.getLogger()
    for existing in target.handlers:
        if isinstance(existing, HostHandler):
            target.setLevel(level)
            return existing
    handler = HostHandler()
    handler.setFormatter(_stdlog.Formatter("%(name)s: %(message)s"))
    target.addHandler(handler)
    target.setLevel(level)
    return handler


__all__ = ["LEVELS", "HostHandler", "debug", "error", "info", "install", "log", "warn",
           "warning"]
