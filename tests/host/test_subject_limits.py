"""Names and ids that become NATS subject tokens are checked at every entry point.

The defect this guards against: `lattice link put … --link-name <4,100 characters>` printed
"Linked"; every host then forwarded the link on a subject over nats-server's 4 KiB control-line
limit, the server closed the host's RPC connection, nats-py took that for a deliberate close,
and every actor answered "no responders" from then on — restarted hosts too, since the link was
stored. Each test below drives a live lattice and then proves RPC still works."""

from __future__ import annotations

import asyncio
import json

from lattice.keys import KeyPair, KeyRole
from lattice.links import LinkDefinition
from lattice.rpc import subjects
from tests.harness import Lattice, until
from tests.host.test_lattice import REQUEST

HTTP = "wasmcloud:httpserver"
LONG = "n" * 4100


async def _echo_answers(lattice: Lattice, echo: str) -> None:
    out = await lattice.call(echo, "HttpServer.HandleRequest", REQUEST)
    assert out, "echo gave an empty answer"


async def test_a_ctl_link_put_with_an_oversized_provider_id_is_refused(lattice: Lattice) -> None:
    host = await lattice.host()
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTP]))
    ack = await lattice.ctl("linkdefs", "put", body={
        "actor_id": echo, "provider_id": "V" + "A" * 4099, "contract_id": HTTP})
    assert ack["accepted"] is False
    assert "provider id is 4,100 characters long; at most 128" in ack["error"], ack
    ack = await lattice.ctl("linkdefs", "put", body={
        "actor_id": echo, "provider_id": "VABC", "contract_id": HTTP,
        "link_name": "has.dots"})
    assert ack["accepted"] is False and "contains '.'" in ack["error"], ack
    assert list(host.store.links) == []
    await _echo_answers(lattice, echo)


async def test_the_cli_refuses_an_oversized_link_name_and_says_why(lattice: Lattice) -> None:
    host = await lattice.host()
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTP]))
    provider = KeyPair.generate(KeyRole.SERVICE).public_key
    code, out, err = await lattice.cli("link", "put", echo, provider, HTTP,
                                "--link-name", LONG)
    assert code != 0
    assert "Linked" not in out
    assert "link name is 4,100 characters long; at most 64 are allowed" in err, err
    assert "Traceback" not in err
    assert list(host.store.links) == []
    await _echo_answers(lattice, echo)


async def test_a_stored_undeliverable_link_is_ignored_and_can_be_deleted(
        lattice: Lattice, caplog) -> None:
    host = await lattice.host()
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTP]))
    provider = KeyPair.generate(KeyRole.SERVICE).public_key
    # As an older host or a direct bucket write would leave it: past every entry-point check.
    bad = LinkDefinition(echo, provider, HTTP, LONG)
    kv = await lattice.nc.jetstream().key_value(subjects.lattice_bucket("default"))
    await kv.put("LINKDEF_" + bad.id, json.dumps(bad.to_wire()).encode())
    await until(lambda: any("cannot be delivered" in r.getMessage() for r in caplog.records),
                timeout=30)
    assert list(host.store.links) == []
    await _echo_answers(lattice, echo)
    # a host started now loads the same entry and still serves
    second = await lattice.host()
    echo2 = await lattice.start_actor(second, lattice.module("echo", caps=[HTTP]))
    await _echo_answers(lattice, echo2)
    assert not second.rpc_nc.is_closed and not host.rpc_nc.is_closed
    # `lattice link del` removes the stored entry although no host took it in
    code, out, err = await lattice.cli("link", "del", echo, HTTP, "--link-name", LONG)
    assert code == 0, err
    assert "Removed the link" in out
    keys = await kv.keys() if await _has_keys(kv) else []
    assert "LINKDEF_" + bad.id not in keys


async def _has_keys(kv) -> bool:
    from nats.js.errors import NoKeysError
    try:
        await kv.keys()
    except NoKeysError:
        return False
    return True


async def test_a_host_rpc_connection_survives_a_server_error(lattice: Lattice) -> None:
    host = await lattice.host()
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTP]))
    await _echo_answers(lattice, echo)
    # Anything that makes nats-server send -ERR and drop the connection (here: an oversized
    # subject published on the host's own RPC connection) is an outage to recover from.
    await host.rpc_nc.publish("x." + "y" * 5000, b"")
    await until(lambda: host.rpc_nc.server_errors >= 1, timeout=30)
    await until(lambda: host.rpc_nc.is_connected, timeout=30)
    assert not host.rpc_nc.is_closed
    for _ in range(100):  # subscriptions are replayed on reconnect
        try:
            await _echo_answers(lattice, echo)
            break
        except Exception:
            await asyncio.sleep(0.1)
    else:
        raise AssertionError("echo did not answer again after the reconnect")
