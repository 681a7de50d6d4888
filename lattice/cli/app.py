"""``lattice app deploy|undeploy|list|status|history``: declarative apps (docs/manifest.md).

Deploy validates the manifest here, before anything starts (every problem listed, each naming
its component), uploads local image files into the lattice's artifact store (so hosts on other
machines can run them), and records the version in the lattice's app bucket; the reconciler
leader (running inside the hosts) does the rest. ``--wait`` follows the app's status until it
is deployed (or failed).

Status is only repeated while it is current (lattice/app/observe.py): when the leader that
computed it is gone or no longer leads, a host it counted is gone, or it was not recomputed for
3 reconcile intervals, the app is ``unknown`` since then, with the last known status as detail.
Commands the reconciler holds back after failures show as "retrying in N s: <error>".
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lattice.app.manifest import ManifestError, load_manifest
from lattice.app.observe import Observed, observe
from lattice.app.store import AppStore, AppStoreError
from lattice.app.upload import local_image, upload_images
from lattice.artifacts import ArtifactError
from lattice.cli._common import (
    CliError,
    add_lattice_options,
    ctl_session,
    emit,
    note,
    run_async,
)
from lattice.connect import jetstream


def register(sub: argparse._SubParsersAction) -> None:
    app = sub.add_parser("app", help="deploy and inspect declarative apps (manifests)",
                         description="Apps are wadm-style manifests (core.oam.dev/v1beta1); "
                         "the reconciler inside the hosts keeps them running.")
    cmds = app.add_subparsers(dest="app_command", metavar="COMMAND", required=True)

    p = cmds.add_parser("deploy", help="deploy (or upgrade to) the manifest's version",
                        epilog="example: lattice app deploy examples/kvcounter.yaml")
    p.add_argument("file", metavar="FILE", help="the manifest (YAML)")
    p.add_argument("--wait", type=float, default=60.0, metavar="SECONDS",
                   help="follow the status until deployed (0: return at once; default 60)")
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_deploy(a)))

    p = cmds.add_parser("undeploy", help="stop everything the app started and delete its links")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="wait until the app is undeployed (0: return at once; default 30)")
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_undeploy(a)))

    p = cmds.add_parser("list", help="apps in the lattice with version and status")
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_list(a)))

    p = cmds.add_parser(
        "status", help="an app's status, with a reason per unsatisfied scaler (unknown when "
        "what it was computed from is gone)",
        description="deployed | reconciling (why) | failed (the error; \"retrying in N s\" while "
        "the reconciler backs off a failing start) | undeployed | unknown since TIME (the "
        "status was computed by a leader that is gone or no longer leads, or counted a host "
        "that is gone, or is older than 3 reconcile intervals: the last known status follows; "
        "a new leader recomputes it within seconds).")
    p.add_argument("name", metavar="NAME")
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_status(a)))

    p = cmds.add_parser("history", help="every version of an app ever deployed")
    p.add_argument("name", metavar="NAME")
    add_lattice_options(p)
    p.set_defaults(handler=lambda a: run_async(_history(a)))


async def _store(ctl: Any) -> AppStore:
    return await AppStore(_js(ctl), ctl.lattice).open()  # $LATTICE_JS_DOMAIN: the state's domain


def _js(ctl: Any) -> Any:
    return jetstream(ctl.nc, os.environ.get("LATTICE_JS_DOMAIN") or None)


async def _observe(ctl: Any, store: AppStore, name: str, record: Any = None) -> Observed:
    return await observe(store, ctl.nc, _js(ctl), ctl.lattice, name, prefix=ctl.prefix,
                         record=record)


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _load(path: str) -> Any:
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    try:
        manifest = load_manifest(text)
    except ManifestError as exc:
        raise CliError(f"{path} is not a valid app manifest:\n{exc}") from None
    for warning in manifest.warnings:
        note(f"warning: {warning}")
    return manifest


async def _deploy(args: argparse.Namespace) -> int:
    manifest = _load(args.file)
    base = Path(args.file).resolve().parent  # image paths are relative to the manifest
    for comp in manifest.components:
        if comp.image.startswith(("./", "../", "/")) and local_image(comp.image, base) is None:
            raise CliError(f"component {comp.name}: image {comp.image} is not a file (relative "
                           f"to {base}); build it first, e.g. `lattice build DIR`")
    async with ctl_session(args) as ctl:
        try:  # local files go into the lattice's artifact store: hosts need no shared disk
            manifest = await upload_images(ctl.nc, ctl.lattice, manifest, base, note)
        except ArtifactError as exc:
            raise CliError(str(exc)) from None
        store = await _store(ctl)
        try:
            _, new = await store.deploy(manifest)
        except AppStoreError as exc:
            raise CliError(str(exc)) from None
        what = "deployed" if new else "re-deployed"
        note(f"{what} {manifest.name} {manifest.version}; the reconciler takes it from here")
        seen = await _follow(ctl, store, manifest.name, manifest.version, args.wait,
                             done=("deployed", "failed"))
    _print_state(args, manifest.name, seen)
    if seen.status == "failed":
        return 1
    return 0


async def _undeploy(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        store = await _store(ctl)
        try:
            await store.undeploy(args.name)
        except AppStoreError as exc:
            raise CliError(str(exc)) from None
        note(f"undeploying {args.name}")
        seen = await _follow(ctl, store, args.name, None, args.wait, done=("undeployed",))
    _print_state(args, args.name, seen)
    return 0


async def _follow(ctl: Any, store: AppStore, name: str, version: str | None, wait: float,
                  done: tuple[str, ...]) -> Observed:
    """The app's status once it reaches one of ``done`` for ``version`` (or the wait ends);
    a status is only taken as reached while it is current."""
    deadline = time.monotonic() + wait
    shown = ""
    state = await store.state(name)
    while time.monotonic() < deadline:
        state = await store.state(name)
        if state and state.version == version and state.status in done:
            seen = await _observe(ctl, store, name)
            if seen.current and seen.status in done and seen.state \
                    and seen.state.version == version:
                return seen
        if state and state.version == version:
            line = "; ".join(state.reasons) or state.status
            if line != shown:
                note(f"  {state.status}: {line}")
                shown = line
        await asyncio.sleep(0.25)
    seen = await _observe(ctl, store, name)
    if wait > 0:
        note(f"still {seen.status if seen.state else 'waiting for the reconciler'} after "
             f"{wait:g} s: check `lattice app status {name}` (is a host running?)")
    return seen


def _retry_line(retry: dict[str, Any], now: float) -> str:
    left = float(retry.get("retry_at") or 0) - now
    when = f"retrying in {left:.0f} s" if left >= 0.5 else "retrying now"
    attempts = int(retry.get("attempts") or 0)
    return (f"{when}: {retry.get('error', '')} ({retry.get('command', 'command')} on host "
            f"{retry.get('host_id') or '-'}, {attempts} failed attempt"
            f"{'s' if attempts != 1 else ''})")


def _print_state(args: argparse.Namespace, name: str, seen: Observed) -> None:
    state = seen.state
    if state is None:
        emit({"name": name, "status": "unknown"}, args.json,
             f"{name}: no status yet (the reconciler runs inside the hosts: is one running?)")
        return
    now = time.time()
    retries = [dict(r, retry_in=max(0.0, round(float(r.get("retry_at") or 0) - now, 1)))
               for r in state.retries]
    doc: dict[str, Any] = {"name": name, **vars(state), "retries": retries}
    if seen.stale:
        doc.update(status=seen.status, last_status=state.status, unknown_since=seen.since,
                   stale=seen.stale)
        head = (f"{name} {state.version or ''}: unknown since {_when(seen.since or 0)} "
                f"(last known: {state.status})").replace("  ", " ")
        lines = [head, f"  why: {seen.stale} (the leader, once there is one, recomputes it within "
                       "seconds)"]
    else:
        lines = [f"{name} {state.version or ''}: {state.status}".replace("  ", " ")]
    retrying: dict[str, list[dict[str, Any]]] = {}
    for r in state.retries:
        retrying.setdefault(str(r.get("component") or ""), []).append(r)
    for s in state.scalers:
        mark = "ok " if s["satisfied"] else "…  "
        lines.append(f"  {mark}{s['reason'] or s['component'] + ' ' + s['kind']}")
        if not s["satisfied"]:  # held back after failures: say what failed and when it retries
            lines.extend(f"       {_retry_line(r, now)}"
                         for r in retrying.pop(s["component"], []))
    for reason in state.reasons:
        shown = any(reason == s["reason"] for s in state.scalers) or any(
            reason.startswith(f"{s['reason']} ({s['component']} keeps failing:")
            and any(r.get("component") == s["component"] for r in state.retries)
            for s in state.scalers if s["reason"])
        if not shown:
            lines.append(f"  {reason}")
    lines.extend(f"  {_retry_line(r, now)}" for rs in retrying.values() for r in rs)
    emit(doc, args.json, "\n".join(lines))


async def _list(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        store = await _store(ctl)
        rows = []
        for name in await store.names():
            record = await store.get(name)
            seen = await _observe(ctl, store, name, record)
            rows.append({"name": name, "deployed": record.deployed if record else None,
                         "latest": record.versions[-1].version if record and record.versions
                         else None, "status": seen.status})
    text = "\n".join(f"{r['name']:24} {r['deployed'] or '-':12} {r['status']}" for r in rows)
    emit(rows, args.json, f"{'NAME':24} {'VERSION':12} STATUS\n{text}" if rows else
         "No apps in this lattice: deploy one with `lattice app deploy FILE`")
    return 0


async def _status(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        store = await _store(ctl)
        record = await store.get(args.name)
        if record is None:
            raise CliError(f"no app named {args.name}: see `lattice app list`")
        seen = await _observe(ctl, store, args.name, record)
    _print_state(args, args.name, seen)
    return 0


async def _history(args: argparse.Namespace) -> int:
    async with ctl_session(args) as ctl:
        store = await _store(ctl)
        record = await store.get(args.name)
    if record is None:
        raise CliError(f"no app named {args.name}: see `lattice app list`")
    rows = [{"version": v.version, "deployed_at": v.deployed_at,
             "current": v.version == record.deployed} for v in record.versions]
    emit(rows, args.json, "\n".join(
        f"{'*' if r['current'] else ' '} {r['version']:12} {_when(r['deployed_at'])}"
        for r in rows))
    return 0
