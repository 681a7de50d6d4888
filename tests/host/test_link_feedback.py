"""Links between the lattice and its providers stay true.

- A provider's refusal of a link reaches `lattice link put` (it used to print "Linked" while
  the reason sat in the host log).
- Link messages not signed by a trusted host are ignored by Lattice providers (one unsigned
  linkdefs.del used to unlink an actor while the lattice still listed the link).
- A provider that lost a link gets it back: from the periodic comparison with the lattice's
  links, and when the identical link is put again (that used to be a no-op)."""

from __future__ import annotations

import logging

import msgpack

from contracts.keyvalue import IncrementRequest
from lattice.links import LinkDefinition
from lattice.natsd import free_port
from lattice.rpc import subjects
from tests.harness import Lattice, until

HTTP, KV = "wasmcloud:httpserver", "wasmcloud:keyvalue"


async def _increment(lattice: Lattice, fwd: str) -> int:
    import contracts

    op = contracts.operation("KeyValue.Increment")
    reply = await lattice.host_call(fwd, KV, "KeyValue.Increment",
                                    op.encode_input(IncrementRequest("n", 1)))
    return op.decode_output(reply)


async def test_a_provider_refusal_reaches_the_cli(lattice: Lattice) -> None:
    host = await lattice.host()
    server = await lattice.start_provider(host, "httpserver")
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTP]))
    code, out, err = await lattice.cli("link", "put", echo, server, HTTP, "address=127.0.0.1")
    assert code != 0, out
    assert f"the link is stored, but provider {server} refused it:" in err, err
    assert "Linked" not in out and "Traceback" not in err
    port = free_port()
    code, out, err = await lattice.cli("link", "put", echo, server, HTTP,
                                f"address=127.0.0.1:{port}")
    assert code == 0, err
    assert "the provider accepted it" in out, out


async def test_a_link_to_a_provider_nobody_runs_says_so(lattice: Lattice) -> None:
    from lattice.keys import KeyPair, KeyRole

    host = await lattice.host()
    echo = await lattice.start_actor(host, lattice.module("echo", caps=[HTTP]))
    provider = KeyPair.generate(KeyRole.SERVICE).public_key
    code, out, err = await lattice.cli("link", "put", echo, provider, HTTP, "port=1")
    assert code == 0, err
    assert "no host runs that provider yet" in out, out


async def test_unsigned_link_messages_are_ignored(lattice: Lattice, caplog) -> None:
    host = await lattice.host(provider_health_interval=3600)
    kv = await lattice.start_provider(host, "kvmem", embedded=True)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, kv, KV)
    assert await _increment(lattice, fwd) == 1
    link = LinkDefinition(fwd, kv, KV, "default")
    subject = subjects.provider_linkdefs_del("default", kv, "default")
    with caplog.at_level(logging.WARNING, logger="lattice.provider"):
        await lattice.nc.publish(subject, msgpack.packb(link.to_wire()))
        await lattice.nc.flush()
        await until(lambda: any("not from a trusted host" in r.getMessage()
                                for r in caplog.records), timeout=30)
    bridge = host.providers.embedded(kv, "default")
    assert bridge is not None and fwd in bridge.links
    assert await _increment(lattice, fwd) == 2


async def test_a_lost_link_is_put_back_by_the_health_reconcile(lattice: Lattice) -> None:
    host = await lattice.host()  # the harness checks provider health every second
    kv = await lattice.start_provider(host, "kvmem", embedded=True)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, kv, KV)
    bridge = host.providers.embedded(kv, "default")
    assert bridge is not None
    await bridge._del_link(fwd)  # as a stray delete or a provider restart would leave it
    assert fwd not in bridge.links
    await until(lambda: fwd in bridge.links, timeout=30)
    assert await _increment(lattice, fwd) == 1


async def test_putting_the_same_link_again_redelivers_it(lattice: Lattice) -> None:
    host = await lattice.host(provider_health_interval=3600)  # no periodic repair here
    kv = await lattice.start_provider(host, "kvmem", embedded=True)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, kv, KV)
    bridge = host.providers.embedded(kv, "default")
    assert bridge is not None
    await bridge._del_link(fwd)
    await lattice.link(fwd, kv, KV)
    await until(lambda: fwd in bridge.links, timeout=30)
