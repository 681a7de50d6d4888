"""``lattice keys``: generate nkeys for any wasmCloud role."""

from __future__ import annotations

import argparse

from lattice.cli._common import emit
from lattice.keys import SIGNING_ROLES, KeyPair, KeyRole, NKeyError

_ROLE_NAMES = ", ".join(r.name.lower() for r in SIGNING_ROLES)


def _role_arg(text: str) -> KeyRole:
    try:
        role = KeyRole.parse(text)
    except NKeyError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    if role is KeyRole.CURVE:
        raise argparse.ArgumentTypeError(
            f"curve (x25519) keys cannot be generated here; choose one of {_ROLE_NAMES}"
        )
    return role


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("keys", help="generate nkeys (account, module, server, …)")
    keys_sub = parser.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    gen = keys_sub.add_parser(
        "gen", help="generate a key pair and print its public key and seed",
        description="Generate a new Ed25519 nkey. The seed is secret: store it safely.",
    )
    gen.add_argument("role", type=_role_arg, metavar="ROLE", help=f"one of {_ROLE_NAMES}")
    gen.add_argument("--json", action="store_true", help="print a JSON object instead of text")
    gen.set_defaults(handler=_gen)


def _gen(args: argparse.Namespace) -> int:
    pair = KeyPair.generate(args.role)
    obj = {"role": args.role.name.lower(), "public_key": pair.public_key, "seed": pair.seed}
    emit(obj, args.json, f"Public Key: {pair.public_key}\nSeed: {pair.seed}")
    return 0
