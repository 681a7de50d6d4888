"""``lattice up`` / ``lattice down``: a whole local lattice (NATS + one host) in one command.

``up`` starts nats-server (with JetStream, data in ``state_dir()/nats``) unless something already
answers at ``--nats-url``, then a host — in the foreground, or detached with ``--detach``. What it
started is recorded in ``state_dir()/up.json`` so ``down`` can stop exactly that.

The host and the CLI share one cluster seed, ``state_dir()/cluster.nk`` (created on first use,
or ``--cluster-seed``), so ``lattice call`` invocations are trusted by ``up`` hosts.

Topology options make the NATS node ``up`` starts part of something bigger (docs/operations.md):
``--cluster`` (routes to the other nodes of a NATS cluster), ``--gateway`` (this cluster is one
of a supercluster), ``--leaf-port`` (a hub accepting leaf nodes) and ``--leaf-remote`` (an edge:
the node is a leaf of a hub, with a JetStream domain of its own, while the host keeps the
lattice state in the hub's domain, ``--js-domain``). They are validated together before
anything starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from lattice import paths
from lattice.cli._common import (
    DEFAULT_NATS_URL,
    CliError,
    add_lattice_options,
    check_lattice_arg,
    cluster_seed_path,
    emit,
    ensure_cluster_seed,
    load_cluster_seed,
    nats_options,
    note,
    parse_pairs,
)
from lattice.cli.host import check_js_domain, check_js_replicas
from lattice.connect import NatsConnectError, NatsOptions, connect
from lattice.ctl import CtlClient, CtlError
from lattice.keys import KeyPair, KeyRole, NKeyError
from lattice.natsd import NatsServer, NatsServerError, port_open, wait_jetstream

UP_FILE = "up.json"
HOST_LOG = "host.log"
HOST_READY_TIMEOUT = 30.0
JS_READY_TIMEOUT = 30.0
# A new cluster's JetStream answers once every node in --routes runs (later: a majority), and
# the other machines may take a while to follow, so a clustered `up` waits longer (Ctrl-C or
# SIGTERM stops waiting, and the nats-server it started).
JS_CLUSTER_READY_TIMEOUT = 300.0
_LOCAL = {"127.0.0.1", "localhost", "0.0.0.0", "::1", ""}
_ANY = {"0.0.0.0", "::", ""}
DEFAULT_CLUSTER_PORT, DEFAULT_GATEWAY_PORT, DEFAULT_LEAF_PORT = 6222, 7222, 7422


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
    _add_topology_options(p)
    p.set_defaults(handler=run_up)

    p = sub.add_parser("down", help="stop what `lattice up` started",
                       description="Stop the host and the nats-server that `lattice up` started "
                       "(as recorded in the state directory). Safe to run when nothing runs.")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(handler=run_down)


def _add_topology_options(p: argparse.ArgumentParser) -> None:
    state = p.add_argument_group("lattice state and trust")
    state.add_argument("--js-domain", default=os.environ.get("LATTICE_JS_DOMAIN"),
                       metavar="DOMAIN",
                       help="JetStream domain holding the lattice state (links, claims, RPC "
                       "chunks; the host's --js-domain). With --leaf-remote: the hub's domain. "
                       "Otherwise also the domain of the NATS node `up` starts "
                       "(default: $LATTICE_JS_DOMAIN, else none)")
    state.add_argument("--js-replicas", type=int,
                       default=os.environ.get("LATTICE_JS_REPLICAS") or "1", metavar="N",
                       help="replicas (1-5) of the JetStream buckets the host creates (lattice "
                       "store, RPC chunks): 3 in a 3-node NATS cluster (default: 1)")
    state.add_argument("--cluster-seed", default=os.environ.get("LATTICE_CLUSTER_SEED"),
                       metavar="SC…",
                       help="the lattice's cluster seed (not the NATS cluster): give every "
                       "machine of one lattice the same one; it is kept in the state directory "
                       "for the CLI (default: $LATTICE_CLUSTER_SEED, else the one in "
                       "the state directory, created on first use)")
    topo = p.add_argument_group(
        "NATS topology", "Options for the NATS node `up` starts (any of them makes `up` start "
        "one, and refuse a NATS that already answers); see docs/operations.md.")
    topo.add_argument("--nats-host", metavar="ADDR",
                      help="address the node listens on for clients (default: the --nats-url "
                      "host); 0.0.0.0 lets hosts on other machines connect")
    topo.add_argument("--nats-port", type=int, metavar="PORT",
                      help="client port of the node (default: the --nats-url port, 4222)")
    topo.add_argument("--cluster", metavar="NAME",
                      help="run the node as a member of NATS cluster NAME, joined by routes to "
                      "the other nodes (--routes)")
    topo.add_argument("--routes", metavar="URL,…",
                      help="the cluster's route URLs, comma-separated (nats-route://HOST:6222 "
                      "or HOST:PORT); give every node the same list — its own entry is "
                      "ignored. None: the other nodes connect to this one")
    topo.add_argument("--cluster-port", metavar="[HOST:]PORT",
                      help=f"where the node listens for routes (default: "
                      f"{DEFAULT_CLUSTER_PORT}, on the --nats-host address)")
    topo.add_argument("--gateway", metavar="NAME",
                      help="this node's cluster is cluster NAME of a supercluster, joined to "
                      "the other clusters by gateways (the NATS cluster name: equals --cluster "
                      "when both are given)")
    topo.add_argument("--gateways", metavar="NAME=URL,…",
                      help="gateway URLs of the supercluster's clusters, comma-separated "
                      "(east=nats://10.0.1.5:7222,west=…); may list this cluster too")
    topo.add_argument("--gateway-port", metavar="[HOST:]PORT",
                      help=f"where the node listens for gateways (default: "
                      f"{DEFAULT_GATEWAY_PORT})")
    topo.add_argument("--leaf-port", metavar="[HOST:]PORT",
                      help=f"accept leaf nodes (edges) on this port: makes the node a hub "
                      f"(the usual port is {DEFAULT_LEAF_PORT})")
    topo.add_argument("--leaf-remote", metavar="URL",
                      help="make the node a leaf node of the hub at URL (nats-leaf://HOST:7422, "
                      "tls://…); needs --nats-js-domain (this edge's own JetStream domain) and "
                      "--js-domain (the hub's, where the lattice state lives)")
    topo.add_argument("--leaf-creds", metavar="FILE",
                      help="NATS .creds file the leaf connection authenticates with")
    topo.add_argument("--nats-js-domain", metavar="DOMAIN",
                      help="JetStream domain of the node itself (default: --js-domain); with "
                      "--leaf-remote the edge's own domain, different from the hub's")


@dataclass
class NatsPlan:
    """What `up` does about NATS: the URL everything connects to, and the node to start (if
    the options ask for one: ``required``; else one is started only when nothing answers)."""

    url: str
    listen_host: str
    port: int
    required: bool = False
    server: dict[str, Any] = field(default_factory=dict)  # NatsServer settings
    clustered: bool = False
    summary: list[str] = field(default_factory=list)      # for the record and the printout


_TOPOLOGY_OPTIONS = ("nats_host", "nats_port", "cluster", "routes", "cluster_port", "gateway",
                     "gateways", "gateway_port", "leaf_port", "leaf_remote", "leaf_creds",
                     "nats_js_domain")
_NAME = re.compile(r"[A-Za-z0-9_-]+")


def _opt(name: str) -> str:
    return "--" + name.replace("_", "-")


def _listen(value: str | None, option: str, default_host: str, default_port: int
            ) -> tuple[str, int]:
    """``[HOST:]PORT`` (HOST may be ``[v6]``)."""
    if value is None:
        return default_host, default_port
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]") if sep else default_host
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise CliError(f"{option} {value!r} must be PORT or HOST:PORT (e.g. {default_port} or "
                       f"0.0.0.0:{default_port})")
    return host or default_host, int(port_text)


def _url(text: str, option: str, schemes: tuple[str, ...], default_port: int | None) -> str:
    """A URL with one of ``schemes`` (the first one when it has none) and a port."""
    text = text.strip()
    if "://" not in text:
        text = f"{schemes[0]}://{text}"
    parts = urlsplit(text)
    if parts.scheme not in schemes or not parts.hostname:
        raise CliError(f"{option}: {text!r} is not a {' or '.join(s + '://' for s in schemes)}"
                       "HOST:PORT URL")
    try:
        port = parts.port
    except ValueError:
        raise CliError(f"{option}: {text!r} has an invalid port") from None
    if port is None and default_port is not None:
        text = text.replace(f"//{parts.netloc}", f"//{parts.netloc}:{default_port}", 1)
    return text


def _server_name(port: int) -> str:
    """Unique in a cluster/supercluster (JetStream requires it): this machine and the port."""
    machine = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0]) or "node"
    return f"{machine}-{port}"


def plan_nats(args: argparse.Namespace) -> NatsPlan:
    """Check the NATS and topology options together; every bad combination is a CliError."""
    url_host, url_port = _nats_address(args.nats_url)
    required = any(getattr(args, o, None) not in (None, "", []) for o in _TOPOLOGY_OPTIONS)
    check_js_domain(args.js_domain, "--js-domain")
    check_js_domain(args.nats_js_domain, "--nats-js-domain")
    check_js_replicas(args.js_replicas)
    port = url_port
    if args.nats_port is not None:
        if not 0 < args.nats_port < 65536:
            raise CliError(f"--nats-port {args.nats_port} is not a TCP port (1-65535)")
        if args.nats_url != DEFAULT_NATS_URL and url_port != args.nats_port:
            raise CliError(f"--nats-port {args.nats_port} contradicts --nats-url "
                           f"{args.nats_url}: give one of them")
        port = args.nats_port
    listen = args.nats_host or ("127.0.0.1" if url_host == "localhost" else url_host)
    if args.nats_host and args.nats_host not in _ANY:
        connect_host = args.nats_host
    else:
        connect_host = "127.0.0.1" if url_host in _ANY or url_host == "localhost" else url_host
    url = (args.nats_url if args.nats_port is None and args.nats_host is None
           else f"nats://{connect_host}:{port}")
    plan = NatsPlan(url=url, listen_host=listen, port=port, required=required)
    if not required:
        return plan

    cluster_name = args.cluster or args.gateway
    if args.cluster and args.gateway and args.cluster != args.gateway:
        raise CliError(f"--cluster {args.cluster} and --gateway {args.gateway} differ: NATS "
                       "names a supercluster's gateway after its cluster, so give the same "
                       "name (or only --gateway)")
    for option in ("cluster", "gateway"):
        value = getattr(args, option)
        if value is not None and not _NAME.fullmatch(value):
            raise CliError(f"--{option} {value!r}: use letters, digits, '_' and '-' only")
    for option in ("routes", "cluster_port"):
        if getattr(args, option) and not cluster_name:
            raise CliError(f"{_opt(option)} needs --cluster NAME (the NATS cluster this node "
                           "joins)")
    for option in ("gateways", "gateway_port"):
        if getattr(args, option) and not args.gateway:
            raise CliError(f"{_opt(option)} needs --gateway NAME (this node's cluster in the "
                           "supercluster)")
    if args.leaf_creds and not args.leaf_remote:
        raise CliError("--leaf-creds needs --leaf-remote URL (the hub it authenticates to)")
    if args.leaf_remote and args.gateway:
        raise CliError("--leaf-remote and --gateway do not go together: an edge joins its hub "
                       "as a leaf node, while gateways join the clusters of one supercluster")

    server: dict[str, Any] = {"host": listen, "port": port, "name": _server_name(port)}
    ports = {"--nats-port": port}
    if cluster_name:
        host, cport = _listen(args.cluster_port, "--cluster-port", listen, DEFAULT_CLUSTER_PORT)
        routes = [_url(r, "--routes", ("nats-route", "nats"), DEFAULT_CLUSTER_PORT)
                  for r in (args.routes or "").split(",") if r.strip()]
        server.update(cluster_name=cluster_name, cluster_host=host, cluster_port=cport,
                      routes=routes)
        ports["--cluster-port"] = cport
        plan.clustered = True
        plan.summary.append(f"cluster {cluster_name} (routes on {host}:{cport}"
                            + (f", seeds {','.join(routes)})" if routes else ")"))
    if args.gateway:
        host, gport = _listen(args.gateway_port, "--gateway-port", listen, DEFAULT_GATEWAY_PORT)
        gateways: dict[str, str] = {}
        for item in (args.gateways or "").split(","):
            if not item.strip():
                continue
            name, sep, gw_url = item.partition("=")
            name = name.strip()
            if not sep or not _NAME.fullmatch(name):
                raise CliError(f"--gateways takes NAME=URL,… (e.g. east=nats://10.0.1.5:7222),"
                               f" got {item!r}")
            gateways[name] = _url(gw_url, "--gateways", ("nats",), DEFAULT_GATEWAY_PORT)
        server.update(gateway_name=args.gateway, gateway_host=host, gateway_port=gport,
                      gateways=gateways)
        ports["--gateway-port"] = gport
        plan.summary.append(f"gateway {args.gateway} on {host}:{gport}"
                            + (f" to {','.join(gateways)}" if gateways else ""))
    if args.leaf_port is not None:
        host, lport = _listen(args.leaf_port, "--leaf-port", listen, DEFAULT_LEAF_PORT)
        server.update(leaf_host=host, leaf_port=lport)
        ports["--leaf-port"] = lport
        plan.summary.append(f"hub: accepts leaf nodes on {host}:{lport}")
    node_domain = args.nats_js_domain or ""
    if args.leaf_remote:
        remote = _url(args.leaf_remote, "--leaf-remote",
                      ("nats-leaf", "nats", "tls", "ws", "wss"), DEFAULT_LEAF_PORT)
        if not args.js_domain:
            raise CliError("--leaf-remote needs --js-domain HUB: the hub's JetStream domain, "
                           "where the lattice's links, claims and RPC chunks live (the hub "
                           "runs e.g. `lattice up --js-domain hub --leaf-port 7422`)")
        if not args.nats_js_domain:
            raise CliError("--leaf-remote needs --nats-js-domain EDGE: this edge's own "
                           "JetStream domain (e.g. edge-1), different from the hub's "
                           f"({args.js_domain})")
        if args.nats_js_domain == args.js_domain:
            raise CliError(f"--nats-js-domain and --js-domain are both {args.js_domain!r}: "
                           "the edge's own JetStream domain must differ from the hub's")
        if args.leaf_creds and not Path(args.leaf_creds).is_file():
            raise CliError(f"--leaf-creds {args.leaf_creds}: no such file")
        server.update(leaf_remotes=[remote],
                      leaf_credentials=str(Path(args.leaf_creds).resolve())
                      if args.leaf_creds else "")
        plan.summary.append(f"leaf node of {remote} (JetStream domain {node_domain}; lattice "
                            f"state in the hub's domain {args.js_domain})")
    else:
        if args.nats_js_domain and args.js_domain and args.nats_js_domain != args.js_domain:
            raise CliError(f"--nats-js-domain {args.nats_js_domain} and --js-domain "
                           f"{args.js_domain} differ, but the host reaches another domain only "
                           "from a leaf node (--leaf-remote): drop one of them")
        node_domain = node_domain or args.js_domain or ""
    server["js_domain"] = node_domain
    seen: dict[int, str] = {}
    for option, number in ports.items():
        if number in seen:
            raise CliError(f"{option} and {seen[number]} are both port {number}: each needs "
                           "its own")
        seen[number] = option
    plan.server = server
    return plan


def _cluster_seed(args: argparse.Namespace) -> str:
    """--cluster-seed (kept in the state directory for the CLI), else the state directory's."""
    seed = args.cluster_seed
    if not seed:
        return ensure_cluster_seed()
    try:
        KeyPair.from_seed(seed, KeyRole.CLUSTER)
    except NKeyError as exc:
        raise CliError(f"--cluster-seed must be a cluster seed (SC…): {exc}") from None
    if load_cluster_seed() != seed:
        path = cluster_seed_path()
        if path.exists():
            note(f"replacing the cluster seed in {path} with --cluster-seed")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(seed + "\n")
    return seed


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


