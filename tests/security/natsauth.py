"""NATS decentralized auth (operator → account → user JWTs) and TLS material for tests.

The nkeys come from :mod:`lattice.keys`; the JWTs are NATS v2 claims, signed here because
:func:`lattice.jwt.encode` writes wascap's header (``{"typ":"jwt","alg":"Ed25519"}``) while
nats-server wants ``{"typ":"JWT","alg":"ed25519-nkey"}`` for version 2 claims. The jti is what
the nats jwt library computes: base32 (no padding) of the SHA-256 of the claims without it.

:func:`make_pki` writes a test CA and certificates (server for 127.0.0.1/localhost, client)
with the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lattice.jwt import b64url_encode
from lattice.keys import KeyPair, KeyRole

NATS_HEADER = {"typ": "JWT", "alg": "ed25519-nkey"}
UNLIMITED = -1


def _segment(obj: dict[str, Any]) -> str:
    return b64url_encode(json.dumps(obj, separators=(",", ":")).encode())


def encode_nats_jwt(claims: dict[str, Any], signer: KeyPair) -> str:
    """Sign NATS claims (``iss`` is set to the signer) the way nats-server expects."""
    claims = {**claims, "iss": signer.public_key, "iat": int(time.time()), "jti": ""}
    digest = hashlib.sha256(json.dumps(claims, separators=(",", ":")).encode()).digest()
    claims["jti"] = base64.b32encode(digest).decode().rstrip("=")
    signing_input = f"{_segment(NATS_HEADER)}.{_segment(claims)}"
    return f"{signing_input}.{b64url_encode(signer.sign(signing_input.encode()))}"


def decode_claims(token: str) -> dict[str, Any]:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def operator_jwt(operator: KeyPair, name: str, system_account: str) -> str:
    return encode_nats_jwt({"sub": operator.public_key, "name": name, "nats": {
        "type": "operator", "version": 2, "system_account": system_account}}, operator)


def account_jwt(account: KeyPair, operator: KeyPair, name: str, *, jetstream: bool) -> str:
    limits: dict[str, Any] = {"subs": UNLIMITED, "data": UNLIMITED, "payload": UNLIMITED,
                              "imports": UNLIMITED, "exports": UNLIMITED, "wildcards": True,
                              "conn": UNLIMITED, "leaf": UNLIMITED}
    if jetstream:  # JetStream is enabled for an account whose storage limits are not 0
        limits.update({"mem_storage": UNLIMITED, "disk_storage": UNLIMITED,
                       "streams": UNLIMITED, "consumer": UNLIMITED})
    return encode_nats_jwt({"sub": account.public_key, "name": name, "nats": {
        "type": "account", "version": 2, "limits": limits,
        "default_permissions": {"pub": {}, "sub": {}}}}, operator)


def user_jwt(user: KeyPair, account: KeyPair, name: str) -> str:
    return encode_nats_jwt({"sub": user.public_key, "name": name, "nats": {
        "type": "user", "version": 2, "pub": {}, "sub": {}, "subs": UNLIMITED,
        "data": UNLIMITED, "payload": UNLIMITED}}, account)


def creds_text(jwt: str, seed: str) -> str:
    """A ``.creds`` file exactly as ``nsc generate creds`` writes it."""
    return (f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
            "************************* IMPORTANT *************************\n"
            "NKEY Seed printed below can be used to sign and prove identity.\n"
            "NKEYs are sensitive and should be treated as secrets.\n\n"
            f"-----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n"
            "*************************************************************\n")


@dataclass
class User:
    name: str
    key: KeyPair
    jwt: str
    creds: Path

    @property
    def seed(self) -> str:
        return self.key.seed


@dataclass
class Account:
    name: str
    key: KeyPair
    jwt: str

    def user(self, name: str, directory: Path) -> User:
        key = KeyPair.generate(KeyRole.USER)
        token = user_jwt(key, self.key, name)
        path = directory / f"{name}.creds"
        path.write_text(creds_text(token, key.seed))
        path.chmod(0o600)
        return User(name, key, token, path)


@dataclass
class Operator:
    """An operator with its system account; :meth:`account` issues more accounts."""

    name: str
    key: KeyPair
    system: Account
    jwt: str

    @classmethod
    def create(cls, name: str = "test-operator") -> Operator:
        key = KeyPair.generate(KeyRole.OPERATOR)
        sys_key = KeyPair.generate(KeyRole.ACCOUNT)
        system = Account("SYS", sys_key, account_jwt(sys_key, key, "SYS", jetstream=False))
        return cls(name, key, system, operator_jwt(key, name, sys_key.public_key))

    def account(self, name: str, *, jetstream: bool) -> Account:
        key = KeyPair.generate(KeyRole.ACCOUNT)
        return Account(name, key, account_jwt(key, self.key, name, jetstream=jetstream))

    def server_config(self, directory: Path, accounts: list[Account]) -> str:
        """The operator-mode part of a nats-server config (memory resolver, preloaded)."""
        path = directory / "operator.jwt"
        path.write_text(self.jwt)
        preload = ", ".join(f'{a.key.public_key}: "{a.jwt}"' for a in [self.system, *accounts])
        return (f'operator: "{path}"\nsystem_account: {self.system.key.public_key}\n'
                f"resolver: MEMORY\nresolver_preload: {{ {preload} }}\n")


# ---- TLS -----------------------------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _ca(common: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(_name(common))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(common: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
          server: bool) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(common)).issuer_name(ca.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca_key.public_key()), critical=False)
               .add_extension(x509.ExtendedKeyUsage(
                   [ExtendedKeyUsageOID.SERVER_AUTH if server
                    else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(directory: Path, name: str) -> Path:
    """A CA certificate that signed nothing we use (the "wrong CA")."""
    cert, _ = _ca(name)
    path = directory / f"{name}.pem"
    _write_cert(cert, path)
    return path


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = _ca("lattice-test-ca")
    server, server_key = _leaf("nats-server", ca, ca_key, server=True)
    client, client_key = _leaf("lattice-client", ca, ca_key, server=False)
    pki = Pki(ca=directory / "ca.pem", server_cert=directory / "server.pem",
              server_key=directory / "server-key.pem", client_cert=directory / "client.pem",
              client_key=directory / "client-key.pem")
    _write_cert(ca, pki.ca)
    _write_cert(server, pki.server_cert)
    _write_key(server_key, pki.server_key)
    _write_cert(client, pki.client_cert)
    _write_key(client_key, pki.client_key)
    return pki


def tls_config(pki: Pki, *, verify_clients: bool) -> str:
    """The nats-server ``tls`` block; ``verify_clients`` asks for a client certificate."""
    verify = f', ca_file: "{pki.ca}", verify: true' if verify_clients else ""
    return (f'tls: {{ cert_file: "{pki.server_cert}", key_file: "{pki.server_key}"'
            f"{verify}, timeout: 5 }}\n")
