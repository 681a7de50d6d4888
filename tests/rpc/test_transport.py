"""Invocations over a real NATS server (docs/wire.md §2.4-2.6, §3.2): RpcClient against responders
built from accept() + reply(), failures explained, chunking through the object store."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

import msgpack
import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.js.errors import NotFoundError

from lattice.keys import KeyPair, KeyRole
from lattice.rpc import subjects
from lattice.rpc.antiforgery import new_invocation
from lattice.rpc.chunking import ChunkStore, needs_chunking, response_object
from lattice.rpc.client import Rejected, RpcClient, RpcError, accept, reply
from lattice.rpc.invocation import Entity, EnvelopeError, Invocation, InvocationResponse

pytestmark = pytest.mark.service

THRESHOLD = subjects.CHUNK_THRESHOLD  # 921 600
TWO_MB = 2 * 1024 * 1024

Handler = Callable[[Invocation], Awaitable[tuple[bytes | None, str | None]]]


def _actor_key() -> str:
    return KeyPair.generate(KeyRole.MODULE).public_key


def _provider_key() -> str:
    return KeyPair.generate(KeyRole.SERVICE).public_key


async def _echo(inv: Invocation) -> tuple[bytes | None, str | None]:
    return inv.msg, None


# A subscription that is flushed on its own connection is not always visible at once to a
# request from another, freshly connected client (nats-server 2.15: a few % of first requests get
# "no responders"). Every target here therefore answers a probe, and tests wait until the
# caller's own connection reaches it before the real call.
PROBE = b"\x00lattice-test-probe"


def _probing(cb, seen: list[int] | None = None):
    async def wrapped(msg) -> None:
        if msg.data == PROBE:
            if seen is not None:
                seen.append(1)
            await msg.respond(b"")
            return
        await cb(msg)

    return wrapped


async def _reachable(caller: Client, subject: str, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            await caller.request(subject, PROBE, timeout=1)
            return
        except NoRespondersError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.01)


async def _subscribe_target(nc: Client, subject: str, cb, caller: Client) -> None:
    await nc.subscribe(subject, cb=_probing(cb))
    await nc.flush()
    await _reachable(caller, subject)


class Responder:
    """A minimal host/provider side: accept(), run a handler, reply()."""

    def __init__(self, nc: Client, lattice: str, issuers: list[str],
                 handler: Handler = _echo) -> None:
        self.nc = nc
        self.issuers = issuers
        self.handler = handler
        self.chunks = ChunkStore(nc, lattice)
        self.raw: list[bytes] = []       # every NATS message body as it arrived
        self.accepted: list[Invocation] = []
        self.rejected: list[str] = []
        self.crashes: list[BaseException] = []
        self.probes: list[int] = []

    async def serve(self, subject: str, queue: str, caller: Client) -> None:
        """Subscribe (in ``queue``) and wait until ``caller`` can reach the subject."""
        await self.nc.subscribe(subject, queue=queue, cb=_probing(self._on_msg, self.probes))
        await self.nc.flush()
        await _reachable(caller, subject)

    async def _on_msg(self, msg) -> None:
        self.raw.append(msg.data)
        try:
            inv = await accept(msg.data, issuers=self.issuers, chunks=self.chunks)
        except Rejected as exc:
            self.rejected.append(str(exc))
            try:
                inv_id = Invocation.decode(msg.data).id
            except EnvelopeError:
                inv_id = ""
            await msg.respond(await reply(inv_id, error=str(exc), chunks=self.chunks))
            return
        except Exception as exc:  # would crash a host's handler: record it for the test
            self.crashes.append(exc)
            return
        self.accepted.append(inv)
        result, error = await self.handler(inv)
        await msg.respond(await reply(inv.id, result=result, error=error, chunks=self.chunks))


@pytest.fixture
def lattice() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def cluster() -> KeyPair:
    return KeyPair.generate(KeyRole.CLUSTER)


@pytest.fixture
def host_id() -> str:
    return KeyPair.generate(KeyRole.SERVER).public_key


@pytest.fixture
async def conns(nats_server):
    """Two connections: the caller's and the responder's."""
    made = [await nats.connect(nats_server.url), await nats.connect(nats_server.url)]
    yield made
    for nc in made:
        with contextlib.suppress(Exception):
            await nc.close()


@pytest.fixture
def client(conns, lattice, cluster, host_id) -> RpcClient:
    return RpcClient(conns[0], lattice, cluster, host_id)


@pytest.fixture
async def actor(conns, lattice, cluster):
    """(key, Responder) for an actor served on its RPC subject, queue group = subject."""
    key = _actor_key()
    responder = Responder(conns[1], lattice, [cluster.public_key])
    subject = subjects.actor(lattice, key)
    await responder.serve(subject, queue=subject, caller=conns[0])
    return key, responder


ORIGIN = Entity.actor("MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5")


async def _live_objects(nc: Client, bucket: str) -> list[str]:
    js = nc.jetstream()
    try:
        store = await js.object_store(bucket)
    except NotFoundError:
        return []
    try:
        entries = await store.list()
    except NotFoundError:
        return []
    return [e.name for e in entries if not e.deleted]


async def _chunk_bytes(nc: Client, bucket: str) -> int:
    """Bytes still held in the bucket's chunk subjects (deleted objects are purged)."""
    info = await nc.jetstream().stream_info(f"OBJ_{bucket}", subjects_filter=f"$O.{bucket}.C.>")
    return sum((info.state.subjects or {}).values())


