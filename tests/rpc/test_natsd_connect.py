"""nats-server management (lattice.natsd), connecting (lattice.connect) and CloudEvents
(lattice.host.events, docs/wire.md §3.4), all against real nats-server processes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from lattice.connect import NatsConnectError, NatsOptions, connect, read_creds
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer, NatsServerError, free_port, port_open
from lattice.rpc import subjects

pytestmark = pytest.mark.service


@pytest.fixture
def servers():
    """Servers a test starts itself; all killed afterwards."""
    started: list[NatsServer] = []
    yield started
    for server in started:
        server.kill()


def _start(servers: list[NatsServer], server: NatsServer) -> NatsServer:
    servers.append(server)
    return server.start()


async def _flows(src: Client, dst: Client, subject: str, within: float = 10.0) -> float:
    """Publish on ``src`` until ``dst`` receives; returns how long that took."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def on_msg(msg) -> None:
        await received.put(msg.data)

    sub = await dst.subscribe(subject, cb=on_msg)
    await dst.flush()
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        while loop.time() - started < within:
            await src.publish(subject, b"ping")
            await src.flush()
            with contextlib.suppress(TimeoutError):
                assert await asyncio.wait_for(received.get(), 0.1) == b"ping"
                return loop.time() - started
        raise AssertionError(f"no message on {subject} within {within} s")
    finally:
        await sub.unsubscribe()


async def _echo_responder(nc: Client, subject: str) -> None:
    async def respond(msg) -> None:
        await msg.respond(b"pong:" + msg.data)

    await nc.subscribe(subject, cb=respond)
    await nc.flush()


async def _request_eventually(nc: Client, subject: str, within: float = 10.0) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return (await nc.request(subject, b"x", timeout=0.3)).data
        except (NoRespondersError, NatsTimeoutError, nats.errors.ConnectionReconnectingError,
                nats.errors.ConnectionClosedError, nats.errors.StaleConnectionError):
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


# ---- NatsServer lifecycle -----------------------------------------------------------------------


async def test_start_stop_start_again(tmp_path: Path, servers) -> None:
    server = _start(servers, NatsServer(tmp_path / "n"))
    assert server.running
    assert server.url == f"nats://127.0.0.1:{server.port}"
    assert port_open("127.0.0.1", server.port)
    assert server.config_path.is_file() and server.log_path.is_file()
    pid = server.process.pid
    assert server.start() is server and server.process.pid == pid  # already running: no-op
    nc = await nats.connect(server.url)
    assert nc.is_connected
    await nc.close()

    server.stop()
    assert not server.running
    assert not port_open("127.0.0.1", server.port)
    server.stop()  # stopping twice is harmless

    server.start()
    assert server.running and server.process.pid != pid
    nc = await nats.connect(server.url)
    await nc.close()


async def test_restart_keeps_port_and_jetstream_state(tmp_path: Path, servers) -> None:
    server = _start(servers, NatsServer(tmp_path / "n"))
    port, pid = server.port, server.process.pid
    nc = await nats.connect(server.url)
    kv = await nc.jetstream().create_key_value(bucket="persist")
    await kv.put("k", b"v")
    await nc.close()

    server.restart()
    assert server.running and server.port == port and server.process.pid != pid
    nc = await nats.connect(server.url)
    try:
        kv = await nc.jetstream().key_value("persist")
        assert (await kv.get("k")).value == b"v"
    finally:
        await nc.close()


def test_kill(tmp_path: Path, servers) -> None:
    server = _start(servers, NatsServer(tmp_path / "n"))
    server.kill()
    assert not server.running
    assert server.process.returncode is not None
    assert not port_open("127.0.0.1", server.port)
    server.kill()  # idempotent


def test_a_bad_config_fails_with_the_log_tail(tmp_path: Path, servers) -> None:
    server = NatsServer(tmp_path / "n", extra_config="this_is_not { valid: [config")
    servers.append(server)
    with pytest.raises(NatsServerError) as info:
        server.start(timeout=5)
    text = str(info.value)
    assert "nats-server exited with status" in text
    assert str(server.log_path) in text
    assert not server.running


