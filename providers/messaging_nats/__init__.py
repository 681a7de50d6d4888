"""``messaging-nats``: the ``wasmcloud:messaging`` provider on NATS (docs/contracts.md §6.6).

Compatible with the reference provider ``nats`` 0.18: every linked actor gets its own NATS
connection (so links can point at different servers or carry different credentials), the link's
``SUBSCRIPTION`` subjects are delivered to the actor as ``MessageSubscriber.HandleMessage``
with up to 75 deliveries in flight per subscription, and ``Publish``/``Request`` go out on the
actor's connection. See docs/providers/messaging.md for the link values.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlparse

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import NoRespondersError

import contracts
from contracts.messaging import (
    HANDLE_MESSAGE,
    PubMessage,
    ReplyMessage,
    RequestMessage,
    SubMessage,
)
from lattice.connect import NatsConnectError, NatsOptions, connect, settle
from lattice.links import LinkDefinition
from lattice.provider import Context, HostData, InvalidParameter, Provider, ProviderError

log = logging.getLogger("providers.messaging_nats")

# As the reference provider: this many HandleMessage calls in flight per subscription.
MAX_CONCURRENT_DELIVERIES = 75
TIMEOUT_ERROR = "timeout: nats request timed out"
URL_SCHEMES = ("nats", "tls", "ws", "wss")
# Link value keys (case-sensitive, as the reference provider reads them).
SUBSCRIPTION, URI = "SUBSCRIPTION", "URI"
CLIENT_JWT, CLIENT_SEED = "CLIENT_JWT", "CLIENT_SEED"
TLS_CA, TLS_CA_FILE = "TLS_CA", "TLS_CA_FILE"
CONFIG_JSON, CONFIG_B64 = "config_json", "config_b64"

_ENCODE_SUB = contracts.operation(HANDLE_MESSAGE).encode_input


class ConfigError(InvalidParameter):
    """A link value or provider config is unusable; the link (or provider start) is refused."""


@dataclass
class ConnectionConfig:
    """The reference provider's ``ConnectionConfig`` (JSON in config_json/config_b64)."""

    subscriptions: list[str] = field(default_factory=list)
    cluster_uris: list[str] = field(default_factory=list)
    auth_jwt: str | None = None
    auth_seed: str | None = None
    tls_ca: str | None = None          # PEM text
    tls_ca_file: str | None = None
    ping_interval_sec: int | None = None

    @classmethod
    def from_json(cls, doc: Any, where: str) -> ConnectionConfig:
        if not isinstance(doc, dict):
            raise ConfigError(f"{where} must be a JSON object, got {type(doc).__name__}")

        def strings(key: str) -> list[str]:
            value = doc.get(key)
            if value is None:
                return []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}: {key!r} must be an array of strings")
            return list(value)

        def text(key: str) -> str | None:
            value = doc.get(key)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{where}: {key!r} must be a string")
            return value or None

        ping = doc.get("ping_interval_sec")
        if ping is not None and (not isinstance(ping, int) or isinstance(ping, bool) or ping < 0):
            raise ConfigError(f"{where}: 'ping_interval_sec' must be a non-negative integer")
        return cls(subscriptions=strings("subscriptions"), cluster_uris=strings("cluster_uris"),
                   auth_jwt=text("auth_jwt"), auth_seed=text("auth_seed"),
                   tls_ca=text("tls_ca"), tls_ca_file=text("tls_ca_file"),
                   ping_interval_sec=ping)

    @classmethod
    def from_values(cls, values: dict[str, str]) -> ConnectionConfig:
        """config_b64 (preferred) or config_json, then the individual keys on top."""
        if values.get(CONFIG_B64):
            try:
                raw = base64.b64decode(values[CONFIG_B64], validate=True)
                doc = json.loads(raw)
            except (binascii.Error, ValueError) as exc:
                raise ConfigError(f"link value {CONFIG_B64} is not base64 of a JSON object: "
                                  f"{exc}") from None
            config = cls.from_json(doc, f"link value {CONFIG_B64}")
        elif values.get(CONFIG_JSON):
            try:
                doc = json.loads(values[CONFIG_JSON])
            except ValueError as exc:
                raise ConfigError(f"link value {CONFIG_JSON} is not JSON: {exc}") from None
            config = cls.from_json(doc, f"link value {CONFIG_JSON}")
        else:
            config = cls()
        if values.get(SUBSCRIPTION):
            config.subscriptions.extend(values[SUBSCRIPTION].split(","))  # appended, as 0.18
        if values.get(URI):
            config.cluster_uris = [u for u in values[URI].split(",") if u.strip()]
        if values.get(CLIENT_JWT):
            config.auth_jwt = values[CLIENT_JWT]
        if values.get(CLIENT_SEED):
            config.auth_seed = values[CLIENT_SEED]
        if values.get(TLS_CA):
            config.tls_ca = values[TLS_CA]
        elif values.get(TLS_CA_FILE):
            config.tls_ca_file = values[TLS_CA_FILE]
        config.check_auth()
        return config

    def merged_over(self, defaults: ConnectionConfig) -> ConnectionConfig:
        """``defaults`` with this config on top: non-empty lists and set values replace."""
        return ConnectionConfig(
            subscriptions=self.subscriptions or list(defaults.subscriptions),
            cluster_uris=self.cluster_uris or list(defaults.cluster_uris),
            auth_jwt=self.auth_jwt or defaults.auth_jwt,
            auth_seed=self.auth_seed or defaults.auth_seed,
            tls_ca=self.tls_ca or (None if self.tls_ca_file else defaults.tls_ca),
            tls_ca_file=self.tls_ca_file or (None if self.tls_ca else defaults.tls_ca_file),
            ping_interval_sec=(self.ping_interval_sec if self.ping_interval_sec is not None
                               else defaults.ping_interval_sec))

    def check_auth(self) -> None:
        if self.auth_jwt and not self.auth_seed:
            raise ConfigError("CLIENT_JWT (auth_jwt) needs CLIENT_SEED (auth_seed): if you "
                              "specify a JWT, you must also specify its seed")
        if self.auth_seed and not self.auth_jwt:
            raise ConfigError("CLIENT_SEED (auth_seed) needs CLIENT_JWT (auth_jwt): a seed "
                              "alone cannot authenticate")