# ---- plain calls --------------------------------------------------------------------------------


async def test_success(client: RpcClient, actor) -> None:
    key, responder = actor
    result = await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"hello")
    assert result == b"hello"
    [inv] = responder.accepted
    assert inv.operation == "Echo.Say"
    assert inv.target == Entity.actor(key)
    assert inv.origin == ORIGIN
    assert inv.host_id == client.host_id
    assert inv.content_length == 5


async def test_empty_payload_and_empty_result(client: RpcClient, actor) -> None:
    key, responder = actor

    async def nothing(inv: Invocation):
        return None, None

    responder.handler = nothing
    assert await client.invoke(ORIGIN, Entity.actor(key), "Actor.HealthRequest", b"") == b""


async def test_trace_context_reaches_the_target(client: RpcClient, actor) -> None:
    key, responder = actor
    ctx = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x", trace_context=ctx)
    assert responder.accepted[0].trace_context == ctx


async def test_the_request_is_a_wire_invocation_on_the_actor_subject(client, actor,
                                                                     lattice) -> None:
    key, responder = actor
    await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"abc")
    doc = msgpack.unpackb(responder.raw[0], raw=False)
    assert set(doc) == {"origin", "target", "operation", "msg", "id", "encoded_claims",
                        "host_id", "content_length"}
    assert doc["msg"] == b"abc" and doc["content_length"] == 3


async def test_provider_target_uses_the_link_subject(conns, client, lattice, cluster) -> None:
    key = _provider_key()
    responder = Responder(conns[1], lattice, [cluster.public_key])
    await responder.serve(subjects.provider(lattice, key, "blue"), queue="rpc",
                          caller=conns[0])
    target = Entity.provider(key, "wasmcloud:keyvalue", "blue")
    assert await client.invoke(ORIGIN, target, "KeyValue.Get", b"k") == b"k"
    assert responder.accepted[0].target == target


async def test_remote_error(client: RpcClient, actor) -> None:
    key, responder = actor

    async def fail(inv: Invocation):
        return None, f"Guest call failed for method {inv.operation}: boom"

    responder.handler = fail
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x")
    assert info.value.kind == "remote"
    assert str(info.value) == "Guest call failed for method Echo.Say: boom"


async def test_empty_error_string_is_still_a_failure(client: RpcClient, actor) -> None:
    key, responder = actor

    async def fail(inv: Invocation):
        return b"ignored", ""

    responder.handler = fail
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x")
    assert info.value.kind == "remote"


