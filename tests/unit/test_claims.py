"""wascap actor claims: sign, extract, verify (docs/wire.md §5.2-5.4), for modules and
components."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import wasmtime

from lattice import claims as wc
from lattice import jwt
from lattice.claims import ClaimsError, SigningError
from lattice.keys import KeyPair, KeyRole
from lattice.wasm import (
    COMPONENT_VERSION,
    MAGIC,
    append_custom_section,
    custom_section_bytes,
    custom_sections,
    is_component,
    iter_sections,
)

NOW = 1_700_000_000


def _module() -> bytes:
    return wasmtime.wat2wasm(
        '(module (memory (export "memory") 1)'
        ' (func (export "answer") (result i32) i32.const 42))'
    )


def _component() -> bytes:
    return MAGIC + COMPONENT_VERSION + custom_section_bytes("component-type", b"\x01\x02\x03")


@pytest.fixture
def account() -> KeyPair:
    return KeyPair.generate(KeyRole.ACCOUNT)


@pytest.fixture
def module_key() -> KeyPair:
    return KeyPair.generate(KeyRole.MODULE)


def _sign(wasm: bytes, account: KeyPair, module_key: KeyPair, **kw: object) -> bytes:
    kw.setdefault("name", "echo")
    kw.setdefault("now", NOW)
    return wc.sign_actor(wasm, issuer=account, subject=module_key, **kw)  # type: ignore[arg-type]


def _raw_claims(
    wasm: bytes, issuer: KeyPair, subject: str, *, hash_: str | None = None,
    revision: int | None = 3, signer: KeyPair | None = None, section: str = "wasmcloud_jwt",
    **extra: object,
) -> bytes:
    """Embed a hand-made token (for old-format and deliberately broken claims)."""
    claims: dict[str, object] = {
        "jti": "abc", "iat": NOW, "iss": issuer.public_key, "sub": subject,
        "wascap": {"name": "old", "hash": hash_ or wc.module_hash(wasm), "tags": [],
                   "caps": ["wasmcloud:keyvalue"], "rev": 0, "ver": "0.3.0", "prov": False},
    }
    claims.update(extra)
    if revision is not None:
        claims["wascap_revision"] = revision
    token = jwt.encode(claims, signer or issuer)
    return append_custom_section(wasm, section, token.encode())


def _token_json(wasm: bytes) -> dict:
    claims = wc.extract_claims(wasm)
    assert claims is not None
    return jwt.decode(claims.token).claims


# --- hashing ------------------------------------------------------------------------------------


def test_module_hash_ignores_claims_sections_only() -> None:
    wasm = _module()
    expected = hashlib.sha256(wasm).hexdigest().upper()
    assert wc.module_hash(wasm) == expected
    assert wc.module_hash(append_custom_section(wasm, "jwt", b"t")) == expected
    assert wc.module_hash(append_custom_section(wasm, "wasmcloud_jwt", b"t")) == expected
    assert wc.module_hash(append_custom_section(wasm, "producers", b"t")) != expected


# --- sign / verify ------------------------------------------------------------------------------


def test_sign_then_verify(account: KeyPair, module_key: KeyPair) -> None:
    signed = _sign(_module(), account, module_key, caps=["wasmcloud:keyvalue"], tags=["demo"],
                   rev=4, ver="1.2.3", call_alias="Myorg/Echo")
    claims = wc.verify_module(signed, now=NOW)
    assert claims.issuer == account.public_key
    assert claims.subject == module_key.public_key
    assert (claims.name, claims.caps, claims.tags) == ("echo", ["wasmcloud:keyvalue"], ["demo"])
    assert (claims.rev, claims.ver, claims.call_alias) == (4, "1.2.3", "myorg/echo")
    assert claims.module_hash == hashlib.sha256(_module()).hexdigest().upper()
    assert claims.issued_at == NOW and claims.wascap_revision == 3
    assert claims.expires is None and claims.not_before is None
    assert len(claims.jti) == 22 and claims.warnings == []
    assert claims.revision == 4
    assert custom_sections(signed, "wasmcloud_jwt") and not custom_sections(signed, "jwt")
    assert signed.startswith(_module())  # the original bytes are kept; claims are appended


def test_claims_json_layout_matches_wascap(account: KeyPair, module_key: KeyPair) -> None:
    body = _token_json(_sign(_module(), account, module_key, caps=["wasmcloud:httpserver"]))
    assert list(body) == ["jti", "iat", "iss", "sub", "wascap", "wascap_revision"]
    assert list(body["wascap"]) == ["name", "hash", "tags", "caps", "prov"]
    assert body["wascap"]["prov"] is False and body["wascap"]["tags"] == []
    full = _token_json(_sign(_module(), account, module_key, rev=1, ver="0.1.0",
                             call_alias="a/b", expires=NOW + 10, not_before=NOW - 10))
    assert list(full) == ["exp", "jti", "iat", "iss", "sub", "nbf", "wascap", "wascap_revision"]
    assert list(full["wascap"]) == ["name", "hash", "tags", "caps", "rev", "ver", "call_alias",
                                    "prov"]


def test_tampered_code_section_is_a_hash_mismatch(account: KeyPair, module_key: KeyPair) -> None:
    signed = _sign(_module(), account, module_key)
    assert signed.count(b"\x41\x2a\x0b") == 1  # i32.const 42; end
    tampered = signed.replace(b"\x41\x2a\x0b", b"\x41\x2b\x0b")
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(tampered, now=NOW)
    assert info.value.code == "hash-mismatch"
    signed_hash = wc.module_hash(_module())
    assert str(info.value) == (
        "module hash mismatch: the module was changed after signing "
        f"(signed hash {signed_hash}, actual {wc.module_hash(tampered)})"
    )


def test_resign_replaces_the_claims(account: KeyPair, module_key: KeyPair) -> None:
    once = _sign(_module(), account, module_key, caps=["wasmcloud:keyvalue"])
    twice = _sign(once, account, module_key, caps=["wasmcloud:httpserver"])
    names = [s.name for s in iter_sections(twice) if s.name in wc.SECTION_NAMES]
    assert names == ["wasmcloud_jwt"]
    assert wc.verify_module(twice, now=NOW).caps == ["wasmcloud:httpserver"]
    # A module carrying an old-style `jwt` section loses it on re-signing too.
    old = _raw_claims(_module(), account, module_key.public_key, section="jwt", revision=None)
    resigned = _sign(old, account, module_key)
    assert [s.name for s in iter_sections(resigned) if s.name] == ["wasmcloud_jwt"]


def test_old_jwt_section_is_accepted(account: KeyPair, module_key: KeyPair) -> None:
    old = _raw_claims(_module(), account, module_key.public_key, section="jwt", revision=None)
    claims = wc.verify_module(old, now=NOW)
    assert claims.wascap_revision is None and claims.warnings == []
    assert claims.caps == ["wasmcloud:keyvalue"] and claims.ver == "0.3.0"
    assert claims.revision == NOW  # rev 0 falls back to iat


def test_first_claims_section_wins(account: KeyPair, module_key: KeyPair) -> None:
    first = _raw_claims(_module(), account, module_key.public_key, section="jwt")
    both = append_custom_section(first, "wasmcloud_jwt", b"not even a token")
    claims = wc.extract_claims(both)
    assert claims is not None and claims.name == "old"


@pytest.mark.parametrize("revision", [None, 2])
def test_wrong_hash_on_an_older_token_only_warns(
    account: KeyPair, module_key: KeyPair, revision: int | None
) -> None:
    wasm = _raw_claims(_module(), account, module_key.public_key, hash_="7CC0" + "0" * 60,
                       revision=revision)
    claims = wc.verify_module(wasm, now=NOW)
    assert len(claims.warnings) == 1
    assert "module hash mismatch ignored" in claims.warnings[0]
    assert wc.module_hash(_module()) in claims.warnings[0]


def test_wrong_hash_on_a_revision_3_token_is_an_error(
    account: KeyPair, module_key: KeyPair
) -> None:
    wasm = _raw_claims(_module(), account, module_key.public_key, hash_="AB" * 32, revision=3)
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(wasm, now=NOW)
    assert info.value.code == "hash-mismatch"


def test_expired_and_not_yet_valid(account: KeyPair, module_key: KeyPair) -> None:
    expiring = _sign(_module(), account, module_key, expires=1_735_689_600)  # 2025-01-01
    assert wc.verify_module(expiring, now=1_735_689_600).expires == 1_735_689_600  # inclusive
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(expiring, now=1_735_689_601)
    assert info.value.code == "expired"
    assert str(info.value) == "claims expired on 2025-01-01 00:00:00 UTC"

    later = _sign(_module(), account, module_key, not_before=NOW + 3600)
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(later, now=NOW)
    assert info.value.code == "not-yet-valid"
    assert "not valid until 2023-11-14 23:13:20 UTC" in str(info.value)
    assert wc.verify_module(later, now=NOW + 3600).not_before == NOW + 3600


def test_uses_the_clock_when_now_is_omitted(account: KeyPair, module_key: KeyPair) -> None:
    signed = _sign(_module(), account, module_key, expires=int(time.time()) - 5)
    with pytest.raises(ClaimsError, match="claims expired"):
        wc.verify_module(signed)


def test_signature_by_another_account(account: KeyPair, module_key: KeyPair) -> None:
    impostor = KeyPair.generate(KeyRole.ACCOUNT)
    wasm = _raw_claims(_module(), account, module_key.public_key, signer=impostor)
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(wasm, now=NOW)
    assert info.value.code == "bad-signature"
    assert str(info.value) == "invalid signature on the module's claims token"


def test_swapped_issuer_in_a_signed_token(account: KeyPair, module_key: KeyPair) -> None:
    signed = _sign(_module(), account, module_key)
    token = wc.extract_claims(signed).token  # type: ignore[union-attr]
    header, _, signature = token.split(".")
    claims = jwt.decode(token).claims
    claims["iss"] = KeyPair.generate(KeyRole.ACCOUNT).public_key
    forged_body = jwt.b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    forged = f"{header}.{forged_body}.{signature}"
    wasm = append_custom_section(_module(), "wasmcloud_jwt", forged.encode())
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(wasm, now=NOW)
    assert info.value.code == "bad-signature"


def test_subject_must_be_a_module_key(account: KeyPair) -> None:
    service = KeyPair.generate(KeyRole.SERVICE)
    wasm = _raw_claims(_module(), account, service.public_key)
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(wasm, now=NOW)
    assert info.value.code == "not-a-module-key"
    assert "got a service key (V…)" in str(info.value)
    garbage = _raw_claims(_module(), account, "my-module.wasm")
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(garbage, now=NOW)
    assert info.value.code == "not-a-module-key"


def test_issuer_must_be_an_account_key(module_key: KeyPair) -> None:
    wasm = _raw_claims(_module(), module_key, module_key.public_key)
    with pytest.raises(ClaimsError, match="issuer must be an account key") as info:
        wc.verify_module(wasm, now=NOW)
    assert info.value.code == "bad-token"


def test_unsigned_module() -> None:
    assert wc.extract_claims(_module()) is None
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(_module())
    assert info.value.code == "no-claims"
    assert "no 'jwt' or 'wasmcloud_jwt' section" in str(info.value)
    assert "lattice claims sign" in str(info.value)


def test_garbled_inputs() -> None:
    with pytest.raises(ClaimsError) as info:
        wc.verify_module(b'{"not": "wasm"}')
    assert info.value.code == "bad-wasm" and "not a WebAssembly binary" in str(info.value)
    bad_token = append_custom_section(_module(), "jwt", b"definitely.not.atoken")
    with pytest.raises(ClaimsError) as info:
        wc.extract_claims(bad_token)
    assert info.value.code == "bad-token"
    not_utf8 = append_custom_section(_module(), "jwt", b"\xff\xfe")
    with pytest.raises(ClaimsError) as info:
        wc.extract_claims(not_utf8)
    assert info.value.code == "bad-token"


def test_token_without_wascap_metadata(account: KeyPair, module_key: KeyPair) -> None:
    token = jwt.encode({"jti": "x", "iat": 1, "iss": account.public_key,
                        "sub": module_key.public_key}, account)
    wasm = append_custom_section(_module(), "wasmcloud_jwt", token.encode())
    with pytest.raises(ClaimsError, match="no 'wascap' metadata") as info:
        wc.extract_claims(wasm)
    assert info.value.code == "bad-token"


def test_wrongly_typed_field(account: KeyPair, module_key: KeyPair) -> None:
    wasm = _raw_claims(_module(), account, module_key.public_key, iat="yesterday")
    with pytest.raises(ClaimsError, match="'iat' field has the wrong type"):
        wc.extract_claims(wasm)


# --- components ---------------------------------------------------------------------------------


def test_components_sign_and_verify(account: KeyPair, module_key: KeyPair) -> None:
    component = _component()
    signed = _sign(component, account, module_key, caps=["wasmcloud:keyvalue"])
    assert is_component(signed)
    claims = wc.verify_module(signed, now=NOW)
    assert claims.module_hash == hashlib.sha256(component).hexdigest().upper()
    tampered = signed.replace(b"\x01\x02\x03", b"\x01\x02\x04")
    with pytest.raises(ClaimsError, match="module hash mismatch"):
        wc.verify_module(tampered, now=NOW)


# --- signing input validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "expected"),
    [("  My-Actor.v1 ", "my_actor_v1"), ("wasmcloud/ponger", "wasmcloud/ponger"),
     ("Café Bar", "caf_bar"), ("a b", "a_b")],
)
def test_call_alias_normalization(alias: str, expected: str) -> None:
    assert wc.validate_call_alias(alias) == expected


@pytest.mark.parametrize(
    ("alias", "message"),
    [("   ", "empty"), ("ééé", "empty"), ("a$b", "may only contain"),
     ("MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5", "looks like a public key")],
)
def test_call_alias_rejections(alias: str, message: str) -> None:
    with pytest.raises(SigningError, match=message):
        wc.validate_call_alias(alias)


def test_caps_must_be_contract_ids() -> None:
    assert wc.validate_caps(["wasmcloud:keyvalue", "wasmcloud:builtin:logging",
                             "wasmcloud:keyvalue"]) == ["wasmcloud:keyvalue",
                                                        "wasmcloud:builtin:logging"]
    with pytest.raises(SigningError, match="did you mean 'wasmcloud:keyvalue'"):
        wc.validate_caps(["keyvalue"])
    for bad in ["", "wasmcloud:", ":x", "a b:c"]:
        with pytest.raises(SigningError, match="not a contract id"):
            wc.validate_caps([bad])


def test_signing_key_roles(account: KeyPair, module_key: KeyPair) -> None:
    with pytest.raises(SigningError, match="issuer must be an account key"):
        _sign(_module(), module_key, module_key)
    with pytest.raises(SigningError, match="subject must be a module key"):
        _sign(_module(), account, account)
    public_only = KeyPair.from_public_key(account.public_key)
    with pytest.raises(SigningError, match="seed"):
        _sign(_module(), public_only, module_key)
    # The subject only needs its public key.
    signed = _sign(_module(), account, KeyPair.from_public_key(module_key.public_key))
    assert wc.verify_module(signed, now=NOW).subject == module_key.public_key


def test_other_signing_rejections(account: KeyPair, module_key: KeyPair) -> None:
    with pytest.raises(SigningError, match="needs a name"):
        _sign(_module(), account, module_key, name=" ")
    with pytest.raises(SigningError, match="out of range"):
        _sign(_module(), account, module_key, rev=-1)
    with pytest.raises(ClaimsError) as info:
        _sign(b"nope", account, module_key)
    assert info.value.code == "bad-wasm"


def test_to_dict_is_json_ready(account: KeyPair, module_key: KeyPair) -> None:
    claims = wc.verify_module(_sign(_module(), account, module_key, rev=7), now=NOW)
    data = json.loads(json.dumps(claims.to_dict()))
    assert data["revision"] == 7 and data["subject"] == module_key.public_key
    assert data["token"] == claims.token
