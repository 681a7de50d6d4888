"""``lattice up --demo``: the kvcounter sample app on embedded defaults.

After `up` has a host, this starts the default providers inside it (httpserver, keyvalue-nats,
blobstore-fs, sqldb-sqlite: no service to install, state in the lattice's own NATS and the state
directory), starts the kvcounter Python actor (built from actors/kvcounter, cached), links it to
the HTTP server and the key-value store, and returns the URL it serves.

Everything goes through the control interface, exactly as `lattice start …` / `lattice link put`
would, so the demo exercises the real path and `lattice get inventory` shows what it made.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lattice.connect import NatsOptions, connect
from lattice.ctl import CtlClient, CtlError, Event, EventStream

DEMO_ACTOR = "kvcounter"
PROVIDERS = (  # (provider, contract): the embedded defaults
    ("httpserver", "wasmcloud:httpserver"),
    ("keyvalue-nats", "wasmcloud:keyvalue"),
    ("blobstore-fs", "wasmcloud:blobstore"),
    ("sqldb-sqlite", "wasmcloud:sqldb"),
)
START_TIMEOUT = 60.0  # a Python actor's first start compiles it (~10 s on a small machine)


class DemoError(Exception):
    pass


@dataclass(frozen=True)
class Demo:
    url: str
    actor_id: str
    providers: dict[str, str]  # provider name -> public key


def demo_actor_dir() -> Path:
    from actors import ROOT
    return ROOT / DEMO_ACTOR


def check_port(port: int) -> None:
    """Fail early, with the fix, when the demo's HTTP port is taken."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise DemoError(f"port {port} on 127.0.0.1 is already in use: pick another with "
                            "--port") from None


def build_demo_actor(progress: Callable[[str], None]) -> Path:
    from lattice.build import BuildError, build_actor
    try:
        return build_actor(demo_actor_dir(), progress=progress).path
    except BuildError as exc:
        raise DemoError(f"could not build the {DEMO_ACTOR} actor: {exc}") from None


async def _wait(stream: EventStream, what: str, judge: Callable[[Event], str | bool | None],
                timeout: float) -> Event:
    """The first event ``judge`` accepts (True) or rejects (an error text)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DemoError(f"{what}: no outcome within {timeout:g} s; see the host log")
        with contextlib.suppress(CtlError):
            event = await stream.next(min(left, 1.0))
            verdict = judge(event)
            if verdict is True:
                return event
            if isinstance(verdict, str):
                raise DemoError(f"{what} failed: {verdict}")


async def deploy(nats: NatsOptions, lattice: str, host_id: str, actor_path: Path, port: int,
                 progress: Callable[[str], None]) -> Demo:
    nc = await connect(nats, name="lattice-demo")
    try:
        ctl = CtlClient(nc, lattice, timeout=5.0, nats_url=nats.url)
        providers: dict[str, str] = {}
        async with ctl.events() as stream:
            for name, contract in PROVIDERS:
                progress(f"starting provider {name} (embedded) for {contract}")
                await ctl.start_provider(host_id, name, embedded=True, contract_id=contract)

                def judge(e: Event, name: str = name) -> str | bool | None:
                    if e.source != host_id and e.data.get("host_id") != host_id:
                        return None
                    if e.name == "provider_started" and e.data.get("image_ref") == name:
                        return True
                    if e.name == "provider_start_failed" and e.data.get("provider_ref") == name:
                        return str(e.data.get("error") or "unknown error")
                    return None

                event = await _wait(stream, f"starting provider {name}", judge, START_TIMEOUT)
                providers[name] = str(event.data.get("public_key"))

            ref = actor_path.resolve().as_uri()
            progress(f"starting actor {DEMO_ACTOR} from {actor_path}")
            await ctl.start_actor(host_id, ref)

            def judge_actor(e: Event) -> str | bool | None:
                if e.data.get("host_id", e.source) != host_id:
                    return None
                if e.name == "actors_started" and e.data.get("image_ref") == ref:
                    return True
                if e.name in ("actors_start_failed", "actor_start_failed") and (
                        e.data.get("image_ref") == ref or e.data.get("actor_ref") == ref):
                    return str(e.data.get("error") or "unknown error")
                return None

            event = await _wait(stream, f"starting actor {DEMO_ACTOR}", judge_actor,
                                START_TIMEOUT)
            actor_id = str(event.data.get("public_key"))

        progress(f"linking {DEMO_ACTOR} to httpserver (port {port}) and keyvalue-nats")
        await ctl.put_link(actor_id, providers["keyvalue-nats"], "wasmcloud:keyvalue")
        await ctl.put_link(actor_id, providers["httpserver"], "wasmcloud:httpserver",
                           values={"port": str(port)})
        url = f"http://127.0.0.1:{port}/"
        await _until_serving(port)
        return Demo(url, actor_id, providers)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _until_serving(port: int, timeout: float = 15.0) -> None:
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise DemoError(f"nothing listens on port {port} after linking; see the host log (the "
                    "httpserver provider logs why it refused a link)")