def _start_nats(args: argparse.Namespace, plan: NatsPlan) -> NatsServer | None:
    """A nats-server for the plan, or None when one already answers there (and the options
    did not ask for a node of our own)."""
    host, port = _nats_address(plan.url)
    if port_open(host, port):
        if plan.required:
            raise CliError(f"a NATS server already answers at {plan.url}, but the topology "
                           "options configure a node that `lattice up` starts: stop that "
                           "server, or pick a free --nats-port")
        return None
    if host not in _LOCAL and not plan.required:
        raise CliError(f"nothing answers at {args.nats_url}, and `lattice up` only starts NATS "
                       "on this machine: start NATS there, or use a local --nats-url such as "
                       "nats://127.0.0.1:4222")
    settings = plan.server or {"host": plan.listen_host, "port": port,
                               "js_domain": args.js_domain or ""}
    server = NatsServer(paths.state_dir() / "nats", **settings)
    try:
        return server.start()
    except NatsServerError as exc:
        raise CliError(f"could not start nats-server: {exc}") from None


async def _wait_jetstream(args: argparse.Namespace, plan: NatsPlan) -> None:
    """The host keeps the lattice state in JetStream: wait until it answers (a cluster's needs
    a majority of its nodes; a hub's domain, the leaf connection)."""
    timeout = JS_CLUSTER_READY_TIMEOUT if plan.clustered else JS_READY_TIMEOUT
    domain = args.js_domain or None

    def waiting(elapsed: float, reason: str) -> None:
        why = ("a new NATS cluster's JetStream starts once every node in --routes runs, "
               "later a majority suffices: start the others" if plan.clustered else
               f"the hub's domain {domain} is reached through the leaf connection"
               if args.leaf_remote else f"last error: {reason}")
        note(f"waiting for JetStream{f' domain {domain}' if domain else ''} ({why}; "
             f"{elapsed:.0f} s)")

    try:
        nc = await connect(nats_options(args, url=plan.url), name="lattice-up")
    except NatsConnectError as exc:
        raise CliError(str(exc)) from None
    try:
        await wait_jetstream(nc, domain=domain, timeout=timeout, on_wait=waiting)
    except NatsServerError as exc:
        where = f"domain {domain!r} " if domain else ""
        raise CliError(f"JetStream {where}does not answer at {plan.url}, and the host keeps "
                       f"the lattice state there: {exc}. Run NATS with JetStream"
                       + (f" in domain {domain}" if domain else "") + " (see "
                       "docs/operations.md)") from None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def _host_args(args: argparse.Namespace) -> list[str]:
    argv = ["--nats-url", args.nats_url, "--lattice", args.lattice,
            "--js-replicas", str(args.js_replicas)]
    for option in ("nats_creds", "tls_ca", "tls_cert", "tls_key"):  # (JWT and seed: via env)
        if getattr(args, option):
            argv += [_opt(option), getattr(args, option)]
    if args.js_domain:
        argv += ["--js-domain", args.js_domain]
    for label in args.label:
        argv += ["--label", label]
    if args.allow_unsigned:
        argv.append("--allow-unsigned")
    return argv


