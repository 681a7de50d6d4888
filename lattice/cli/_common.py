"""Helpers shared by the CLI subcommands: output, errors, reading ``--data``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


class CliError(Exception):
    """A user-facing failure: the message says what was wrong and how to fix it."""


def emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``obj`` as JSON when ``--json`` was given, else the human ``text``."""
    if as_json:
        print(json.dumps(obj, indent=2, sort_keys=False, default=str))
    else:
        print(text if text is not None else obj)


def read_data_arg(value: str | None) -> Any:
    """``--data`` takes JSON inline or ``@path`` to a JSON file; ``None`` means no input."""
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            value = path.read_text()
        except OSError as exc:
            raise CliError(f"cannot read --data file {path}: {exc.strerror}") from exc
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--data is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "quote strings, e.g. --data '\"my-key\"' or --data '{\"key\": \"k\", \"value\": 1}'"
        ) from exc


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code
