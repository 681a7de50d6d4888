"""Every manifest in examples/ deployed as its header comment tells a user to, and answering.

For each examples/*.yaml (parametrized over the directory, so a new example is covered without
editing this file): its actors are built with `lattice build` (cached by source hash), the
manifest is deployed on a live test lattice (a real nats-server, a real host with its
reconciler) with `lattice app deploy` in a subprocess, the test waits until `lattice app status`
says deployed, then drives each actor through its real interface — HTTP on the port its link
names, NATS messages for chat, pinger → ponger by call alias, a lattice RPC for ponger — and
asserts the actor's own answer (and, for Redis/PostgreSQL, that the data is really there).
Finally `lattice app undeploy` closes its HTTP ports. An alternative that an example's header
documents (todo on PostgreSQL) is deployed too (VARIANTS).

What the test changes in a manifest: the HTTP ports (the examples hard-code 8080-8085, which
would collide with each other and with anything on the machine) and the addresses of external
services (Redis, PostgreSQL: the test's real ones). Everything else is the example's content;
the manifest and the built actors are laid out in a temporary directory exactly as in the repo
(examples/NAME.yaml next to actors/ACTOR/build/ACTOR_s.wasm), so the image paths stay the
example's own relative paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest
import redis
import yaml
from aiohttp import web

import actors
from lattice.build import default_output, load_config
from lattice.natsd import free_port, port_open
from tests.components import lattice_build
from tests.harness import Lattice, until
from tests.samples.test_samples import crud

REPO = actors.ROOT.parent
EXAMPLES = sorted(p for p in (REPO / "examples").glob("*.yaml") if not p.name.startswith("."))
# Generous for a loaded 2-core machine: a Python actor's first start compiles CPython (~10 s).
DEPLOY_DEADLINE = 240.0
# Provider images that need a real external service, and the fixture that provides it.
SERVICES = {"keyvalue-redis": "redis_url", "sqldb-postgres": "postgres_dsn"}


def _doc(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def _components(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["components"]


def _services(doc: dict[str, Any]) -> list[str]:
    return sorted({SERVICES[c["properties"]["image"]] for c in _components(doc)
                   if c["properties"].get("image") in SERVICES})


def todo_on_postgres(doc: dict[str, Any]) -> None:
    """The switch examples/todo.yaml's header describes: image sqldb-postgres (the uri link
    value is the test's database, set by rewrite())."""
    for comp in _components(doc):
        if comp["properties"].get("image") == "sqldb-sqlite":
            comp["properties"]["image"] = "sqldb-postgres"


# Alternatives an example's header documents, deployed as well: example stem -> name -> edit.
VARIANTS = {"todo": {"postgres": todo_on_postgres}}


@dataclass(frozen=True)
class Example:
    path: Path
    variant: str | None = None

    @property
    def id(self) -> str:
        return self.path.stem + (f"-{self.variant}" if self.variant else "")

    def doc(self) -> dict[str, Any]:
        doc = _doc(self.path)
        if self.variant:
            VARIANTS[self.path.stem][self.variant](doc)
        return doc


def _params() -> list[Any]:
    cases = [Example(p) for p in EXAMPLES]
    cases += [Example(p, v) for p in EXAMPLES for v in VARIANTS.get(p.stem, {})]
    return [pytest.param(c, id=c.id, marks=[pytest.mark.service] if _services(c.doc()) else [])
            for c in cases]


