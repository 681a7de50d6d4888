"""``lattice push|pull`` (the lattice's artifact store) and ``lattice reg push|pull`` (OCI).

``push`` uploads a file into the lattice's JetStream object store by the SHA-256 of its content
and prints the ``lattice://`` reference any host can start it from; ``pull`` fetches an artifact
(by digest, tag or OCI reference) into a local file. ``lattice start actor|provider PATH``
uses :func:`upload_for_start` so that hosts on other machines need no shared disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from nats.aio.client import Client

from lattice.artifacts import (
    ArtifactError,
    ArtifactStore,
    Credentials,
    StoreUnavailable,
    fetch,
    looks_like_oci,
    parse_lattice_ref,
    parse_oci_ref,
)
from lattice.artifacts.credentials import PASSWORD_ENV, USER_ENV
from lattice.cli._common import (
    CliError,
    add_lattice_options,
    check_lattice_arg,
    emit,
    nats_options,
    note,
    parse_pairs,
    run_async,
)
from lattice.connect import NatsConnectError, connect


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "push", help="upload a file to the lattice's artifact store (by content hash)",
        description="Upload an actor, provider archive or executable into the lattice's "
        "JetStream object store, named by the SHA-256 of its content (nothing is uploaded when "
        "the store already has it), and print the lattice:// reference hosts start it from.",
        epilog="example: lattice push actors/echo-wasmbus/echo.wasm --tag echo:0.1.0")
    p.add_argument("file", metavar="FILE", help="the file to upload")
    p.add_argument("--tag", action="append", default=[], metavar="NAME:VERSION",
                   help="also point this tag at it (repeatable; moves an existing tag)")
    add_lattice_options(p, timeout=10.0)
    p.set_defaults(handler=lambda a: run_async(_push(a)))

    p = sub.add_parser(
        "pull", help="download an artifact (lattice store or OCI registry) to a file",
        description="Download an artifact: from the lattice's store by digest (sha256:…), "
        "tag (NAME:VERSION) or lattice:// reference, or from an OCI registry "
        "(oci://host/repo:tag, host/repo:tag). The content is checked against its digest.",
        epilog="example: lattice pull echo:0.1.0 -o echo.wasm")
    p.add_argument("ref", metavar="REF", help="sha256:…, NAME:VERSION, lattice://… or OCI ref")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="file or directory to write (default: its name, in this directory)")
    _registry_options(p)
    add_lattice_options(p, timeout=10.0)
    p.set_defaults(handler=lambda a: run_async(_pull(a)))

    reg = sub.add_parser("reg", help="push and pull wasmCloud artifacts to and from OCI "
                         "registries")
    reg_sub = reg.add_subparsers(dest="reg_command", metavar="WHAT", required=True)
    p = reg_sub.add_parser(
        "push", help="publish an actor (.wasm) or provider archive (.par/.par.gz) to a registry",
        description="Push an actor module or provider archive as a wasmCloud OCI artifact "
        "(the media types wash uses). Registries on loopback addresses are spoken to over "
        "plain HTTP; others over HTTPS unless --insecure.",
        epilog="example: lattice reg push echo.wasm oci://127.0.0.1:5000/acme/echo:0.1.0")
    p.add_argument("file", metavar="FILE", help="the .wasm module or .par/.par.gz archive")
    p.add_argument("ref", metavar="REF", help="oci://host[:port]/repository:tag (or without "
                   "oci://)")
    p.add_argument("--annotation", action="append", default=[], metavar="KEY=VALUE",
                   help="manifest annotation (repeatable)")
    _registry_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=lambda a: run_async(_reg_push(a)))

    p = reg_sub.add_parser("pull", help="download an artifact from an OCI registry to a file")
    p.add_argument("ref", metavar="REF", help="oci://host[:port]/repository:tag or @sha256:…")
    p.add_argument("-o", "--output", metavar="PATH",
                   help="file or directory to write (default: its name, in this directory)")
    _registry_options(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=lambda a: run_async(_reg_pull(a)))


def _registry_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("OCI registry")
    group.add_argument("--user", "-u", metavar="NAME",
                       help=f"registry user (default: ${USER_ENV})")
    group.add_argument("--password", "-p", metavar="SECRET",
                       help=f"registry password (default: ${PASSWORD_ENV})")
    group.add_argument("--password-stdin", action="store_true",
                       help="read the password from standard input")
    group.add_argument("--insecure", action="store_true",
                       help="plain HTTP (loopback registries use it anyway)")


def _credentials(args: argparse.Namespace) -> Credentials | None:
    password = args.password
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    if args.user is None and password is None:
        return None  # the environment or the Docker config may still have some
    if not args.user or password is None:
        raise CliError("give both --user and --password (or --password-stdin)")
    return Credentials(args.user, password)


@contextlib.asynccontextmanager
async def _nats(args: argparse.Namespace) -> AsyncIterator[Client]:
    check_lattice_arg(args)
    try:
        nc = await connect(nats_options(args), name="lattice-cli", initial_attempts=1)
    except NatsConnectError as exc:
        raise CliError(str(exc)) from None
    try:
        yield nc
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def _output_path(output: str | None, name: str) -> Path:
    if output is None:
        return Path.cwd() / name
    path = Path(output).expanduser()
    return path / name if path.is_dir() else path


def _copy_out(cached: Path, output: str | None) -> Path:
    target = _output_path(output, cached.name)
    try:
        shutil.copyfile(cached, target)
        shutil.copymode(cached, target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}") from None
    return target


# --- the lattice's store ------------------------------------------------------------------------


async def _push(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    if not path.is_file():
        raise CliError(f"{args.file} does not exist (or is not a file)")
    async with _nats(args) as nc:
        try:
            result = await ArtifactStore(nc, args.lattice, timeout=args.timeout).push_file(
                path, tags=args.tag)
        except ArtifactError as exc:
            raise CliError(str(exc)) from None
    if not args.json:
        note(f"{'uploaded' if result.uploaded else 'already stored:'} {result.name} "
             f"({result.size} bytes, {result.kind}) to lattice {args.lattice}"
             + (f", tagged {', '.join(result.tags)}" if result.tags else ""))
    emit(result.to_json(), args.json, result.ref)
    return 0


async def _pull(args: argparse.Namespace) -> int:
    text = args.ref.strip()
    if looks_like_oci(text):
        return await _reg_pull(args)
    try:
        ref = parse_lattice_ref(text)
    except ArtifactError as exc:
        raise CliError(f"{exc}; or give an OCI reference (oci://host/repo:tag)") from None
    async with _nats(args) as nc:
        try:
            cached = await fetch(str(ref), nc=nc, lattice=args.lattice)
        except ArtifactError as exc:
            raise CliError(str(exc)) from None
    target = _copy_out(cached, args.output)
    digest = "sha256:" + cached.parent.name
    emit({"path": str(target), "ref": str(ref), "digest": digest,
          "size": target.stat().st_size}, args.json, str(target))
    return 0


async def upload_for_start(nc: Client, lattice: str, text: str, ref: str,
                           path: Path | None) -> str:
    """The reference ``lattice start`` sends for what the user typed.

    A local file given as a path is uploaded to the lattice's artifact store and sent as its
    ``lattice://`` reference, so any host can fetch it; an explicit ``file://`` URL (a host
    that shares this disk) and every other reference are sent unchanged. Without JetStream
    the ``file://`` reference is sent, with a note.
    """
    if path is None or text.strip().startswith("file://"):
        return ref
    try:
        result = await ArtifactStore(nc, lattice).push_file(path)
    except StoreUnavailable as exc:
        note(f"could not upload {path} ({exc}); sending {ref}, which only hosts sharing this "
             "disk can load")
        return ref
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    note(f"{'uploaded' if result.uploaded else 'already stored:'} {result.name} as "
         f"{result.ref}")
    return result.ref


# --- OCI ----------------------------------------------------------------------------------------


async def _reg_push(args: argparse.Namespace) -> int:
    from lattice.artifacts.oci import OciClient

    path = Path(args.file).expanduser()
    if not path.is_file():
        raise CliError(f"{args.file} does not exist (or is not a file)")
    annotations = parse_pairs(args.annotation, "--annotation")
    try:
        client = OciClient(parse_oci_ref(args.ref), credentials=_credentials(args),
                           insecure=args.insecure)
        result = await asyncio.to_thread(client.push, path, annotations=annotations)
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    emit(result.to_json(), args.json,
         f"Pushed {path.name} to {result.ref} (digest {result.digest})")
    return 0


async def _reg_pull(args: argparse.Namespace) -> int:
    text = args.ref.strip()
    try:
        oci = parse_oci_ref(text)
        cached = await fetch(text if text.startswith("oci://") else f"oci://{text}",
                             credentials=_credentials(args), insecure=args.insecure)
    except ArtifactError as exc:
        raise CliError(str(exc)) from None
    target = _copy_out(cached, args.output)
    emit({"path": str(target), "ref": str(oci), "digest": "sha256:" + cached.parent.name,
          "size": target.stat().st_size}, args.json, str(target))
    return 0
