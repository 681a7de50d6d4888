"""``lattice start|stop|scale|update actor …`` and ``lattice start|stop provider …``.

Every command sends one control-interface command per host (docs/wire.md §3.3.2), then — because
hosts acknowledge before they do the work — waits for the host's events (§3.4) and reports the
outcome, showing progress on stderr while it waits. ``--wait 0`` only reports the
acknowledgement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lattice.claims import ClaimsError, extract_claims
from lattice.cli import artifacts
from lattice.cli._common import (
    CliError,
    Progress,
    add_lattice_options,
    ctl_session,
    emit,
    note,
    parse_pairs,
    read_data_arg,
    resolve_host,
    run_async,
)
from lattice.ctl import CtlClient, CtlError, Event, EventStream, HostInventory
from lattice.keys import KeyRole, is_public_key

DEFAULT_WAIT = 30.0

# A judge looks at one event and returns None (not ours / not final yet), or
# (host_id, error) once that host's outcome is known; error is None on success.
Judge = Callable[[Event], tuple[str, str | None] | None]


def register(sub: argparse._SubParsersAction) -> None:
    start = sub.add_parser("start", help="start an actor or a provider on a host")
    start_sub = start.add_subparsers(dest="start_command", metavar="WHAT", required=True)
    p = start_sub.add_parser(
        "actor", help="start actor instances from a .wasm file (or an OCI reference)",
        description="Start an actor on a host. Without --host-id, hosts matching the "
        "--constraint labels are auctioned and the first to answer runs it.",
        epilog="example: lattice start actor actors/echo-wasmbus/echo.wasm --count 2")
    p.add_argument("ref", metavar="REF", help="a .wasm path, file:// URL or OCI reference")
    p.add_argument("--count", type=int, default=1, metavar="N",
                   help="instances to start (default: 1)")
    p.add_argument("--memory-limit", type=int, default=None, metavar="MIB",
                   help="linear memory cap per instance of this actor in MiB (default: the "
                   "host's, see lattice host --memory-limit); applies when the actor first "
                   "starts on a host")
    _placement(p)
    _wait_option(p)
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_start_actor(a)))

    p = start_sub.add_parser(
        "provider", help="start a capability provider on a host",
        description="Start a provider (a built-in provider name, a .par path, file:// URL or "
        "OCI reference) on a host.",
        epilog="example: lattice start provider keyvalue-nats --embedded")
    p.add_argument("ref", metavar="NAME|PATH", help="provider name, path, or reference")
    p.add_argument("--link-name", default="default", metavar="NAME",
                   help="link name it serves (default: default)")
    p.add_argument("--embedded", action="store_true",
                   help="run it inside the host process instead of as a child process")
    p.add_argument("--config", metavar="JSON|@FILE",
                   help="provider configuration (JSON, inline or @file)")
    p.add_argument("--contract", metavar="ID",
                   help="contract id, when the reference alone does not say it")
    _placement(p)
    _wait_option(p)
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_start_provider(a)))

    stop = sub.add_parser("stop", help="stop an actor or a provider")
    stop_sub = stop.add_subparsers(dest="stop_command", metavar="WHAT", required=True)
    p = stop_sub.add_parser("actor", help="stop actor instances (on every host running it, "
                            "unless --host-id)")
    p.add_argument("actor", metavar="ACTOR", help="actor public key (M…) or name")
    p.add_argument("--count", type=int, default=0, metavar="N",
                   help="instances to stop per host (default: 0 = all)")
    p.add_argument("--host-id", metavar="HOST", help="only on this host (id or friendly name)")
    _wait_option(p)
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_stop_actor(a)))

    p = stop_sub.add_parser("provider", help="stop a provider (on every host running it, "
                            "unless --host-id)")
    p.add_argument("provider", metavar="PROVIDER", help="provider public key (V…) or name")
    p.add_argument("--link-name", default="default", metavar="NAME",
                   help="link name (default: default)")
    p.add_argument("--host-id", metavar="HOST", help="only on this host (id or friendly name)")
    _wait_option(p)
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_stop_provider(a)))

    scale = sub.add_parser("scale", help="change how many instances of an actor run on a host")
    scale_sub = scale.add_subparsers(dest="scale_command", metavar="WHAT", required=True)
    p = scale_sub.add_parser("actor", help="make a host run exactly N instances of an actor")
    p.add_argument("actor", metavar="ACTOR", help="actor public key (M…) or name")
    p.add_argument("--count", type=int, required=True, metavar="N", help="instances wanted")
    p.add_argument("--host-id", metavar="HOST",
                   help="the host (id or friendly name); needed when several run the actor")
    _wait_option(p)
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_scale_actor(a)))

    update = sub.add_parser("update", help="live-update a running actor to a new module")
    update_sub = update.add_subparsers(dest="update_command", metavar="WHAT", required=True)
    p = update_sub.add_parser("actor", help="replace a running actor's module (same key, "
                              "higher revision)")
    p.add_argument("actor", metavar="ACTOR", help="actor public key (M…) or name")
    p.add_argument("ref", metavar="REF", help="the new .wasm path, file:// URL or OCI reference")
    p.add_argument("--host-id", metavar="HOST", help="only on this host (id or friendly name)")
    _wait_option(p)
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_update_actor(a)))


def _placement(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--host-id", metavar="HOST", help="run it on this host (id or name)")
    group.add_argument("--constraint", action="append", default=[], metavar="KEY=VALUE",
                       help="only auction among hosts with this label (repeatable)")


def _wait_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=DEFAULT_WAIT, metavar="SECONDS",
                   help=f"how long to wait for the outcome (default: {DEFAULT_WAIT:g}; 0 = only "
                   "wait for the acknowledgement)")


# --- references and targets ---------------------------------------------------------------------


def file_ref(text: str, *, suffixes: tuple[str, ...]) -> tuple[str, Path | None]:
    """(reference to send, local file or None): paths become ``file://`` + absolute path;
    other text (an OCI reference, a provider name) is sent unchanged."""
    if text.startswith("file://"):
        path = Path(text.removeprefix("file://"))
        if not path.is_file():
            raise CliError(f"{path} does not exist (from {text})")
        return f"file://{path.resolve()}", path
    path = Path(text)
    if path.is_file():
        return f"file://{path.resolve()}", path
    if path.suffix in suffixes or text.startswith((".", "/", "~")):
        raise CliError(f"{text} does not exist: give the path of a file, or a reference")
    return text, None


@dataclass
class LocalActor:
    key: str = ""
    name: str = ""
    revision: int = 0


def local_actor(path: Path | None) -> LocalActor:
    """Key and name from a local module's claims (unverified: the host verifies)."""
    if path is None:
        return LocalActor()
    with contextlib.suppress(OSError, ClaimsError, ValueError):
        claims = extract_claims(path.read_bytes())
        if claims is not None:
            return LocalActor(claims.subject, claims.name or "", claims.revision)
    return LocalActor()


