"""The lattice's artifact store on a real nats-server, with real hosts: push/pull, tags,
hosts that share no disk with the pusher, refused tampering, provider archives by reference."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from nats.js.api import ObjectMeta

from lattice import par
from lattice.artifacts import ArtifactStore, artifacts_bucket
from lattice.keys import KeyPair, KeyRole
from tests.actors import signed
from tests.artifacts.conftest import REQUEST, Cli, start_failure
from tests.harness import Lattice, until

pytestmark = pytest.mark.service

KV = "wasmcloud:keyvalue"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def test_push_pull_round_trip_tags_and_idempotence(cli: Cli, lattice: Lattice,
                                                         tmp_path: Path) -> None:
    first = tmp_path / "echo.wasm"
    first.write_bytes(signed("echo"))
    out, err = await cli("push", str(first), "--tag", "echo:0.1.0")
    ref = out.strip()
    assert ref == f"lattice://{sha(first.read_bytes())}/echo.wasm"
    assert "uploaded echo.wasm" in err and "tagged echo:0.1.0" in err
    # The same content again: nothing uploaded, same reference.
    again = json.loads((await cli("push", str(first), "--json"))[0])
    assert again["ref"] == ref and again["uploaded"] is False and again["kind"] == "actor"
    infos = [i async for i in _objects(lattice)]
    assert [i.name for i in infos] == [sha(first.read_bytes())]
    assert infos[0].headers["Lattice-Filename"] == "echo.wasm"

    # Pull by reference, by digest and by tag, into files and directories.
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for text in (ref, sha(first.read_bytes()), "echo:0.1.0", "lattice://echo:0.1.0"):
        pulled = Path((await cli("pull", text, "-o", str(out_dir)))[0].strip())
        assert pulled == out_dir / "echo.wasm" and pulled.read_bytes() == first.read_bytes()
        pulled.unlink()
    named = tmp_path / "copy.wasm"
    doc = json.loads((await cli("pull", "echo:0.1.0", "-o", str(named), "--json"))[0])
    assert doc["digest"] == sha(first.read_bytes()) and named.read_bytes() == first.read_bytes()

    # Moving the tag to new content.
    second = tmp_path / "echo2.wasm"
    second.write_bytes(signed("echo", rev=2))
    await cli("push", str(second), "--tag", "echo:0.1.0", "--tag", "acme/echo:latest")
    pulled = Path((await cli("pull", "echo:0.1.0", "-o", str(out_dir)))[0].strip())
    assert pulled.read_bytes() == second.read_bytes()
    tags = await ArtifactStore(lattice.nc, "default").tags()
    assert [(t["tag"], t["digest"]) for t in tags] == [
        ("acme/echo:latest", sha(second.read_bytes())),
        ("echo:0.1.0", sha(second.read_bytes()))]

    _, err = await cli("pull", "echo:9.9", ok=False)
    assert "there is no tag echo:9.9" in err
    _, err = await cli("pull", "sha256:" + "0" * 64, ok=False)
    assert "there is no artifact sha256:000" in err
    _, err = await cli("push", str(tmp_path / "missing.wasm"), ok=False)
    assert "does not exist" in err


async def _objects(lattice: Lattice):
    store = await lattice.nc.jetstream().object_store(artifacts_bucket("default"))
    for info in await store.list():
        yield info


async def test_hosts_without_the_file_run_an_actor_from_the_store(
        cli: Cli, lattice: Lattice, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = await lattice.host()
    second = await lattice.host()
    source = tmp_path / "src" / "echo.wasm"
    source.parent.mkdir()
    source.write_bytes(signed("echo", caps=["wasmcloud:httpserver"]))
    digest = sha(source.read_bytes())
    ref = (await cli("push", str(source)))[0].strip()
    source.unlink()  # nothing on any disk but the lattice's object store

    caches = []
    for host in (first, second):  # each host fetches into its own, empty cache
        cache = tmp_path / f"cache-{host.host_id[:6]}"
        caches.append(cache)
        monkeypatch.setenv("LATTICE_CACHE_DIR", str(cache))
        key = await lattice.start_actor(host, ref)
        fetched = cache / "artifacts" / "sha256" / digest.removeprefix("sha256:") / "echo.wasm"
        assert fetched.is_file() and sha(fetched.read_bytes()) == digest
    assert b'"path":"/foo"' in await lattice.call(key, "HttpServer.HandleRequest", REQUEST)
    inv = await lattice.ctl("get", second.host_id, "inv")
    assert inv["actors"][0]["image_ref"] == ref and inv["actors"][0]["name"] == "echo"

    # `lattice start actor PATH` uploads the file and sends its lattice:// reference.
    other = tmp_path / "kv.wasm"
    other.write_bytes(signed("echo", name_claim="viacli", caps=["wasmcloud:httpserver"]))
    out, err = await cli("start", "actor", str(other), "--host-id", second.host_id)
    assert "Started 1 instance of actor viacli" in out and "uploaded kv.wasm as lattice://" in err
    running = {r.actor.name: r for r in second.actors.actors.values()}
    assert running["viacli"].image_ref == f"lattice://{sha(other.read_bytes())}/kv.wasm"
    # An explicit file:// URL is still sent as it is.
    await cli("stop", "actor", "viacli", "--host-id", second.host_id)
    await cli("start", "actor", f"file://{other}", "--host-id", second.host_id)
    running = {r.actor.name: r for r in second.actors.actors.values()}
    assert running["viacli"].image_ref == f"file://{other}"


async def test_tampered_and_missing_objects_are_refused(lattice: Lattice, tmp_path: Path,
                                                        artifact_cache: Path) -> None:
    host = await lattice.host()
    good = signed("echo")
    store = await lattice.nc.jetstream().create_object_store(artifacts_bucket("default"))
    # An object whose content does not hash to its name (corruption or an attacker).
    await store.put(sha(good), signed("echo"), meta=ObjectMeta(
        name=sha(good), headers={"Lattice-Filename": "echo.wasm"}))
    ref = f"lattice://{sha(good)}/echo.wasm"
    event = await start_failure(lattice, host, "la", {"actor_ref": ref}, "actor_start_failed",
                                "actor_ref")
    assert f"the content of {sha(good)}" in event.data["error"]
    assert "refusing it" in event.data["error"]
    assert not list((artifact_cache / "artifacts" / "sha256").glob("*/*"))
    assert not host.actors.actors

    missing = "lattice://sha256:" + "1" * 64
    event = await start_failure(lattice, host, "la", {"actor_ref": missing},
                                "actor_start_failed", "actor_ref")
    assert "there is no artifact sha256:111" in event.data["error"]
    event = await start_failure(lattice, host, "la", {"actor_ref": "lattice://nope:1"},
                                "actor_start_failed", "actor_ref")
    assert "no artifact tags yet" in event.data["error"] or "no tag nope:1" in event.data["error"]


def kvmem_par(path: Path) -> tuple[Path, str]:
    """A provider archive whose binary is a script running the kvmem package."""
    script = f'#!/bin/sh\nexec "{sys.executable}" -m providers.kvmem "$@"\n'.encode()
    subject = KeyPair.generate(KeyRole.SERVICE)
    par.build_par(path, binaries={par.current_target(): script},
                  issuer=KeyPair.generate(KeyRole.ACCOUNT), subject=subject,
                  name="KV by reference", capid=KV, vendor="lattice", rev=1, compress=True)
    return path, subject.public_key


async def test_a_provider_archive_starts_from_the_store_by_tag(
        cli: Cli, lattice: Lattice, tmp_path: Path) -> None:
    host = await lattice.host()
    path, key = kvmem_par(tmp_path / "kv.par.gz")
    await cli("push", str(path), "--tag", "kv:0.1")
    path.unlink()
    ref = "lattice://kv:0.1"
    assert await lattice.start_provider(host, ref) == key
    (info,) = host.providers.list()
    assert info.image_ref == ref and info.name == "KV by reference" and info.contract_id == KV
    event = await start_failure(lattice, host, "lp", {"provider_ref": "lattice://kv:0.2",
                                                      "link_name": "other"},
                                "provider_start_failed", "provider_ref")
    assert "there is no tag kv:0.2" in event.data["error"]
    await until(lambda: host.providers.list()[0].state == "running")
