"""Entry point 1: every contract codec in contracts/ (docs/contracts.md).

For each of the message types that any contract operation sends or receives, 10,000 inputs:
random bytes, random msgpack and CBOR values, maps that have the type's keys with values of the
wrong type, and mutations (bit flips, truncations, insertions…) of valid encodings. Decoding
must either give a value or raise the codec's own CodecError with a message; a decoded value
must re-encode or raise CodecError; the JSON conversion behind ``lattice call --data`` must do
the same for JSON garbage. A hypothesis test adds mutated encodings of richer valid values drawn
from tests/contracts/strategies.py (1,000 of them: at ~4 ms each, hypothesis is the slow part).
"""

from __future__ import annotations

import random
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contracts
from contracts import CodecError, _codec
from tests.contracts.strategies import strategy_for
from tests.fuzz.garbage import (
    INPUTS,
    Findings,
    check_error,
    mutate,
    pack,
    rand_bytes,
    rand_str,
    rand_value,
    rng,
)

SPECS: dict[str, Any] = {}
for _op in contracts.OPERATIONS.values():
    for _spec in (_op.input, _op.output):
        if _spec is not None:
            SPECS.setdefault(_codec.type_name(_spec), _spec)


def shaped(r: random.Random, node: _codec._Node, depth: int = 3) -> Any:
    """A value of roughly the right shape for ``node`` (its keys, lists, maps), with wrong-typed
    or random leaves now and then: the garbage that gets furthest into a decoder."""
    if depth <= 0 or r.random() < 0.1:
        return rand_value(r, 1)
    if isinstance(node, _codec._Optional):
        return None if r.random() < 0.2 else shaped(r, node.inner, depth)
    if isinstance(node, _codec._Struct):
        fields = list(node.fields)
        chosen = r.sample(fields, r.randint(0, len(fields)))
        doc: dict[Any, Any] = {f.wire: shaped(r, f.node, depth - 1) for f in chosen}
        if r.random() < 0.1:
            doc[rand_str(r, 6)] = rand_value(r, 1)
        if r.random() < 0.1:  # positional form, which the decoder also takes
            return list(doc.values())
        return doc
    if isinstance(node, _codec._List):
        return [shaped(r, node.item, depth - 1) for _ in range(r.randrange(4))]
    if isinstance(node, _codec._Dict):
        return {rand_str(r, 6): shaped(r, node.value, depth - 1) for _ in range(r.randrange(3))}
    return rand_value(r, 1)


def cbor(value: Any) -> bytes:
    try:
        return b"\x7f" + cbor2.dumps(value)
    except Exception:  # a value cbor2 cannot write (e.g. a lone surrogate): send noise
        return b"\x7f\xff"


def one_input(r: random.Random, node: _codec._Node, valid: list[bytes]) -> bytes:
    roll = r.randrange(10)
    if roll == 0:
        return rand_bytes(r)
    if roll == 1:
        return r.choice((b"\x7f", b"\xc1", b"\xc0", b"")) + rand_bytes(r, 32)
    if roll == 2:
        return pack(rand_value(r))
    if roll == 3:
        return cbor(shaped(r, node))
    if roll in (4, 5, 6):
        return pack(shaped(r, node))
    return mutate(r, r.choice(valid))


def test_every_codec_decodes_or_raises_codec_error(fuzz_run):
    findings = Findings()
    for name, spec in SPECS.items():
        run = fuzz_run(f"codec decode: {name}")
        node = _codec._compile(spec)
        r = rng(f"codec:{name}")
        zero = node.zero()
        valid = [contracts.encode(spec, zero), contracts.encode(spec, zero, fmt="cbor")]
        while run.inputs < INPUTS:
            data = one_input(r, node, valid)
            try:
                value = contracts.decode(spec, data)
            except Exception as exc:
                findings.add(check_error(exc, (CodecError,)), (name, data))
                run.refused()
                continue
            run.ok()
            # what was accepted must encode again, or be refused with a CodecError
            for fmt in ("msgpack", "cbor"):
                try:
                    encoded = contracts.encode(spec, value, fmt=fmt)
                except Exception as exc:
                    findings.add(check_error(exc, (CodecError,)), (name, "re-encode", value))
                    continue
                if len(valid) < 64:
                    valid.append(encoded)
                elif r.random() < 0.05:
                    valid[r.randrange(len(valid))] = encoded
    assert not findings, findings.report()


def test_json_conversion_takes_any_json(fuzz_run):
    """``lattice call --data JSON`` goes through from_json: garbage JSON is a CodecError."""
    findings = Findings()
    run = fuzz_run("codec from_json (all types)")
    r = rng("from_json")
    specs = list(SPECS.items())
    while run.inputs < INPUTS:
        name, spec = r.choice(specs)
        node = _codec._compile(spec)
        obj = shaped(r, node) if r.random() < 0.7 else rand_value(r, json_only=True)
        try:
            contracts.from_json(spec, obj)
        except Exception as exc:
            findings.add(check_error(exc, (CodecError,)), (name, obj))
            run.refused()
        else:
            run.ok()
    assert not findings, findings.report()


# ---- hypothesis: mutated encodings of valid values ----------------------------------------------

_names = sorted(SPECS)
_mutation = st.tuples(st.integers(0, 3), st.integers(0, 2**16), st.integers(0, 255))


def _apply(data: bytes, mutations: list[tuple[int, int, int]]) -> bytes:
    out = bytearray(data)
    for op, pos, byte in mutations:
        at = pos % (len(out) + 1)
        if op == 0 and out:
            out[at % len(out)] = byte
        elif op == 1:
            out.insert(at, byte)
        elif op == 2:
            del out[at:at + 1 + byte % 8]
        else:
            del out[at:]
    return bytes(out)


_counter = {"inputs": 0, "refused": 0}
HYPOTHESIS_EXAMPLES = max(1, INPUTS // 10)


@settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(st.sampled_from(_names).flatmap(lambda n: st.tuples(st.just(n),
                                                           strategy_for(SPECS[n]))),
       st.sampled_from(["msgpack", "cbor"]),
       st.lists(_mutation, min_size=1, max_size=4))
def _mutated_valid(named, fmt, mutations):
    name, value = named
    spec = SPECS[name]
    data = _apply(contracts.encode(spec, value, fmt=fmt), mutations)
    _counter["inputs"] += 1
    try:
        contracts.decode(spec, data)
    except Exception as exc:
        _counter["refused"] += 1
        problem = check_error(exc, (CodecError,))
        assert problem is None, (problem, name, data)


def test_mutated_valid_encodings_hypothesis(fuzz_run):
    run = fuzz_run("codec decode: mutated valid values (hypothesis)")
    _counter.update(inputs=0, refused=0)
    _mutated_valid()
    run.inputs, run.rejected = _counter["inputs"], _counter["refused"]
    run.accepted = run.inputs - run.rejected
    assert run.inputs >= HYPOTHESIS_EXAMPLES * 0.9
