"""``lattice up`` / ``lattice down``: a whole local lattice (NATS + one host) in one command.

``up`` starts nats-server (with JetStream, data in ``state_dir()/nats``) unless something already
answers at ``--nats-url``, then a host — in the foreground, or detached with ``--detach``. What it
started is recorded in ``state_dir()/up.json`` so ``down`` can stop exactly that.

The host and the CLI share one cluster seed, ``state_dir()/cluster.nk`` (created on first use),
so ``lattice call`` invocations are trusted by ``up`` hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lattice import paths
from lattice.cli._common import (
    CliError,
    add_lattice_options,
    check_lattice_arg,
    emit,
    ensure_cluster_seed,
    note,
    parse_pairs,
)
from lattice.connect import NatsConnectError, NatsOptions, connect
from lattice.ctl import CtlClient, CtlError
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer, NatsServerError, port_open

UP_FILE = "up.json"
HOST_LOG = "host.log"
HOST_READY_TIMEOUT = 30.0
_LOCAL = {"127.0.0.1", "localhost", "0.0.0.0", "::1", ""}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "up", help="start a local lattice: NATS (if needed) and a host",
        description="Start nats-server with JetStream (unless one already answers at "
        "--nats-url) and a host, in the foreground until Ctrl-C, or in the background with "
        "--detach (stop it with `lattice down`).")
    p.add_argument("--detach", "-d", action="store_true",
                   help="run in the background; logs go to the state directory")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="host label (repeatable)")
    p.add_argument("--allow-unsigned", action="store_true",
                   help="DEVELOPMENT ONLY: let the host run unsigned actor modules")
    p.add_argument("--demo", action="store_true",
                   help="also build actors/kvcounter and deploy examples/kvcounter.yaml (the "
                   "kvcounter app on the embedded defaults: httpserver, keyvalue-nats, "
                   "blobstore-fs, sqldb-sqlite), then print its URL")
    p.add_argument("--port", type=int, default=8080,
                   help="with --demo: the HTTP port kvcounter serves on (default 8080)")
    add_lattice_options(p, timeout=None)
    p.set_defaults(handler=run_up)

    p = sub.add_parser("down", help="stop what `lattice up` started",
                       description="Stop the host and the nats-server that `lattice up` started "
                       "(as recorded in the state directory). Safe to run when nothing runs.")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=run_down)


# --- the record of what runs --------------------------------------------------------------------


def up_file() -> Path:
    return paths.state_dir() / UP_FILE


def read_record() -> dict[str, Any] | None:
    try:
        doc = json.loads(up_file().read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _write_record(record: dict[str, Any]) -> None:
    path = up_file()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)  # atomic: `down` never reads half a file


def _remove_record() -> None:
    with contextlib.suppress(OSError):
        up_file().unlink()


def pid_alive(pid: int | None, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (and, when ``marker`` is given and /proc is readable, whether its
    command line mentions it — a recycled pid must never be signalled)."""
    if not pid:
        return False
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)  # reap it if it is our own exited child
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    with contextlib.suppress(OSError, IndexError):
        if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False  # a zombie has exited; its parent just did not reap it yet
    if marker:
        with contextlib.suppress(OSError):
            return marker in (proc / "cmdline").read_bytes().decode(errors="replace")
    return True


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return not pid_alive(pid)


def _terminate(pid: int, marker: str, grace: float) -> str:
    """SIGTERM, then SIGKILL after ``grace`` seconds; how it went, for the report."""
    if not pid_alive(pid, marker):
        return "already stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if _wait_gone(pid, grace):
        return "stopped"
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _wait_gone(pid, 5)
    return f"killed (it did not stop within {grace:g} s)"


# --- up -----------------------------------------------------------------------------------------


def _nats_address(url: str) -> tuple[str, int]:
    if "," in url:
        raise CliError("`lattice up` runs one NATS server: give a single --nats-url")
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    try:
        port = parts.port or 4222
    except ValueError:
        raise CliError(f"--nats-url {url!r} has an invalid port") from None
    return parts.hostname or "127.0.0.1", port


def _start_nats(args: argparse.Namespace) -> NatsServer | None:
    """A nats-server for the URL, or None when one already answers there."""
    host, port = _nats_address(args.nats_url)
    if port_open(host, port):
        return None
    if host not in _LOCAL:
        raise CliError(f"nothing answers at {args.nats_url}, and `lattice up` only starts NATS "
                       "on this machine: start NATS there, or use a local --nats-url such as "
                       "nats://127.0.0.1:4222")
    server = NatsServer(paths.state_dir() / "nats", port=port,
                        host="127.0.0.1" if host == "localhost" else host)
    try:
        return server.start()
    except NatsServerError as exc:
        raise CliError(f"could not start nats-server: {exc}") from None


def _host_args(args: argparse.Namespace) -> list[str]:
    argv = ["--nats-url", args.nats_url, "--lattice", args.lattice]
    if args.nats_creds:
        argv += ["--nats-creds", args.nats_creds]
    for label in args.label:
        argv += ["--label", label]
    if args.allow_unsigned:
        argv.append("--allow-unsigned")
    return argv


