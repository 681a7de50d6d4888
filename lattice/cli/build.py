"""``lattice build [DIR]``: build a Python actor into a signed component;
``lattice new actor NAME``: scaffold one."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from lattice.build import BuildError, build_actor, new_actor
from lattice.cli._common import CliError, note

BUILD_EPILOG = """The actor's settings come from [tool.lattice] in DIR/pyproject.toml (or the
top-level keys of DIR/actor.toml):

  [tool.lattice]
  name = "kvcounter"                                # default: the directory's name
  module = "app"                                    # the module with the handlers (app.py)
  caps = ["wasmcloud:httpserver", "wasmcloud:keyvalue"]
  version = "0.1.0"
  rev = 1                                           # optional
  call_alias = "myorg/kvcounter"                    # optional
  tags = ["demo"]                                   # optional
  python_path = ["vendor"]                          # pure-Python dependencies

The unsigned component is cached by a hash of the sources (so an unchanged actor is not rebuilt)
and signed with the actor's stored keys, the ones `lattice claims sign --name NAME` uses, so its
key stays the same across builds.

examples:
  lattice build actors/kvcounter
  lattice build --output /tmp/kvcounter.wasm --no-cache
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "build", help="build a Python actor into a signed WebAssembly component",
        description="Build the Python actor in DIR with componentize-py and sign it; prints the "
        "path of the signed component (default DIR/build/NAME_s.wasm).",
        epilog=BUILD_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("directory", nargs="?", default=".", type=Path, metavar="DIR",
                   help="the actor's directory (default: the current directory)")
    p.add_argument("--output", "-o", type=Path, metavar="PATH",
                   help="where to write the signed component (default: DIR/build/NAME_s.wasm)")
    p.add_argument("--no-cache", action="store_true",
                   help="run componentize-py even if the sources are unchanged")
    p.add_argument("--quiet", "-q", action="store_true",
                   help="print only the output path (no progress on stderr)")
    p.set_defaults(handler=_build)

    new = sub.add_parser("new", help="create a new project from a template")
    new_sub = new.add_subparsers(dest="new_command", metavar="WHAT", required=True)
    actor = new_sub.add_parser(
        "actor", help="create a Python actor (an HTTP greeter with a README and a test)",
        description="Create PARENT/NAME/ with app.py (an HTTP handler using the lattice_actor "
        "SDK), pyproject.toml ([tool.lattice] build settings), README.md and tests/test_app.py.",
        epilog="example: lattice new actor hello && cd hello && lattice build")
    actor.add_argument("name", metavar="NAME",
                       help="the actor's name: letters, digits, '-' and '_'")
    actor.add_argument("--dir", type=Path, default=None, metavar="PARENT",
                       help="create the actor inside this directory (default: the current one)")
    actor.set_defaults(handler=_new_actor)


def _build(args: argparse.Namespace) -> int:
    try:
        result = build_actor(args.directory, output=args.output, use_cache=not args.no_cache,
                             progress=None if args.quiet else note)
    except BuildError as exc:
        raise CliError(str(exc)) from None
    print(result.path)
    return 0


def _new_actor(args: argparse.Namespace) -> int:
    try:
        target, files = new_actor(args.name, args.dir)
    except BuildError as exc:
        raise CliError(str(exc)) from None
    print(target)
    note(f"created {args.name}: {', '.join(str(f) for f in files)}")
    note(f"next: cd {shlex.quote(str(target))} && lattice build && pytest")
    return 0