@dataclass(frozen=True)
class SubscriptionSpec:
    subject: str
    queue: str | None = None

    def __str__(self) -> str:
        return f"{self.subject}|{self.queue}" if self.queue else self.subject


def overlaps_lattice(subject: str) -> bool:
    """True if ``subject`` (wildcards allowed) can match any ``wasmbus.>`` subject."""
    tokens = subject.split(".")
    if tokens[0] == ">":
        return True
    return tokens[0] in ("wasmbus", "*") and len(tokens) >= 2


def parse_subscriptions(entries: list[str]) -> list[SubscriptionSpec]:
    """``subject`` or ``subject|queue`` entries; blanks skipped, lattice subjects refused."""
    specs: list[SubscriptionSpec] = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        subject, _, queue = entry.partition("|")
        subject, queue = subject.strip(), queue.strip()
        tokens = subject.split(".")
        if (not subject or any(not t or any(c.isspace() for c in t) for t in tokens)
                or any(">" in t and (t != ">" or i != len(tokens) - 1)
                       for i, t in enumerate(tokens))):
            raise ConfigError(f"SUBSCRIPTION entry {entry!r} is not a valid NATS subject")
        if "|" in entry and (not queue or any(c.isspace() for c in queue)):
            raise ConfigError(f"SUBSCRIPTION entry {entry!r} has an invalid queue group name")
        if overlaps_lattice(subject):
            # The provider delivers over wasmbus.rpc.* and the host emits wasmbus.evt.* for
            # each delivery: such a subscription feeds on its own traffic without end.
            raise ConfigError(
                f"SUBSCRIPTION {subject!r} would receive the lattice's own wasmbus.* traffic "
                "(wasmbus.evt.* events, the RPC that delivers each message), an endless "
                "feedback loop; subscribe to application subjects instead")
        specs.append(SubscriptionSpec(subject, queue or None))
    return specs


