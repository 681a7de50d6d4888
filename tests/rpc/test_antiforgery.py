"""Anti-forgery invocation tokens (docs/wire.md §2.5, Appendix B): what new_invocation signs, and
every rejection of validate() with its exact wasmCloud text, in the documented order."""

from __future__ import annotations

import base64
import json
import time
import uuid

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lattice import jwt
from lattice.keys import KeyPair, KeyRole
from lattice.rpc.antiforgery import AntiForgeryError, new_invocation, validate
from lattice.rpc.invocation import Entity, Invocation, invocation_hash

ACTOR = "MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5"
OTHER_ACTOR = "MB2ZQB6ROOMAYBO4ZCTFYWN7YIVBWA3MTKZYAQKJMTIHE2ELLRW2E3ZW"
PROVIDER = "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M"
HASH_27 = "C51558F531564714A8D8BFB8E4195D9E8C8E6B42C3758952679420EDE9CFC99A"

SIGNATURE_INVALID = "Invocation claims signature invalid"
EXPIRED = "Invocation claims token expired"
NOT_YET = "Attempt to use invocation before claims token allows"
NO_WASCAP = "No wascap metadata found on claims"
HASH_MISMATCH = "Invocation hash does not match signed claims hash"
UNTRUSTED = "Issuer of this invocation is not among the list of valid issuers"
TARGET_MISMATCH = "Invocation claims and invocation target URL do not match"
ORIGIN_MISMATCH = "Invocation claims and invocation origin URL do not match"


@pytest.fixture(scope="module")
def cluster() -> KeyPair:
    return KeyPair.generate(KeyRole.CLUSTER)


@pytest.fixture(scope="module")
def stranger() -> KeyPair:
    return KeyPair.generate(KeyRole.CLUSTER)


@pytest.fixture(scope="module")
def host_id() -> str:
    return KeyPair.generate(KeyRole.SERVER).public_key


def _make(cluster: KeyPair, host_id: str, *, msg: bytes = b"hello",
          origin: Entity | None = None, target: Entity | None = None,
          operation: str = "HttpServer.HandleRequest", **kw) -> Invocation:
    return new_invocation(origin or Entity.actor(ACTOR),
                          target or Entity.provider(PROVIDER, "wasmcloud:httpserver", "default"),
                          operation, msg, cluster_key=cluster, host_id=host_id, **kw)


def _claims(inv: Invocation) -> dict:
    return jwt.decode(inv.encoded_claims).claims


def _resign(inv: Invocation, claims: dict, key: KeyPair) -> Invocation:
    inv.encoded_claims = jwt.encode(claims, key)
    return inv


def _reason(inv: Invocation, issuers, **kw) -> str:
    with pytest.raises(AntiForgeryError) as info:
        validate(inv, issuers, **kw)
    return str(info.value)


