"""Entry point 2: the RPC envelope and its anti-forgery JWT (lattice/rpc/invocation.py,
lattice/rpc/antiforgery.py, lattice/jwt.py; docs/wire.md §2).

* ``Invocation.decode`` / ``InvocationResponse.decode`` of random bytes, random msgpack, maps with
  the envelope's keys holding wrong-typed values, and mutations of a real signed invocation:
  a value or EnvelopeError.
* ``antiforgery.validate`` of whatever decoded: passes or raises AntiForgeryError, and when it
  passes, origin, target, operation and payload are exactly what the trusted key signed (a
  mutation may only touch unsigned parts, such as the host id).
* ``jwt.decode`` / ``jwt.verify`` of random text, mutated tokens and tokens whose segments hold
  garbage JSON (deep nesting, huge numbers, non-objects): a Token/claims or JwtError; and
  ``validate`` of correctly signed tokens whose claims have the wrong types: AntiForgeryError.
"""

from __future__ import annotations

import base64
import json
import random

import msgpack

from lattice import jwt
from lattice.keys import KeyPair, KeyRole
from lattice.rpc import (
    AntiForgeryError,
    Entity,
    EnvelopeError,
    Invocation,
    InvocationResponse,
    new_invocation,
    validate,
)
from tests.fuzz.garbage import (
    INPUTS,
    Findings,
    check_error,
    deep,
    json_text,
    mutate,
    pack,
    rand_bytes,
    rand_str,
    rand_value,
    rng,
    wrong_typed,
)

CLUSTER = KeyPair.generate(KeyRole.CLUSTER)
OTHER = KeyPair.generate(KeyRole.CLUSTER)
ISSUERS = {CLUSTER.public_key}
HOST = KeyPair.generate(KeyRole.SERVER).public_key
ACTOR = KeyPair.generate(KeyRole.MODULE).public_key
PROVIDER = KeyPair.generate(KeyRole.SERVICE).public_key

INV_KEYS = ["origin", "target", "operation", "msg", "id", "encoded_claims", "host_id",
            "content_length", "traceContext"]
ENTITY_KEYS = ["public_key", "contract_id", "link_name"]
RESP_KEYS = ["invocation_id", "msg", "error", "content_length", "traceContext"]


def genuine(r: random.Random) -> Invocation:
    origin = Entity.actor(ACTOR) if r.random() < 0.5 else Entity.provider(
        PROVIDER, "wasmcloud:keyvalue", r.choice(("default", "x")))
    target = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
    return new_invocation(origin, target, r.choice(("HttpServer.HandleRequest", "Ping.Ping")),
                          rand_bytes(r, 48), cluster_key=CLUSTER, host_id=HOST,
                          trace_context={"traceparent": "00-x"} if r.random() < 0.3 else None)


def shaped_invocation(r: random.Random, base: Invocation) -> dict:
    doc = wrong_typed(r, INV_KEYS, json_only=False)
    for key in ("origin", "target"):
        if key in doc and r.random() < 0.6:
            doc[key] = wrong_typed(r, ENTITY_KEYS, json_only=False)
    if r.random() < 0.3:
        doc["encoded_claims"] = base.encoded_claims
    return doc


