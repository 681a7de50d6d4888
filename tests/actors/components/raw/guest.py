"""A component actor written straight against actors/wit/lattice-actor.wit (no SDK), for the
runtime tests: each operation exercises one behaviour of the component bridge."""

import sys

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import host

calls = 0


class Guest(exports.Guest):
    def guest_call(self, operation: str, payload: str) -> str:
        global calls
        calls += 1
        if operation == "Echo":
            return payload
        if operation == "Count":
            return str(calls)
        if operation == "Host":  # payload: binding|namespace|operation|data
            binding, namespace, op, data = payload.split("|", 3)
            try:
                return "ok:" + host.host_call(binding, namespace, op, data)
            except Err as exc:
                return "err:" + exc.value
        if operation == "HostLatin":  # a payload that is not Latin-1
            try:
                return host.host_call("", "x", "y", "\u0100")
            except Err as exc:
                return "err:" + exc.value
        if operation == "Fail":
            raise Err("it failed: " + payload)
        if operation == "Print":
            print("to stdout:", payload)
            print("to stderr:", payload, file=sys.stderr)
            return ""
        if operation == "Loop":
            while True:
                pass
        if operation == "Alloc":  # payload: MiB to hold at once
            hold = [bytearray(1 << 20) for _ in range(int(payload))]
            return str(len(hold))
        if operation == "Raise":  # not an Err: componentize-py aborts the instance
            raise ValueError("not through Err")
        if operation == "Exit":
            sys.exit(3)
        if operation == "Wide":
            return "\u0100"
        raise Err(f"unknown operation {operation}")
