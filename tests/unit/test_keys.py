"""nkeys: published wasmCloud vectors, round trips for every role, and precise error messages."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lattice.keys import (
    PUBLIC_KEY_LENGTH,
    SEED_LENGTH,
    SIGNING_ROLES,
    KeyPair,
    KeyRole,
    NKeyError,
    crc16,
    decode_public_key,
    decode_seed,
    encode_public_key,
    encode_seed,
    is_public_key,
)
from tests.conftest import load_vectors


def _vectors() -> list[dict[str, str]]:
    cases = load_vectors("nkeys")
    assert cases, "nkeys.json has no cases"
    return cases


def _b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


# --- published vectors --------------------------------------------------------------------------


def test_every_published_seed_decodes_to_its_public_key() -> None:
    for case in _vectors():
        pair = KeyPair.from_seed(case["seed"])
        assert pair.public_key == case["public_key"], case["name"]
        assert pair.seed == case["seed"], case["name"]
        role, _ = decode_public_key(case["public_key"])
        assert role is pair.role
        expected = KeyRole.ACCOUNT if case["name"].endswith("account") else KeyRole.MODULE
        assert role is expected, case["name"]


def test_published_keys_sign_and_verify() -> None:
    for case in _vectors():
        signer = KeyPair.from_seed(case["seed"])
        verifier = KeyPair.from_public_key(case["public_key"])
        signature = signer.sign(b"lattice")
        assert len(signature) == 64
        assert verifier.verify(b"lattice", signature)
        assert not verifier.verify(b"lattice!", signature)
        assert verifier == signer


# --- CRC and raw encoding -----------------------------------------------------------------------


def test_crc16_is_xmodem() -> None:
    assert crc16(b"123456789") == 0x31C3  # the standard CRC-16/XMODEM check value
    assert crc16(b"") == 0


def test_rfc8032_seed_gives_the_rfc_public_key() -> None:
    # RFC 8032 §7.1 test 1: proves the 32 raw bytes are used as an Ed25519 seed, unmodified.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    public = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
    pair = KeyPair.from_raw_seed(KeyRole.MODULE, seed)
    assert pair.raw_public_key == public
    assert pair.sign(b"").hex().startswith("e5564300c360ac729086e2cc806e828a")


@pytest.mark.parametrize(
    ("role", "letter"),
    [(KeyRole.ACCOUNT, "A"), (KeyRole.CLUSTER, "C"), (KeyRole.MODULE, "M"), (KeyRole.SERVER, "N"),
     (KeyRole.OPERATOR, "O"), (KeyRole.USER, "U"), (KeyRole.SERVICE, "V"), (KeyRole.CURVE, "X")],
)
def test_role_letters_and_prefixes(role: KeyRole, letter: str) -> None:
    assert role.letter == letter
    assert encode_public_key(role, bytes(32))[0] == letter
    seed = encode_seed(role, bytes(32))
    assert seed[:2] == f"S{letter}"


@given(raw=st.binary(min_size=32, max_size=32), role=st.sampled_from(SIGNING_ROLES))
def test_round_trip_every_signing_role(raw: bytes, role: KeyRole) -> None:
    pair = KeyPair.from_raw_seed(role, raw)
    assert len(pair.public_key) == PUBLIC_KEY_LENGTH
    assert len(pair.seed) == SEED_LENGTH
    assert pair.public_key[0] == role.letter
    assert pair.seed[:2] == "S" + role.letter
    assert decode_seed(pair.seed) == (role, raw)
    assert decode_public_key(pair.public_key, role) == (role, pair.raw_public_key)
    again = KeyPair.from_seed(pair.seed)
    assert again.public_key == pair.public_key
    assert is_public_key(pair.public_key) and is_public_key(pair.public_key, role)
    assert not is_public_key(pair.seed)


@given(raw=st.binary(min_size=32, max_size=32))
def test_curve_keys_are_decode_only(raw: bytes) -> None:
    pk = encode_public_key(KeyRole.CURVE, raw)
    assert decode_public_key(pk) == (KeyRole.CURVE, raw)
    assert decode_seed(encode_seed(KeyRole.CURVE, raw)) == (KeyRole.CURVE, raw)
    with pytest.raises(NKeyError, match="x25519"):
        KeyPair.from_public_key(pk)


def test_generate_is_random_and_keeps_role() -> None:
    for role in SIGNING_ROLES:
        first, second = KeyPair.generate(role), KeyPair.generate(role)
        assert first.role is role and first.has_seed
        assert first.public_key != second.public_key


def test_from_raw_seed_is_deterministic() -> None:
    raw = bytes(range(32))
    assert KeyPair.from_raw_seed(KeyRole.SERVER, raw).seed == \
        KeyPair.from_raw_seed(KeyRole.SERVER, raw).seed
    with pytest.raises(NKeyError, match="must be 32 bytes, got 31"):
        KeyPair.from_raw_seed(KeyRole.SERVER, raw[:31])


# --- errors -------------------------------------------------------------------------------------


def test_wrong_length_message() -> None:
    with pytest.raises(NKeyError) as info:
        decode_public_key("ABCDEFGHIJKL")
    assert str(info.value) == "not an nkey: expected 56 characters for a public key, got 12"
    with pytest.raises(NKeyError, match="expected 58 characters for a seed, got 5"):
        decode_seed("SAAAA")


def test_checksum_mismatch_on_typo_and_truncation() -> None:
    pk = _vectors()[0]["public_key"]
    typo = pk[:10] + ("B" if pk[10] != "B" else "C") + pk[11:]
    with pytest.raises(NKeyError) as info:
        decode_public_key(typo)
    assert str(info.value) == "checksum mismatch: the key was mistyped or truncated"
    seed = _vectors()[0]["seed"]
    with pytest.raises(NKeyError, match="checksum mismatch"):
        decode_seed(seed[:-2] + ("AA" if seed[-2:] != "AA" else "BA"))
    with pytest.raises(NKeyError, match="expected 56 characters"):
        decode_public_key(pk[:-1])


def test_role_mismatch_message() -> None:
    account = KeyPair.generate(KeyRole.ACCOUNT)
    with pytest.raises(NKeyError) as info:
        decode_public_key(account.public_key, KeyRole.MODULE)
    assert str(info.value) == "expected a module key (M…), got an account key (A…)"
    with pytest.raises(NKeyError, match="expected a user key"):
        KeyPair.from_seed(account.seed, KeyRole.USER)


def test_public_key_where_a_seed_is_needed() -> None:
    pair = KeyPair.generate(KeyRole.MODULE)
    expected = "this is a public key; a seed (S…) is needed to sign"
    with pytest.raises(NKeyError) as info:
        KeyPair.from_seed(pair.public_key)
    assert str(info.value) == expected
    public_only = KeyPair.from_public_key(pair.public_key)
    assert not public_only.has_seed
    with pytest.raises(NKeyError) as info:
        public_only.sign(b"x")
    assert str(info.value) == expected
    with pytest.raises(NKeyError, match="no seed"):
        _ = public_only.seed


def test_seed_where_a_public_key_is_expected() -> None:
    seed = KeyPair.generate(KeyRole.ACCOUNT).seed
    with pytest.raises(NKeyError, match="this is a seed"):
        decode_public_key(seed)


def test_non_base32_character() -> None:
    pk = KeyPair.generate(KeyRole.ACCOUNT).public_key
    with pytest.raises(NKeyError, match="'1' is not a base32 character"):
        decode_public_key(pk[:5] + "1" + pk[6:])
    with pytest.raises(NKeyError, match="not a base32 character"):
        decode_public_key(pk.lower())


def test_unknown_prefix_byte() -> None:
    payload = bytes([1 << 3]) + bytes(32)  # 'B' is no nkey role
    forged = _b32(payload + crc16(payload).to_bytes(2, "little"))
    with pytest.raises(NKeyError, match="unknown role prefix 'B'"):
        decode_public_key(forged)


def test_seed_without_seed_marker() -> None:
    payload = bytes([KeyRole.ACCOUNT.value, 0]) + bytes(32)  # 58 chars, valid CRC, but 'A…'
    forged = _b32(payload + crc16(payload).to_bytes(2, "little"))
    assert len(forged) == SEED_LENGTH
    with pytest.raises(NKeyError, match="seeds start with 'S'"):
        decode_seed(forged)


def test_surrounding_whitespace_is_tolerated() -> None:
    pair = KeyPair.generate(KeyRole.CLUSTER)
    assert KeyPair.from_seed(pair.seed + "\n").public_key == pair.public_key


def test_verify_rejects_wrong_signature_shapes() -> None:
    pair = KeyPair.generate(KeyRole.SERVICE)
    signature = pair.sign(b"data")
    assert pair.verify(b"data", signature)
    assert not pair.verify(b"data", signature[:63])
    assert not pair.verify(b"data", bytes(64))
    assert not KeyPair.generate(KeyRole.SERVICE).verify(b"data", signature)


def test_repr_never_shows_the_seed() -> None:
    pair = KeyPair.generate(KeyRole.ACCOUNT)
    assert pair.seed not in repr(pair)
    assert pair.public_key in repr(pair)


@pytest.mark.parametrize(
    ("text", "role"),
    [("account", KeyRole.ACCOUNT), ("A", KeyRole.ACCOUNT), ("m", KeyRole.MODULE),
     ("Module", KeyRole.MODULE), ("actor", KeyRole.MODULE), ("provider", KeyRole.SERVICE),
     ("service", KeyRole.SERVICE), ("host", KeyRole.SERVER), ("server", KeyRole.SERVER),
     ("cluster", KeyRole.CLUSTER), ("operator", KeyRole.OPERATOR), ("user", KeyRole.USER)],
)
def test_role_parse(text: str, role: KeyRole) -> None:
    assert KeyRole.parse(text) is role


def test_role_parse_unknown() -> None:
    with pytest.raises(NKeyError, match="unknown key role 'wizard': choose one of account"):
        KeyRole.parse("wizard")