def test_start_on_a_taken_port_fails(tmp_path: Path, servers) -> None:
    first = _start(servers, NatsServer(tmp_path / "a"))
    second = NatsServer(tmp_path / "b", port=first.port)
    servers.append(second)
    with pytest.raises(NatsServerError):
        second.start(timeout=5)
        time.sleep(0.5)  # even if it raced, it must be running if start() said so
        assert second.running, "start() returned but the server is dead"


def test_defaults_and_free_ports(tmp_path: Path) -> None:
    a, b = NatsServer(tmp_path / "a"), NatsServer(tmp_path / "b")
    assert a.port != b.port and a.port > 0
    assert a.name == f"lattice-{a.port}"
    assert isinstance(a.data_dir, Path)
    assert 0 < free_port() < 65536


def test_render_config_sections(tmp_path: Path) -> None:
    server = NatsServer(tmp_path, port=4333, name="hub", js_domain="core", cluster_name="c1",
                        cluster_port=6333, routes=["nats-route://127.0.0.1:6334"],
                        gateway_name="g1", gateway_port=7333,
                        gateways={"g2": "nats://127.0.0.1:7334"}, leaf_port=7433,
                        leaf_remotes=["nats-leaf://127.0.0.1:7434"], extra_config="debug: true")
    text = server.render_config()
    assert 'server_name: "hub"' in text
    assert 'listen: "127.0.0.1:4333"' in text
    assert f'jetstream: {{ store_dir: "{tmp_path / "jetstream"}", domain: "core" }}' in text
    assert ('cluster: { name: "c1", listen: "127.0.0.1:6333", '
            'routes: ["nats-route://127.0.0.1:6334"] }') in text
    assert ('gateway: { name: "g1", listen: "127.0.0.1:7333", '
            'gateways: [{ name: "g2", url: "nats://127.0.0.1:7334" }] }') in text
    assert ('leafnodes: { listen: "127.0.0.1:7433", '
            'remotes: [{ url: "nats-leaf://127.0.0.1:7434" }] }') in text
    assert text.endswith("debug: true\n")
    plain = NatsServer(tmp_path, port=4334, jetstream=False).render_config()
    assert "jetstream" not in plain and "cluster" not in plain and "leafnodes" not in plain


async def test_two_node_cluster_routes_messages(tmp_path: Path, servers) -> None:
    p1, p2 = free_port(), free_port()
    a = _start(servers, NatsServer(tmp_path / "a", cluster_name="lc", cluster_port=p1,
                                   routes=[f"nats-route://127.0.0.1:{p2}"]))
    b = _start(servers, NatsServer(tmp_path / "b", cluster_name="lc", cluster_port=p2,
                                   routes=[f"nats-route://127.0.0.1:{p1}"]))
    na, nb = await nats.connect(a.url), await nats.connect(b.url)
    try:
        await _flows(na, nb, "lattice.cluster.test")
        await _flows(nb, na, "lattice.cluster.back")
        # Request/reply (what RPC uses) crosses the route too.
        await _echo_responder(nb, "svc.echo")
        assert await _request_eventually(na, "svc.echo") == b"pong:x"
    finally:
        await na.close()
        await nb.close()


async def test_leaf_node_reaches_the_hub(tmp_path: Path, servers) -> None:
    leaf_port = free_port()
    hub = _start(servers, NatsServer(tmp_path / "hub", leaf_port=leaf_port, js_domain="hub"))
    leaf = _start(servers, NatsServer(tmp_path / "leaf", js_domain="leaf",
                                      leaf_remotes=[f"nats-leaf://127.0.0.1:{leaf_port}"]))
    nh, nl = await nats.connect(hub.url), await nats.connect(leaf.url)
    try:
        await _flows(nl, nh, "leaf.to.hub")
        await _flows(nh, nl, "hub.to.leaf")
    finally:
        await nh.close()
        await nl.close()