def run_up(args: argparse.Namespace) -> int:
    check_lattice_arg(args)
    nats_options(args)  # half-given credentials are refused before anything starts
    labels = parse_pairs(args.label, "--label")
    record = read_record()
    if record and pid_alive(record.get("host_pid"), "lattice"):
        raise CliError(f"a lattice started by `lattice up` already runs (host "
                       f"{record.get('host_id')}, pid {record.get('host_pid')}, NATS "
                       f"{record.get('nats_url')}): stop it first with `lattice down`")
    plan = plan_nats(args)
    args.nats_url = plan.url  # --nats-host/--nats-port may have moved it
    paths.private_dir(paths.state_dir())
    args.demo_actor = _prepare_demo(args) if args.demo else None
    cluster_seed = _cluster_seed(args)
    host_key = KeyPair.generate(KeyRole.SERVER)  # chosen here, so we know the host id to wait for
    nats = _start_nats(args, plan)
    record = {"host_id": host_key.public_key, "host_pid": None, "lattice": args.lattice,
              "nats_url": args.nats_url, "nats_pid": nats.process.pid if nats and nats.process
              else None, "nats_log": str(nats.log_path) if nats else None,
              "state_dir": str(paths.state_dir()), "started_at": time.time(),
              "js_domain": args.js_domain or None, "topology": plan.summary}
    previous = _exit_on_sigterm()
    try:
        asyncio.run(_wait_jetstream(args, plan))
        if args.detach:
            return _up_detached(args, record, host_key, cluster_seed)
        return _up_foreground(args, record, host_key, cluster_seed, labels, nats)
    except BaseException:
        if nats:
            nats.stop()  # never leave a nats-server behind when `up` fails
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _exit_on_sigterm() -> Any:
    """While `up` starts things (e.g. waits minutes for a cluster's JetStream), SIGTERM exits
    through the cleanup that stops the nats-server it started; the previous handler, or None
    off the main thread. (A foreground host installs its own handler while it serves.)"""
    if threading.current_thread() is not threading.main_thread():
        return None

    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    return signal.signal(signal.SIGTERM, terminate)