def _seg(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def _raw_token(header: object, claims: object, signer: KeyPair) -> str:
    signing_input = f"{_seg(header)}.{_seg(claims)}"
    signature = base64.urlsafe_b64encode(signer.sign(signing_input.encode())).decode()
    return f"{signing_input}.{signature.rstrip('=')}"


# ---- what gets signed ---------------------------------------------------------------------------


def test_new_invocation_validates(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    validate(inv, [cluster.public_key])
    validate(inv, {KeyPair.generate(KeyRole.CLUSTER).public_key, cluster.public_key})


def test_new_invocation_fields(cluster: KeyPair, host_id: str) -> None:
    ctx = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    inv = _make(cluster, host_id, msg=b"payload", trace_context=ctx)
    assert inv.origin == Entity.actor(ACTOR)
    assert inv.target == Entity.provider(PROVIDER, "wasmcloud:httpserver", "default")
    assert inv.operation == "HttpServer.HandleRequest"
    assert inv.msg == b"payload"
    assert inv.content_length == 7
    assert inv.host_id == host_id
    assert inv.trace_context == ctx
    assert str(uuid.UUID(inv.id)) == inv.id  # hyphenated UUID like OTP
    assert _make(cluster, host_id).id != inv.id


def test_token_header_is_exactly_wascaps(cluster: KeyPair, host_id: str) -> None:
    token = _make(cluster, host_id).encoded_claims
    header_segment = token.split(".")[0]
    assert header_segment == "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0"
    assert jwt.decode(token).header == {"typ": "jwt", "alg": "Ed25519"}


def test_token_claims_shape(cluster: KeyPair, host_id: str) -> None:
    before = int(time.time())
    inv = _make(cluster, host_id)
    claims = _claims(inv)
    assert claims["iss"] == cluster.public_key and claims["iss"].startswith("C")
    assert claims["sub"] == inv.id
    assert claims["wascap"] == {
        "target_url": f"wasmbus://wasmcloud/httpserver/default/{PROVIDER}/HttpServer.HandleRequest",
        "origin_url": f"wasmbus://{ACTOR}",
        "hash": HASH_27,  # the worked example of docs/wire.md §2.7
    }
    assert isinstance(claims["iat"], int) and before <= claims["iat"] <= time.time() + 1
    assert isinstance(claims["jti"], str) and claims["jti"]
    assert "exp" not in claims and "nbf" not in claims
    assert claims["wascap_revision"] == 3
    assert set(claims) == {"jti", "iat", "iss", "sub", "wascap", "wascap_revision"}
    # The generic JWT verifier agrees the token is signed by its issuer.
    assert jwt.verify(inv.encoded_claims)["sub"] == inv.id


def test_each_invocation_has_a_fresh_jti(cluster: KeyPair, host_id: str) -> None:
    assert _claims(_make(cluster, host_id))["jti"] != _claims(_make(cluster, host_id))["jti"]


def test_validation_survives_the_wire(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id, msg=bytes(range(256)))
    validate(Invocation.decode(inv.encode()), [cluster.public_key])
    # ... including an Elixir-style encoding where msg arrives as a (non-UTF-8) str.
    doc = msgpack.unpackb(inv.encode(), raw=False)
    validate(Invocation.decode(msgpack.packb(doc, use_bin_type=False)), [cluster.public_key])


def test_provider_to_actor_invocation_validates(cluster: KeyPair, host_id: str) -> None:
    inv = new_invocation(Entity.provider(PROVIDER, "wasmcloud:httpserver", "default"),
                         Entity.actor(ACTOR), "HttpServer.HandleRequest", b"req",
                         cluster_key=cluster, host_id=host_id)
    assert _claims(inv)["wascap"]["origin_url"] == (
        f"wasmbus://wasmcloud/httpserver/default/{PROVIDER}")
    assert _claims(inv)["wascap"]["target_url"] == f"wasmbus://{ACTOR}/HttpServer.HandleRequest"
    validate(inv, [cluster.public_key])


def test_the_hash_covers_the_full_payload_not_the_chunked_msg(cluster: KeyPair,
                                                              host_id: str) -> None:
    payload = b"x" * 1_000_000
    inv = _make(cluster, host_id, msg=payload)
    assert _claims(inv)["wascap"]["hash"] == invocation_hash(
        inv.origin.url, inv.target_url, inv.operation, payload)
    inv.msg = b""  # what travels on NATS once chunked: receivers must dechunk first
    assert _reason(inv, [cluster.public_key]).startswith(HASH_MISMATCH)


# ---- each rejection, with its exact text --------------------------------------------------------


def test_resigned_by_another_key_keeping_iss(cluster: KeyPair, stranger: KeyPair,
                                            host_id: str) -> None:
    inv = _make(cluster, host_id)
    _resign(inv, _claims(inv), stranger)  # iss still names the trusted cluster key
    assert _claims(inv)["iss"] == cluster.public_key
    assert _reason(inv, [cluster.public_key]) == SIGNATURE_INVALID


def test_claims_changed_without_resigning(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    header, _, signature = inv.encoded_claims.split(".")
    claims = _claims(inv)
    claims["wascap"]["hash"] = "0" * 64
    inv.encoded_claims = f"{header}.{jwt.b64url_encode(json.dumps(claims).encode())}.{signature}"
    assert _reason(inv, [cluster.public_key]) == SIGNATURE_INVALID


def test_corrupted_signature(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    header, claims, signature = inv.encoded_claims.split(".")
    raw = bytearray(jwt.b64url_decode(signature))
    raw[0] ^= 0x01
    inv.encoded_claims = f"{header}.{claims}.{jwt.b64url_encode(bytes(raw))}"
    assert _reason(inv, [cluster.public_key]) == SIGNATURE_INVALID


def test_issuer_that_is_not_a_public_key(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    claims = _claims(inv)
    claims["iss"] = "CNOTAREALKEY"
    _resign(inv, claims, cluster)
    assert _reason(inv, ["CNOTAREALKEY"]) == SIGNATURE_INVALID


def test_untrusted_issuer(cluster: KeyPair, stranger: KeyPair, host_id: str) -> None:
    inv = _make(stranger, host_id)
    assert _reason(inv, [cluster.public_key]) == UNTRUSTED
    assert _reason(inv, []) == UNTRUSTED


def test_tampered_msg(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    inv.msg = b"evil!"
    actual = invocation_hash(inv.origin.url, inv.target_url, inv.operation, b"evil!")
    assert _reason(inv, [cluster.public_key]) == f"{HASH_MISMATCH} ({HASH_27} / {actual})"


def test_tampered_operation(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    inv.operation = "HttpServer.Other"
    assert _reason(inv, [cluster.public_key]).startswith(f"{HASH_MISMATCH} ({HASH_27} / ")


def test_tampered_target_is_caught_by_the_hash_first(cluster: KeyPair, host_id: str) -> None:
    # The target URL is part of the hash, and the hash (step 6) is checked before the URLs
    # (step 9), so swapping the target entity reports the hash mismatch.
    inv = _make(cluster, host_id)
    inv.target = Entity.provider(PROVIDER, "wasmcloud:keyvalue", "default")
    assert _reason(inv, [cluster.public_key]).startswith(HASH_MISMATCH)
    inv = _make(cluster, host_id, target=Entity.actor(ACTOR), origin=Entity.actor(OTHER_ACTOR))
    inv.target = Entity.actor(OTHER_ACTOR)
    assert _reason(inv, [cluster.public_key]).startswith(HASH_MISMATCH)


def test_tampered_origin_is_caught_by_the_hash_first(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    inv.origin = Entity.actor(OTHER_ACTOR)
    assert _reason(inv, [cluster.public_key]).startswith(HASH_MISMATCH)


def test_target_url_mismatch_when_the_hash_agrees(cluster: KeyPair, host_id: str) -> None:
    # A signer that hashes the real target but lies about target_url in the claims.
    inv = _make(cluster, host_id)
    claims = _claims(inv)
    claims["wascap"]["target_url"] = f"wasmbus://{OTHER_ACTOR}/HttpServer.HandleRequest"
    _resign(inv, claims, cluster)
    assert _reason(inv, [cluster.public_key]) == TARGET_MISMATCH


def test_swapped_target_with_rehash_gives_target_url_mismatch(cluster: KeyPair,
                                                              host_id: str) -> None:
    inv = _make(cluster, host_id)
    inv.target = Entity.actor(OTHER_ACTOR)
    claims = _claims(inv)
    claims["wascap"]["hash"] = invocation_hash(inv.origin.url, inv.target_url, inv.operation,
                                               inv.msg)
    _resign(inv, claims, cluster)
    assert _reason(inv, [cluster.public_key]) == TARGET_MISMATCH


def test_origin_url_mismatch_when_the_hash_agrees(cluster: KeyPair, host_id: str) -> None:
    inv = _make(cluster, host_id)
    inv.origin = Entity.actor(OTHER_ACTOR)
    claims = _claims(inv)
    claims["wascap"]["hash"] = invocation_hash(inv.origin.url, inv.target_url, inv.operation,
                                               inv.msg)
    _resign(inv, claims, cluster)
    assert _reason(inv, [cluster.public_key]) == ORIGIN_MISMATCH


def _with_claims(cluster: KeyPair, host_id: str, **changes) -> Invocation:
    inv = _make(cluster, host_id)
    claims = _claims(inv)
    for key, value in changes.items():
        if value is None:
            claims.pop(key, None)
        else:
            claims[key] = value
    return _resign(inv, claims, cluster)


def test_expired_token(cluster: KeyPair, host_id: str) -> None:
    inv = _with_claims(cluster, host_id, exp=int(time.time()) - 60)
    assert _reason(inv, [cluster.public_key]) == EXPIRED


def test_expiry_is_judged_at_now(cluster: KeyPair, host_id: str) -> None:
    inv = _with_claims(cluster, host_id, exp=2_000_000_000)
    validate(inv, [cluster.public_key], now=1_999_999_999)
    assert _reason(inv, [cluster.public_key], now=2_000_000_001) == EXPIRED


def test_not_yet_valid_token(cluster: KeyPair, host_id: str) -> None:
    inv = _with_claims(cluster, host_id, nbf=int(time.time()) + 3600)
    assert _reason(inv, [cluster.public_key]) == NOT_YET
    validate(inv, [cluster.public_key], now=time.time() + 7200)


def test_missing_wascap(cluster: KeyPair, host_id: str) -> None:
    inv = _with_claims(cluster, host_id, wascap=None)
    assert _reason(inv, [cluster.public_key]) == NO_WASCAP
    inv = _with_claims(cluster, host_id, wascap="not a map")
    assert _reason(inv, [cluster.public_key]) == NO_WASCAP


@pytest.mark.parametrize("bad", ["bogus", "", "Xnot-a-server-key", "C" * 55])
def test_invalid_host_id(cluster: KeyPair, bad: str) -> None:
    inv = _make(cluster, bad)
    assert _reason(inv, [cluster.public_key]) == f"Invalid host ID on invocation: '{bad}'"


@pytest.mark.parametrize("odd", ["N", "NwashHostCallerId000000000000000000000000000000000000000",
                                 "C" * 56])
def test_host_ids_other_peers_send_are_accepted(cluster: KeyPair, odd: str) -> None:
    # OTP sends the cluster key (C…, 56 chars); wash a fake N… id (docs/wire.md §2.3).
    validate(_make(cluster, odd), [cluster.public_key])
    validate(_make(cluster, cluster.public_key), [cluster.public_key])


@pytest.mark.parametrize("token", ["", "garbage", "a.b", "a.b.c.d", "!!.??.**",
                                   "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0.bm90IGpzb24.AAAA"])
def test_malformed_token(cluster: KeyPair, host_id: str, token: str) -> None:
    inv = _make(cluster, host_id)
    inv.encoded_claims = token
    assert _reason(inv, [cluster.public_key]).startswith("invalid invocation token")


@pytest.mark.parametrize("header", [{"typ": "JWS", "alg": "Ed25519"},
                                    {"typ": "jwt", "alg": "HS256"},
                                    {"alg": "Ed25519"},
                                    {"typ": "jwt"}])
def test_wrong_token_header(cluster: KeyPair, host_id: str, header: dict) -> None:
    inv = _make(cluster, host_id)
    inv.encoded_claims = _raw_token(header, _claims(inv), cluster)
    assert _reason(inv, [cluster.public_key]) == "invalid invocation token header"


@pytest.mark.parametrize("missing", ["iss", "sub"])
def test_token_without_issuer_or_subject(cluster: KeyPair, host_id: str, missing: str) -> None:
    inv = _with_claims(cluster, host_id, **{missing: None})
    assert _reason(inv, [cluster.public_key]) == "invocation token lacks an issuer or subject"
    inv = _with_claims(cluster, host_id, **{missing: ""})
    assert _reason(inv, [cluster.public_key]) == "invocation token lacks an issuer or subject"


@pytest.mark.parametrize("case", ["iss-int", "iss-list", "typ-int"])
def test_wrongly_typed_token_fields_are_antiforgery_errors(cluster: KeyPair, host_id: str,
                                                           case: str) -> None:
    inv = _make(cluster, host_id)
    claims = _claims(inv)
    header = {"typ": "jwt", "alg": "Ed25519"}
    if case == "iss-int":
        claims["iss"] = 123
    elif case == "iss-list":
        claims["iss"] = [cluster.public_key]
    else:
        header["typ"] = 1
    inv.encoded_claims = _raw_token(header, claims, cluster)
    with pytest.raises(AntiForgeryError):
        validate(inv, [cluster.public_key])


# ---- the order of the checks (docs/wire.md §2.5 steps 2-9) ---------------------------------------


def test_signature_is_checked_before_expiry(cluster: KeyPair, stranger: KeyPair,
                                            host_id: str) -> None:
    inv = _with_claims(cluster, host_id, exp=1)
    _resign(inv, _claims(inv), stranger)
    assert _reason(inv, [cluster.public_key]) == SIGNATURE_INVALID


def test_expiry_is_checked_before_wascap(cluster: KeyPair, host_id: str) -> None:
    inv = _with_claims(cluster, host_id, exp=1, wascap=None)
    assert _reason(inv, [cluster.public_key]) == EXPIRED


def test_hash_is_checked_before_host_id_and_issuer(cluster: KeyPair, stranger: KeyPair) -> None:
    inv = _make(stranger, "bogus")
    inv.msg = b"tampered"
    assert _reason(inv, [cluster.public_key]).startswith(HASH_MISMATCH)


def test_host_id_is_checked_before_issuer(cluster: KeyPair, stranger: KeyPair) -> None:
    assert _reason(_make(stranger, "bogus"), [cluster.public_key]) == (
        "Invalid host ID on invocation: 'bogus'")


def test_issuer_is_checked_before_the_urls(cluster: KeyPair, stranger: KeyPair,
                                           host_id: str) -> None:
    inv = _make(stranger, host_id)
    claims = _claims(inv)
    claims["wascap"]["target_url"] = "wasmbus://elsewhere/Op"
    claims["wascap"]["origin_url"] = "wasmbus://elsewhere"
    _resign(inv, claims, stranger)
    assert _reason(inv, [cluster.public_key]) == UNTRUSTED
    assert _reason(inv, [stranger.public_key]) == TARGET_MISMATCH  # target before origin


# ---- properties ---------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(msg=st.binary(max_size=512), operation=st.text(min_size=1, max_size=30),
       flip=st.integers(min_value=0, max_value=511))
def test_any_payload_validates_and_any_bit_flip_is_caught(cluster: KeyPair, host_id: str,
                                                          msg: bytes, operation: str,
                                                          flip: int) -> None:
    inv = _make(cluster, host_id, msg=msg, operation=operation)
    validate(Invocation.decode(inv.encode()), [cluster.public_key])
    if msg:
        tampered = bytearray(msg)
        tampered[flip % len(msg)] ^= 0x80
        inv.msg = bytes(tampered)
        assert _reason(inv, [cluster.public_key]).startswith(HASH_MISMATCH)