async def test_gateways_connect_two_clusters(tmp_path: Path, servers) -> None:
    g1, g2 = free_port(), free_port()
    a = _start(servers, NatsServer(tmp_path / "a", jetstream=False, gateway_name="east",
                                   gateway_port=g1, gateways={"west": f"nats://127.0.0.1:{g2}"}))
    b = _start(servers, NatsServer(tmp_path / "b", jetstream=False, gateway_name="west",
                                   gateway_port=g2, gateways={"east": f"nats://127.0.0.1:{g1}"}))
    na, nb = await nats.connect(a.url), await nats.connect(b.url)
    try:
        await _flows(na, nb, "gw.test")
    finally:
        await na.close()
        await nb.close()


# ---- connect() ----------------------------------------------------------------------------------


async def test_connect_to_an_unreachable_port_fails_quickly() -> None:
    port = free_port()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NatsConnectError) as info:
        await connect(NatsOptions(url=f"127.0.0.1:{port}"), name="test")
    assert loop.time() - started < 5.0
    text = str(info.value)
    assert "lattice up" in text
    assert f"127.0.0.1:{port}" in text
    assert "--nats-url" in text


async def test_connect_refused_by_authorization_says_so(tmp_path: Path, servers) -> None:
    server = _start(servers, NatsServer(tmp_path / "n", jetstream=False,
                                        extra_config='authorization { token: "s3cret" }'))
    with pytest.raises(NatsConnectError) as info:
        await connect(NatsOptions(url=server.url), name="test")
    assert "authorization" in str(info.value).lower()
    assert "lattice up" not in str(info.value)


def test_options_servers() -> None:
    opts = NatsOptions(url="127.0.0.1:4222, nats://a:1,tls://b:2,,")
    assert opts.servers == ["nats://127.0.0.1:4222", "nats://a:1", "tls://b:2"]
    assert NatsOptions().servers == ["nats://127.0.0.1:4222"]


async def test_connect_works_and_names_the_connection(nats_server) -> None:
    nc = await connect(NatsOptions(url=nats_server.url), name="lattice-test-conn")
    try:
        assert nc.is_connected
        assert nc.options["name"] == "lattice-test-conn"
        assert nc.options["max_reconnect_attempts"] == -1  # reconnect forever once connected
        await _echo_responder(nc, "self.echo")
        assert (await nc.request("self.echo", b"1", timeout=2)).data == b"pong:1"
    finally:
        await nc.close()


async def test_reconnects_after_a_server_restart(tmp_path: Path, servers) -> None:
    server = _start(servers, NatsServer(tmp_path / "n"))
    nc = await connect(NatsOptions(url=server.url), name="reconnector")
    other = None
    try:
        await _echo_responder(nc, "svc.after")
        server.restart()
        # The subscription is replayed on reconnect, and requests work again.
        assert await _request_eventually(nc, "svc.after") == b"pong:x"
        assert nc.stats["reconnects"] >= 1

        # A longer outage than the initial attempts (3 x 0.5 s) still ends in a reconnect.
        server.kill()
        await asyncio.sleep(2.2)
        assert not nc.is_closed
        server.start()
        assert await _request_eventually(nc, "svc.after") == b"pong:x"
        other = await nats.connect(server.url)
        assert await _request_eventually(other, "svc.after") == b"pong:x"
    finally:
        await nc.close()
        if other is not None:
            await other.close()


@pytest.mark.parametrize("kwargs, message", [
    ({"jwt": "eyJhbGciOiJlZDI1NTE5In0.e30.sig"}, "needs both the user JWT and its seed"),
    ({"seed": "SUAIBDPBAUTWCWBKIO6XHQNINK5FWJW4OHLXC3HQ2KFE4PEJUA44CNHTC4"},
     "needs both the user JWT and its seed"),
    ({"jwt": "x.y.z", "seed": "SUnotaseed"}, "the NATS user seed is invalid"),
])
async def test_bad_jwt_credentials_fail_before_connecting(kwargs, message) -> None:
    with pytest.raises(NatsConnectError, match=message):
        await connect(NatsOptions(url=f"127.0.0.1:{free_port()}", **kwargs), name="t")


async def test_missing_creds_file(tmp_path: Path) -> None:
    with pytest.raises(NatsConnectError, match="cannot read NATS credentials"):
        await connect(NatsOptions(url=f"127.0.0.1:{free_port()}",
                                  creds=str(tmp_path / "nope.creds")), name="t")


# ---- .creds files -------------------------------------------------------------------------------

