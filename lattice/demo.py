"""``lattice up --demo``: the kvcounter sample app on the embedded defaults, from a manifest.

After `up` has a host, this builds actors/kvcounter (cached), deploys examples/kvcounter.yaml
(kvcounter plus the embedded default providers: httpserver, keyvalue-nats, blobstore-fs,
sqldb-sqlite — no service to install) with the HTTP port set to ``--port``, and waits until the
reconciler inside the host reports the app deployed and the port answers.

It is exactly `lattice build actors/kvcounter && lattice app deploy examples/kvcounter.yaml`,
so `lattice app status kvcounter` and `lattice get inventory` show what it made.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from lattice.app.manifest import LinkDef, Manifest, load_manifest
from lattice.app.store import AppStore
from lattice.connect import NatsOptions, connect, jetstream

DEMO_ACTOR = "kvcounter"
DEPLOY_TIMEOUT = 90.0  # a Python actor's first start compiles it (~10 s on a small machine)


class DemoError(Exception):
    pass


@dataclass(frozen=True)
class Demo:
    url: str
    app: str


def demo_actor_dir() -> Path:
    from actors import ROOT
    return ROOT / DEMO_ACTOR


def demo_manifest_path() -> Path:
    from actors import ROOT
    return ROOT.parent / "examples" / f"{DEMO_ACTOR}.yaml"


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


def demo_manifest(port: int) -> Manifest:
    """examples/kvcounter.yaml with paths made absolute and the HTTP link on ``port``."""
    path = demo_manifest_path()
    manifest = load_manifest(path.read_text()).resolve_paths(path.parent)

    def on_port(trait: object) -> object:
        if isinstance(trait, LinkDef) and trait.target == "http":
            return replace(trait, values={**trait.values, "port": str(port)})
        return trait

    return replace(manifest, components=tuple(
        replace(c, traits=tuple(on_port(t) for t in c.traits)) for c in manifest.components))


async def deploy(nats: NatsOptions, lattice: str, port: int,
                 progress: Callable[[str], None]) -> Demo:
    manifest = demo_manifest(port)
    nc = await connect(nats, name="lattice-demo")
    try:
        store = await AppStore(jetstream(nc), lattice).open()
        await store.deploy(manifest)
        progress(f"deployed app {manifest.name} {manifest.version} ({demo_manifest_path()}); "
                 "waiting for the reconciler")
        deadline = time.monotonic() + DEPLOY_TIMEOUT
        shown = ""
        while True:
            state = await store.state(manifest.name)
            if state and state.version == manifest.version:
                if state.status == "deployed":
                    break
                if state.status == "failed":
                    raise DemoError("; ".join(state.reasons) or "the app failed to deploy")
                line = "; ".join(state.reasons)
                if line and line != shown:
                    progress(f"  {line}")
                    shown = line
            if time.monotonic() > deadline:
                raise DemoError(f"the app was not deployed within {DEPLOY_TIMEOUT:g} s "
                                f"({shown or 'no status yet'}); see `lattice app status "
                                f"{manifest.name}` and the host log")
            await asyncio.sleep(0.25)
        await _until_serving(port)
        return Demo(f"http://127.0.0.1:{port}/", manifest.name)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


async def _until_serving(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        await asyncio.sleep(0.1)
    raise DemoError(f"nothing listens on port {port} after linking; see the host log (the "
                    "httpserver provider logs why it refused a link)")
