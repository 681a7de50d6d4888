"""Helpers shared by the CLI subcommands: output, errors, reading ``--data``, and the options,
connection and tables of the commands that talk to a lattice."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

from lattice import paths
from lattice.connect import NatsConnectError, NatsOptions, connect
from lattice.ctl import CtlClient, CtlError, HostInfo
from lattice.keys import KeyPair, KeyRole, is_public_key
from lattice.rpc import subjects


class CliError(Exception):
    """A user-facing failure: the message says what was wrong and how to fix it."""


def emit(obj: Any, as_json: bool, text: str | None = None) -> None:
    """Print ``obj`` as JSON when ``--json`` was given, else the human ``text``."""
    if as_json:
        print(json.dumps(obj, indent=2, sort_keys=False, default=str))
    else:
        print(text if text is not None else obj)


def read_data_arg(value: str | None) -> Any:
    """``--data`` takes JSON inline or ``@path`` to a JSON file; ``None`` means no input."""
    if value is None:
        return None
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read --data file {path}: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise CliError(f"--data file {path} is not UTF-8 text (byte {exc.start}): JSON "
                           "files must be UTF-8") from None
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--data is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            "quote strings, e.g. --data '\"my-key\"' or --data '{\"key\": \"k\", \"value\": 1}'"
        ) from exc
    try:  # a lone surrogate ("\ud800", or undecodable bytes in argv) has no UTF-8 form
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start:exc.end]
        raise CliError(f"--data holds text that is not valid Unicode ({bad!a}): lone "
                       "surrogates cannot be sent; use real characters") from None
    return data


def fail(message: str, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


# --- networked commands: shared options, connection, output -------------------------------------

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
CLUSTER_SEED_FILE = "cluster.nk"


def add_lattice_options(p: argparse.ArgumentParser, *, timeout: float | None = 2.0,
                        json_flag: bool = True) -> None:
    """--lattice, --nats-url, --nats-creds (and --timeout, --json unless the command has its
    own) — the options every command that talks to a lattice shares."""
    group = p.add_argument_group("lattice connection")
    group.add_argument("--lattice", default=os.environ.get("LATTICE_LATTICE", "default"),
                       metavar="PREFIX",
                       help="lattice prefix (default: $LATTICE_LATTICE or 'default')")
    group.add_argument("--nats-url", default=os.environ.get("LATTICE_NATS_URL", DEFAULT_NATS_URL),
                       metavar="URL",
                       help=f"NATS server(s), comma-separated (default: $LATTICE_NATS_URL or "
                       f"{DEFAULT_NATS_URL})")
    group.add_argument("--nats-creds", default=os.environ.get("LATTICE_NATS_CREDS"),
                       metavar="FILE", help="NATS .creds file (default: $LATTICE_NATS_CREDS)")
    group.add_argument("--nats-jwt", default=os.environ.get("LATTICE_NATS_JWT"), metavar="JWT",
                       help="NATS user JWT, with --nats-seed (default: $LATTICE_NATS_JWT)")
    group.add_argument("--nats-seed", default=os.environ.get("LATTICE_NATS_SEED"),
                       metavar="SEED", help="NATS user seed SU…, with --nats-jwt (default: "
                       "$LATTICE_NATS_SEED)")
    group.add_argument("--tls-ca", default=os.environ.get("LATTICE_TLS_CA"), metavar="FILE",
                       help="CA certificate to verify NATS with (default: $LATTICE_TLS_CA)")
    group.add_argument("--tls-cert", default=os.environ.get("LATTICE_TLS_CERT"), metavar="FILE",
                       help="client certificate for NATS (default: $LATTICE_TLS_CERT)")
    group.add_argument("--tls-key", default=os.environ.get("LATTICE_TLS_KEY"), metavar="FILE",
                       help="client key for NATS (default: $LATTICE_TLS_KEY)")
    if timeout is not None:
        group.add_argument("--timeout", type=float, default=timeout, metavar="SECONDS",
                           help=f"how long to wait for each answer (default: {timeout:g})")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")


def nats_options(args: argparse.Namespace, **overrides: Any) -> NatsOptions:
    """The NATS URL, credentials and TLS files of a command's lattice options."""
    if (args.nats_jwt is None) != (args.nats_seed is None):
        raise CliError("--nats-jwt and --nats-seed go together: give both (or a --nats-creds "
                       "file)")
    if args.tls_key and not args.tls_cert:
        raise CliError("--tls-key needs --tls-cert")
    settings: dict[str, Any] = {
        "url": args.nats_url, "creds": args.nats_creds, "jwt": args.nats_jwt,
        "seed": args.nats_seed, "tls_ca": args.tls_ca, "tls_cert": args.tls_cert,
        "tls_key": args.tls_key}
    return NatsOptions(**{**settings, **overrides})


def check_lattice_arg(args: argparse.Namespace) -> None:
    try:
        subjects.check_lattice(args.lattice)
    except ValueError as exc:
        raise CliError(f"--lattice: {exc}") from None