async def _host_label(ctl: CtlClient, text: str) -> tuple[str, str]:
    """(host id, friendly name) for a host given by id or friendly name."""
    host = await resolve_host(ctl, text)
    return host.id, host.friendly_name


async def _placed(ctl: CtlClient, args: argparse.Namespace, auction: Callable[..., Any],
                  what: str) -> tuple[str, str]:
    if args.host_id:
        return await _host_label(ctl, args.host_id)
    constraints = parse_pairs(args.constraint, "--constraint")
    offers = await auction(constraints, limit=1)
    if not offers:
        wanted = (" with labels " + ", ".join(f"{k}={v}" for k, v in constraints.items())
                  if constraints else "")
        raise CliError(f"no host{wanted} on lattice {ctl.lattice} at {ctl.nats_url} offered to "
                       f"run {what}: start a host (`lattice up`), check the labels with "
                       "`lattice get hosts`, or pick one with --host-id")
    host_id = offers[0].host_id
    with contextlib.suppress(CtlError):
        return host_id, (await ctl.inventory(host_id)).friendly_name
    return host_id, ""


async def _inventories(ctl: CtlClient, host: str | None) -> list[HostInventory]:
    if host:
        host_id, _ = await _host_label(ctl, host)
        return [await ctl.inventory(host_id)]
    hosts = await ctl.ping_hosts()
    if not hosts:
        raise CliError(f"no host answered on lattice {ctl.lattice} at {ctl.nats_url}: is a host "
                       "running? start one with `lattice up`")
    return [await ctl.inventory(h.id) for h in hosts]