def test_envelopes_decode_or_raise_envelope_error(fuzz_run):
    findings = Findings()
    r = rng("envelope")
    base = genuine(r)
    valid = base.encode()
    passed_validation = 0
    for cls, keys in ((Invocation, INV_KEYS), (InvocationResponse, RESP_KEYS)):
        run = fuzz_run(f"rpc envelope: {cls.__name__}.decode")
        while run.inputs < INPUTS:
            roll = r.randrange(8)
            if roll == 0:
                data = rand_bytes(r)
            elif roll == 1:
                data = pack(rand_value(r))
            elif roll in (2, 3):
                doc = (shaped_invocation(r, base) if cls is Invocation
                       else wrong_typed(r, keys, json_only=False))
                data = pack(doc)
            elif roll == 5 and cls is Invocation:  # well-formed, one field tampered with
                doc = dict(msgpack.unpackb(valid))
                key = r.choice(["origin", "target", "operation", "msg", "id", "host_id",
                                "content_length", "encoded_claims"])
                if key == "origin":
                    doc[key] = Entity.actor(ACTOR + "X").to_wire()
                elif key == "target":
                    doc[key] = Entity.provider(PROVIDER, "a:b").to_wire()
                elif key == "msg":
                    doc[key] = rand_bytes(r)
                elif key == "content_length":
                    doc[key] = r.choice((0, len(doc["msg"])))
                elif key == "encoded_claims":
                    doc[key] = genuine(r).encoded_claims
                else:
                    doc[key] = rand_str(r)
                data = pack(doc)
            elif roll == 4:  # nested deeper than anyone should send
                data = (b"\x81\xa6origin" if r.random() < 0.5 else b"\x81\xactraceContext") \
                    + b"\x81\xa1a" * r.choice((200, 500, 1000, 3000)) + b"\xc0"
            else:
                if r.random() < 0.2:
                    base = genuine(r)
                    valid = base.encode()
                data = mutate(r, valid)
            try:
                decoded = cls.decode(data)
            except Exception as exc:
                findings.add(check_error(exc, (EnvelopeError,)), data)
                run.refused()
                continue
            run.ok()
            if isinstance(decoded, Invocation):
                try:
                    validate(decoded, ISSUERS)
                except Exception as exc:
                    findings.add(check_error(exc, (AntiForgeryError,)), ("validate", data))
                    continue
                passed_validation += 1
                # only a genuine signature gets here: what it signed must be intact
                signed = (base.origin.url, base.target_url, base.operation, base.msg)
                got = (decoded.origin.url, decoded.target_url, decoded.operation, decoded.msg)
                if got != signed:
                    findings.add("FORGERY: a modified invocation passed validation",
                                 (signed, got))
    assert not findings, findings.report()
    assert passed_validation  # the unmodified/harmlessly mutated ones do pass


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def garbage_segment(r: random.Random) -> str:
    roll = r.randrange(6)
    if roll == 0:
        return rand_str(r, 40)
    if roll == 1:
        return b64(rand_bytes(r, 40))
    if roll == 2:
        return b64(json_text(r, rand_value(r, json_only=True)))
    if roll == 3:
        return b64(deep(r, "[", "]").encode())
    if roll == 4:
        return b64(b'{"iat": ' + b"9" * r.choice((10, 4301, 20000)) + b"}")
    return b64(json_text(r, wrong_typed(r, ["iss", "sub", "exp", "nbf", "iat", "wascap",
                                            "alg", "typ"])))


def forged_claims(r: random.Random) -> dict:
    """Claims signed by a trusted key but with fields of the wrong type or shape."""
    claims = {"jti": "x", "iat": 1, "iss": CLUSTER.public_key, "sub": "id",
              "wascap": {"target_url": "wasmbus://M", "origin_url": "wasmbus://M",
                         "hash": "00"}}
    for key in r.sample(["iss", "sub", "exp", "nbf", "iat", "wascap"], r.randint(1, 3)):
        claims[key] = rand_value(r, 2, json_only=True)
    if isinstance(claims.get("wascap"), dict) and r.random() < 0.5:
        claims["wascap"] = wrong_typed(r, ["target_url", "origin_url", "hash"])
    return claims


def sign(claims: dict, key: KeyPair) -> str:
    """A correctly signed token for any claims (ASCII JSON, so lone surrogates survive)."""
    head = b64(json.dumps(jwt.HEADER).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(key.sign(f'{head}.{body}'.encode()))}"


def test_jwts_decode_or_raise_jwt_error(fuzz_run):
    findings = Findings()
    r = rng("jwt")
    inv = genuine(r)
    token = inv.encoded_claims
    run = fuzz_run("anti-forgery JWT: jwt.decode/verify")
    while run.inputs < INPUTS:
        roll = r.randrange(5)
        if roll == 0:
            text = rand_str(r, 200)
        elif roll == 1:  # character-level mutations of a real token
            text = mutate(r, token.encode()).decode("latin-1")
        elif roll == 2:
            parts = token.split(".")
            parts[r.randrange(3)] = garbage_segment(r)
            text = ".".join(parts)
        elif roll == 3:
            text = ".".join(garbage_segment(r) for _ in range(r.choice((1, 2, 3, 3, 4))))
        else:
            text = sign(forged_claims(r), r.choice((CLUSTER, OTHER)))
        try:
            claims = jwt.verify(text)
        except Exception as exc:
            findings.add(check_error(exc, (jwt.JwtError,)), text)
            run.refused()
        else:
            run.ok()
            assert isinstance(claims, dict)
        # the same token as an invocation's anti-forgery token
        inv.encoded_claims = text
        try:
            validate(inv, ISSUERS)
        except Exception as exc:
            findings.add(check_error(exc, (AntiForgeryError,)), ("validate", text))
        else:
            if text != token:
                findings.add("a foreign token validated", text)
    assert not findings, findings.report()


def test_deep_and_huge_json_in_tokens_are_jwt_errors():
    """Named cases the random run also hits: JSON nested past the recursion limit and numbers
    past Python's int-string limit inside a token segment."""
    header = b64(json.dumps(jwt.HEADER).encode())
    for segment in (b64(b"[" * 100_000 + b"]" * 100_000), b64(b'{"iat": ' + b"9" * 5000 + b"}")):
        for text in (f"{segment}.{header}.AA", f"{header}.{segment}.AA"):
            try:
                jwt.decode(text)
            except jwt.JwtError as exc:
                assert "not valid JSON" in str(exc), exc
            else:
                raise AssertionError("garbage JSON decoded")