@dataclass
class Deployed:
    """The deployed example as the checks see it."""

    name: str
    lattice: Lattice
    doc: dict[str, Any]                  # the manifest as deployed (ports rewritten)
    services: dict[str, str]             # fixture name -> URL/DSN
    http: dict[str, int] = field(default_factory=dict)   # actor component -> its HTTP port

    def actors(self) -> dict[str, str]:
        """actor component name -> the sample actor it runs (actors/NAME)."""
        return {c["name"]: Path(c["properties"]["image"]).parent.parent.name
                for c in _components(self.doc) if c["type"] == "actor"}

    def provider_of(self, component: str, contract: str) -> str | None:
        """The provider image the actor component's link for ``contract`` targets."""
        caps = {c["name"]: c for c in _components(self.doc) if c["type"] == "capability"}
        comp = next(c for c in _components(self.doc) if c["name"] == component)
        for trait in comp.get("traits", []):
            target = caps.get(trait.get("properties", {}).get("target", ""))
            if trait["type"] == "linkdef" and target and \
                    target["properties"].get("contract") == contract:
                return target["properties"]["image"]
        return None

    def base(self, component: str) -> str:
        assert component in self.http, f"{self.name}: {component} has no link to an httpserver"
        return f"http://127.0.0.1:{self.http[component]}"


def rewrite(doc: dict[str, Any], services: dict[str, str]) -> dict[str, int]:
    """Point the manifest's HTTP links at free ports and its service links at the test's
    Redis/PostgreSQL; returns actor component -> HTTP port."""
    caps = {c["name"]: c["properties"].get("image") for c in _components(doc)
            if c["type"] == "capability"}
    ports: dict[str, int] = {}
    taken: set[int] = set()
    for comp in _components(doc):
        for trait in comp.get("traits", []):
            if trait["type"] != "linkdef":
                continue
            props = trait.setdefault("properties", {})
            image = caps.get(props.get("target"))
            if image not in ("httpserver", *SERVICES):
                continue
            values = props.setdefault("values", {})
            if image == "httpserver":
                port = free_port()
                while port in taken:
                    port = free_port()
                taken.add(port)
                values["port"] = str(port)
                ports[comp["name"]] = port
            elif image == "keyvalue-redis":
                values["URL"] = services["redis_url"]
            elif image == "sqldb-postgres":
                values["uri"] = services["postgres_dsn"]
    return ports