def run_up(args: argparse.Namespace) -> int:
    check_lattice_arg(args)
    labels = parse_pairs(args.label, "--label")
    record = read_record()
    if record and pid_alive(record.get("host_pid"), "lattice"):
        raise CliError(f"a lattice started by `lattice up` already runs (host "
                       f"{record.get('host_id')}, pid {record.get('host_pid')}, NATS "
                       f"{record.get('nats_url')}): stop it first with `lattice down`")
    paths.private_dir(paths.state_dir())
    args.demo_actor = _prepare_demo(args) if args.demo else None
    cluster_seed = ensure_cluster_seed()
    host_key = KeyPair.generate(KeyRole.SERVER)  # chosen here, so we know the host id to wait for
    nats = _start_nats(args)
    record = {"host_id": host_key.public_key, "host_pid": None, "lattice": args.lattice,
              "nats_url": args.nats_url, "nats_pid": nats.process.pid if nats and nats.process
              else None, "nats_log": str(nats.log_path) if nats else None,
              "state_dir": str(paths.state_dir()), "started_at": time.time()}
    try:
        if args.detach:
            return _up_detached(args, record, host_key, cluster_seed)
        return _up_foreground(args, record, host_key, cluster_seed, labels, nats)
    except BaseException:
        if nats:
            nats.stop()  # never leave a nats-server behind when `up` fails
        raise


def _up_detached(args: argparse.Namespace, record: dict[str, Any], host_key: KeyPair,
                 cluster_seed: str) -> int:
    log_path = paths.state_dir() / HOST_LOG
    env = {**os.environ, "LATTICE_HOST_SEED": host_key.seed,
           "LATTICE_CLUSTER_SEED": cluster_seed}  # seeds via env: never visible in `ps`
    cmd = [sys.executable, "-m", "lattice", "--log-level", "info", "host", *_host_args(args)]
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # survives this shell's Ctrl-C
    record.update(mode="detached", host_pid=proc.pid, host_log=str(log_path))
    _write_record(record)
    try:
        name = asyncio.run(_wait_for_host(args, record["host_id"], proc))
    except BaseException:
        _terminate(proc.pid, "lattice", 5)
        _remove_record()
        raise
    record["friendly_name"] = name
    _write_record(record)
    _print_up(args, record, detached=True)
    if args.demo_actor:
        try:
            demo = asyncio.run(_deploy_demo(args))
        except CliError:
            note("the lattice stays up: fix the problem and retry, or stop it with "
                 "`lattice down`")
            raise
        _print_demo(args, demo)
    return 0


def _prepare_demo(args: argparse.Namespace) -> Path:
    from lattice.demo import DemoError, build_demo_actor, check_port

    try:
        check_port(args.port)
        return build_demo_actor(note)
    except DemoError as exc:
        raise CliError(str(exc)) from None


async def _deploy_demo(args: argparse.Namespace) -> Any:
    from lattice.demo import DemoError, deploy

    try:
        return await deploy(NatsOptions(url=args.nats_url, creds=args.nats_creds), args.lattice,
                            args.port, note)
    except DemoError as exc:
        raise CliError(f"the demo could not be deployed: {exc}") from None


def _print_demo(args: argparse.Namespace, demo: Any) -> None:
    emit({"url": demo.url, "app": demo.app}, args.json,
         f"kvcounter is serving at {demo.url}\n"
         f"  status  lattice app status {demo.app}\n"
         f"  try     curl {demo.url}counter      (each request adds one)\n"
         f"  Redis   lattice start provider keyvalue-redis && lattice link put kvcounter "
         f"keyvalue-redis wasmcloud:keyvalue URL=redis://127.0.0.1:6379/")
    sys.stdout.flush()