@contextlib.asynccontextmanager
async def ctl_session(args: argparse.Namespace,
                      name: str = "lattice-cli") -> AsyncIterator[CtlClient]:
    """A connected CtlClient for the command's --lattice/--nats-url/--timeout."""
    check_lattice_arg(args)
    timeout = getattr(args, "timeout", 2.0)
    if timeout <= 0:
        raise CliError("--timeout must be a positive number of seconds")
    try:
        nc = await connect(nats_options(args), name=name, initial_attempts=1)
    except NatsConnectError as exc:
        raise CliError(str(exc)) from None
    try:
        yield CtlClient(nc, args.lattice, timeout=timeout, nats_url=args.nats_url)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def run_async(coro: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; control-interface failures become CliErrors."""
    try:
        return asyncio.run(coro)
    except (CtlError, NatsConnectError) as exc:
        raise CliError(str(exc)) from None


def parse_pairs(values: list[str] | None, option: str) -> dict[str, str]:
    """``KEY=VALUE`` arguments as a dict; the error names the option and shows the format."""
    pairs: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{option} takes KEY=VALUE, got {item!r} (e.g. {option} region=eu)")
        pairs[key.strip()] = value
    return pairs


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned columns separated by two spaces (trailing blanks trimmed)."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in [headers, *rows]]
    return "\n".join(lines)


def note(message: str) -> None:
    """Progress and hints go to stderr, so stdout stays parseable."""
    print(message, file=sys.stderr, flush=True)


class Progress:
    """Prints ``waiting for … (N s)`` on stderr every ``every`` seconds while a wait lasts."""

    def __init__(self, what: str, every: float = 2.0) -> None:
        self.what = what
        self.every = every
        self.started = time.monotonic()
        self._next = self.started + every

    def tick(self) -> None:
        now = time.monotonic()
        if now >= self._next:
            note(f"waiting for {self.what} ({now - self.started:.0f} s)")
            self._next = now + self.every


def cluster_seed_path() -> Path:
    return paths.state_dir() / CLUSTER_SEED_FILE


def load_cluster_seed() -> str | None:
    """The local lattice's shared cluster seed (written by `lattice up`), if there is one."""
    try:
        return cluster_seed_path().read_text().strip() or None
    except OSError:
        return None


def ensure_cluster_seed() -> str:
    """The shared cluster seed, created (mode 0600) on first use."""
    seed = load_cluster_seed()
    if seed:
        return seed
    path = cluster_seed_path()
    paths.private_dir(path.parent)
    seed = KeyPair.generate(KeyRole.CLUSTER).seed
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(seed + "\n")
    return seed


# --- resolving what the user typed --------------------------------------------------------------


async def resolve_host(ctl: CtlClient, text: str, wait: float = 1.0) -> HostInfo:
    """A host by id (N…) or friendly name, among the hosts answering a ping."""
    if is_public_key(text, KeyRole.SERVER):
        # A full id needs no ping window: its inventory answers at once (or no-responders).
        inv = await ctl.inventory(text)
        return HostInfo(id=inv.host_id, friendly_name=inv.friendly_name, labels=inv.labels,
                        issuer=inv.issuer)
    hosts = await ctl.ping_hosts(wait)
    if not hosts:
        raise CliError(f"no host answered on lattice {ctl.lattice} at {ctl.nats_url}: is a host "
                       "running? start one with `lattice up`")
    matches = [h for h in hosts if text in (h.id, h.friendly_name)]
    if not matches and len(text) >= 4:
        # A unique prefix of an id is convenient when copying from a narrow table.
        matches = [h for h in hosts if h.id.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(f"{h.id} ({h.friendly_name})" for h in hosts)
    if not matches:
        raise CliError(f"no host {text!r} on lattice {ctl.lattice}; running hosts: {known}")
    raise CliError(f"{text!r} matches several hosts; give the full host id: {known}")


def resolve_claim(claims: list[dict[str, str]], text: str, role: str) -> str:
    """A public key for an actor (``role="actor"``, M…) or provider (``"provider"``, V…) given
    as a key, a claims name or (actors) a call alias, using the lattice's claims."""
    letter, key_role = ("M", KeyRole.MODULE) if role == "actor" else ("V", KeyRole.SERVICE)
    if is_public_key(text, key_role):
        return text
    own = [c for c in claims if c.get("sub", "").startswith(letter)]
    matches = sorted({c["sub"] for c in own
                      if text in (c.get("name"), c.get("call_alias")) and text})
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = ", ".join(f"{c.get('name') or '?'} ({c['sub']})" for c in own) or "none"
        raise CliError(f"no {role} named {text!r} in lattice claims; give its public key "
                       f"({letter}…) or one of the known {role}s: {known}")
    raise CliError(f"several {role}s are named {text!r}; give the public key of one of: "
                   + ", ".join(matches))