def _running_actor(invs: list[HostInventory], text: str, lattice: str) -> str:
    """The actor key for a key or name, among actors running on these hosts."""
    keys = {a.id for inv in invs for a in inv.actors if text in (a.id, a.name)}
    if len(keys) == 1:
        return keys.pop()
    if not keys:
        if is_public_key(text, KeyRole.MODULE):
            return text
        where = "that host" if len(invs) == 1 else f"lattice {lattice}"
        raise CliError(f"no actor {text!r} runs on {where}: see `lattice get inventory`")
    raise CliError(f"several actors are named {text!r}; give one of the keys: "
                   + ", ".join(sorted(keys)))


def _who(host_id: str, name: str) -> str:
    return f"host {host_id[:8]}…" + (f" ({name})" if name else "")


def _of_host(event: Event, host_id: str) -> bool:
    return host_id in (event.source, event.data.get("host_id"))


async def _outcomes(stream: EventStream, hosts: dict[str, str], doing: str, wait: float,
                    judge: Judge) -> dict[str, str | None]:
    """Wait until every host in ``hosts`` (id → friendly name) reported; host id → error."""
    results: dict[str, str | None] = {}
    progress = Progress(", ".join(_who(h, n) for h, n in hosts.items()) + f" to {doing}")
    pending = set(hosts)
    deadline = time.monotonic() + wait
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            late = ", ".join(_who(h, hosts[h]) for h in sorted(pending))
            raise CliError(f"{late} accepted the command but reported no outcome within "
                           f"{wait:g} s: check `lattice get inventory` and the host's log (for "
                           "`lattice up`: host.log in the state directory), or wait longer "
                           "with --wait")
        try:
            event = await stream.next(min(left, 1.0))
        except CtlError:
            progress.tick()
            continue
        verdict = judge(event)
        if verdict and verdict[0] in pending:
            pending.discard(verdict[0])
            results[verdict[0]] = verdict[1]
        progress.tick()
    return results


def _report(results: dict[str, str | None], hosts: dict[str, str], ok: str) -> list[str]:
    """Success lines; raises CliError naming every failed host."""
    failures = [f"{_who(h, hosts[h])}: {err}" for h, err in results.items() if err]
    lines = [f"{ok} on {_who(h, hosts[h])}" for h, err in results.items() if not err]
    if failures:
        for line in lines:
            note(line)
        raise CliError("; ".join(failures))
    return lines


# --- actors -------------------------------------------------------------------------------------