async def test_queue_group_spreads_calls_over_two_hosts(conns, client, lattice, cluster,
                                                        nats_server) -> None:
    key = _actor_key()
    subject = subjects.actor(lattice, key)
    third = await nats.connect(nats_server.url)
    try:
        a = Responder(conns[1], lattice, [cluster.public_key])
        b = Responder(third, lattice, [cluster.public_key])
        await a.serve(subject, queue=subject, caller=conns[0])
        await b.serve(subject, queue=subject, caller=conns[0])
        for _ in range(500):  # until the caller has reached both members of the group
            if a.probes and b.probes:
                break
            await _reachable(conns[0], subject)
        for i in range(40):
            assert await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"%d" % i) == (
                b"%d" % i)
        # Every call answered exactly once (queue group), by some host.
        assert len(a.accepted) + len(b.accepted) == 40
        assert a.accepted and b.accepted
    finally:
        await third.close()


# ---- failures explained -------------------------------------------------------------------------


async def test_no_responders_for_an_actor(client: RpcClient, lattice: str) -> None:
    key = _actor_key()
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x")
    assert info.value.kind == "no-responders"
    assert str(info.value) == (f"no host runs actor {key} in lattice {lattice}: start it with "
                               "`lattice start actor …`")
    assert "no responders" not in str(info.value).lower()


async def test_no_responders_names_the_label(client: RpcClient, lattice: str) -> None:
    key = _actor_key()
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x", label="echo")
    assert str(info.value).startswith(f"no host runs actor {key} (echo) in lattice {lattice}")


async def test_no_responders_for_a_provider(client: RpcClient, lattice: str) -> None:
    key = _provider_key()
    target = Entity.provider(key, "wasmcloud:keyvalue", "default")
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, target, "KeyValue.Get", b"k")
    assert info.value.kind == "no-responders"
    assert str(info.value) == (
        f"provider {key} for wasmcloud:keyvalue (link name default) is not running in lattice "
        f"{lattice}: start it with `lattice start provider …`")


async def _ignore(msg) -> None:
    return None


async def test_timeout(conns, client: RpcClient, lattice: str) -> None:
    key = _actor_key()
    await _subscribe_target(conns[1], subjects.actor(lattice, key), _ignore, conns[0])
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Slow.Op", b"x", timeout=0.3)
    assert 0.25 <= loop.time() - started < 2.0
    assert info.value.kind == "timeout"
    text = str(info.value)
    assert "Slow.Op" in text and "0.3 s" in text and key in text and lattice in text
    assert "did not answer" in text


async def test_client_default_timeout_is_used(conns, lattice, cluster, host_id) -> None:
    key = _actor_key()
    await _subscribe_target(conns[1], subjects.actor(lattice, key), _ignore, conns[0])
    client = RpcClient(conns[0], lattice, cluster, host_id, timeout=0.2)
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Slow.Op", b"x")
    assert info.value.kind == "timeout" and "0.2 s" in str(info.value)


async def _fake_target(conns: list[Client], subject: str,
                       answer: Callable[[Invocation], bytes]) -> None:
    """A target on conns[1] that answers with whatever ``answer`` builds."""

    async def respond(msg) -> None:
        await msg.respond(answer(Invocation.decode(msg.data)))

    await _subscribe_target(conns[1], subject, respond, conns[0])


async def test_invocation_id_mismatch_is_a_protocol_error(conns, client, lattice) -> None:
    key = _actor_key()
    await _fake_target(conns, subjects.actor(lattice, key),
                       lambda inv: InvocationResponse("some-other-id", b"x").encode())
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x")
    assert info.value.kind == "protocol"
    assert "invocation ID mismatch" in str(info.value)
    assert "some-other-id" in str(info.value)


async def test_undecodable_answer_is_a_protocol_error(conns, client, lattice) -> None:
    key = _actor_key()
    await _fake_target(conns, subjects.actor(lattice, key), lambda inv: b"\xc1 nonsense")
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x", label="echo")
    assert info.value.kind == "protocol"
    assert str(info.value).startswith(f"actor {key} (echo) sent an unusable answer: ")


