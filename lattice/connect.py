"""Connecting to NATS the way every Lattice process does: creds, JWT + seed, TLS, reconnects.

Credentials are signed with our own nkeys (lattice.keys) rather than nats-py's optional nkeys
dependency, so a ``.creds`` file or a JWT + user seed works out of the box.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from lattice.keys import KeyPair, KeyRole, NKeyError
from lattice.natsclient import connect_resilient

log = logging.getLogger("lattice.nats")


class _QuietTlsEof(logging.Filter):
    """asyncio warns "returning true from eof_received() has no effect when using ssl" each
    time a TLS connection made by nats-py closes (its stream protocol asks to keep the
    transport half-open): noise on every CLI command against a TLS NATS, not a problem."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("returning true from eof_received()")


logging.getLogger("asyncio").addFilter(_QuietTlsEof())

DEFAULT_URL = "nats://127.0.0.1:4222"
# nats-py pings every 120 s and gives up after 2 unanswered pings, so a server that vanished
# without closing the connection (power loss, partition) went unnoticed for minutes; with these
# a client notices within ~45 s and fails over to another server of the cluster. A server that
# stops or crashes closes the connection and is noticed at once.
PING_INTERVAL = 15
MAX_OUTSTANDING_PINGS = 2


class NatsConnectError(ConnectionError):
    """NATS could not be reached or refused us; the message says what to do next."""


@dataclass(frozen=True)
class NatsOptions:
    url: str = DEFAULT_URL            # one URL or several, comma-separated
    creds: str | None = None          # path of a .creds file (JWT + user seed)
    jwt: str | None = None            # user JWT ...
    seed: str | None = None           # ... and its user seed (SU…)
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    js_domain: str | None = None      # JetStream domain for lattice state across leaf nodes
    randomize: bool = True            # shuffle several URLs (spreads clients over a cluster);
    #                                   False: try them in the order given (the first preferred)

    @property
    def servers(self) -> list[str]:
        urls = [u.strip() for u in self.url.split(",") if u.strip()]
        return [u if "://" in u else f"nats://{u}" for u in urls]


_CREDS_BLOCK = re.compile(r"-----BEGIN [^\n]*?-----\s*(.+?)\s*------END", re.S)


