"""Link values: URL (any case) and the config_json default for keyvalue-redis; bucket, URL and
their validation for keyvalue-nats; bad values refuse the link, the provider keeps running."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from contracts.keyvalue import GetResponse, SetRequest
from lattice.keys import KeyPair, KeyRole
from lattice.links import LinkDefinition
from lattice.provider import ProviderError
from providers.keyvalue_nats import Doc, KeyValueNatsProvider, kv_key
from providers.keyvalue_redis import KeyValueRedisProvider
from tests.harness import Lattice
from tests.providers_kv.conftest import (
    KV,
    NATS_EMBEDDED,
    NATS_PROCESS,
    REDIS_EMBEDDED,
    REDIS_PROCESS,
    Backend,
    Kv,
    start,
    until_true,
)


def _link(**values: str) -> LinkDefinition:
    return LinkDefinition(KeyPair.generate(KeyRole.MODULE).public_key, "VPROVIDER", KV,
                          "default", values)


@pytest.mark.parametrize(("provider_cls", "values", "message"), [
    (KeyValueRedisProvider, {"URL": "http://127.0.0.1:6379"},
     "invalid Redis URL 'http://127.0.0.1:6379': it must start with redis://, rediss:// or "
     "unix://"),
    (KeyValueRedisProvider, {"url": "127.0.0.1:6379"}, "invalid Redis URL '127.0.0.1:6379'"),
    (KeyValueRedisProvider, {"Url": "redis://user:secret@127.0.0.1:notaport/0"},
     "invalid Redis URL 'redis://***@127.0.0.1:notaport/0'"),  # no password in the text
    (KeyValueNatsProvider, {"bucket": "my.bucket"},
     "invalid bucket name 'my.bucket': a JetStream KV bucket name may only contain"),
    (KeyValueNatsProvider, {"URL": "redis://127.0.0.1:4222"},
     "invalid NATS URL 'redis://127.0.0.1:4222': it must start with nats://"),
], ids=["redis-scheme", "redis-no-scheme", "redis-port", "nats-bucket", "nats-url"])
async def test_bad_link_values_are_refused(provider_cls: type, values: dict[str, str],
                                           message: str) -> None:
    with pytest.raises(ProviderError) as info:
        await provider_cls().put_link(_link(**values))
    assert str(info.value).startswith(message), str(info.value)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(("backend", "values", "message"), [
    (REDIS_PROCESS, {"URL": "http://127.0.0.1:6379"}, "invalid Redis URL"),
    (NATS_EMBEDDED, {"bucket": "no spaces"}, "invalid bucket name 'no spaces'"),
], ids=["redis-process", "nats-embedded"])
async def test_refused_link_through_the_lattice(lattice: Lattice, redis_url: str,
                                                caplog: pytest.LogCaptureFixture,
                                                backend: Backend, values: dict[str, str],
                                                message: str) -> None:
    caplog.set_level(logging.WARNING)
    host = await lattice.host()
    pk = await start(lattice, host, backend)
    bad = await lattice.forwarder(host, KV)
    await lattice.link(bad, pk, KV, **values)

    async def refused() -> bool:
        return any(r.getMessage() == "link refused by the provider"
                   and message in str(getattr(r, "error", "")) for r in caplog.records)

    await until_true(refused)  # the provider says why, naming the bad value
    error = await Kv(lattice, bad).error("Get", "k")
    assert "unlinked actor" in error
    # The provider is still up and serves a good link.
    good = await lattice.forwarder(host, KV)
    await lattice.link(good, pk, KV, **backend.values(redis_url))
    kv = Kv(lattice, good)
    await kv.ready()
    await kv("Set", SetRequest("k", "v"))
    assert await kv("Get", "k") == GetResponse("v", True)


async def test_unreachable_redis_accepts_the_link(lattice: Lattice,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # kvredis behaviour: the link stays, calls report the Redis error.
    caplog.set_level(logging.WARNING)
    host = await lattice.host()
    pk = await start(lattice, host, REDIS_EMBEDDED)
    fwd = await lattice.forwarder(host, KV)
    await lattice.link(fwd, pk, KV, URL="redis://127.0.0.1:1/0")
    error = await Kv(lattice, fwd).error("Get", "k")
    assert "redis error:" in error
    assert any(r.getMessage().startswith("Redis is not reachable") for r in caplog.records)


async def test_redis_default_url_and_case_insensitive_url(lattice: Lattice, redis_url: str,
                                                          redis_url_2: str) -> None:
    host = await lattice.host()
    pk = await start(lattice, host, REDIS_PROCESS, config=json.dumps({"Url": redis_url}))
    by_default = await lattice.forwarder(host, KV)
    await lattice.link(by_default, pk, KV)  # no URL: the provider's config_json default
    lower = await lattice.forwarder(host, KV)
    await lattice.link(lower, pk, KV, url=redis_url_2)  # `url` works as well as `URL`
    for actor, value in ((by_default, "default"), (lower, "lower")):
        kv = Kv(lattice, actor)
        await kv.ready()
        await kv("Set", SetRequest("where", value))
    for url, expected in ((redis_url, b"default"), (redis_url_2, b"lower")):
        with redis.Redis.from_url(url) as client:
            assert client.get("where") == expected


async def test_nats_bucket_and_url_values(lattice: Lattice) -> None:
    host = await lattice.host()
    pk = await start(lattice, host, NATS_PROCESS)
    fwd = await lattice.forwarder(host, KV)
    # An explicit server URL (its own connection) and bucket.
    await lattice.link(fwd, pk, KV, URL=lattice.server.url, bucket="app-data_1")
    kv = Kv(lattice, fwd)
    await kv.ready()
    await kv("Set", SetRequest("greeting", "hello"))
    store = await lattice.nc.jetstream().key_value("app-data_1")
    entry = await store.get(kv_key("greeting"))
    assert Doc.decode(entry.value) == Doc("s", "hello")
    # Another actor without values gets its own default bucket lattice_kv_<actor>.
    other = await lattice.forwarder(host, KV)
    await lattice.link(other, pk, KV)
    kv2 = Kv(lattice, other)
    await kv2.ready()
    await kv2("Set", SetRequest("greeting", "hi"))
    store2 = await lattice.nc.jetstream().key_value(f"lattice_kv_{other}")
    assert Doc.decode((await store2.get(kv_key("greeting"))).value).value == "hi"
