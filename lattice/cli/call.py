"""``lattice call --wasm FILE OPERATION``: run one operation on an actor, in-process;
``lattice call ACTOR OPERATION``: invoke an actor running on a lattice.

The input is the operation's typed message as JSON (converted through the contract codecs, so a
string becomes bytes where the field is a blob) and the decoded result is printed.

Over a lattice, the invocation is signed with a cluster seed that the hosts trust:
``--cluster-seed`` (or ``$LATTICE_CLUSTER_SEED``), else the seed ``lattice up`` shares with its
host in ``state_dir()/cluster.nk``. The origin is a fresh actor key per run: hosts accept
actor-to-actor calls without capability checks (docs/wire.md §6.2), so the caller needs no claims.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import json
import logging
import os
from typing import Any

import msgpack

import contracts
from lattice.cli._common import (
    CliError,
    add_lattice_options,
    ctl_session,
    emit,
    load_cluster_seed,
    read_data_arg,
    resolve_claim,
    run_async,
)
from lattice.keys import KeyPair, KeyRole, NKeyError, is_public_key
from lattice.local import LocalHost
from lattice.rpc import Entity, RpcClient, RpcError
from lattice.runtime import ActorLoadError, GuestCallError, RuntimeConfig

EXAMPLE = """examples:
  lattice call --wasm actors/echo-wasmbus/echo.wasm HttpServer.HandleRequest \\
      --data '{"method": "GET", "path": "/hello", "queryString": "a=1", "body": "hi"}'
  lattice call echo HttpServer.HandleRequest --data '{"path": "/hello"}'   # on the lattice

Operations of the contracts in docs/contracts.md take their typed message as JSON (keys in wire
camelCase or snake_case; a string becomes bytes where the field is a blob). Any other operation
(e.g. an actor's own interface such as Pingpong.Ping) takes --data as a JSON value that is sent
as plain msgpack, and its result is shown as decoded msgpack.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "call", help="run one operation on an actor (in-process, or on a lattice) and print the "
        "decoded result",
        usage="lattice call (--wasm FILE OPERATION | ACTOR OPERATION) [--data JSON|@FILE] "
        "[options]",
        description="With --wasm: load an actor module into an in-process host (with the\n"
        "builtin logging and numbergen capabilities, no providers) and run one operation on it.\n"
        "With ACTOR (a public key, claims name or call alias): invoke that actor on a lattice,\n"
        "signed with the cluster seed its hosts trust (see --cluster-seed).",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wasm", metavar="FILE",
                   help="run this actor in-process: a signed .wasm module (or .wat text with "
                   "--allow-unsigned)")
    p.add_argument("names", nargs="+", metavar="[ACTOR] OPERATION",
                   help="the actor (lattice mode only) and the operation to call, e.g. "
                   "HttpServer.HandleRequest")
    p.add_argument("--data", metavar="JSON|@FILE",
                   help="the operation's input as JSON, inline or @path/to/file.json")
    p.add_argument("--with", dest="others", action="append", default=[], metavar="FILE",
                   help="(--wasm) also start this actor, so the called actor can reach it by key "
                   "or call alias (repeatable)")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="(--wasm) DEVELOPMENT ONLY: run modules that are unsigned, expired or "
                   "tampered with")
    p.add_argument("--no-builtin-caps", action="store_true",
                   help="(--wasm) let actors use the builtin logging/numbergen capabilities "
                   "without claiming them (the behaviour of wasmCloud 0.62+ hosts)")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="(--wasm) the call's deadline, host calls included (default: 10); "
                   "(lattice) how long to wait for the answer (default: 12, so that a host's "
                   "own 10 s deadline error arrives before the CLI gives up)")
    p.add_argument("--memory-limit", type=int, default=None, metavar="MIB",
                   help="(--wasm) linear memory cap per actor instance in MiB (default: 64 for "
                   "wasmbus modules, 128 for Python components)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON document with the actor, operation and result")
    add_lattice_options(p, timeout=None, json_flag=False)
    p.add_argument("--cluster-seed", default=os.environ.get("LATTICE_CLUSTER_SEED"),
                   metavar="SC…",
                   help="(lattice) sign the invocation with this cluster seed (default: "
                   "$LATTICE_CLUSTER_SEED, else the seed `lattice up` created)")
    p.set_defaults(handler=run)


