"""``lattice claims``: sign actors (embed wascap claims) and inspect/verify signed modules."""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import wasmtime

from lattice import keystore
from lattice.claims import (
    ActorClaims,
    ClaimsError,
    SigningError,
    extract_claims,
    format_time,
    module_hash,
    sign_actor,
    validate_call_alias,
    validate_caps,
    verify_module,
)
from lattice.cli._common import CliError, emit
from lattice.keys import KeyPair, KeyRole, NKeyError
from lattice.wasm import MAGIC, WasmFormatError

_DURATION = re.compile(r"(\d+)\s*([smhdw]?)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "": 86400}


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("claims", help="sign actor modules and inspect their claims")
    claims_sub = parser.add_subparsers(dest="claims_command", metavar="ACTION", required=True)
    _register_sign(claims_sub)
    _register_inspect(claims_sub)


def _register_sign(claims_sub: argparse._SubParsersAction) -> None:
    sign = claims_sub.add_parser(
        "sign", help="embed signed claims (name, capabilities, …) in a .wasm or .wat file",
        description="Sign an actor. Missing keys are taken from, or generated into, the keys "
        "directory as NAME_account.nk / NAME_module.nk, so re-signing keeps the actor's identity.",
    )
    sign.add_argument("file", type=Path, metavar="FILE", help="module or component (.wasm/.wat)")
    sign.add_argument("--name", "-n", required=True, help="the actor's name")
    sign.add_argument("--cap", "-c", action="append", default=[], metavar="CONTRACT",
                      help="capability contract id, e.g. wasmcloud:keyvalue (repeatable)")
    sign.add_argument("--tag", "-t", action="append", default=[], help="tag (repeatable)")
    sign.add_argument("--issuer", "-i", metavar="SEED|FILE",
                      help="account seed (SA…) or a file holding it")
    sign.add_argument("--subject", "-s", metavar="SEED|FILE",
                      help="module seed (SM…) or a file holding it")
    sign.add_argument("--call-alias", "-a", help="lattice-wide alias, e.g. myorg/echo")
    sign.add_argument("--rev", "-r", type=int, help="monotonic revision number")
    sign.add_argument("--ver", "-v", help="human-readable version, e.g. 0.1.0")
    sign.add_argument("--expires", "-x", metavar="DURATION",
                      help="claims expire after this long: 30d, 12h, 90m, 3600s or days")
    sign.add_argument("--not-before", "-b", metavar="DURATION",
                      help="claims become valid only after this long (same format)")
    sign.add_argument("--output", "-o", type=Path, metavar="OUT",
                      help="where to write (default: FILE itself, or FILE_s.wasm for .wat)")
    sign.set_defaults(handler=_sign)


def _register_inspect(claims_sub: argparse._SubParsersAction) -> None:
    inspect = claims_sub.add_parser(
        "inspect", help="show and verify a module's claims (exit 1 if not valid)",
    )
    inspect.add_argument("file", type=Path, metavar="FILE", help="module or component")
    inspect.add_argument("--json", action="store_true", help="print a JSON object")
    inspect.set_defaults(handler=_inspect)


# --- input helpers ------------------------------------------------------------------------------


def _looks_like_wat(path: Path, data: bytes) -> bool:
    return path.suffix == ".wat" or (not data.startswith(MAGIC) and data.lstrip()[:1] == b"(")


def load_module(path: Path) -> tuple[bytes, bool]:
    """Read a .wasm, or compile a .wat; returns ``(binary, was_text)``."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc
    if not _looks_like_wat(path, data):
        return data, False
    try:
        return wasmtime.wat2wasm(data.decode("utf-8")), True
    except (UnicodeDecodeError, wasmtime.WasmtimeError) as exc:
        raise CliError(f"cannot compile {path} from WebAssembly text: {exc}") from exc


def parse_duration(text: str, option: str) -> int:
    """``30d``/``12h``/``90m``/``3600s``/``2w`` or a bare number of days, in seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise CliError(
            f"{option} {text!r} is not a duration: use e.g. 30d, 12h, 90m, 3600s or a number of "
            "days"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def key_from_arg(value: str, role: KeyRole, option: str, allow_public: bool = False) -> KeyPair:
    """A seed given inline, or the path of a file holding one (see lattice.keystore)."""
    try:
        return keystore.key_from_arg(value, role, option, allow_public)
    except keystore.KeyStoreError as exc:
        raise CliError(str(exc)) from None


def stored_key(stem: str, role: KeyRole) -> tuple[KeyPair, str]:
    try:
        return keystore.stored_key(stem, role)
    except keystore.KeyStoreError as exc:
        raise CliError(str(exc)) from None


def _write_atomic(path: Path, data: bytes) -> None:
    # Write next to the target and rename, so a failure never leaves a half-written module.
    # mkstemp creates 0600; give the module the mode it had, or what the umask allows.
    try:
        if path.exists():
            mode = path.stat().st_mode & 0o777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from exc


# --- sign ---------------------------------------------------------------------------------------


def _resolve_keys(args: argparse.Namespace) -> tuple[KeyPair, KeyPair, list[str]]:
    stem = keystore.key_file_stem(args.name)
    notes: list[str] = []
    if args.issuer:
        issuer = key_from_arg(args.issuer, KeyRole.ACCOUNT, "--issuer")
    else:
        issuer, note = stored_key(stem, KeyRole.ACCOUNT)
        notes.append(note)
    if args.subject:
        subject = key_from_arg(args.subject, KeyRole.MODULE, "--subject", allow_public=True)
    else:
        subject, note = stored_key(stem, KeyRole.MODULE)
        notes.append(note)
    return issuer, subject, notes


def _prevalidate(args: argparse.Namespace) -> None:
    # Catch bad input before any key is generated, so a typo never leaves stray seed files.
    try:
        validate_caps(args.cap)
        if args.call_alias is not None:
            validate_call_alias(args.call_alias)
    except SigningError as exc:
        raise CliError(str(exc)) from exc
    if not args.name.strip():
        raise CliError("--name must not be empty")


def _default_output(path: Path, was_text: bool) -> Path:
    return path.with_name(f"{path.stem}_s.wasm") if was_text else path


def _sign(args: argparse.Namespace) -> int:
    wasm, was_text = load_module(args.file)
    now = int(time.time())
    expires = None
    if args.expires:
        lifetime = parse_duration(args.expires, "--expires")
        if lifetime <= 0:  # would sign claims that are already expired
            raise CliError(f"--expires {args.expires!r} would sign claims that have already "
                           "expired: give a positive duration (e.g. 30d), or leave --expires out "
                           "for claims that never expire")
        expires = now + lifetime
    not_before = (
        now + parse_duration(args.not_before, "--not-before") if args.not_before else None
    )
    _prevalidate(args)
    issuer, subject, notes = _resolve_keys(args)
    for note in notes:
        print(note)
    try:
        signed = sign_actor(
            wasm, issuer=issuer, subject=subject, name=args.name, caps=args.cap, tags=args.tag,
            rev=args.rev, ver=args.ver, call_alias=args.call_alias, expires=expires,
            not_before=not_before, now=now,
        )
    except (SigningError, NKeyError) as exc:
        raise CliError(str(exc)) from exc
    except ClaimsError as exc:
        raise CliError(f"{args.file}: {exc.message}") from exc
    output = args.output or _default_output(args.file, was_text)
    _write_atomic(output, signed)
    claims = extract_claims(signed)
    assert claims is not None  # we just embedded them
    print(f"signed {claims.name!r} ({claims.subject}), wrote {output}")
    print(f"  capabilities: {', '.join(claims.caps) or '(none)'}")
    if claims.call_alias:
        print(f"  call alias:   {claims.call_alias}")
    return 0


# --- inspect ------------------------------------------------------------------------------------


def _read_claims(wasm: bytes) -> tuple[ActorClaims | None, ClaimsError | None]:
    """Verify; on failure still return whatever could be parsed for display."""
    try:
        return verify_module(wasm), None
    except ClaimsError as error:
        try:
            return extract_claims(wasm), error
        except ClaimsError:
            return None, error


def _actual_hash(wasm: bytes) -> str | None:
    try:
        return module_hash(wasm)
    except WasmFormatError:
        return None


def _or_none(value: object) -> str:
    return "(none)" if value is None or value == "" else str(value)


def _claims_lines(claims: ActorClaims, actual: str | None) -> list[tuple[str, str]]:
    rows = [
        ("Issuer", claims.issuer),
        ("Subject", claims.subject),
        ("Name", _or_none(claims.name)),
        ("Capabilities", ", ".join(claims.caps) or "(none)"),
        ("Tags", ", ".join(claims.tags) or "(none)"),
        ("Call alias", _or_none(claims.call_alias)),
        ("Revision", _or_none(claims.rev)),
        ("Version", _or_none(claims.ver)),
        ("Issued", format_time(claims.issued_at)),
        ("Expires", "never" if claims.expires is None else format_time(claims.expires)),
        ("Not before", "immediately" if claims.not_before is None
         else format_time(claims.not_before)),
        ("Module hash", claims.module_hash),
    ]
    if actual is not None and actual != claims.module_hash.upper():
        rows.append(("Actual hash", actual))
    rows.append(("Wascap rev.", _or_none(claims.wascap_revision)))
    return rows


def _inspect_text(path: Path, claims: ActorClaims | None, error: ClaimsError | None,
                  actual: str | None) -> str:
    rows: list[tuple[str, str]] = [("File", str(path))]
    if claims is not None:
        rows += _claims_lines(claims, actual)
        rows += [("Warning", warning) for warning in claims.warnings]
    rows.append(("Verdict", "valid" if error is None else error.message))
    width = max(len(label) for label, _ in rows) + 1
    return "\n".join(f"{label + ':':<{width}} {value}" for label, value in rows)


def _inspect_json(path: Path, claims: ActorClaims | None, error: ClaimsError | None,
                  actual: str | None) -> dict[str, Any]:
    return {
        "file": str(path),
        "valid": error is None,
        "verdict": "valid" if error is None else error.message,
        "error": None if error is None else {"code": error.code, "message": error.message},
        "claims": None if claims is None else claims.to_dict(),
        "actual_hash": actual,
        "warnings": [] if claims is None else claims.warnings,
    }


def _inspect(args: argparse.Namespace) -> int:
    wasm, _ = load_module(args.file)
    claims, error = _read_claims(wasm)
    actual = _actual_hash(wasm)
    if args.json:
        emit(_inspect_json(args.file, claims, error, actual), True)
    else:
        emit(None, False, _inspect_text(args.file, claims, error, actual))
    return 0 if error is None else 1