SAMPLE_JWT = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.eyJqdGkiOiJBQkMiLCJpYXQiOjE2MDAwMDA"
              "wMDAsImlzcyI6IkFCQyIsIm5hbWUiOiJ1c2VyIiwic3ViIjoiVUFCQyJ9.c2lnbmF0dXJl")


def _creds_text(jwt: str, seed: str, newline: str = "\n") -> str:
    lines = [
        "-----BEGIN NATS USER JWT-----",
        jwt,
        "------END NATS USER JWT------",
        "",
        "************************* IMPORTANT *************************",
        "NKEY Seed printed below can be used to sign and prove identity.",
        "NKEYs are sensitive and should be treated as secrets.",
        "",
        "-----BEGIN USER NKEY SEED-----",
        seed,
        "------END USER NKEY SEED------",
        "",
        "*************************************************************",
        "",
    ]
    return newline.join(lines)


@pytest.fixture(scope="module")
def user_seed() -> str:
    return KeyPair.generate(KeyRole.USER).seed


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_read_creds(tmp_path: Path, user_seed: str, newline: str) -> None:
    path = tmp_path / "user.creds"
    path.write_bytes(_creds_text(SAMPLE_JWT, user_seed, newline).encode())
    assert read_creds(str(path)) == (SAMPLE_JWT, user_seed)


def test_read_creds_tolerates_indentation_and_no_trailing_text(tmp_path: Path,
                                                              user_seed: str) -> None:
    text = (f"  -----BEGIN NATS USER JWT-----\n    {SAMPLE_JWT}\n  ------END NATS USER JWT------\n"
            f"-----BEGIN USER NKEY SEED-----\n{user_seed}\n------END USER NKEY SEED------")
    path = tmp_path / "indented.creds"
    path.write_text(text)
    assert read_creds(str(path)) == (SAMPLE_JWT, user_seed)


@pytest.mark.parametrize("text", ["", "just some text\n", SAMPLE_JWT,
                                  "-----BEGIN NATS USER JWT-----\nabc\n------END NATS USER JWT"
                                  "------\n"])
def test_read_creds_rejects_other_files(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.creds"
    path.write_text(text)
    with pytest.raises(NatsConnectError, match=r"is not a NATS \.creds file"):
        read_creds(str(path))


def test_read_creds_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NatsConnectError, match="cannot read NATS credentials"):
        read_creds(str(tmp_path / "absent.creds"))


# ---- CloudEvents (§3.4) -------------------------------------------------------------------------


@pytest.fixture
def events_mod():
    """lattice.host.events, imported here so that the natsd/connect tests above do not depend
    on the whole lattice.host package importing cleanly."""
    return importlib.import_module("lattice.host.events")


def _check_envelope(event: dict, name: str, source: str) -> None:
    assert set(event) == {"specversion", "time", "type", "source", "datacontenttype", "id",
                          "data"}
    assert event["specversion"] == "1.0"
    assert event["type"] == f"com.wasmcloud.lattice.{name}"
    assert event["source"] == source
    assert event["datacontenttype"] == "application/json"
    assert str(uuid.UUID(event["id"])) == event["id"]
    assert uuid.UUID(event["id"]).version == 4
    assert event["time"].endswith("Z")
    moment = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
    assert moment.utcoffset() == timedelta(0)
    assert abs((datetime.now(moment.tzinfo) - moment).total_seconds()) < 60


def test_cloud_event_shape(events_mod) -> None:
    event = events_mod.cloud_event("host_started", {"labels": {}}, "NHOST")
    _check_envelope(event, "host_started", "NHOST")
    assert event["data"] == {"labels": {}}
    assert events_mod.cloud_event("x", {}, "s")["id"] != event["id"]


async def _collect(nc: Client, subject: str) -> asyncio.Queue:
    queue: asyncio.Queue = asyncio.Queue()

    async def on_msg(msg) -> None:
        await queue.put((msg.subject, msg.data))

    await nc.subscribe(subject, cb=on_msg)
    return queue