async def test_otp_style_answer_is_understood(conns, client, lattice) -> None:
    key = _actor_key()
    payload = b"\xff\xfe\x00 not utf-8"

    def elixir(inv: Invocation) -> bytes:
        return msgpack.packb({"msg": payload, "invocation_id": inv.id, "instance_id": "i-1"},
                             use_bin_type=False)

    await _fake_target(conns, subjects.actor(lattice, key), elixir)
    assert await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x") == payload


async def test_otp_not_running_answer_is_a_remote_error(conns, client, lattice) -> None:
    key = _actor_key()
    text = f"Invocation received for actor {key} that is not running"
    await _fake_target(conns, subjects.actor(lattice, key), lambda inv: msgpack.packb(
        {"msg": [], "invocation_id": inv.id, "error": text}, use_bin_type=False))
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x")
    assert (info.value.kind, str(info.value)) == ("remote", text)


async def test_chunked_answer_whose_object_is_missing(conns, client, lattice) -> None:
    key = _actor_key()
    await _fake_target(conns, subjects.actor(lattice, key),
                       lambda inv: InvocationResponse(inv.id, b"", None, TWO_MB).encode())
    with pytest.raises(RpcError) as info:
        await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", b"x")
    assert info.value.kind == "protocol"
    assert "missing from object store" in str(info.value)


# ---- chunking (§2.6) ----------------------------------------------------------------------------