async def _wait_for_host(args: argparse.Namespace, host_id: str,
                         proc: subprocess.Popen[bytes]) -> str:
    """The host's friendly name once it answers on the control interface."""
    log_path = paths.state_dir() / HOST_LOG
    try:
        nc = await connect(NatsOptions(url=args.nats_url, creds=args.nats_creds),
                           name="lattice-up")
    except NatsConnectError as exc:
        raise CliError(str(exc)) from None
    try:
        ctl = CtlClient(nc, args.lattice, timeout=0.5, nats_url=args.nats_url)
        started = time.monotonic()
        shown = started
        while True:
            if proc.poll() is not None:
                raise CliError(f"the host exited with status {proc.returncode} while starting; "
                               f"see {log_path}:\n{_tail(log_path)}")
            with contextlib.suppress(CtlError):
                return (await ctl.inventory(host_id)).friendly_name
            now = time.monotonic()
            if now - started > HOST_READY_TIMEOUT:
                raise CliError(f"the host did not come up within {HOST_READY_TIMEOUT:g} s; see "
                               f"{log_path}:\n{_tail(log_path)}")
            if now - shown >= 2:
                note(f"waiting for host {host_id[:8]}… to start ({now - started:.0f} s)")
                shown = now
            await asyncio.sleep(0.1)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _up_foreground(args: argparse.Namespace, record: dict[str, Any], host_key: KeyPair,
                   cluster_seed: str, labels: dict[str, str], nats: NatsServer | None) -> int:
    from lattice.host import Host, HostConfig  # the host (wasmtime & co) loads only when needed

    config = HostConfig(nats=NatsOptions(url=args.nats_url, creds=args.nats_creds),
                        lattice=args.lattice, host_seed=host_key.seed,
                        cluster_seed=cluster_seed, labels=labels,
                        allow_unsigned=args.allow_unsigned)

    async def serve() -> None:
        host = Host(config)
        try:
            await host.start()
        except NatsConnectError as exc:
            raise CliError(str(exc)) from None
        record.update(mode="foreground", host_pid=os.getpid(),
                      friendly_name=host.friendly_name)
        _write_record(record)
        _print_up(args, record, detached=False)
        if args.demo_actor:
            try:
                _print_demo(args, await _deploy_demo(args))
            except CliError:
                await host.stop()
                raise
        await host.run_until_stopped()

    try:
        asyncio.run(serve())
    finally:
        _remove_record()
        if nats:
            nats.stop()
            note(f"stopped nats-server at {args.nats_url}")
    print(f"Host {record['host_id']} stopped")
    return 0


def _print_up(args: argparse.Namespace, record: dict[str, Any], *, detached: bool) -> None:
    nats = (f"{record['nats_url']} (nats-server pid {record['nats_pid']}, started by lattice "
            "up)" if record["nats_pid"] else f"{record['nats_url']} (already running)")
    logs = [f"host {record['host_log']}" if record.get("host_log") else "host: this terminal"]
    if record.get("nats_log"):
        logs.append(f"nats-server {record['nats_log']}")
    stop = ("stop it with `lattice down`" if detached
            else "press Ctrl-C (or run `lattice down`) to stop it")
    emit({**record, "cluster_seed_file": str(paths.state_dir() / "cluster.nk")}, args.json,
         f"Lattice {record['lattice']} is up{' in the background' if detached else ''}:\n"
         f"  host     {record['host_id']} ({record.get('friendly_name', '')})\n"
         f"  NATS     {nats}\n"
         f"  logs     {', '.join(logs)}\n"
         f"Next: `lattice start actor FILE.wasm`, `lattice get inventory`; {stop}.")
    sys.stdout.flush()


# --- down ---------------------------------------------------------------------------------------


def run_down(args: argparse.Namespace) -> int:
    record = read_record()
    if record is None:
        emit({"stopped": []}, args.json,
             f"Nothing to stop: no lattice started by `lattice up` is recorded in "
             f"{paths.state_dir()}")
        return 0
    stopped: list[dict[str, Any]] = []
    host_pid = record.get("host_pid")
    if host_pid and pid_alive(host_pid, "lattice"):
        how = _stop_host(record)
        stopped.append({"what": "host", "id": record.get("host_id"), "pid": host_pid,
                        "result": how})
    nats_pid = record.get("nats_pid")
    if nats_pid and pid_alive(nats_pid, "nats-server"):
        how = "stopped"
        # A foreground `up` stops its own nats-server once its host stopped: give it a moment.
        if not (record.get("mode") == "foreground" and _wait_gone(nats_pid, 10)):
            how = _terminate(nats_pid, "nats-server", 10)
        stopped.append({"what": "nats-server", "url": record.get("nats_url"),
                        "pid": nats_pid, "result": how})
    _remove_record()
    lines = []
    for item in stopped:
        name = (f"host {item['id']}" if item["what"] == "host"
                else f"nats-server at {item['url']}")
        lines.append(f"{name} (pid {item['pid']}): {item['result']}")
    text = ("\n".join(lines) if lines else
            "Nothing was running (the record of the last `lattice up` was stale; removed it)")
    emit({"stopped": stopped}, args.json, text)
    return 0


def _stop_host(record: dict[str, Any]) -> str:
    """Ask the host to stop over the control interface (a graceful stop that also publishes
    host_stopped); fall back to SIGTERM, then SIGKILL."""
    pid = int(record["host_pid"])
    asked = False
    with contextlib.suppress(CtlError, NatsConnectError, OSError):
        asked = asyncio.run(_ctl_stop(record))
    if asked and _wait_gone(pid, 15):
        return "stopped"
    return _terminate(pid, "lattice", 10)


async def _ctl_stop(record: dict[str, Any]) -> bool:
    nc = await connect(NatsOptions(url=record["nats_url"]), name="lattice-down",
                       initial_attempts=1)
    try:
        ctl = CtlClient(nc, record.get("lattice") or "default", timeout=2.0,
                        nats_url=record["nats_url"])
        await ctl.stop_host(record["host_id"])
        return True
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