def read_creds(path: str) -> tuple[str, str]:
    """(jwt, seed) from a NATS ``.creds`` file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise NatsConnectError(f"cannot read NATS credentials {path}: {exc.strerror}") from None
    blocks = _CREDS_BLOCK.findall(text)
    if len(blocks) < 2:
        raise NatsConnectError(f"{path} is not a NATS .creds file (expected a JWT block and a "
                               "seed block)")
    return blocks[0].strip(), blocks[1].strip()


def _auth_callbacks(opts: NatsOptions) -> dict[str, object]:
    if opts.creds:
        jwt, seed = read_creds(opts.creds)
    elif opts.jwt or opts.seed:
        if not (opts.jwt and opts.seed):
            raise NatsConnectError("NATS JWT authentication needs both the user JWT and its seed")
        jwt, seed = opts.jwt, opts.seed
    else:
        return {}
    try:
        user = KeyPair.from_seed(seed, KeyRole.USER)
    except NKeyError as exc:
        raise NatsConnectError(f"the NATS user seed is invalid: {exc}") from None

    def jwt_cb() -> bytearray:
        return bytearray(jwt.encode())

    def sig_cb(nonce: str) -> bytes:
        import base64

        return base64.urlsafe_b64encode(user.sign(nonce.encode())).rstrip(b"=")

    return {"user_jwt_cb": jwt_cb, "signature_cb": sig_cb}


def _file_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):  # "KEY_VALUES_MISMATCH" → "key values mismatch"
        return exc.reason.replace("_", " ").lower() if exc.reason else str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _tls(opts: NatsOptions) -> ssl.SSLContext | None:
    if not (opts.tls_ca or opts.tls_cert):
        return None
    try:
        ctx = ssl.create_default_context(cafile=opts.tls_ca)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        reason = _file_reason(exc)
        if isinstance(exc, ssl.SSLError):
            reason = f"it holds no PEM certificate ({reason})"
        raise NatsConnectError(f"cannot load the TLS CA certificate {opts.tls_ca}: "
                               f"{reason}") from None
    if opts.tls_cert:
        try:
            ctx.load_cert_chain(opts.tls_cert, opts.tls_key)
        except (OSError, ValueError) as exc:
            key = f" and key {opts.tls_key}" if opts.tls_key else ""
            raise NatsConnectError(f"cannot load the TLS client certificate {opts.tls_cert}"
                                   f"{key}: {_file_reason(exc)}") from None
    return ctx


class DomainJetStream(JetStreamContext):
    """A JetStream context for a JetStream domain whose KV writes reach it from anywhere.

    nats-py publishes KV writes (put, create, update, delete, purge) to ``$KV.<bucket>.<key>``.
    A leaf node with a JetStream domain of its own does not forward ``$KV.>`` to its hub
    (nats-server denies it across domains), so a host at the edge could read the hub's buckets
    but never write them. nats.go (ADR-8) publishes such writes to
    ``$JS.<domain>.API.$KV.<bucket>.<key>`` instead, which every server of that domain maps back
    to ``$KV.…``; this context does the same. (Object store subjects, ``$O.…``, are not denied.)
    """

    def __init__(self, conn: Client, domain: str, **opts: float) -> None:
        super().__init__(conn, domain=domain, **opts)  # type: ignore[arg-type]
        self._kv_write_prefix = f"$JS.{domain}.API."

    async def publish(self, subject: str, *args: object, **kwargs: object) -> PubAck:
        if subject.startswith("$KV."):
            subject = self._kv_write_prefix + subject
        return await super().publish(subject, *args, **kwargs)  # type: ignore[arg-type]


def jetstream(nc: Client, domain: str | None = None, **opts: float) -> JetStreamContext:
    """``nc.jetstream()``, or for a domain a :class:`DomainJetStream` — use it for every
    JetStream context that may write KV buckets in another domain (lattice state from a host
    behind a leaf node)."""
    if domain:
        return DomainJetStream(nc, domain, **opts)
    return nc.jetstream(**opts)


async def settle(nc: Client) -> None:
    """Return once the server has processed every SUB this client sent so far.

    nats-py writes a flush's PING straight to the socket, ahead of commands still queued (such
    as a just-made SUB), so one flush can complete before the server knows the subscription.
    The first flush pushes the queue out; the second PING necessarily follows it.
    """
    await nc.flush()
    await nc.flush()


CLI_HINT = ("Start a lattice with `lattice up`, or point --nats-url at a running NATS server")
CLI_AUTH_HINT = "pass the right --nats-creds, or --nats-jwt and --nats-seed"
CLI_TLS_HINT = ("pass the CA certificate that signed the server's certificate with --tls-ca "
                "(and --tls-cert/--tls-key if the server wants a client certificate)")


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed: {exc.verify_message}"
    reason = str(getattr(exc, "reason", None) or exc or type(exc).__name__)
    if "CERTIFICATE_REQUIRED" in reason:  # TLS 1.3: the server's alert after the handshake
        return f"the server wants a client certificate: {reason}"
    return reason


async def connect(opts: NatsOptions, *, name: str, connect_timeout: float = 2.0,
                  initial_attempts: int = 3, hint: str | None = CLI_HINT,
                  auth_hint: str | None = CLI_AUTH_HINT,
                  tls_hint: str | None = CLI_TLS_HINT) -> Client:
    """Connect, retrying a few times; once connected, reconnect forever.

    ``hint``/``auth_hint``/``tls_hint`` end the error messages with what the user can do; they
    default to CLI advice, and callers configured otherwise (e.g. by link values) pass their
    own or None.
    """

    holder: list[Client] = []

    async def on_disconnect() -> None:
        if holder and (holder[0].is_closed or holder[0].is_draining):
            return  # our own close(), not an outage
        log.warning("disconnected from NATS", extra={"connection": name})

    async def on_reconnect() -> None:
        log.info("reconnected to NATS", extra={"connection": name})

    errors: list[Exception] = []  # during the first connect: the server's reasons, if any
    tls_failed = asyncio.Event()

    async def on_error(exc: Exception) -> None:
        if len(errors) < 20:
            errors.append(exc)
        if isinstance(exc, ssl.SSLError) and not holder:
            tls_failed.set()
        log.debug("NATS client error", extra={"connection": name, "error": str(exc)})

    try:
        auth, tls = _auth_callbacks(opts), _tls(opts)
        # nats-py applies max_reconnect_attempts to the first connect too, and -1 would retry
        # an unreachable URL forever: connect with a bound, then reconnect without one.
        connecting = asyncio.ensure_future(connect_resilient(
            servers=opts.servers, name=name, connect_timeout=connect_timeout,
            max_reconnect_attempts=initial_attempts, reconnect_time_wait=0.5,
            allow_reconnect=True, tls=tls, dont_randomize=not opts.randomize,
            ping_interval=PING_INTERVAL, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
            disconnected_cb=on_disconnect, reconnected_cb=on_reconnect, error_cb=on_error,
            **auth))
        tls_wait = asyncio.ensure_future(tls_failed.wait())
        try:
            await asyncio.wait({connecting, tls_wait}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            tls_wait.cancel()
            if not connecting.done():
                # nats-py never returns from a failed TLS handshake (nats-io/nats.py#718: its
                # close waits forever for the dead transport), so stop waiting for it.
                connecting.cancel()
                with contextlib.suppress(BaseException):
                    await connecting
        if not connecting.cancelled() and connecting.exception() is None:
            nc = connecting.result()
            nc.options["max_reconnect_attempts"] = -1
            holder.append(nc)
            return nc
        if tls_failed.is_set():
            cause = next(e for e in errors if isinstance(e, ssl.SSLError))
            advice = f": {tls_hint}" if tls_hint else ""
            raise NatsConnectError(f"the TLS handshake with NATS at {opts.url} failed "
                                   f"({_tls_reason(cause)}){advice}")
        raise connecting.exception()  # type: ignore[misc]
    except NatsConnectError:
        raise
    except Exception as exc:  # nats-py raises several types for "could not connect"
        if opts.tls_ca and not opts.tls_cert and errors and all(
                isinstance(e, BrokenPipeError | ConnectionResetError) for e in errors):
            # TLS 1.3 finishes the handshake before the server checks for a client
            # certificate; without one it drops the connection, and whether we read its alert
            # (an SSLError above) or only find the socket closed is a race.
            advice = f": {tls_hint}" if tls_hint else ""
            raise NatsConnectError(
                f"the TLS handshake with NATS at {opts.url} failed (the server closed the "
                f"connection as soon as it was set up: the server wants a client certificate, "
                f"most likely; {type(errors[-1]).__name__}){advice}") from None
        # The server says "Authorization Violation" and then drops the connection, so the last
        # error is often just a reset: look at all of them.
        cause = next((e for e in errors if "authorization" in str(e).lower()), None)
        if cause is not None:
            advice = f": {auth_hint}" if auth_hint else ""
            given = (opts.creds or opts.jwt
                     or any("@" in u.split("://", 1)[-1] for u in opts.servers))
            what = "refused our credentials" if given else "wants credentials and we gave none"
            raise NatsConnectError(f"NATS at {opts.url} {what} ({cause}){advice}") from None
        advice = f". {hint}" if hint else ""
        raise NatsConnectError(
            f"cannot connect to NATS at {opts.url}: {exc or type(exc).__name__}{advice}"
        ) from None
