"""The ``lattice`` command.

Each subcommand lives in its own module with a ``register(subparsers)`` function; this module only
assembles them, configures logging and turns :class:`CliError` into a clean message and exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lattice import __version__, logs
from lattice.cli._common import CliError, fail

# Subcommand modules, in the order ``lattice --help`` lists them.
_COMMANDS = ["up", "host", "get", "actor", "link", "app", "call", "artifacts", "build",
             "claims", "keys"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lattice",
        description="Run a lattice of wasmCloud-compatible WebAssembly actors and capability "
        "providers over NATS, and manage their keys and claims.",
    )
    parser.add_argument("--version", action="version", version=f"lattice {__version__}")
    parser.add_argument(
        "--log-level", default="warning", choices=["debug", "info", "warning", "error"],
        help="log verbosity on stderr (default: warning)",
    )
    parser.add_argument(
        "--log-format", default="text", choices=["text", "json"],
        help="log line format: text with key=value fields, or one JSON object per line",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        importlib.import_module(f"lattice.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.setup(args.log_level, args.log_format)
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        return fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main())