async def _sync(pub: Client, queue: asyncio.Queue, subject: str, within: float = 5.0) -> None:
    """Wait until ``pub``'s messages on ``subject`` reach ``queue``, then leave it empty.

    A subscription flushed on one connection is not always visible at once to a publisher on
    another (nats-server 2.15), so a first event could otherwise be lost.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        await pub.publish(subject, b"probe")
        await pub.flush()
        try:
            await asyncio.wait_for(queue.get(), 0.05)
            break
        except TimeoutError:
            if loop.time() > deadline:
                raise
    token = b"sync-" + uuid.uuid4().hex.encode()
    await pub.publish(subject, token)
    await pub.flush()
    while (await asyncio.wait_for(queue.get(), 2))[1] != token:
        pass  # an earlier, slower probe


async def test_event_publisher_uses_both_subjects(nats_server, events_mod) -> None:
    lattice = "ev" + uuid.uuid4().hex[:8]
    host = KeyPair.generate(KeyRole.SERVER).public_key
    pub, sub = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    try:
        plain = await _collect(sub, subjects.events(lattice))
        named = await _collect(sub, f"wasmbus.evt.{lattice}.>")
        await sub.flush()
        await _sync(pub, plain, subjects.events(lattice))
        await _sync(pub, named, f"wasmbus.evt.{lattice}.probe")
        events = events_mod.EventPublisher(pub, lattice, host)
        data = {"public_key": "MABC", "image_ref": "local/echo", "count": 2,
                "annotations": {"a": "b"}}
        await events.publish("actors_started", data)
        await pub.flush()
        subj1, body1 = await asyncio.wait_for(plain.get(), 2)
        subj2, body2 = await asyncio.wait_for(named.get(), 2)
        assert subj1 == f"wasmbus.evt.{lattice}"
        assert subj2 == f"wasmbus.evt.{lattice}.actors_started"
        assert body1 == body2  # the very same event, same id
        event = json.loads(body1)
        _check_envelope(event, "actors_started", host)
        assert event["data"] == data

        await events.publish("linkdef_set", {"id": "x"}, source="n/a")
        _, body = await asyncio.wait_for(plain.get(), 2)
        _check_envelope(json.loads(body), "linkdef_set", "n/a")
        await asyncio.wait_for(named.get(), 2)
        assert plain.empty() and named.empty()
    finally:
        await pub.close()
        await sub.close()


async def test_rpc_events_go_to_the_rpcevt_subject(nats_server, events_mod) -> None:
    lattice = "ev" + uuid.uuid4().hex[:8]
    pub, sub = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    try:
        rpc = await _collect(sub, subjects.rpc_events(lattice))
        other = await _collect(sub, f"wasmbus.evt.{lattice}.>")
        await sub.flush()
        await _sync(pub, rpc, subjects.rpc_events(lattice))
        await _sync(pub, other, f"wasmbus.evt.{lattice}.probe")
        events = events_mod.EventPublisher(pub, lattice, "NHOST")
        source = {"public_key": "MA", "contract_id": "", "link_name": ""}
        dest = {"public_key": "VB", "contract_id": "wasmcloud:keyvalue", "link_name": "default"}
        await events.rpc_event(True, source, dest, "KeyValue.Get", 12)
        await events.rpc_event(False, source, dest, "KeyValue.Set", 0)
        await pub.flush()
        for name, op, size in (("invocation_succeeded", "KeyValue.Get", 12),
                               ("invocation_failed", "KeyValue.Set", 0)):
            subject, body = await asyncio.wait_for(rpc.get(), 2)
            assert subject == f"wasmbus.rpcevt.{lattice}"
            event = json.loads(body)
            _check_envelope(event, name, "NHOST")
            assert event["data"] == {"source": source, "dest": dest, "operation": op,
                                     "bytes": size}
        await asyncio.sleep(0.05)
        assert other.empty()
    finally:
        await pub.close()
        await sub.close()


async def test_publishing_on_a_closed_connection_never_raises(nats_server,
                                                               events_mod) -> None:
    nc = await nats.connect(nats_server.url)
    await nc.close()
    events = events_mod.EventPublisher(nc, "default", "NHOST")
    await events.publish("host_stopped", {"labels": {}})
    await events.rpc_event(True, {}, {}, "X.Y", 1)