def nats_url(uri: str) -> str:
    """``host:port`` or a NATS URL, checked; returned with a scheme."""
    text = uri.strip()
    url = text if "://" in text else f"nats://{text}"
    try:
        parsed = urlparse(url)
        port = parsed.port
    except ValueError:
        parsed, port = None, None
    if (parsed is None or parsed.scheme not in URL_SCHEMES or not parsed.hostname
            or (port is None and ":" in (parsed.netloc.rsplit("@", 1)[-1]))):
        raise ConfigError(f"URI {uri!r} is not a NATS server address (host:port or "
                          f"{'/'.join(URL_SCHEMES)}://host:port)")
    return url


def nats_error(exc: BaseException) -> str:
    """``nats: …`` (RpcError::Nats); nats-py's own errors already start with "nats: "."""
    text = str(exc) or type(exc).__name__
    return text if text.startswith("nats: ") else f"nats: {text}"


@dataclass
class Subscriber:
    """One subscription of an actor and its in-flight deliveries."""

    spec: SubscriptionSpec
    limit: asyncio.Semaphore
    sub: Subscription | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    in_flight: int = 0
    peak: int = 0       # the most deliveries ever in flight at once (diagnostics, tests)
    delivered: int = 0
    failed: int = 0


@dataclass
class ActorConnection:
    """Everything one linked actor owns: its NATS connection and its subscriptions."""

    actor: str
    url: str
    nc: Client
    subscribers: list[Subscriber] = field(default_factory=list)
    ca_path: str | None = None   # temp file holding TLS_CA text, removed with the connection

    async def close(self) -> None:
        for subscriber in self.subscribers:
            if subscriber.sub is not None:
                with contextlib.suppress(Exception):
                    await subscriber.sub.unsubscribe()
            for task in list(subscriber.tasks):
                task.cancel()  # unlinked: nothing more reaches the actor
        with contextlib.suppress(Exception):
            await self.nc.flush(timeout=0.5)  # an actor's last publishes still go out
        with contextlib.suppress(Exception):
            await self.nc.close()
        if self.ca_path:
            with contextlib.suppress(OSError):
                os.unlink(self.ca_path)