# A host stops a guest call at 10 s (RuntimeConfig.call_timeout); waiting a little longer lets
# its deadline error reach the user instead of a bare "did not answer".
LOCAL_TIMEOUT, LATTICE_TIMEOUT = 10.0, 12.0


def run(args: argparse.Namespace) -> int:
    if args.timeout is None:
        args.timeout = LOCAL_TIMEOUT if args.wasm else LATTICE_TIMEOUT
    if args.timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    if args.memory_limit is not None and args.memory_limit < 1:
        raise CliError("--memory-limit must be at least 1 (MiB)")
    _split_names(args)
    op = _known_operation(args.operation)
    payload = _encode_input(op, args.operation, read_data_arg(args.data))
    if args.wasm is None:
        return run_async(_call_lattice(args, op, payload))
    # Actor logs (builtin logging, WASI stdout/stderr) are part of what the user asked to see.
    actor_log = logging.getLogger("lattice.actor")
    if actor_log.getEffectiveLevel() > logging.INFO:
        actor_log.setLevel(logging.INFO)
    limits = {} if args.memory_limit is None else {
        "memory_limit": args.memory_limit << 20, "component_memory_limit": args.memory_limit << 20}
    config = RuntimeConfig(call_timeout=args.timeout, allow_unsigned=args.allow_unsigned,
                           **limits)
    return asyncio.run(_call(args, op, payload, config))


def _split_names(args: argparse.Namespace) -> None:
    """``--wasm FILE OPERATION`` or ``ACTOR OPERATION``: exactly one of the two forms."""
    names: list[str] = args.names
    if args.wasm is not None:
        if len(names) != 1:
            raise CliError("with --wasm give only the OPERATION (the actor is the --wasm file); "
                           "to call an actor on a lattice, drop --wasm: lattice call ACTOR "
                           "OPERATION")
        args.actor, args.operation = None, names[0]
        return
    if len(names) != 2:
        raise CliError("give the actor and the operation (lattice call ACTOR OPERATION), or run "
                       "a local module with lattice call --wasm FILE OPERATION")
    local_only = [flag for flag, used in (("--with", args.others),
                                          ("--allow-unsigned", args.allow_unsigned),
                                          ("--no-builtin-caps", args.no_builtin_caps))
                  if used]
    if local_only:
        raise CliError(f"{', '.join(local_only)} only apply to a local run with --wasm FILE; "
                       "the hosts of a lattice decide those themselves")
    args.actor, args.operation = names


async def _call_lattice(args: argparse.Namespace, op: contracts.Operation | None,
                        payload: bytes) -> int:
    seed = args.cluster_seed or load_cluster_seed()
    try:
        cluster = (KeyPair.from_seed(seed, KeyRole.CLUSTER) if seed
                   else KeyPair.generate(KeyRole.CLUSTER))
    except NKeyError as exc:
        raise CliError(f"--cluster-seed is not a cluster seed (SC…): {exc}") from None
    async with ctl_session(args, name="lattice-call") as ctl:
        claims: list[dict[str, str]] = []
        if not is_public_key(args.actor, KeyRole.MODULE):
            claims = await ctl.get_claims()
        key = resolve_claim(claims, args.actor, "actor")
        name = next((c.get("name", "") for c in claims if c.get("sub") == key), "")
        # A fresh host id and actor origin per run: the CLI is not a host nor a known actor.
        client = RpcClient(ctl.nc, ctl.lattice, cluster, KeyPair.generate(KeyRole.SERVER)
                           .public_key, timeout=args.timeout)
        origin = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
        try:
            raw = await client.invoke(origin, Entity.actor(key), args.operation, payload,
                                      label=name or None)
        except RpcError as exc:
            message = str(exc)
            if "Anti-forgery" in message and not seed:
                message += ("; the hosts do not trust this CLI's signature: pass the host's "
                            "cluster seed with --cluster-seed or $LATTICE_CLUSTER_SEED")
            if args.json:
                emit({"actor": key, "name": name, "operation": args.operation,
                      "error": message, "kind": exc.kind}, True)
                return 1
            raise CliError(message) from None
    result = _decode_output(op, raw)
    if args.json:
        emit({"actor": key, "name": name, "operation": args.operation, "result": result}, True)
    else:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


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
