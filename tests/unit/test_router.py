"""Router: the provider path of docs/wire.md §1.6 through the ProviderTransport hook, and ordering.

The transport here is the router's own extension point (what a lattice host supplies), not a
stand-in for an external service.
"""

from __future__ import annotations

import pytest

from lattice.links import LinkDefinition, link_id
from lattice.local import LocalHost
from lattice.router import is_actor_key
from lattice.runtime import GuestCallError, RuntimeConfig
from tests.actors import forward_payload, signed

PROVIDER = "VAG3QITQQ2ODAOWB5TTQSDJ53XK3SHBEIFNK4AYJ5RKAX2UNSCAPHA5M"


def test_linkdef_id_vector():
    # docs/wire.md §3.6: shared with the control-interface tests and the Elixir host.
    assert link_id("Mbob", "wasmcloud:testy", "default") == (
        "B40411AD09B70A2C83D59923584F66BA2C5A3C274DC4F19416DA49CCD6531F9C")


def test_actor_keys_are_recognised_strictly():
    assert is_actor_key("MBCFOPM6JW2APJLXJD3Z5O4CN7CPYJ2B4FTKLJUR5YR5MITIU7HD3WD5")
    assert not is_actor_key(PROVIDER)
    assert not is_actor_key("wasmcloud/ponger")


@pytest.fixture
async def host(tmp_path):
    h = LocalHost(RuntimeConfig(cache_dir=tmp_path))
    yield h
    await h.close()


async def test_linked_provider_gets_the_call_with_its_link(host):
    calls = []

    async def transport(actor, link, operation, payload):
        calls.append((actor.key, link, operation, payload))
        return b"\x07"

    host.router.providers = transport
    actor = await host.start_actor(signed("forward", caps=["wasmcloud:keyvalue"]))
    host.links.put(LinkDefinition(actor.key, PROVIDER, "wasmcloud:keyvalue", "redis",
                                  {"URL": "redis://127.0.0.1:6379"}))
    out = await host.call(actor.key, "KeyValue.Increment",
                          forward_payload("redis", "wasmcloud:keyvalue", b"inc"))
    assert out == b"\x07"
    [(key, link, operation, payload)] = calls
    assert key == actor.key and link.provider_id == PROVIDER and link.link_name == "redis"
    assert (operation, payload) == ("KeyValue.Increment", b"inc")

    # Another link name has no link: the call is refused, naming the link name.
    with pytest.raises(GuestCallError, match=r"no provider is linked for wasmcloud:keyvalue "
                                        r"\(link name default\)"):
        await host.call(actor.key, "KeyValue.Get",
                        forward_payload("default", "wasmcloud:keyvalue", b"k"))


async def test_a_link_does_not_bypass_the_claims(host):
    async def transport(actor, link, operation, payload):  # pragma: no cover - must not run
        raise AssertionError("a provider was called for an actor without the capability")

    host.router.providers = transport
    actor = await host.start_actor(signed("forward", caps=["wasmcloud:httpserver"]))
    host.links.put(LinkDefinition(actor.key, PROVIDER, "wasmcloud:keyvalue"))
    with pytest.raises(GuestCallError, match="missing capability claim for wasmcloud:keyvalue"):
        await host.call(actor.key, "KeyValue.Get",
                        forward_payload("default", "wasmcloud:keyvalue", b"k"))


async def test_link_without_a_transport_explains_itself(host):
    actor = await host.start_actor(signed("forward", caps=["wasmcloud:keyvalue"]))
    host.links.put(LinkDefinition(actor.key, PROVIDER, "wasmcloud:keyvalue"))
    with pytest.raises(GuestCallError, match="cannot reach providers"):
        await host.call(actor.key, "KeyValue.Get",
                        forward_payload("default", "wasmcloud:keyvalue", b"k"))