async def cli(lattice: Lattice, *args: str, timeout: float = 300) -> tuple[int, str, str]:
    """`lattice ARGS --nats-url <the test lattice>` in a subprocess."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lattice", *args, "--nats-url", lattice.server.url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, out.decode(), err.decode()


async def wait_deployed(lattice: Lattice, name: str, version: str) -> dict[str, Any]:
    """Poll `lattice app status NAME --json` until it says deployed (fail on failed)."""
    deadline = time.monotonic() + DEPLOY_DEADLINE
    last: Any = None
    while time.monotonic() < deadline:
        code, out, err = await cli(lattice, "app", "status", name, "--json")
        assert code == 0, err
        last = json.loads(out)
        if last.get("version") == version:
            assert last["status"] != "failed", last
            if last["status"] == "deployed":
                return last
        await asyncio.sleep(1.0)
    raise AssertionError(f"{name} {version} not deployed within {DEPLOY_DEADLINE:g} s: {last}")


async def listening(port: int) -> None:
    await until(lambda: port_open("127.0.0.1", port), timeout=30)


# --- what each sample actor answers ------------------------------------------------------------


async def check_echo(app: Deployed, component: str) -> None:
    async with aiohttp.ClientSession() as s, \
            s.post(f"{app.base(component)}/hi?a=1", data=b"yo",
                   headers={"X-Example": app.name}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert (body["method"], body["path"], body["query"], body["body"]) == (
        "POST", "/hi", {"a": "1"}, "yo")
    assert body["headers"]["x-example"] == app.name


async def check_kvcounter(app: Deployed, component: str) -> None:
    async with aiohttp.ClientSession() as s:
        for expected in (1, 2, 3):
            async with s.get(f"{app.base(component)}/counter") as r:
                assert r.status == 200, await r.text()
                assert await r.json() == {"counter": expected, "key": "counter:/counter"}
        async with s.get(f"{app.base(component)}/other") as r:
            assert await r.json() == {"counter": 1, "key": "counter:/other"}
    if app.provider_of(component, "wasmcloud:keyvalue") == "keyvalue-redis":
        client = redis.Redis.from_url(app.services["redis_url"])
        try:  # really counted in the test's Redis
            assert client.get("counter:/counter") == b"3"
        finally:
            client.close()


async def check_todo(app: Deployed, component: str) -> None:
    await crud(app.base(component))  # the whole CRUD flow of the sample test
    if app.provider_of(component, "wasmcloud:sqldb") == "sqldb-postgres":
        import asyncpg

        conn = await asyncpg.connect(app.services["postgres_dsn"], timeout=10)
        try:  # really stored in the test's PostgreSQL: what crud() left
            rows = await conn.fetch("SELECT title, done FROM todos")
        finally:
            await conn.close()
        assert [(r["title"], bool(r["done"])) for r in rows] == [("water the plants", True)]


async def check_uploader(app: Deployed, component: str) -> None:
    data = secrets.token_bytes(10 * 1000 * 1000)  # the size the README promises
    base = app.base(component)
    async with aiohttp.ClientSession() as s:
        async with s.put(f"{base}/files/big.iso", data=data) as r:
            assert r.status == 201, await r.text()
            assert await r.json() == {"name": "big.iso", "size": len(data)}
        async with s.get(f"{base}/files/big.iso") as r:
            assert r.status == 200
            assert hashlib.sha256(await r.read()).digest() == hashlib.sha256(data).digest()
        async with s.get(f"{base}/files") as r:
            assert await r.json() == [{"name": "big.iso", "size": len(data)}]
        async with s.delete(f"{base}/files/big.iso") as r:
            assert r.status == 204
        async with s.get(f"{base}/files/big.iso") as r:
            assert r.status == 404


async def check_fetcher(app: Deployed, component: str) -> None:
    page = b"<html>hello from upstream</html>"

    async def serve_page(_: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html")

    upstream = web.Application()
    upstream.router.add_get("/page", serve_page)
    runner = web.AppRunner(upstream)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    base = app.base(component)
    try:
        async with aiohttp.ClientSession() as s:
            url = f"http://127.0.0.1:{port}/page"
            async with s.get(f"{base}/fetch", params={"url": url}) as r:
                assert r.status == 200, await r.text()
                assert await r.json() == {
                    "url": url, "status": 200, "content_type": "text/html",
                    "length": len(page), "sha256": hashlib.sha256(page).hexdigest(),
                    "text": page.decode()}
            dead = f"http://127.0.0.1:{free_port()}/"  # the provider's reason reaches the user
            async with s.get(f"{base}/fetch", params={"url": dead}) as r:
                assert r.status == 502 and f"could not fetch {dead}" in await r.text()
    finally:
        await runner.cleanup()


async def check_pinger(app: Deployed, component: str) -> None:
    async with aiohttp.ClientSession() as s, \
            s.get(f"{app.base(component)}/ping", params={"n": "41"}) as r:
        assert r.status == 200, await r.text()
        assert await r.json() == {"sent": 41,
                                  "reply": {"pong": 42, "to": "pinger", "by": "ponger"}}


async def check_ponger(app: Deployed, component: str) -> None:
    # No HTTP: other actors (and anything with the cluster's signature) call it over RPC.
    keys = {r.key for h in app.lattice.hosts for r in h.actors.actors.values()
            if r.actor.name == "ponger"}
    assert len(keys) == 1, keys
    reply = await app.lattice.call(keys.pop(), "Pingpong.Ping",
                                   msgpack.packb({"from": "test", "n": 5}))
    assert msgpack.unpackb(reply) == {"pong": 6, "to": "test", "by": "ponger"}


async def check_chat(app: Deployed, component: str) -> None:
    nc = app.lattice.nc
    out: asyncio.Queue = asyncio.Queue()

    async def on_out(m: Any) -> None:
        await out.put((m.subject, json.loads(m.data)))

    sub = await nc.subscribe("chat.out.>", cb=on_out)
    try:
        await nc.flush()
        # `deployed` means the link is put; the provider's subscription follows it closely.
        async def ack() -> dict | None:
            try:
                reply = await nc.request("chat.in.lobby", json.dumps(
                    {"user": "ada", "text": "hello"}).encode(), timeout=2)
            except Exception:
                return None
            return json.loads(reply.data)

        first = await until(ack, timeout=30)
        assert first["ok"] is True
        subject, relayed = await asyncio.wait_for(out.get(), 10)
        assert subject == "chat.out.lobby"
        assert relayed == {"room": "lobby", "seq": first["seq"], "user": "ada",
                           "text": "hello"}
        bad = await nc.request("chat.in.lobby", b"not json", timeout=10)
        assert json.loads(bad.data)["ok"] is False
    finally:
        await sub.unsubscribe()


CHECKS = {"echo": check_echo, "kvcounter": check_kvcounter, "todo": check_todo,
          "uploader": check_uploader, "fetcher": check_fetcher, "pinger": check_pinger,
          "ponger": check_ponger, "chat": check_chat}


# --- the test ----------------------------------------------------------------------------------


def test_every_example_is_covered() -> None:
    """Each example runs only sample actors this file knows how to exercise."""
    assert EXAMPLES
    for path in EXAMPLES:
        doc = _doc(path)
        for comp in _components(doc):
            if comp["type"] == "actor":
                actor = Path(comp["properties"]["image"]).parent.parent.name
                assert actor in CHECKS, (
                    f"{path.name}: no check for actor {actor}: add one to CHECKS in {__file__}")


@pytest.fixture
def services(request: pytest.FixtureRequest) -> dict[str, str]:
    """The real services the example's providers need (fixture name -> URL/DSN), requested at
    setup (outside the test's running loop) so only those examples need Redis/PostgreSQL."""
    return {name: request.getfixturevalue(name)
            for name in _services(request.node.callspec.params["example"].doc())}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("example", _params())
async def test_example_deploys_and_answers(example: Example, services: dict[str, str],
                                           lattice: Lattice, tmp_path: Path) -> None:
    doc = example.doc()
    name, version = doc["metadata"]["name"], doc["metadata"]["annotations"]["version"]

    # Build each actor as the example's header says (`lattice build actors/X`), into the same
    # layout under tmp_path, after checking the image path is where `lattice build` writes.
    for comp in _components(doc):
        if comp["type"] != "actor":
            continue
        image = comp["properties"]["image"]
        actor = Path(image).parent.parent.name
        in_repo = (REPO / "examples" / image).resolve()
        assert in_repo == default_output(load_config(actors.ROOT / actor)).resolve(), (
            f"{example.path.name}: component {comp['name']} names {image}, which is not where "
            f"`lattice build actors/{actor}` writes")
        out = (tmp_path / "examples" / image).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(lattice_build, actor, out)

    app = Deployed(name, lattice, doc, services, rewrite(doc, services))
    manifest = tmp_path / "examples" / example.path.name
    manifest.parent.mkdir(exist_ok=True)
    manifest.write_text(yaml.safe_dump(doc, sort_keys=False))

    await lattice.host(reconcile_interval=1.0)
    code, out, err = await cli(lattice, "app", "deploy", str(manifest))
    assert code == 0, err + out
    assert f"deployed {name} {version}" in err, err
    status = await wait_deployed(lattice, name, version)
    assert all(s["satisfied"] for s in status["scalers"]), status

    for port in app.http.values():
        await listening(port)
    for component, actor in app.actors().items():
        await CHECKS[actor](app, component)

    code, out, err = await cli(lattice, "app", "undeploy", name)
    assert code == 0 and f"{name}" in out and "undeployed" in out, err + out
    for port in app.http.values():
        await until(lambda p=port: not port_open("127.0.0.1", p), timeout=30)
