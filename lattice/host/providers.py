"""Provider supervision on a host (docs/wire.md §7): resolve, spawn, health-check, restart, stop.

A provider is a child process fed HostData on stdin (kept open: EOF tells our SDK the host is
gone), or an embedded :class:`~lattice.provider.ProviderBridge` on the host's own NATS
connection. Children die with the host: same session (Ctrl-C reaches them) and, on Linux, a
parent-death SIGKILL so even a SIGKILLed host leaves no orphan.

Refs: a provider package name (``kvmem`` / ``providers.kvmem``), a path or ``file://`` URL of
an executable (``contract_id`` required), or a ``.par``/``.par.gz`` archive (docs/wire.md §5.5).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import ctypes
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import pkgutil
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import msgpack
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from lattice import linksig, par
from lattice.artifacts import ArtifactError, fetch, is_remote_ref
from lattice.connect import NatsConnectError, NatsOptions, read_creds
from lattice.host.events import EventPublisher
from lattice.keys import KeyPair, KeyRole
from lattice.links import LinkDefinition
from lattice.provider import HostData, Provider, ProviderBridge
from lattice.rpc import subjects

log = logging.getLogger("lattice.providers")

STARTING, RUNNING, UNHEALTHY, RESTARTING, STOPPED = (
    "starting", "running", "unhealthy", "restarting", "stopped")

_PACKAGE_REF = re.compile(r"(?:providers\.)?([A-Za-z_][A-Za-z0-9_-]*)")
_PR_SET_PDEATHSIG = 1
_OUTPUT_LIMIT = 1 << 20  # longest provider log line we read in one piece
# LogRecord attributes a forwarded JSON log line must not overwrite.
_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_CHILD_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
                 "warn": logging.WARNING, "warning": logging.WARNING, "error": logging.ERROR,
                 "critical": logging.CRITICAL}


class ProviderStartError(Exception):
    """A provider could not be started; ``message`` says why and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class ProviderInfo:
    public_key: str
    link_name: str
    contract_id: str
    name: str
    image_ref: str
    instance_id: str
    annotations: dict[str, str]
    revision: int
    embedded: bool
    pid: int | None
    state: str
    restarts: int
    claims: dict[str, str]  # CLAIMS_{pk} value: every key a string (docs/wire.md §3.6)


@dataclass
class _Resolved:
    public_key: str
    contract_id: str
    name: str
    revision: int
    claims: dict[str, str]
    argv: list[str] | None = None              # process mode
    provider_cls: type[Provider] | None = None  # Python packages (embeddable)


@dataclass
class _Instance:
    info: ProviderInfo
    resolved: _Resolved
    config_json: str
    proc: asyncio.subprocess.Process | None = None
    bridge: ProviderBridge | None = None
    host_data: HostData | None = None
    started_at: float = 0.0
    healthy: bool = False
    stopping: bool = False
    supervise_task: asyncio.Task[None] | None = None
    health_task: asyncio.Task[None] | None = None
    output_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=20))


# ---- identities ---------------------------------------------------------------------------------


def derived_key(material: bytes) -> KeyPair:
    """The provider key every host derives for the same package name or executable."""
    return KeyPair.from_raw_seed(KeyRole.SERVICE,
                                 hashlib.sha256(b"lattice-provider:" + material).digest())


def _claims(pk: str, contract_id: str, name: str, *, issuer: str = "", rev: int = 0,
            version: str = "", config_schema: Any = None) -> dict[str, str]:
    claims = {"call_alias": "", "caps": "", "contract_id": contract_id, "iss": issuer,
              "name": name, "rev": str(rev), "sub": pk, "tags": "", "version": version}
    if config_schema is not None:
        claims["config_schema"] = json.dumps(config_schema)
    return claims


def provider_class(module: Any) -> type[Provider]:
    """The Provider class a provider package exports (``PROVIDER``, or its only subclass)."""
    exported = getattr(module, "PROVIDER", None)
    if isinstance(exported, type) and issubclass(exported, Provider):
        return exported
    found = [v for v in vars(module).values()
             if isinstance(v, type) and issubclass(v, Provider) and v is not Provider
             and v.__module__.startswith(module.__name__)]
    if len(found) != 1:
        raise ProviderStartError(
            f"provider package {module.__name__} must define exactly one Provider subclass "
            f"(or export it as PROVIDER); found {len(found)}")
    return found[0]