class MessagingNatsProvider(Provider):
    contract_id = contracts.messaging.CONTRACT_ID
    name = "messaging-nats"
    # An instance attribute may lower it (tests); applies to subscriptions made afterwards.
    max_concurrent: int = MAX_CONCURRENT_DELIVERIES

    def __init__(self) -> None:
        self.defaults = ConnectionConfig()
        self.lattice_url = "nats://127.0.0.1:4222"
        self.lattice_auth: tuple[str, str] | None = None
        self.lattice_tls: tuple[str | None, str | None, str | None] = (None, None, None)
        self.rpc_timeout: float | None = None
        self.conns: dict[str, ActorConnection] = {}

    # ---- lifecycle ------------------------------------------------------------------------------

    async def init(self, host_data: HostData) -> None:
        opts = host_data.nats_options()
        self.lattice_url = opts.servers[0] if opts.servers else self.lattice_url
        if opts.jwt and opts.seed:
            self.lattice_auth = (opts.jwt, opts.seed)
        self.lattice_tls = (opts.tls_ca, opts.tls_cert, opts.tls_key)
        self.rpc_timeout = host_data.rpc_timeout
        if host_data.config_json and host_data.config_json.strip():
            try:
                doc = json.loads(host_data.config_json)
            except ValueError as exc:
                raise ConfigError(f"provider config_json is not JSON: {exc}") from None
            self.defaults = ConnectionConfig.from_json(doc, "provider config_json")
            self.defaults.check_auth()
            parse_subscriptions(self.defaults.subscriptions)  # refuse a bad default at start
            for uri in self.defaults.cluster_uris[:1]:
                nats_url(uri)

    async def put_link(self, link: LinkDefinition) -> None:
        actor = link.actor_id
        values = dict(link.values or {})
        config = (replace(self.defaults) if not values
                  else ConnectionConfig.from_values(values).merged_over(self.defaults))
        config.check_auth()
        specs = parse_subscriptions(config.subscriptions)
        conn = await self._connect(actor, config)
        try:
            for spec in specs:
                conn.subscribers.append(await self._subscribe(conn, spec))
            await settle(conn.nc)  # subscriptions are live once the link is in place
        except Exception as exc:
            await conn.close()
            raise ProviderError(f"nats: cannot subscribe for actor {actor}: {exc}") from None
        old = self.conns.pop(actor, None)
        if old is not None:  # a re-link replaces the previous connection
            await old.close()
        self.conns[actor] = conn
        log.info("actor connected to NATS", extra={
            "actor": actor, "url": conn.url,
            "subscriptions": [str(s.spec) for s in conn.subscribers]})

    async def del_link(self, link: LinkDefinition) -> None:
        conn = self.conns.pop(link.actor_id, None)
        if conn is not None:
            await conn.close()
            log.info("actor disconnected from NATS", extra={"actor": link.actor_id})

    async def health(self) -> tuple[bool, str | None]:
        # One actor's server being down is that link's problem, not the provider's.
        down = sorted(a for a, c in self.conns.items() if not c.nc.is_connected)
        if down:
            return True, f"reconnecting to NATS for {len(down)} actor(s): {', '.join(down)}"
        return True, None

    async def shutdown(self) -> None:
        conns = list(self.conns.values())
        self.conns.clear()
        # Concurrently: the bridge gives the whole hook 1.5 s.
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    # ---- connections ----------------------------------------------------------------------------

    async def _connect(self, actor: str, config: ConnectionConfig) -> ActorConnection:
        jwt, seed = config.auth_jwt, config.auth_seed
        tls_cert = tls_key = None
        ca_path = config.tls_ca_file
        if config.cluster_uris:
            url = nats_url(config.cluster_uris[0])  # only the first, as the reference
        else:
            url = self.lattice_url
            if not jwt and self.lattice_auth:  # the lattice's server needs the lattice's creds
                jwt, seed = self.lattice_auth
            lattice_ca, tls_cert, tls_key = self.lattice_tls  # ... and the lattice's TLS files
            if not (config.tls_ca or ca_path):
                ca_path = lattice_ca
        temp_ca: str | None = None
        if config.tls_ca:
            # The connect helper takes a CA file; TLS_CA carries the PEM text itself.
            fd, temp_ca = tempfile.mkstemp(prefix="messaging-nats-ca-", suffix=".pem")
            with os.fdopen(fd, "w") as handle:
                handle.write(config.tls_ca)
            ca_path = temp_ca
        elif ca_path and not os.path.isfile(ca_path):
            raise ConfigError(f"TLS_CA_FILE {ca_path!r} does not exist or is not a file")
        if config.ping_interval_sec is not None:
            log.debug("ping_interval_sec is accepted but not applied", extra={"actor": actor})
        try:
            nc = await connect(NatsOptions(url=url, jwt=jwt, seed=seed, tls_ca=ca_path,
                                           tls_cert=tls_cert, tls_key=tls_key),
                               name=f"messaging-nats {actor}", initial_attempts=2, hint=None,
                               auth_hint="check the link values CLIENT_JWT and CLIENT_SEED",
                               tls_hint="give the CA that signed the server's certificate in "
                               "the link value TLS_CA_FILE (or TLS_CA)")
        except (NatsConnectError, OSError, ValueError) as exc:
            if temp_ca:
                with contextlib.suppress(OSError):
                    os.unlink(temp_ca)
            raise ProviderError(f"nats: cannot connect to {url} for actor {actor}: "
                                f"{exc}") from None
        return ActorConnection(actor=actor, url=url, nc=nc, ca_path=temp_ca)

    async def _subscribe(self, conn: ActorConnection, spec: SubscriptionSpec) -> Subscriber:
        subscriber = Subscriber(spec, asyncio.Semaphore(max(1, self.max_concurrent)))

        async def on_message(msg: Msg) -> None:
            # nats-py runs this callback once at a time per subscription; waiting here for a
            # free slot holds later messages in the subscription's pending queue.
            await subscriber.limit.acquire()
            task = asyncio.ensure_future(self._deliver(conn.actor, subscriber, msg))
            subscriber.tasks.add(task)
            task.add_done_callback(subscriber.tasks.discard)

        subscriber.sub = await conn.nc.subscribe(spec.subject, queue=spec.queue or "",
                                                 cb=on_message)
        return subscriber

    async def _deliver(self, actor: str, subscriber: Subscriber, msg: Msg) -> None:
        subscriber.in_flight += 1
        subscriber.peak = max(subscriber.peak, subscriber.in_flight)
        try:
            payload = _ENCODE_SUB(SubMessage(subject=msg.subject, reply_to=msg.reply or None,
                                             body=msg.data))
            bridge = self.bridge
            if bridge is None:
                raise ProviderError("the provider is not attached to a lattice")
            await bridge.call_actor(actor, HANDLE_MESSAGE, payload, timeout=self.rpc_timeout)
            subscriber.delivered += 1
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # As the reference provider: a failed delivery is logged, never retried.
            subscriber.failed += 1
            log.warning("message delivery to the actor failed", extra={
                "actor": actor, "subject": msg.subject, "subscription": str(subscriber.spec),
                "error": str(exc) or type(exc).__name__})
        finally:
            subscriber.in_flight -= 1
            subscriber.limit.release()

    def _conn(self, ctx: Context) -> ActorConnection:
        conn = self.conns.get(ctx.actor)
        if conn is None:
            raise InvalidParameter(f"actor not linked:{ctx.actor}")
        return conn

    # ---- wasmcloud:messaging --------------------------------------------------------------------

    async def publish(self, ctx: Context, msg: PubMessage) -> None:
        conn = self._conn(ctx)
        try:
            await conn.nc.publish(msg.subject, msg.body, reply=msg.reply_to or "")
        except Exception as exc:
            raise ProviderError(nats_error(exc)) from None

    async def request(self, ctx: Context, msg: RequestMessage) -> ReplyMessage:
        conn = self._conn(ctx)
        if msg.timeout_ms <= 0:
            raise ProviderError(TIMEOUT_ERROR)  # the reference's zero-length timeout
        try:
            reply = await conn.nc.request(msg.subject, msg.body, timeout=msg.timeout_ms / 1000)
        except TimeoutError:  # nats-py's TimeoutError subclasses the builtin
            raise ProviderError(TIMEOUT_ERROR) from None
        except NoRespondersError:
            raise ProviderError(f"nats: no responders for subject {msg.subject}") from None
        except Exception as exc:
            raise ProviderError(nats_error(exc)) from None
        return ReplyMessage(subject=reply.subject, reply_to=reply.reply or None, body=reply.data)


PROVIDER = MessagingNatsProvider

__all__ = ["MAX_CONCURRENT_DELIVERIES", "PROVIDER", "TIMEOUT_ERROR", "ConnectionConfig",
           "MessagingNatsProvider", "SubscriptionSpec", "nats_error", "nats_url",
           "overlaps_lattice", "parse_subscriptions"]