def _up_detached(args: argparse.Namespace, record: dict[str, Any], host_key: KeyPair,
                 cluster_seed: str) -> int:
    log_path = paths.state_dir() / HOST_LOG
    env = {**os.environ, "LATTICE_HOST_SEED": host_key.seed,
           "LATTICE_CLUSTER_SEED": cluster_seed}  # seeds via env: never visible in `ps`
    if args.nats_jwt:
        env.update(LATTICE_NATS_JWT=args.nats_jwt, LATTICE_NATS_SEED=args.nats_seed)
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
        return await deploy(nats_options(args), args.lattice,
                            args.port, note)
    except DemoError as exc:
        raise CliError(f"the demo could not be deployed: {exc}") from None


def _print_demo(args: argparse.Namespace, demo: Any) -> None:
    emit({"url": demo.url, "app": demo.app}, args.json,
         f"kvcounter is serving at {demo.url}\n"
         f"  status  lattice app status {demo.app}\n"
         f"  try     curl {demo.url}counter      (each request adds one)\n"
         f"  Redis   lattice app deploy examples/kvcounter-redis.yaml   (v0.2.0: the same "
         f"actor, relinked to keyvalue-redis)")
    sys.stdout.flush()


async def _wait_for_host(args: argparse.Namespace, host_id: str,
                         proc: subprocess.Popen[bytes]) -> str:
    """The host's friendly name once it answers on the control interface."""
    log_path = paths.state_dir() / HOST_LOG
    try:
        nc = await connect(nats_options(args), name="lattice-up")
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

    config = HostConfig(nats=nats_options(args, js_domain=args.js_domain or None),
                        lattice=args.lattice, host_seed=host_key.seed,
                        cluster_seed=cluster_seed, labels=labels,
                        allow_unsigned=args.allow_unsigned, js_domain=args.js_domain or None,
                        js_replicas=args.js_replicas)

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
    if record.get("topology"):
        nats += "".join(f"\n           {line}" for line in record["topology"])
    if record.get("js_domain"):
        nats += f"\n           lattice state in JetStream domain {record['js_domain']}"
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