def _available_packages() -> list[str]:
    try:
        import providers
    except ImportError:
        return []
    return sorted(m.name for m in pkgutil.iter_modules(providers.__path__) if m.ispkg)


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "unknown"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return "normal" if code == 0 else f"exited with status {code}"


_prctl: Any = None


def _child_preexec(parent_pid: int) -> Callable[[], None] | None:
    """Linux: have the kernel SIGKILL the child when this (forking) thread's process dies."""
    global _prctl
    if not sys.platform.startswith("linux"):
        return None
    if _prctl is None:
        try:  # resolve in the parent: the child should do as little as possible before exec
            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return None
    prctl = _prctl

    def setup() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the host died between fork and prctl
            os._exit(1)

    return setup


def _absolute(path: str | None) -> str | None:
    """A file the host was given, as a path that holds from any working directory."""
    return str(Path(path).expanduser().absolute()) if path else None


def _host_log_level() -> str:
    level = logging.getLogger().getEffectiveLevel()
    if level <= logging.DEBUG:
        return "debug"
    if level <= logging.INFO:
        return "info"
    return "warn" if level <= logging.WARNING else "error"


# ---- the supervisor -----------------------------------------------------------------------------


class LinkAnswer:
    """A provider's answer to one link put, still to come: ``wait()`` gives ``(accepted,
    error)``, or None when the provider did not answer (wasmCloud providers never do)."""

    def __init__(self, sub: Any, timeout: float) -> None:
        self._sub, self._timeout = sub, timeout

    async def wait(self) -> tuple[bool, str] | None:
        try:
            msg = await self._sub.next_msg(timeout=self._timeout)
        except (NatsTimeoutError, TimeoutError):
            return None
        except Exception:  # the connection closed under us: no answer
            return None
        finally:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
        try:
            doc = json.loads(msg.data)
        except (ValueError, UnicodeDecodeError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("accepted"), bool):
            return None
        return doc["accepted"], str(doc.get("error") or "")


