"""``lattice call --wasm FILE OPERATION``: run one operation on an actor, in-process.

The input is the operation's typed message as JSON (converted through the contract codecs, so a
string becomes bytes where the field is a blob) and the decoded result is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import logging
from typing import Any

import msgpack

import contracts
from lattice.cli._common import CliError, emit, read_data_arg
from lattice.local import LocalHost
from lattice.runtime import ActorLoadError, GuestCallError, RuntimeConfig

EXAMPLE = """example:
  lattice call --wasm actors/echo/echo.wasm HttpServer.HandleRequest \\
      --data '{"method": "GET", "path": "/hello", "queryString": "a=1", "body": "hi"}'

Operations of the contracts in CONTRACTS.md take their typed message as JSON (keys in wire
camelCase or snake_case; a string becomes bytes where the field is a blob). Any other operation
(e.g. an actor's own interface such as Pingpong.Ping) takes --data as a JSON value that is sent
as plain msgpack, and its result is shown as decoded msgpack.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "call", help="run one operation on an actor in-process and print the decoded result",
        description="Load an actor module into an in-process host (with the builtin logging and "
        "numbergen capabilities, no providers) and run one operation on it.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wasm", required=True, metavar="FILE",
                   help="the actor: a signed .wasm module (or .wat text with --allow-unsigned)")
    p.add_argument("operation", metavar="OPERATION",
                   help="the operation to call, e.g. HttpServer.HandleRequest")
    p.add_argument("--data", metavar="JSON|@FILE",
                   help="the operation's input as JSON, inline or @path/to/file.json")
    p.add_argument("--with", dest="others", action="append", default=[], metavar="FILE",
                   help="also start this actor, so the called actor can reach it by key or call "
                   "alias (repeatable)")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="DEVELOPMENT ONLY: run modules that are unsigned, expired or tampered with")
    p.add_argument("--no-builtin-caps", action="store_true",
                   help="let actors use the builtin logging/numbergen capabilities without "
                   "claiming them (the behaviour of wasmCloud 0.62+ hosts)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="deadline for the call, host calls included (default: 10)")
    p.add_argument("--memory-limit", type=int, default=64, metavar="MIB",
                   help="linear memory cap per actor instance in MiB (default: 64)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON document with the actor, operation and result")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    if args.memory_limit < 1:
        raise CliError("--memory-limit must be at least 1 (MiB)")
    op = _known_operation(args.operation)
    payload = _encode_input(op, args.operation, read_data_arg(args.data))
    # Actor logs (builtin logging, WASI stdout/stderr) are part of what the user asked to see.
    actor_log = logging.getLogger("lattice.actor")
    if actor_log.getEffectiveLevel() > logging.INFO:
        actor_log.setLevel(logging.INFO)
    config = RuntimeConfig(call_timeout=args.timeout, memory_limit=args.memory_limit << 20,
                           allow_unsigned=args.allow_unsigned)
    return asyncio.run(_call(args, op, payload, config))


async def _call(args: argparse.Namespace, op: contracts.Operation | None, payload: bytes,
                config: RuntimeConfig) -> int:
    async with LocalHost(config, enforce_builtin_caps=not args.no_builtin_caps) as host:
        try:
            for other in args.others:
                await host.start_actor(other)
            actor = await host.start_actor(args.wasm)
        except ActorLoadError as exc:
            raise CliError(str(exc)) from None
        try:
            raw = await actor.call(args.operation, payload)
        except GuestCallError as exc:
            if args.json:
                emit({"actor": actor.key, "name": actor.name, "operation": args.operation,
                      "error": str(exc), "kind": exc.kind}, True)
                return 1
            raise CliError(f"{args.operation} failed ({exc.kind}): {exc}") from None
    result = _decode_output(op, raw)
    if args.json:
        emit({"actor": actor.key, "name": actor.name, "operation": args.operation,
              "result": result}, True)
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


def _known_operation(name: str) -> contracts.Operation | None:
    try:
        return contracts.operation(name)
    except contracts.UnknownOperation:
        # An actor's own interface (e.g. Pingpong.Ping, or a waPC guest's bare "echo"):
        # plain msgpack in and out.
        return None


def _encode_input(op: contracts.Operation | None, name: str, data: Any) -> bytes:
    if op is None:
        return b"" if data is None else msgpack.packb(data, use_bin_type=True)
    if op.input is None:
        if data is not None:
            raise CliError(f"{name} takes no input; drop --data")
        return b""
    if data is None:
        if not dataclasses.is_dataclass(op.input):
            raise CliError(f"{name} needs --data: its input is a {contracts.type_name(op.input)}, "
                           "given as JSON (e.g. --data '\"my-key\"')")
        data = {}  # a message with every field at its default
    try:
        return op.encode_input(op.input_from_json(data))
    except contracts.CodecError as exc:
        raise CliError(f"--data does not fit {name}'s input: {exc}") from None


def _decode_output(op: contracts.Operation | None, raw: bytes) -> Any:
    if op is None:
        if not raw:
            return None
        try:
            return contracts.to_jsonable(msgpack.unpackb(raw, raw=False))
        except (ValueError, msgpack.UnpackException):
            return {"base64": base64.b64encode(raw).decode()}
    if op.output is None:
        return None
    try:
        return contracts.to_jsonable(op.decode_output(raw))
    except contracts.CodecError as exc:
        raise CliError(f"the actor's reply is not a valid {op.name} result: {exc}") from None