async def test_two_megabyte_request_and_response(conns, client, actor, lattice) -> None:
    key, responder = actor
    request = bytes(range(256)) * (TWO_MB // 256)

    async def reverse(inv: Invocation):
        return inv.msg[::-1] + b"!", None

    responder.handler = reverse
    result = await client.invoke(ORIGIN, Entity.actor(key), "Big.Reverse", request, timeout=10)
    assert result == request[::-1] + b"!"

    # What arrived on NATS, before accept() dechunked it: an empty msg and the full length.
    [raw] = responder.raw
    wire = Invocation.decode(raw)
    assert wire.msg == b""
    assert wire.content_length == len(request)
    assert wire.chunked
    assert len(raw) < 4096
    [accepted] = responder.accepted
    assert accepted.msg == request and accepted.id == wire.id

    # Both objects ({id} and {id}-r) were deleted by their readers.
    assert await _live_objects(conns[0], lattice) == []
    assert await _chunk_bytes(conns[0], lattice) == 0


async def test_two_megabyte_response_travels_chunked(conns, client, actor, lattice,
                                                      monkeypatch) -> None:
    key, responder = actor
    big = b"r" * TWO_MB
    answers: list[bytes] = []

    async def produce(inv: Invocation):
        return big, None

    responder.handler = produce
    # Watch the reply subject to see the raw answer on the wire.
    original_request = client.nc.request

    async def recording_request(subject, payload=b"", timeout=0.5, **kw):
        msg = await original_request(subject, payload, timeout=timeout, **kw)
        if subject.startswith("wasmbus.rpc."):  # not the JetStream API calls of the chunk store
            answers.append(msg.data)
        return msg

    monkeypatch.setattr(client.nc, "request", recording_request)
    assert await client.invoke(ORIGIN, Entity.actor(key), "Big.Get", b"") == big
    [raw] = answers
    resp = InvocationResponse.decode(raw)
    assert resp.msg == b"" and resp.content_length == TWO_MB and resp.error is None
    assert len(raw) < 1024
    assert await _live_objects(conns[0], lattice) == []
    assert await _chunk_bytes(conns[0], lattice) == 0


@pytest.mark.parametrize("size, chunked", [(THRESHOLD, False), (THRESHOLD + 1, True)])
async def test_request_threshold_is_exactly_900_kib(client, actor, size: int,
                                                    chunked: bool) -> None:
    key, responder = actor
    payload = b"p" * size
    assert needs_chunking(payload) is chunked
    assert await client.invoke(ORIGIN, Entity.actor(key), "Echo.Say", payload,
                               timeout=10) == payload
    wire = Invocation.decode(responder.raw[0])
    assert wire.content_length == size
    assert wire.msg == (b"" if chunked else payload)


@pytest.mark.parametrize("size, chunked", [(THRESHOLD, False), (THRESHOLD + 1, True)])
async def test_response_threshold_is_exactly_900_kib(conns, lattice, size: int,
                                                     chunked: bool) -> None:
    chunks = ChunkStore(conns[0], lattice)
    result = b"q" * size
    resp = InvocationResponse.decode(await reply("inv-x", result=result, chunks=chunks))
    assert resp.content_length == size
    assert resp.error is None
    if chunked:
        assert resp.msg == b""
        assert await _live_objects(conns[0], lattice) == [response_object("inv-x")]
        assert await chunks.take(response_object("inv-x"), size) == result
        assert await _live_objects(conns[0], lattice) == []
    else:
        assert resp.msg == result
        assert await _live_objects(conns[0], lattice) == []


async def test_reply_with_error_is_small_and_unchunked(conns, lattice) -> None:
    chunks = ChunkStore(conns[0], lattice)
    raw = await reply("inv-1", result=b"x" * TWO_MB, error="failed", chunks=chunks)
    doc = msgpack.unpackb(raw, raw=False)
    assert doc == {"msg": b"", "invocation_id": "inv-1", "error": "failed", "content_length": 0}


async def test_chunk_store_take_checks_length_and_presence(conns, lattice) -> None:
    chunks = ChunkStore(conns[0], lattice)
    await chunks.put("obj", b"12345")
    with pytest.raises(LookupError, match="has 5 bytes, expected 6"):
        await chunks.take("obj", 6)
    assert await chunks.take("obj", 5) == b"12345"
    with pytest.raises(LookupError, match=f"missing from object store {lattice}"):
        await chunks.take("obj")
    with pytest.raises(LookupError, match="missing"):
        await chunks.take("never-written")


async def test_two_chunk_stores_share_the_bucket(conns, lattice) -> None:
    a, b = ChunkStore(conns[0], lattice), ChunkStore(conns[1], lattice)
    await asyncio.gather(a.put("x", b"1" * 1000), b.put("y", b"2" * 1000))
    assert await b.take("x") == b"1" * 1000
    assert await a.take("y") == b"2" * 1000


async def test_failed_chunked_call_leaves_no_object_behind(client: RpcClient, lattice) -> None:
    with pytest.raises(RpcError):
        await client.invoke(ORIGIN, Entity.actor(_actor_key()), "Big.Put", b"z" * (THRESHOLD + 1))
    assert await _live_objects(client.nc, lattice) == []


# ---- inbound checks as the target sees them -----------------------------------------------------


async def _raw_call(nc: Client, subject: str, data: bytes) -> InvocationResponse:
    msg = await nc.request(subject, data, timeout=5)
    return InvocationResponse.decode(msg.data)


async def test_forged_invocations_are_refused_with_wascloud_text(conns, actor, lattice, cluster,
                                                                host_id) -> None:
    key, responder = actor
    subject = subjects.actor(lattice, key)
    target = Entity.actor(key)

    def signed(msg: bytes = b"hi", *, signer: KeyPair = cluster, host: str = host_id):
        return new_invocation(ORIGIN, target, "Echo.Say", msg, cluster_key=signer, host_id=host)

    stranger = KeyPair.generate(KeyRole.CLUSTER)
    tampered = signed()
    tampered.msg = b"HI"
    retargeted = signed()
    retargeted.operation = "Echo.Other"
    cases = [
        (signed(signer=stranger),
         "Issuer of this invocation is not among the list of valid issuers"),
        (tampered, "Invocation hash does not match signed claims hash ("),
        (retargeted, "Invocation hash does not match signed claims hash ("),
        (signed(host="bogus"), "Invalid host ID on invocation: 'bogus'"),
    ]
    for inv, reason in cases:
        resp = await _raw_call(conns[0], subject, inv.encode())
        assert resp.error is not None and resp.error.startswith(
            f"Anti-forgery check failed: {reason}"), resp.error
        assert resp.invocation_id == inv.id
        assert resp.msg == b""
    assert responder.accepted == []
    assert len(responder.rejected) == len(cases)


async def test_forged_chunked_invocation_is_checked_after_dechunking(conns, actor, lattice,
                                                                     cluster, host_id) -> None:
    key, responder = actor
    payload = b"a" * (THRESHOLD + 10)
    inv = new_invocation(ORIGIN, Entity.actor(key), "Big.Put", payload, cluster_key=cluster,
                         host_id=host_id)
    # The attacker stores a different payload under the invocation id.
    await ChunkStore(conns[0], lattice).put(inv.id, b"b" * len(payload))
    inv.msg = b""
    resp = await _raw_call(conns[0], subjects.actor(lattice, key), inv.encode())
    assert resp.error is not None
    assert resp.error.startswith("Anti-forgery check failed: Invocation hash does not match")
    assert responder.accepted == []
    assert await _live_objects(conns[0], lattice) == []


async def test_chunked_invocation_without_its_object(conns, actor, lattice, cluster,
                                                     host_id) -> None:
    key, _ = actor
    inv = new_invocation(ORIGIN, Entity.actor(key), "Big.Put", b"a" * (THRESHOLD + 10),
                         cluster_key=cluster, host_id=host_id)
    inv.msg = b""
    resp = await _raw_call(conns[0], subjects.actor(lattice, key), inv.encode())
    assert resp.error is not None
    assert resp.error.startswith("cannot read the chunked payload: ")
    assert inv.id in resp.error


@pytest.mark.parametrize("data", [b"\xc1garbage", b"", msgpack.packb([1, 2]),
                                  msgpack.packb({"origin": "not-a-map"})])
async def test_undecodable_invocation(conns, actor, lattice, data: bytes) -> None:
    key, responder = actor
    resp = await _raw_call(conns[0], subjects.actor(lattice, key), data)
    assert resp.error == "Failed to deserialize invocation"
    assert responder.rejected == ["Failed to deserialize invocation"]


async def test_accept_rejects_directly(conns, lattice, cluster, host_id) -> None:
    chunks = ChunkStore(conns[0], lattice)
    with pytest.raises(Rejected, match=r"^Failed to deserialize invocation$"):
        await accept(b"\x00\x01", issuers=[cluster.public_key], chunks=chunks)
    inv = new_invocation(ORIGIN, Entity.actor(_actor_key()), "Echo.Say", b"x",
                         cluster_key=cluster, host_id=host_id)
    good = await accept(inv.encode(), issuers=[cluster.public_key], chunks=chunks)
    assert good == inv
    with pytest.raises(Rejected, match=r"^Anti-forgery check failed: Issuer of this invocation"):
        await accept(inv.encode(), issuers=[], chunks=chunks)


@pytest.mark.parametrize("case", ["msg-array", "iss-int"])
async def test_accept_never_raises_anything_but_rejected(conns, lattice, cluster, host_id,
                                                         case: str) -> None:
    from lattice import jwt

    chunks = ChunkStore(conns[0], lattice)
    inv = new_invocation(ORIGIN, Entity.actor(_actor_key()), "Echo.Say", b"x",
                         cluster_key=cluster, host_id=host_id)
    doc = msgpack.unpackb(inv.encode(), raw=False)
    if case == "msg-array":
        doc["msg"] = [1, 300]
    else:
        claims = jwt.decode(inv.encoded_claims).claims
        claims["iss"] = 7
        doc["encoded_claims"] = jwt.encode(claims, cluster)
    with pytest.raises(Rejected):
        await accept(msgpack.packb(doc), issuers=[cluster.public_key], chunks=chunks)