class ProviderSupervisor:
    """Starts, watches and stops the providers of one host."""

    # Restart backoff: 0.25 s doubling to 10 s, back to the start after 30 s of running.
    backoff_start = 0.25
    backoff_max = 10.0
    backoff_reset = 30.0
    # How long a provider may take to answer a link put before the host stops waiting (a
    # provider may connect to its backend first; one that never answers is a wasmCloud one).
    link_answer_timeout = 10.0
    # How long a new provider may take to answer its first health request.
    ready_timeout = 15.0
    # After the shutdown request, how long the process may take to exit by itself.
    exit_grace = 2.0
    # Asked before a provider starts (the policy service, lattice/host/policy.py); raises
    # ProviderStartError to refuse. None: no check.
    policy_check: Callable[[ProviderInfo], Any] | None = None

    def __init__(self, *, nc: Client, lattice: str, host_id: str, cluster_seed: str,
                 cluster_issuers: list[str], nats: NatsOptions, events: EventPublisher,
                 links_for: Callable[[str, str], list[LinkDefinition]], rpc_timeout: float = 2.0,
                 js_domain: str | None = None, state_dir: Path,
                 health_first: float = 1.0, health_interval: float = 30.0,
                 local_actor: Callable[[str], Any] | None = None,
                 on_exit: Callable[[str, str, str], None] | None = None) -> None:
        self.nc = nc
        self.lattice = lattice
        self.host_id = host_id
        self.cluster_seed = cluster_seed
        self._cluster_key = KeyPair.from_seed(cluster_seed, KeyRole.CLUSTER)  # signs link traffic
        self.cluster_issuers = list(cluster_issuers)
        self.nats = nats
        self.events = events
        self.links_for = links_for
        self.local_actor = local_actor  # embedded providers call actors on this host directly
        # Called (provider key, link name, why) the moment a provider process is gone, so the
        # host can fail the calls still waiting for it at once instead of at their RPC timeout.
        self.on_exit = on_exit
        self.rpc_timeout = rpc_timeout
        self.js_domain = js_domain if js_domain is not None else nats.js_domain
        self.state_dir = Path(state_dir)
        self.health_first = health_first
        self.health_interval = health_interval
        self._instances: dict[tuple[str, str], _Instance] = {}

    # ---- queries --------------------------------------------------------------------------------

    def list(self) -> builtins.list[ProviderInfo]:
        return [dataclasses.replace(i.info, annotations=dict(i.info.annotations),
                                    claims=dict(i.info.claims))
                for i in self._instances.values()]

    def embedded(self, provider_key: str, link_name: str) -> ProviderBridge | None:
        inst = self._instances.get((provider_key, link_name))
        if inst is None or inst.stopping or inst.bridge is None:
            return None
        return inst.bridge

    # ---- links ----------------------------------------------------------------------------------

    async def link_put(self, link: LinkDefinition) -> LinkAnswer | None:
        """Send the link to its provider. For a provider this host runs, the message goes out
        as a request and the result says how to wait for its answer; else None.

        The message is sent before this returns, so puts and deletes keep their order."""
        subject = subjects.provider_linkdefs_put(self.lattice, link.provider_id, link.link_name)
        inst = self._instances.get((link.provider_id, link.link_name))
        if inst is None or inst.stopping:
            await self._publish_link(subject, link)
            return None
        inbox = self.nc.new_inbox()
        try:
            sub = await self.nc.subscribe(inbox, max_msgs=1)
        except Exception as exc:
            log.warning("could not forward a link to its provider", extra={
                "subject": subject, "actor": link.actor_id, "error": str(exc)})
            return None
        await self._publish_link(subject, link, reply=inbox)
        return LinkAnswer(sub, self.link_answer_timeout)

    async def link_del(self, link: LinkDefinition) -> None:
        await self._publish_link(subjects.provider_linkdefs_del(
            self.lattice, link.provider_id, link.link_name), link)

    async def _publish_link(self, subject: str, link: LinkDefinition, reply: str = "") -> None:
        payload = msgpack.packb(link.to_wire(), use_bin_type=True)
        try:
            await self.nc.publish(subject, payload, reply=reply,
                                  headers=linksig.sign(self._cluster_key, subject, payload))
        except Exception as exc:
            log.warning("could not forward a link to its provider", extra={
                "subject": subject, "actor": link.actor_id, "error": str(exc)})

    async def _reconcile_links(self, inst: _Instance, reported: object) -> None:
        """Compare the actors a provider says it has linked (its health answer) with the
        lattice's links for it: put back what it lost, take away what the lattice dropped."""
        if not isinstance(reported, list) or inst.stopping:
            return  # not a Lattice provider: nothing to compare
        has = {str(a) for a in reported}
        want = {link.actor_id: link
                for link in self.links_for(inst.info.public_key, inst.info.link_name)}
        missing = [link for actor, link in want.items() if actor not in has]
        extra = sorted(has - set(want))
        if not missing and not extra:
            return
        log.warning("provider links drifted from the lattice's; resyncing", extra=self._fields(
            inst, missing=[link.actor_id for link in missing], extra_links=extra))
        for link in missing:
            await self.link_put(link)
        for actor in extra:
            await self.link_del(LinkDefinition(actor, inst.info.public_key,
                                               inst.info.contract_id, inst.info.link_name))

    # ---- start ----------------------------------------------------------------------------------

    async def start(self, ref: str, link_name: str = "default", *, config_json: str = "",
                    annotations: dict[str, str] | None = None, embedded: bool = False,
                    contract_id: str | None = None,
                    provider_cls: type[Provider] | None = None) -> ProviderInfo:
        """Start a provider and wait until it answers; raises ProviderStartError.

        ``provider_cls`` embeds that Provider class directly (for hosts used as a library, and
        tests); ``ref`` is then only its name, from which its key is derived.
        """
        link_name = link_name or "default"
        try:
            subjects.check_link_name(link_name)
        except subjects.InvalidSubjectToken as exc:
            raise ProviderStartError(str(exc)) from None
        try:
            if provider_cls is not None:
                embedded = True
                resolved = self._resolve_class(ref, provider_cls, contract_id)
            else:
                try:
                    resolved = await self._resolve(ref, link_name, contract_id, embedded)
                except (OSError, RuntimeError) as exc:  # a name too long, an unknown ~user
                    raise ProviderStartError(f"cannot start provider {ref[:200]!r}: "
                                             f"{getattr(exc, 'strerror', None) or exc}") from None
            key = (resolved.public_key, link_name)
            if key in self._instances:
                raise ProviderStartError(
                    f"provider {resolved.name} ({resolved.public_key}) is already running on "
                    f"this host with link name {link_name!r}; stop it first or use another "
                    "link name")
            inst = _Instance(
                info=ProviderInfo(
                    public_key=resolved.public_key, link_name=link_name,
                    contract_id=resolved.contract_id, name=resolved.name, image_ref=ref,
                    instance_id="", annotations=dict(annotations or {}),
                    revision=resolved.revision, embedded=embedded, pid=None, state=STARTING,
                    restarts=0, claims=dict(resolved.claims)),
                resolved=resolved, config_json=config_json)
            self._instances[key] = inst  # reserved now: a concurrent second start is refused
            try:
                if self.policy_check is not None:
                    await self.policy_check(inst.info)
                if embedded:
                    await self._start_embedded(inst)
                else:
                    await self._spawn(inst)
                    await self._wait_ready(inst)
            except BaseException:
                self._instances.pop(key, None)
                await self._kill(inst)
                raise
        except ProviderStartError as exc:
            log.warning("provider start failed", extra={"ref": ref, "link_name": link_name,
                                                        "error": exc.message})
            await self.events.publish("provider_start_failed", {
                "provider_ref": ref, "link_name": link_name, "error": exc.message})
            raise
        inst.info.state = RUNNING
        await self._resync_links(inst)
        await self._publish_started(inst)
        inst.health_task = asyncio.create_task(self._health_loop(inst))
        if not embedded:
            inst.supervise_task = asyncio.create_task(self._supervise(inst))
        return dataclasses.replace(inst.info)

    async def _resolve(self, ref: str, link_name: str, contract_id: str | None,
                       embedded: bool) -> _Resolved:
        text = ref.strip()
        if not text:
            raise ProviderStartError("no provider reference given")
        unsupported = ProviderStartError(
            f"cannot start provider {ref!r}: use a provider name (e.g. kvmem), a path to an "
            "executable or a .par/.par.gz archive, a lattice:// reference or an OCI reference "
            "(oci://host/repo:tag)")
        package = _PACKAGE_REF.fullmatch(text)
        if text.startswith("file://"):
            path = Path(unquote(urlparse(text).path))
        elif is_remote_ref(text):  # the lattice's artifact store or an OCI registry
            try:
                path = await fetch(text, nc=self.nc, lattice=self.lattice,
                                   js_domain=self.js_domain)
            except ArtifactError as exc:
                raise ProviderStartError(str(exc)) from None
        elif "://" in text:
            raise unsupported
        elif package:
            return self._resolve_package(package[1], contract_id)
        else:
            path = Path(text).expanduser()
            # "ghcr.io/acme/kv:1.0" is a registry ref unless such a file really exists here.
            if not path.exists() and (":" in text or "@" in text
                                      or "." in text.split("/", 1)[0].strip(".")):
                raise unsupported
        if embedded:
            raise ProviderStartError(
                f"{ref} cannot run embedded: only Python provider packages (e.g. kvmem) can")
        if path.name.endswith((".par", ".par.gz")):
            return await self._resolve_par(path, link_name, contract_id)
        return await self._resolve_executable(path, contract_id)

    def _resolve_class(self, name: str, cls: type[Provider],
                       contract_id: str | None) -> _Resolved:
        if not cls.contract_id:
            raise ProviderStartError(f"provider class {cls.__name__} sets no contract_id")
        if contract_id and contract_id != cls.contract_id:
            raise ProviderStartError(f"provider {name} implements {cls.contract_id}, not "
                                     f"{contract_id}")
        pk = derived_key(name.encode()).public_key
        display = cls.name or name
        return _Resolved(public_key=pk, contract_id=cls.contract_id, name=display, revision=0,
                         claims=_claims(pk, cls.contract_id, display), argv=[],
                         provider_cls=cls)

    def _resolve_package(self, name: str, contract_id: str | None) -> _Resolved:
        name = name.replace("-", "_")  # `keyvalue-redis` names the package keyvalue_redis
        module_name = f"providers.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name not in (module_name, "providers"):
                raise ProviderStartError(
                    f"provider package {name} cannot be imported: {exc}") from None
            have = ", ".join(_available_packages()) or "none"
            raise ProviderStartError(
                f"there is no provider named {name!r} (expected a package providers/{name}/; "
                f"available: {have}); or give a path to an executable or a .par archive"
            ) from None
        except Exception as exc:
            raise ProviderStartError(f"provider package {name} failed to import: {exc}") from None
        resolved = self._resolve_class(name, provider_class(module), contract_id)
        return dataclasses.replace(resolved, argv=[sys.executable, "-m", module_name])

    async def _resolve_executable(self, path: Path, contract_id: str | None) -> _Resolved:
        if not contract_id:
            raise ProviderStartError(
                f"starting the executable {path} needs its contract id (e.g. "
                "wasmcloud:keyvalue): it carries no claims to read it from")
        if not path.is_file():
            raise ProviderStartError(f"provider executable {path} does not exist")
        if not os.access(path, os.X_OK):
            raise ProviderStartError(f"{path} is not executable (chmod +x it)")
        try:
            content = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise ProviderStartError(f"cannot read {path}: {exc.strerror}") from None
        pk = derived_key(content).public_key
        return _Resolved(public_key=pk, contract_id=contract_id, name=path.name, revision=0,
                         claims=_claims(pk, contract_id, path.name),
                         argv=[str(path.resolve())])

    async def _resolve_par(self, path: Path, link_name: str, contract_id: str | None
                           ) -> _Resolved:
        try:
            archive = await asyncio.to_thread(par.read_par, path)
            if contract_id and contract_id != archive.capid:
                raise ProviderStartError(f"provider archive {path} implements {archive.capid}, "
                                         f"not {contract_id}")
            binary = await asyncio.to_thread(par.extract, archive, self.state_dir,
                                             link_name=link_name)
        except par.ParError as exc:
            raise ProviderStartError(str(exc)) from None
        name = archive.name or path.name
        return _Resolved(
            public_key=archive.public_key, contract_id=archive.capid, name=name,
            revision=archive.revision,
            claims=_claims(archive.public_key, archive.capid, name, issuer=archive.issuer,
                           rev=archive.revision, version=archive.ver or "",
                           config_schema=archive.config_schema),
            argv=[str(binary)])

    # ---- HostData and processes -----------------------------------------------------------------

    def _host_data(self, inst: _Instance) -> HostData:
        jwt, seed = "", ""
        if self.nats.creds:
            jwt, seed = read_creds(self.nats.creds)
        elif self.nats.jwt and self.nats.seed:
            jwt, seed = self.nats.jwt, self.nats.seed
        servers = self.nats.servers
        # links_for is read at every (re)start, so a restarted provider gets the current links.
        return HostData(
            host_id=self.host_id, lattice_rpc_prefix=self.lattice,
            link_name=inst.info.link_name, lattice_rpc_user_jwt=jwt, lattice_rpc_user_seed=seed,
            lattice_rpc_url=servers[0] if servers else "", provider_key=inst.info.public_key,
            invocation_seed=self.cluster_seed, env_values={}, instance_id=str(uuid.uuid4()),
            link_definitions=list(self.links_for(inst.info.public_key, inst.info.link_name)),
            cluster_issuers=list(self.cluster_issuers), config_json=inst.config_json,
            lattice_signed_links=True,
            default_rpc_timeout_ms=int(self.rpc_timeout * 1000), structured_logging=True,
            log_level=_host_log_level(), js_domain=self.js_domain,
            lattice_rpc_tls_ca=_absolute(self.nats.tls_ca),
            lattice_rpc_tls_cert=_absolute(self.nats.tls_cert),
            lattice_rpc_tls_key=_absolute(self.nats.tls_key))

    def _fields(self, inst: _Instance, **more: Any) -> dict[str, Any]:
        return {"provider_name": inst.info.name, "provider_key": inst.info.public_key,
                "link_name": inst.info.link_name, **more}

    async def _start_embedded(self, inst: _Instance) -> None:
        assert inst.resolved.provider_cls is not None
        try:
            host_data = self._host_data(inst)
        except NatsConnectError as exc:
            raise ProviderStartError(str(exc)) from None
        bridge = ProviderBridge(inst.resolved.provider_cls(), host_data, nc=self.nc)
        bridge.local_actors = self.local_actor
        inst.host_data, inst.bridge = host_data, bridge
        inst.info.instance_id = host_data.instance_id
        inst.started_at = time.monotonic()
        try:
            await bridge.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                await bridge.stop()
            raise ProviderStartError(f"embedded provider {inst.info.name} failed to start: "
                                     f"{exc or type(exc).__name__}") from None

    async def _spawn(self, inst: _Instance) -> None:
        argv = inst.resolved.argv
        assert argv is not None
        try:
            host_data = self._host_data(inst)
        except NatsConnectError as exc:
            raise ProviderStartError(str(exc)) from None
        env = dict(os.environ)
        # `python -m providers.x` must import this very tree even without an install.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=env, start_new_session=False, limit=_OUTPUT_LIMIT,
                preexec_fn=_child_preexec(os.getpid()))
        except OSError as exc:
            raise ProviderStartError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        inst.proc, inst.host_data = proc, host_data
        inst.info.pid = proc.pid
        inst.info.instance_id = host_data.instance_id
        inst.started_at = time.monotonic()
        inst.healthy = False
        inst.tail.clear()
        inst.output_tasks = [asyncio.create_task(self._forward(inst, proc.stderr, True)),
                             asyncio.create_task(self._forward(inst, proc.stdout, False))]
        assert proc.stdin is not None
        try:
            proc.stdin.write(host_data.encode())  # one line; stdin stays open until we stop it
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died at once: _wait_ready reports the exit status and its output
        log.info("provider process started", extra=self._fields(inst, pid=proc.pid))

    async def _wait_ready(self, inst: _Instance) -> None:
        """Until the provider answers a health request (it subscribes to health last)."""
        proc = inst.proc
        assert proc is not None
        subject = subjects.provider_health(self.lattice, inst.info.public_key,
                                           inst.info.link_name)
        deadline = time.monotonic() + self.ready_timeout
        while True:
            if proc.returncode is not None:
                await self._drain_output(inst)
                output = "\n".join(inst.tail)
                raise ProviderStartError(
                    f"provider {inst.info.name} {_exit_reason(proc.returncode)} before it was "
                    "ready" + (f"; its last output:\n{output}" if output else ""))
            if time.monotonic() > deadline:
                raise ProviderStartError(
                    f"provider {inst.info.name} did not answer on {subject} within "
                    f"{self.ready_timeout:g} s after starting")
            try:
                await self.nc.request(subject, b"\x80", timeout=0.5)
                return
            except NoRespondersError:
                await asyncio.sleep(0.05)
            except (NatsTimeoutError, TimeoutError):
                pass
            except Exception as exc:  # e.g. our connection is reconnecting: keep trying
                log.debug("readiness probe failed", extra=self._fields(inst, error=str(exc)))
                await asyncio.sleep(0.1)

    async def _forward(self, inst: _Instance, stream: asyncio.StreamReader | None,
                       is_stderr: bool) -> None:
        if stream is None:
            return
        child_log = logging.getLogger(f"provider.{inst.info.name}")
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line longer than the limit: take what is there
                line = await stream.read(_OUTPUT_LIMIT)
            except Exception:
                return
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                inst.tail.append(text)
                self._log_child(child_log, inst, text, is_stderr)

    def _log_child(self, child_log: logging.Logger, inst: _Instance, text: str,
                   is_stderr: bool) -> None:
        doc: Any = None
        if text.startswith("{"):
            with contextlib.suppress(ValueError):
                doc = json.loads(text)
        if not isinstance(doc, dict):  # plain output (e.g. a traceback): pass it through
            level = logging.WARNING if is_stderr else logging.INFO
            child_log.log(level, text, extra=self._fields(inst))
            return
        level = _CHILD_LEVELS.get(str(doc.get("level", "info")).lower(), logging.INFO)
        message = str(doc.get("msg", doc.get("message", "")))
        extra = self._fields(inst)
        for key, value in doc.items():
            if key in ("level", "msg", "message", "ts"):
                continue
            name = "provider_logger" if key == "logger" else key
            if name in extra and extra[name] == value:
                continue  # the SDK logs our own fields (provider_name, …) too
            if name in _RECORD_KEYS or name in extra:
                name = f"child_{name}"
            extra[name] = value
        child_log.log(level, message, extra=extra)

    async def _drain_output(self, inst: _Instance, timeout: float = 1.0) -> None:
        tasks = [t for t in inst.output_tasks if not t.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)

    async def _resync_links(self, inst: _Instance) -> None:
        # Links that changed between computing HostData and the provider subscribing would be
        # lost; providers ignore duplicate puts, so re-announce the difference.
        if inst.host_data is None:
            return
        sent = {link.actor_id: link for link in inst.host_data.link_definitions}
        now = {link.actor_id: link
               for link in self.links_for(inst.info.public_key, inst.info.link_name)}
        for actor, link in now.items():
            if actor not in sent:
                await self.link_put(link)
        for actor, link in sent.items():
            if actor not in now:
                await self.link_del(link)

    # ---- events and health ----------------------------------------------------------------------

    async def _publish_started(self, inst: _Instance) -> None:
        info = inst.info
        await self.events.publish("provider_started", {
            "public_key": info.public_key, "image_ref": info.image_ref,
            "link_name": info.link_name, "contract_id": info.contract_id,
            "instance_id": info.instance_id, "annotations": dict(info.annotations),
            "claims": {"issuer": info.claims.get("iss", ""), "tags": info.claims.get("tags", ""),
                       "name": info.name, "version": info.claims.get("version", ""),
                       "not_before_human": "immediately", "expires_human": "never"}})
        log.info("provider started", extra=self._fields(
            inst, contract_id=info.contract_id, embedded=info.embedded, pid=info.pid))

    async def _publish_stopped(self, inst: _Instance, reason: str) -> None:
        info = inst.info
        await self.events.publish("provider_stopped", {
            "public_key": info.public_key, "link_name": info.link_name,
            "contract_id": info.contract_id, "instance_id": info.instance_id,
            "annotations": dict(info.annotations), "reason": reason})

    async def _health_loop(self, inst: _Instance) -> None:
        await asyncio.sleep(self.health_first)
        while not inst.stopping:
            await self._check_health(inst)
            await asyncio.sleep(self.health_interval)

    async def _check_health(self, inst: _Instance) -> None:
        subject = subjects.provider_health(self.lattice, inst.info.public_key,
                                           inst.info.link_name)
        message: str | None = None
        try:
            answer = await self.nc.request(subject, b"\x80", timeout=self.rpc_timeout)
            doc = msgpack.unpackb(answer.data, raw=False)
            healthy = bool(doc.get("healthy")) if isinstance(doc, dict) else False
            if isinstance(doc, dict) and doc.get("message"):
                message = str(doc["message"])
            if healthy and isinstance(doc, dict):
                await self._reconcile_links(inst, doc.get("lattice_links"))
        except (NoRespondersError, NatsTimeoutError, TimeoutError):
            healthy, message = False, "no answer to the health check"
        except Exception as exc:  # undecodable answer, NATS trouble: unhealthy (Rust host)
            healthy, message = False, f"health check failed: {exc or type(exc).__name__}"
        if inst.stopping or inst.info.state == RESTARTING:
            return
        before, inst.healthy = inst.healthy, healthy
        if healthy and not before:
            name = "health_check_passed"
        elif before and not healthy:
            name = "health_check_failed"
        else:
            name = "health_check_status"
        inst.info.state = RUNNING if healthy else UNHEALTHY
        if before != healthy:
            log.log(logging.INFO if healthy else logging.WARNING, "provider health changed",
                    extra=self._fields(inst, healthy=healthy, detail=message))
        await self.events.publish(name, {"public_key": inst.info.public_key,
                                         "contract_id": inst.info.contract_id,
                                         "link_name": inst.info.link_name})

    # ---- crashes and restarts -------------------------------------------------------------------

    async def _supervise(self, inst: _Instance) -> None:
        backoff = self.backoff_start
        while True:
            proc = inst.proc
            assert proc is not None
            code = await proc.wait()
            if inst.stopping:
                return
            reason = _exit_reason(code)
            self._exited(inst, f"exited ({reason}) while handling this call; " + (
                "it is being restarted" if code != 0 else "it is not restarted (a clean exit)"))
            await self._drain_output(inst)
            self._cancel(inst.health_task)
            if code == 0:
                # A clean exit we did not ask for (e.g. a lattice-wide shutdown request):
                # the provider is done, not crashed.
                log.info("provider exited", extra=self._fields(inst, reason=reason))
                self._instances.pop((inst.info.public_key, inst.info.link_name), None)
                inst.info.state, inst.info.pid = STOPPED, None
                await self._publish_stopped(inst, reason)
                return
            if time.monotonic() - inst.started_at >= self.backoff_reset:
                backoff = self.backoff_start
            log.warning("provider crashed; restarting", extra=self._fields(
                inst, reason=reason, restart_in=backoff))
            inst.info.state, inst.info.pid, inst.healthy = RESTARTING, None, False
            await self._publish_stopped(inst, reason)
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                if inst.stopping:
                    return
                try:
                    await self._spawn(inst)
                    await self._wait_ready(inst)
                    break
                except ProviderStartError as exc:
                    log.warning("provider restart failed", extra=self._fields(
                        inst, error=exc.message, restart_in=backoff))
                    await self._kill(inst)
                    inst.info.pid = None  # that process is gone: its pid may be reused
                    self._exited(inst, "failed to restart while handling this call; it is "
                                 f"tried again in {backoff:g} s")
            inst.info.restarts += 1
            inst.info.state = RUNNING
            await self._resync_links(inst)
            await self._publish_started(inst)
            inst.health_task = asyncio.create_task(self._health_loop(inst))

    def _exited(self, inst: _Instance, what: str) -> None:
        if self.on_exit is None:
            return
        info = inst.info
        try:
            self.on_exit(info.public_key, info.link_name,
                         f"provider {info.name} ({info.public_key}) for {info.contract_id} "
                         f"(link {info.link_name}) {what}")
        except Exception:  # the host's bookkeeping must never stop the supervision
            log.exception("failing the calls in flight to an exited provider failed",
                          extra=self._fields(inst))

    @staticmethod
    def _cancel(task: asyncio.Task[Any] | None) -> None:
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()

    # ---- stop -----------------------------------------------------------------------------------

    async def stop(self, provider_key: str, link_name: str, *, reason: str = "normal") -> bool:
        inst = self._instances.get((provider_key, link_name))
        if inst is None or inst.stopping:
            return False
        inst.stopping = True
        self._cancel(inst.health_task)
        self._cancel(inst.supervise_task)
        if inst.bridge is not None:
            await inst.bridge.stop()
        elif inst.proc is not None and inst.proc.returncode is None:
            subject = subjects.provider_shutdown(self.lattice, provider_key, link_name)
            try:
                await self.nc.request(subject, json.dumps({"host_id": self.host_id}).encode(),
                                      timeout=2.0)
            except Exception as exc:  # no answer: the kill below still stops it
                log.debug("no answer to the shutdown request", extra=self._fields(
                    inst, error=str(exc) or type(exc).__name__))
            await self._kill(inst, grace=self.exit_grace)
        await self._drain_output(inst)
        self._instances.pop((provider_key, link_name), None)
        inst.info.state, inst.info.pid = STOPPED, None
        await self._publish_stopped(inst, reason)
        log.info("provider stopped", extra=self._fields(inst, reason=reason))
        return True

    async def _kill(self, inst: _Instance, grace: float = 0.0) -> None:
        """Make sure the process is gone: EOF on stdin, wait ``grace``, SIGTERM, SIGKILL."""
        proc = inst.proc
        if proc is None:
            if inst.bridge is not None and not inst.bridge.stopped:
                with contextlib.suppress(Exception):
                    await inst.bridge.stop()
            return
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        for action, wait in ((None, grace), ("terminate", 2.0), ("kill", 5.0)):
            if proc.returncode is not None:
                break
            if action is not None:
                with contextlib.suppress(ProcessLookupError):
                    getattr(proc, action)()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), wait)
        await self._drain_output(inst, timeout=0.5)
        for task in inst.output_tasks:
            self._cancel(task)

    async def stop_all(self) -> None:
        keys = builtins.list(self._instances)
        results = await asyncio.gather(*(self.stop(pk, ln, reason="normal") for pk, ln in keys),
                                       return_exceptions=True)
        for (pk, ln), result in zip(keys, results, strict=True):
            if isinstance(result, BaseException):
                log.error("provider did not stop cleanly", extra={
                    "provider_key": pk, "link_name": ln, "error": str(result)})
                inst = self._instances.pop((pk, ln), None)
                if inst is not None:
                    await self._kill(inst)
