"""Compact Ed25519 JWS as wascap writes and checks it (docs/wire.md §2.5)."""

from __future__ import annotations

import base64
import json

import pytest

from lattice import jwt
from lattice.keys import KeyPair, KeyRole


def _seg(obj: object) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _sig(pair: KeyPair, signing_input: str) -> str:
    return base64.urlsafe_b64encode(pair.sign(signing_input.encode())).decode().rstrip("=")


def _manual_token(header: object, claims: object, signer: KeyPair) -> str:
    signing_input = f"{_seg(header)}.{_seg(claims)}"
    return f"{signing_input}.{_sig(signer, signing_input)}"


@pytest.fixture
def cluster() -> KeyPair:
    return KeyPair.generate(KeyRole.CLUSTER)


def test_header_and_segments_are_exactly_wascaps(cluster: KeyPair) -> None:
    token = jwt.encode({"iss": cluster.public_key, "sub": "inv-1", "n": [1, 2]}, cluster)
    header, claims, signature = token.split(".")
    assert base64.urlsafe_b64decode(header + "==") == b'{"typ":"jwt","alg":"Ed25519"}'
    assert header == "eyJ0eXAiOiJqd3QiLCJhbGciOiJFZDI1NTE5In0"
    padded = claims + "=" * (-len(claims) % 4)
    assert base64.urlsafe_b64decode(padded) == (
        f'{{"iss":"{cluster.public_key}","sub":"inv-1","n":[1,2]}}'.encode()
    )
    assert "=" not in token
    assert len(base64.urlsafe_b64decode(signature + "==")) == 64


def test_round_trip_and_decode(cluster: KeyPair) -> None:
    claims = {"jti": "x", "iat": 1, "iss": cluster.public_key, "sub": "s", "wascap": {"é": "ü"}}
    token = jwt.encode(claims, cluster)
    assert jwt.verify(token) == claims
    decoded = jwt.decode(token)
    assert decoded.header == {"typ": "jwt", "alg": "Ed25519"}
    assert decoded.claims == claims
    assert decoded.signing_input == token.rsplit(".", 1)[0].encode()
    assert cluster.verify(decoded.signing_input, decoded.signature)


def test_non_ascii_is_written_as_raw_utf8(cluster: KeyPair) -> None:
    token = jwt.encode({"iss": cluster.public_key, "sub": "s", "name": "café"}, cluster)
    payload = token.split(".")[1]
    assert "café".encode() in base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))


def test_verifies_independently_built_tokens(cluster: KeyPair) -> None:
    claims = {"iss": cluster.public_key, "sub": "abc"}
    assert jwt.verify(_manual_token(jwt.HEADER, claims, cluster)) == claims


def test_any_signing_role_works() -> None:
    for role in (KeyRole.ACCOUNT, KeyRole.SERVER, KeyRole.SERVICE):
        pair = KeyPair.generate(role)
        assert jwt.verify(jwt.encode({"iss": pair.public_key, "sub": "s"}, pair))["sub"] == "s"


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "", "onlyone"])
def test_segment_count(token: str) -> None:
    with pytest.raises(jwt.JwtError, match="expected 3 dot-separated segments"):
        jwt.verify(token)


def test_garbled_segments(cluster: KeyPair) -> None:
    good = jwt.encode({"iss": cluster.public_key, "sub": "s"}, cluster)
    header, claims, signature = good.split(".")
    with pytest.raises(jwt.JwtError, match="header is not valid base64url"):
        jwt.decode(f"!!!.{claims}.{signature}")
    with pytest.raises(jwt.JwtError, match="claims is not valid JSON"):
        jwt.decode(f"{header}.{base64.urlsafe_b64encode(b'{nope').decode()}.{signature}")
    with pytest.raises(jwt.JwtError, match="claims is not a JSON object"):
        jwt.decode(f"{header}.{_seg([1, 2])}.{signature}")
    with pytest.raises(jwt.JwtError, match="signature is not valid base64url"):
        jwt.decode(f"{header}.{claims}.a+b/")


@pytest.mark.parametrize(
    ("header", "message"),
    [({"typ": "jwt", "alg": "HS256"}, "unsupported token algorithm 'HS256'"),
     ({"typ": "JWS", "alg": "Ed25519"}, "unsupported token type 'JWS'"),
     ({"alg": "Ed25519"}, "unsupported token type None")],
)
def test_header_checks(cluster: KeyPair, header: dict, message: str) -> None:
    token = _manual_token(header, {"iss": cluster.public_key, "sub": "s"}, cluster)
    with pytest.raises(jwt.JwtError, match=message) as info:
        jwt.verify(token)
    assert info.value.code == "bad-header"


@pytest.mark.parametrize(
    ("claims", "message"),
    [({"sub": "s"}, "no issuer"), ({"iss": "", "sub": "s"}, "no issuer"),
     ({"iss": "ISSUER"}, "no subject"), ({"iss": "ISSUER", "sub": ""}, "no subject")],
)
def test_issuer_and_subject_required(cluster: KeyPair, claims: dict, message: str) -> None:
    claims = {k: (cluster.public_key if v == "ISSUER" else v) for k, v in claims.items()}
    with pytest.raises(jwt.JwtError, match=message) as info:
        jwt.verify(jwt.encode(claims, cluster))
    assert info.value.code == "missing-field"


def test_issuer_must_be_a_public_key(cluster: KeyPair) -> None:
    with pytest.raises(jwt.JwtError, match="issuer is not a usable public key") as info:
        jwt.verify(jwt.encode({"iss": "someone", "sub": "s"}, cluster))
    assert info.value.code == "bad-issuer"


def test_signature_by_another_key_is_rejected(cluster: KeyPair) -> None:
    impostor = KeyPair.generate(KeyRole.CLUSTER)
    token = jwt.encode({"iss": cluster.public_key, "sub": "s"}, impostor)
    with pytest.raises(jwt.JwtError, match="invalid signature") as info:
        jwt.verify(token)
    assert info.value.code == "bad-signature"


def test_tampered_claims_are_rejected(cluster: KeyPair) -> None:
    header, _, signature = jwt.encode({"iss": cluster.public_key, "sub": "a"}, cluster).split(".")
    forged = f"{header}.{_seg({'iss': cluster.public_key, 'sub': 'b'})}.{signature}"
    with pytest.raises(jwt.JwtError, match="invalid signature"):
        jwt.verify(forged)


def test_encode_needs_a_seed(cluster: KeyPair) -> None:
    public_only = KeyPair.from_public_key(cluster.public_key)
    with pytest.raises(ValueError, match="a seed"):
        jwt.encode({"iss": cluster.public_key, "sub": "s"}, public_only)
