"""OCI registries: ``lattice reg push`` to Debian's docker-registry on loopback, hosts starting
actors and providers from ``oci://`` and bare references, digests, credentials and failures."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import requests

from lattice.artifacts import set_registry_credentials
from lattice.artifacts.credentials import clear_registry_credentials
from lattice.natsd import free_port
from tests.actors import signed
from tests.artifacts.conftest import REQUEST, Cli, Registry, start_failure
from tests.artifacts.test_store import KV, kvmem_par
from tests.harness import Lattice

pytestmark = pytest.mark.service

WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.wasmcloud.actor.archive.config"
PAR_LAYER = "application/vnd.wasmcloud.provider.archive.layer.v1+par"
PAR_CONFIG = "application/vnd.wasmcloud.provider.archive.config"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest(reg: Registry, repo: str, tag: str) -> dict:
    resp = requests.get(f"http://{reg.address}/v2/{repo}/manifests/{tag}", timeout=5,
                        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
    resp.raise_for_status()
    return resp.json()


async def test_push_then_hosts_start_actors_and_providers_from_the_registry(
        registry: Registry, cli: Cli, lattice: Lattice, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    addr = registry.address
    echo = tmp_path / "echo.wasm"
    echo.write_bytes(signed("echo", caps=["wasmcloud:httpserver"]))
    out, _ = await cli("reg", "push", str(echo), f"oci://{addr}/lattice/echo:0.1.0",
                       "--annotation", "org.opencontainers.image.version=0.1.0", "--json",
                       nats=False)
    pushed = json.loads(out)
    assert pushed["layer_digest"] == sha(echo.read_bytes()) and pushed["media_type"] == WASM_LAYER
    doc = manifest(registry, "lattice/echo", "0.1.0")
    assert doc["config"]["mediaType"] == WASM_CONFIG
    assert [layer["mediaType"] for layer in doc["layers"]] == [WASM_LAYER]
    assert doc["annotations"] == {"org.opencontainers.image.version": "0.1.0"}
    config = requests.get(f"http://{addr}/v2/lattice/echo/blobs/{doc['config']['digest']}",
                          timeout=5)
    assert config.content == b"{}"  # what wash pushes

    hosts = [await lattice.host() for _ in range(3)]
    refs = [f"oci://{addr}/lattice/echo:0.1.0", f"{addr}/lattice/echo:0.1.0",
            f"oci://{addr}/lattice/echo@{pushed['digest']}"]
    for host, ref in zip(hosts, refs, strict=True):
        monkeypatch.setenv("LATTICE_CACHE_DIR", str(tmp_path / f"cache-{host.host_id[:6]}"))
        key = await lattice.start_actor(host, ref)
    assert b'"path":"/foo"' in await lattice.call(key, "HttpServer.HandleRequest", REQUEST)

    # `lattice pull` and `lattice reg pull` give back the very bytes.
    for argv in (("pull", f"{addr}/lattice/echo:0.1.0"), ("reg", "pull",
                                                          f"oci://{addr}/lattice/echo:0.1.0")):
        target = tmp_path / f"pulled-{argv[0]}.wasm"
        out, _ = await cli(*argv, "-o", str(target), nats=False)
        assert Path(out.strip()) == target and target.read_bytes() == echo.read_bytes()

    # A provider archive, by a bare reference.
    archive, provider_key = kvmem_par(tmp_path / "kv.par.gz")
    await cli("reg", "push", str(archive), f"{addr}/lattice/kv:0.1.0", nats=False)
    assert manifest(registry, "lattice/kv", "0.1.0")["config"]["mediaType"] == PAR_CONFIG
    assert [la["mediaType"] for la in manifest(registry, "lattice/kv", "0.1.0")["layers"]] == [
        PAR_LAYER]
    assert await lattice.start_provider(hosts[0], f"{addr}/lattice/kv:0.1.0") == provider_key
    (info,) = hosts[0].providers.list()
    assert info.contract_id == KV and info.name == "KV by reference"

    # Only actors and provider archives go to a registry.
    junk = tmp_path / "notes.txt"
    junk.write_text("hello")
    _, err = await cli("reg", "push", str(junk), f"{addr}/lattice/junk:1", ok=False, nats=False)
    assert "neither a WebAssembly module nor a valid provider archive" in err


async def test_registry_failures_are_reported_by_the_host(
        registry: Registry, cli: Cli, lattice: Lattice, tmp_path: Path,
        artifact_cache: Path) -> None:
    host = await lattice.host()
    addr = registry.address
    missing = f"oci://{addr}/lattice/echo:9.9.9"
    event = await start_failure(lattice, host, "la", {"actor_ref": missing},
                                "actor_start_failed", "actor_ref")
    assert f"{missing} was not found in the OCI registry {addr}" in event.data["error"]

    closed = f"127.0.0.1:{free_port()}/lattice/echo:1"
    event = await start_failure(lattice, host, "la", {"actor_ref": closed},
                                "actor_start_failed", "actor_ref")
    assert "cannot reach the OCI registry" in event.data["error"]
    assert "Connection refused" in event.data["error"]
    event = await start_failure(lattice, host, "lp", {"provider_ref": closed},
                                "provider_start_failed", "provider_ref")
    assert "cannot reach the OCI registry" in event.data["error"]

    # A blob altered in the registry's storage is refused, not run.
    module = tmp_path / "tampered.wasm"
    module.write_bytes(signed("echo"))
    await cli("reg", "push", str(module), f"{addr}/lattice/tampered:1", nats=False)
    blob = registry.blob_file(sha(module.read_bytes()))
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    event = await start_failure(lattice, host, "la",
                                {"actor_ref": f"{addr}/lattice/tampered:1"},
                                "actor_start_failed", "actor_ref")
    assert f"the content of {sha(module.read_bytes())}" in event.data["error"]
    assert "refusing it" in event.data["error"]
    assert not host.actors.actors
    assert not list((artifact_cache / "artifacts" / "sha256").glob("*/*"))


async def test_credentials_for_pushes_and_for_hosts(
        auth_registry: Registry, cli: Cli, lattice: Lattice, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    addr = auth_registry.address
    user, password = auth_registry.user, auth_registry.password
    assert user and password
    echo = tmp_path / "echo.wasm"
    echo.write_bytes(signed("echo"))
    ref = f"oci://{addr}/private/echo:1.0"

    _, err = await cli("reg", "push", str(echo), ref, ok=False, nats=False)
    assert "refused access" in err and "it needs credentials" in err
    _, err = await cli("reg", "push", str(echo), ref, "--user", user, "--password", "wrong",
                       ok=False, nats=False)
    assert "refused access" in err and f"credentials of user '{user}' were rejected" in err
    await cli("reg", "push", str(echo), ref, "--user", user, "--password", password,
              nats=False)
    monkeypatch.setenv("LATTICE_OCI_USER", user)
    monkeypatch.setenv("LATTICE_OCI_PASSWORD", password)
    await cli("reg", "push", str(echo), f"{addr}/private/echo:1.1", nats=False)
    monkeypatch.delenv("LATTICE_OCI_USER")
    monkeypatch.delenv("LATTICE_OCI_PASSWORD")

    first, second = await lattice.host(), await lattice.host()
    event = await start_failure(lattice, first, "la", {"actor_ref": ref},
                                "actor_start_failed", "actor_ref")
    assert "refused access" in event.data["error"]
    assert "LATTICE_OCI_USER" in event.data["error"]
    # Credentials sent the way wasmCloud's registries.put does.
    set_registry_credentials({addr: {"registryType": "oci", "username": user,
                                     "password": password}})
    await lattice.start_actor(first, ref)
    # ... or from the host's environment.
    monkeypatch.setenv("LATTICE_CACHE_DIR", str(tmp_path / "second-cache"))
    clear_registry_credentials()
    monkeypatch.setenv("LATTICE_OCI_USER", user)
    monkeypatch.setenv("LATTICE_OCI_PASSWORD", password)
    await lattice.start_actor(second, f"{addr}/private/echo:1.1")