async def _start_actor(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise CliError("--count must be at least 1")
    if args.memory_limit is not None and args.memory_limit < 1:
        raise CliError("--memory-limit is a number of MiB, at least 1")
    ref, path = file_ref(args.ref, suffixes=(".wasm", ".wat"))
    local = local_actor(path)
    label = local.name or local.key or args.ref
    async with ctl_session(args) as ctl:
        ref = await artifacts.upload_for_start(ctl.nc, ctl.lattice, args.ref, ref, path)
        host_id, host_name = await _placed(
            ctl, args, lambda c, limit: ctl.auction_actor(ref, c, wait=ctl.timeout, limit=limit),
            f"actor {label}")
        async with ctl.events() as stream:
            await ctl.start_actor(host_id, ref, args.count,
                                  memory_limit_mib=args.memory_limit)
            result: dict[str, Any] = {"accepted": True, "host_id": host_id,
                                      "host_name": host_name, "actor_ref": ref,
                                      "actor_id": local.key, "name": local.name,
                                      "count": args.count}
            if args.wait <= 0:
                emit(result, args.json,
                     f"{_who(host_id, host_name)} accepted to start actor {label}")
                return 0
            started: list[Event] = []
            final: list[Event] = []

            def judge(e: Event) -> tuple[str, str | None] | None:
                if not _of_host(e, host_id):
                    return None
                mine = e.data.get("image_ref") == ref or (
                    local.key and e.data.get("public_key") == local.key)
                if e.name == "actors_started" and mine:
                    final.append(e)
                    return host_id, None
                if e.name == "actor_started" and mine:
                    started.append(e)
                    return (host_id, None) if len(started) >= args.count else None
                if e.name == "actors_start_failed" and mine:
                    return host_id, str(e.data.get("error") or "unknown error")
                if e.name == "actor_start_failed" and e.data.get("actor_ref") == ref:
                    return host_id, str(e.data.get("error") or "unknown error")
                return None

            results = await _outcomes(stream, {host_id: host_name},
                                      f"start actor {label}", args.wait, judge)
    if results[host_id]:
        raise CliError(f"{_who(host_id, host_name)} could not start actor {label}: "
                       f"{results[host_id]}")
    event = (final or started)[-1]
    claims = event.data.get("claims") or {}
    result.update(actor_id=event.data.get("public_key") or local.key,
                  name=claims.get("name") or local.name)
    emit(result, args.json,
         f"Started {args.count} instance{'s' if args.count != 1 else ''} of actor "
         f"{result['name'] or '?'} ({result['actor_id']}) on {_who(host_id, host_name)}")
    return 0


async def _stop_actor(args: argparse.Namespace) -> int:
    if args.count < 0:
        raise CliError("--count must be 0 (all) or more")
    async with ctl_session(args) as ctl:
        invs = await _inventories(ctl, args.host_id)
        key = _running_actor(invs, args.actor, ctl.lattice)
        running = {inv.host_id: (inv.friendly_name, inv.actor(key)) for inv in invs}
        targets = {h: n for h, (n, a) in running.items() if a is not None}
        if not targets:
            if args.host_id:
                raise CliError(f"actor {args.actor} does not run on {args.host_id}: see "
                               "`lattice get inventory`")
            raise CliError(f"actor {args.actor} does not run on lattice {ctl.lattice}")
        expected = {}
        for h in targets:
            actor = running[h][1]
            have = actor.count if actor else 0
            expected[h] = min(args.count, have) if args.count else have
        stopped: dict[str, int] = dict.fromkeys(targets, 0)

        def judge(e: Event) -> tuple[str, str | None] | None:
            if e.data.get("public_key") != key:
                return None
            host = next((h for h in targets if _of_host(e, h)), None)
            if host is None:
                return None
            if e.name == "actors_stopped":
                return host, None
            if e.name == "actor_stopped":
                stopped[host] += 1
                return (host, None) if stopped[host] >= expected[host] else None
            return None

        async with ctl.events() as stream:
            for h in targets:
                await ctl.stop_actor(h, key, args.count)
            if args.wait > 0:
                results = await _outcomes(stream, targets, f"stop actor {args.actor}",
                                          args.wait, judge)
            else:
                results = dict.fromkeys(targets)
    what = "all instances" if not args.count else f"{args.count} instance(s)"
    lines = _report(results, targets, f"Stopped {what} of actor {key}")
    emit([{"host_id": h, "actor_id": key, "stopped": expected[h], "error": e}
          for h, e in results.items()], args.json, "\n".join(lines))
    return 0


async def _scale_actor(args: argparse.Namespace) -> int:
    if args.count < 0:
        raise CliError("--count must be 0 or more")
    async with ctl_session(args) as ctl:
        invs = await _inventories(ctl, None)
        key = _running_actor(invs, args.actor, ctl.lattice)
        hosting = [inv for inv in invs if inv.actor(key)]
        if not hosting:
            raise CliError(f"actor {args.actor} does not run on lattice {ctl.lattice}: start it "
                           "with `lattice start actor REF`")
        desc = hosting[0].actor(key)
        assert desc is not None
        ref = desc.image_ref
        if args.host_id:
            host_id, host_name = await _host_label(ctl, args.host_id)
        elif len(hosting) == 1:
            host_id, host_name = hosting[0].host_id, hosting[0].friendly_name
        else:
            raise CliError(f"actor {args.actor} runs on several hosts; choose one with "
                           "--host-id: " + ", ".join(f"{i.host_id} ({i.friendly_name})"
                                                     for i in hosting))
        here = next((i.actor(key) for i in invs if i.host_id == host_id), None)
        current = here.count if here else 0
        if here and here.image_ref:
            ref = here.image_ref
        result = {"host_id": host_id, "actor_id": key, "count": args.count, "previous": current}
        if current == args.count:
            emit(result, args.json, f"Actor {key} already runs {current} instance(s) on "
                 f"{_who(host_id, host_name)}")
            return 0
        grow = args.count > current
        delta = abs(args.count - current)
        seen = 0

        def judge(e: Event) -> tuple[str, str | None] | None:
            nonlocal seen
            if not _of_host(e, host_id) or e.data.get("public_key") not in (key, None):
                return None
            if e.name in ("actor_scaled", "actors_started" if grow else "actors_stopped"):
                return host_id, None
            if e.name == ("actor_started" if grow else "actor_stopped"):
                seen += 1
                return (host_id, None) if seen >= delta else None
            if e.name in ("actor_scale_failed", "actors_start_failed"):
                return host_id, str(e.data.get("error") or "unknown error")
            return None

        async with ctl.events() as stream:
            await ctl.scale_actor(host_id, key, ref, args.count)
            if args.wait > 0:
                results = await _outcomes(stream, {host_id: host_name},
                                          f"scale actor {args.actor} to {args.count}",
                                          args.wait, judge)
            else:
                results = {host_id: None}
    lines = _report(results, {host_id: host_name},
                    f"Scaled actor {key} from {current} to {args.count} instance(s)")
    emit(result, args.json, "\n".join(lines))
    return 0


async def _update_actor(args: argparse.Namespace) -> int:
    ref, path = file_ref(args.ref, suffixes=(".wasm", ".wat"))
    local = local_actor(path)
    async with ctl_session(args) as ctl:
        ref = await artifacts.upload_for_start(ctl.nc, ctl.lattice, args.ref, ref, path)
        invs = await _inventories(ctl, args.host_id)
        key = _running_actor(invs, args.actor, ctl.lattice)
        if local.key and local.key != key:
            raise CliError(f"{args.ref} is actor {local.key}, not {key}: a live update keeps "
                           "the actor's key (sign the new module with the same module key)")
        targets = {inv.host_id: inv.friendly_name for inv in invs if inv.actor(key)}
        if not targets:
            raise CliError(f"actor {args.actor} does not run "
                           + ("on that host" if args.host_id else f"on lattice {ctl.lattice}")
                           + ": start it with `lattice start actor`")

        def judge(e: Event) -> tuple[str, str | None] | None:
            if e.data.get("public_key") != key:
                return None
            host = next((h for h in targets if _of_host(e, h)), None)
            if host is None:
                return None
            if e.name == "actor_updated":
                return host, None
            if e.name == "actor_update_failed":
                return host, str(e.data.get("reason") or e.data.get("error") or "unknown error")
            return None

        async with ctl.events() as stream:
            for h in targets:
                await ctl.update_actor(h, key, ref)
            if args.wait > 0:
                results = await _outcomes(stream, targets, f"update actor {args.actor}",
                                          args.wait, judge)
            else:
                results = dict.fromkeys(targets)
    lines = _report(results, targets, f"Updated actor {key} to {ref}")
    emit([{"host_id": h, "actor_id": key, "actor_ref": ref, "error": e}
          for h, e in results.items()], args.json, "\n".join(lines))
    return 0


# --- providers ----------------------------------------------------------------------------------


async def _start_provider(args: argparse.Namespace) -> int:
    ref, path = file_ref(args.ref, suffixes=(".par", ".gz"))
    config = ""
    if args.config is not None:
        config = json.dumps(read_data_arg(args.config))  # validated JSON, as HostData wants
    async with ctl_session(args) as ctl:
        ref = await artifacts.upload_for_start(ctl.nc, ctl.lattice, args.ref, ref, path)
        host_id, host_name = await _placed(
            ctl, args, lambda c, limit: ctl.auction_provider(ref, args.link_name, c,
                                                              wait=ctl.timeout, limit=limit),
            f"provider {args.ref} (link name {args.link_name})")
        started: list[Event] = []

        def judge(e: Event) -> tuple[str, str | None] | None:
            if not _of_host(e, host_id) or e.data.get("link_name", args.link_name) != \
                    args.link_name:
                return None
            if e.name == "provider_started" and (
                    e.data.get("image_ref") in (ref, args.ref) or not e.data.get("image_ref")):
                started.append(e)
                return host_id, None
            if e.name == "provider_start_failed" and e.data.get("provider_ref") in (
                    ref, args.ref, None):
                return host_id, str(e.data.get("error") or "unknown error")
            return None

        async with ctl.events() as stream:
            await ctl.start_provider(host_id, ref, args.link_name, config,
                                     embedded=args.embedded, contract_id=args.contract)
            result: dict[str, Any] = {"accepted": True, "host_id": host_id,
                                      "host_name": host_name, "provider_ref": ref,
                                      "link_name": args.link_name}
            if args.wait <= 0:
                emit(result, args.json,
                     f"{_who(host_id, host_name)} accepted to start provider {args.ref}")
                return 0
            results = await _outcomes(stream, {host_id: host_name},
                                      f"start provider {args.ref}", args.wait, judge)
    if results[host_id]:
        raise CliError(f"{_who(host_id, host_name)} could not start provider {args.ref}: "
                       f"{results[host_id]}")
    data = started[-1].data
    claims = data.get("claims") or {}
    result.update(provider_id=data.get("public_key", ""), name=claims.get("name", ""),
                  contract_id=data.get("contract_id", ""))
    emit(result, args.json,
         f"Started provider {result['name'] or args.ref} ({result['provider_id']}) for "
         f"{result['contract_id'] or '?'} (link name {args.link_name}) on "
         f"{_who(host_id, host_name)}")
    return 0


async def _stop_provider(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        invs = await _inventories(ctl, args.host_id)
        found = [(inv, p) for inv in invs for p in inv.providers
                 if args.provider in (p.id, p.name) and p.link_name == args.link_name]
        keys = {p.id for _, p in found}
        if not found:
            where = "that host" if args.host_id else f"lattice {ctl.lattice}"
            raise CliError(f"no provider {args.provider!r} with link name {args.link_name} runs "
                           f"on {where}: see `lattice get inventory`")
        if len(keys) > 1:
            raise CliError(f"several providers are named {args.provider!r}; give one of the "
                           "keys: " + ", ".join(sorted(keys)))
        key = keys.pop()
        targets = {inv.host_id: inv.friendly_name for inv, _ in found}

        def judge(e: Event) -> tuple[str, str | None] | None:
            if e.name != "provider_stopped" or e.data.get("public_key") != key or \
                    e.data.get("link_name", args.link_name) != args.link_name:
                return None
            return next(((h, None) for h in targets if _of_host(e, h)), None)

        async with ctl.events() as stream:
            for inv, p in found:
                await ctl.stop_provider(inv.host_id, key, args.link_name, p.contract_id)
            if args.wait > 0:
                results = await _outcomes(stream, targets, f"stop provider {args.provider}",
                                          args.wait, judge)
            else:
                results = dict.fromkeys(targets)
    lines = _report(results, targets,
                    f"Stopped provider {key} (link name {args.link_name})")
    emit([{"host_id": h, "provider_id": key, "link_name": args.link_name, "error": e}
          for h, e in results.items()], args.json, "\n".join(lines))
    return 0
