"""lattice.natsclient against a real nats-server: a server error (here a control line over the
server's 4 KiB limit) makes nats-py close its client for good; ours reconnects and keeps its
subscriptions. The plain-client test pins down the upstream behaviour the override exists for."""

from __future__ import annotations

import asyncio
import logging

import nats
import pytest
from nats.aio.client import Client

from lattice.natsclient import connect_resilient
from tests.harness import until

pytestmark = pytest.mark.service

HUGE = "x." + "y" * 5000  # nats-server: "maximum control line exceeded", then it disconnects


async def _echo(nc: Client, subject: str) -> None:
    async def reply(msg) -> None:
        await msg.respond(b"pong:" + msg.data)
    await nc.subscribe(subject, cb=reply)
    await nc.flush()


async def test_plain_nats_py_closes_for_good_after_a_server_error(nats_server) -> None:
    nc = await nats.connect(nats_server.url, max_reconnect_attempts=-1)
    try:
        await nc.publish(HUGE, b"")
        await until(lambda: nc.is_closed, timeout=30)
        assert "maximum control line exceeded" in str(nc.last_error).lower()
    finally:
        await nc.close()


async def test_resilient_client_reconnects_and_keeps_its_subscriptions(nats_server,
                                                                        caplog) -> None:
    nc = await connect_resilient(servers=[nats_server.url], name="t", max_reconnect_attempts=-1,
                                 reconnect_time_wait=0.1)
    other = await nats.connect(nats_server.url)
    try:
        await _echo(nc, "svc.ping")
        with caplog.at_level(logging.ERROR, logger="lattice.nats"):
            await nc.publish(HUGE, b"")
            await until(lambda: nc.server_errors == 1, timeout=30)
        await until(lambda: nc.is_connected, timeout=30)
        assert not nc.is_closed
        # the subscription was replayed: another client reaches it again
        for _ in range(100):
            try:
                reply = await other.request("svc.ping", b"1", timeout=1)
                break
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError):
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("the subscription did not come back")
        assert reply.data == b"pong:1"
        logged = [r for r in caplog.records if r.name == "lattice.nats"]
        assert any("reconnecting" in r.getMessage() and
                   "maximum control line exceeded" in r.error.lower() for r in logged)
    finally:
        await other.close()
        await nc.close()


async def test_refused_credentials_still_fail_the_connect(tmp_path) -> None:
    from lattice.natsd import NatsServer

    server = NatsServer(tmp_path, jetstream=False,
                        extra_config='authorization { user: u, password: right }').start()
    try:
        with pytest.raises(Exception, match=r"(?i)authorization"):
            await connect_resilient(servers=[f"nats://u:wrong@127.0.0.1:{server.port}"],
                                    max_reconnect_attempts=0, allow_reconnect=False)
    finally:
        server.kill()
