"""The component's export: ``lattice:actor/guest`` ``guest-call``.

A Python actor's main module is generated as::

    import app                               # the user's module: registers handlers
    from lattice_actor._guest import Guest   # componentize-py instantiates this class

``componentize_py_types`` exists only inside a component, so it is imported per call and this
module imports natively too.
"""

from __future__ import annotations

import sys
import traceback

from ._dispatch import dispatch
from ._errors import OperationNotHandled

OUT_OF_MEMORY = ("out of memory: the actor ran out of memory while handling the call "
                 "(raise the host's memory limit, or stream large data in chunks)")


def error_text(exc: BaseException) -> str:
    """The Err text for a failed call: ``str(exc)``, or the exception's type name when empty."""
    if isinstance(exc, MemoryError):
        return OUT_OF_MEMORY
    try:
        text = str(exc)
    except Exception:
        text = ""
    return text or type(exc).__name__


class Guest:
    """``guest_call(operation, payload)``: Latin-1 payload in, dispatch, Latin-1 payload out."""

    def guest_call(self, operation: str, payload: str) -> str:
        from componentize_py_types import Err

        try:
            reply = dispatch(operation, payload.encode("latin-1"))
            return reply.decode("latin-1")
        except Err:
            raise
        except MemoryError:
            raise Err(OUT_OF_MEMORY) from None
        except OperationNotHandled as exc:
            raise Err(error_text(exc)) from None
        except UnicodeEncodeError as exc:
            if exc.object is payload:
                raise Err("payload is not Latin-1: a character above U+00FF at position "
                          f"{exc.start} (payload bytes travel as Latin-1 strings)") from None
            _report(operation)
            raise Err(error_text(exc)) from None
        except (Exception, SystemExit) as exc:
            _report(operation)
            raise Err(error_text(exc)) from None


def _report(operation: str) -> None:
    """The traceback to stderr, which the host writes to its log."""
    try:
        print(f"lattice_actor: handler for {operation} failed:", file=sys.stderr)
        traceback.print_exc()
    except Exception:
        pass
