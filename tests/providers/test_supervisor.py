"""Host-side provider supervision (docs/wire.md §7.1, 7.4, 7.5) and provider archives (§5.5),
against a real nats-server and real child processes."""

from __future__ import annotations

import asyncio
import gzip
import io
import os
import signal
import stat
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

import contracts
from contracts.keyvalue import GetResponse, SetRequest
from lattice import jwt, par
from lattice.connect import NatsOptions, connect
from lattice.host.providers import ProviderStartError, derived_key
from lattice.keys import KeyPair, KeyRole
from lattice.natsd import NatsServer, free_port
from lattice.rpc import RpcError
from tests.providers.conftest import (
    KV,
    Lattice,
    alive,
    close_lattice,
    eventually,
    make_lattice,
    new_actor,
)

KVMEM = derived_key(b"kvmem").public_key
REPO = Path(__file__).resolve().parents[2]


async def served(lat: Lattice, actor: str, key: str = KVMEM, link_name: str = "default"
                 ) -> bool:
    await lat.kv(actor, key, "KeyValue.Contains", "probe", link_name=link_name, timeout=0.5)
    return True


def kvmem_script(path: Path) -> Path:
    """A tiny executable provider: a shell script that execs the kvmem package."""
    path.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m providers.kvmem "$@"\n')
    path.chmod(0o755)
    return path


async def test_start_and_stop_publish_events_with_the_right_fields(lattice: Lattice) -> None:
    lat = lattice
    actor = new_actor()
    lat.link(actor, KVMEM)
    info = await lat.sup.start("providers.kvmem", annotations={"app": "demo"})
    assert info.public_key == KVMEM  # every host derives the same key from the name
    assert (info.contract_id, info.name, info.link_name) == (KV, "kvmem", "default")
    assert info.state == "running" and not info.embedded and info.restarts == 0
    assert info.pid is not None and alive(info.pid)
    assert info.claims == {"call_alias": "", "caps": "", "contract_id": KV, "iss": "",
                           "name": "kvmem", "rev": "0", "sub": KVMEM, "tags": "",
                           "version": ""}

    started = (await lat.wait_event("provider_started"))["data"]
    assert started == {"public_key": KVMEM, "image_ref": "providers.kvmem",
                       "link_name": "default", "contract_id": KV,
                       "instance_id": info.instance_id, "annotations": {"app": "demo"},
                       "claims": started["claims"]}
    assert started["claims"]["name"] == "kvmem"
    passed = await lat.wait_event("health_check_passed")
    assert passed["data"] == {"public_key": KVMEM, "contract_id": KV, "link_name": "default"}
    assert passed["source"] == lat.host.public_key
    await lat.wait_event("health_check_status")  # later checks while still healthy
    assert [p.state for p in lat.sup.list()] == ["running"]
    assert await served(lat, actor)

    assert await lat.sup.stop(KVMEM, "default") is True
    stopped = (await lat.wait_event("provider_stopped"))["data"]
    assert stopped == {"public_key": KVMEM, "link_name": "default", "contract_id": KV,
                       "instance_id": info.instance_id, "annotations": {"app": "demo"},
                       "reason": "normal"}
    assert not alive(info.pid)
    assert lat.sup.list() == []
    assert await lat.sup.stop(KVMEM, "default") is False


async def test_a_killed_provider_is_restarted_with_current_links(lattice: Lattice) -> None:
    lat = lattice
    first, second = new_actor(), new_actor()
    lat.link(first, KVMEM)
    info = await lat.sup.start("kvmem")
    assert await served(lat, first)
    lat.link(second, KVMEM)  # known to the host only: must arrive through the new HostData

    os.kill(info.pid, signal.SIGKILL)
    stopped = await lat.wait_event("provider_stopped")
    assert stopped["data"]["reason"] == "killed by signal SIGKILL"
    await eventually(lambda: served(lat, second), timeout=5)
    assert await served(lat, first)
    # It may answer a moment before the supervisor's readiness probe marks it running.
    await eventually(lambda: [(p.restarts, p.state) for p in lat.sup.list()] == [(1, "running")])
    [now] = lat.sup.list()
    assert now.pid != info.pid and now.instance_id != info.instance_id
    assert not alive(info.pid)
    await lat.wait_event("provider_started", where=lambda d: d["instance_id"] == now.instance_id)


async def test_second_start_of_the_same_key_and_link_is_refused(lattice: Lattice) -> None:
    lat = lattice
    await lat.sup.start("kvmem")
    with pytest.raises(ProviderStartError, match="already running on this host"):
        await lat.sup.start("kvmem")
    failed = (await lat.wait_event("provider_start_failed"))["data"]
    assert failed["provider_ref"] == "kvmem" and failed["link_name"] == "default"
    assert "already running" in failed["error"]
    assert len(lat.sup.list()) == 1


async def test_unknown_refs_fail_with_clear_errors(lattice: Lattice, tmp_path: Path) -> None:
    lat = lattice
    with pytest.raises(ProviderStartError, match=r"no provider named 'nosuch'.*kvmem"):
        await lat.sup.start("nosuch")
    with pytest.raises(ProviderStartError, match=r"cannot reach the OCI registry 127\.0\.0\.1:"):
        await lat.sup.start(f"127.0.0.1:{free_port()}/acme/kv:1.0")
    script = kvmem_script(tmp_path / "kv.sh")
    with pytest.raises(ProviderStartError, match="needs its contract id"):
        await lat.sup.start(str(script))
    with pytest.raises(ProviderStartError, match="cannot run embedded"):
        await lat.sup.start(str(script), contract_id=KV, embedded=True)
    crasher = tmp_path / "crash.sh"
    crasher.write_text("#!/bin/sh\necho 'cannot open the database' >&2\nexit 3\n")
    crasher.chmod(0o755)
    with pytest.raises(ProviderStartError) as err:
        await lat.sup.start(str(crasher), contract_id=KV)
    assert "exited with status 3 before it was ready" in err.value.message
    assert "cannot open the database" in err.value.message
    await eventually(lambda: len([e for e in lat.events
                                  if e["type"].endswith("provider_start_failed")]) == 5)
    assert lat.sup.list() == []


async def test_an_executable_path_gets_a_key_from_its_content(lattice: Lattice,
                                                              tmp_path: Path) -> None:
    lat = lattice
    script = kvmem_script(tmp_path / "kv.sh")
    key = derived_key(script.read_bytes()).public_key
    actor = new_actor()
    lat.link(actor, key)
    info = await lat.sup.start(f"file://{script}", contract_id=KV)
    assert info.public_key == key and info.name == "kv.sh"
    await lat.kv(actor, key, "KeyValue.Set", SetRequest("k", "v"))
    assert await lat.kv(actor, key, "KeyValue.Get", "k") == GetResponse("v", True)


async def test_embedded_provider_serves_dispatch_and_nats(lattice: Lattice) -> None:
    lat = lattice
    actor = new_actor()
    link = lat.link(actor, KVMEM)
    info = await lat.sup.start("kvmem", embedded=True)
    assert info.embedded and info.pid is None and info.state == "running"
    bridge = lat.sup.embedded(KVMEM, "default")
    assert bridge is not None and actor in bridge.links
    assert lat.sup.embedded(KVMEM, "other") is None

    set_op = contracts.operation("KeyValue.Set")
    await bridge.dispatch(actor, "KeyValue.Set", set_op.encode_input(SetRequest("k", "local")),
                          link=link)
    # The rest of the lattice reaches the same instance over NATS.
    assert await lat.kv(actor, KVMEM, "KeyValue.Get", "k") == GetResponse("local", True)
    await lat.wait_event("health_check_passed")

    assert await lat.sup.stop(KVMEM, "default")
    assert bridge.stopped and lat.sup.embedded(KVMEM, "default") is None
    assert not lat.nc.is_closed
    with pytest.raises(RpcError, match="not running"):
        await lat.kv(actor, KVMEM, "KeyValue.Get", "k")


async def test_providers_ride_out_a_nats_restart(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats").start()
    try:
        nc = await connect(NatsOptions(url=server.url), name="test host")
        lat = await make_lattice(nc, server.url, tmp_path / "state")
        try:
            actor = new_actor()
            lat.link(actor, KVMEM)
            process = await lat.sup.start("kvmem")
            await lat.sup.start("kvmem", "embedded", embedded=True)
            lat.link(actor, KVMEM, link_name="embedded")
            await lat.sup.link_put(lat.links[-1])
            await lat.kv(actor, KVMEM, "KeyValue.Set", SetRequest("k", "kept"))
            await asyncio.to_thread(server.restart)
            await eventually(lambda: served(lat, actor), timeout=10)
            await eventually(lambda: served(lat, actor, link_name="embedded"), timeout=10)
            # The same process reconnected: no restart, its data is still there.
            assert await lat.kv(actor, KVMEM, "KeyValue.Get", "k") == GetResponse("kept", True)
            now = {p.link_name: p for p in lat.sup.list()}
            assert now["default"].pid == process.pid and now["default"].restarts == 0
            await eventually(lambda: {p.state for p in lat.sup.list()} == {"running"})
        finally:
            await close_lattice(lat)
    finally:
        server.kill()


# ---- provider archives --------------------------------------------------------------------------


def build_kvmem_par(tmp_path: Path, *, compress: bool = False) -> tuple[Path, KeyPair, KeyPair]:
    issuer = KeyPair.generate(KeyRole.ACCOUNT)
    subject = KeyPair.generate(KeyRole.SERVICE)
    binary = kvmem_script(tmp_path / "kvmem.sh").read_bytes()
    path = tmp_path / ("kvmem.par.gz" if compress else "kvmem.par")
    par.build_par(path, binaries={par.current_target(): binary, "aarch64-macos": b"other"},
                  issuer=issuer, subject=subject, name="KV in memory", capid=KV,
                  vendor="lattice", rev=3, ver="0.1.0", compress=compress)
    return path, issuer, subject


async def test_a_par_archive_is_verified_extracted_and_run(lattice: Lattice,
                                                           tmp_path: Path) -> None:
    lat = lattice
    path, issuer, subject = build_kvmem_par(tmp_path, compress=True)
    actor = new_actor()
    lat.link(actor, subject.public_key)
    info = await lat.sup.start(f"file://{path}")
    assert info.public_key == subject.public_key and info.contract_id == KV
    assert info.name == "KV in memory" and info.revision == 3
    assert info.claims["iss"] == issuer.public_key and info.claims["rev"] == "3"
    assert info.claims["version"] == "0.1.0" and info.claims["sub"] == subject.public_key
    cached = (lat.state_dir / "wasmcloudcache" / subject.public_key / "3"
              / "wasmcloud_keyvalue_default")
    assert cached.is_file() and stat.S_IMODE(cached.stat().st_mode) == 0o755
    await lat.kv(actor, subject.public_key, "KeyValue.Set", SetRequest("k", "par"))
    assert await lat.kv(actor, subject.public_key, "KeyValue.Get", "k") == GetResponse("par",
                                                                                       True)
    started = (await lat.wait_event("provider_started"))["data"]
    assert started["claims"]["issuer"] == issuer.public_key


def _rewrite_tar(src: Path, dst: Path, change: dict[str, bytes]) -> None:
    out = io.BytesIO()
    with tarfile.open(src) as old, tarfile.open(fileobj=out, mode="w:") as new:
        for member in old:
            handle = old.extractfile(member)
            data = change.get(member.name, handle.read() if handle else b"")
            member.size = len(data)
            new.addfile(member, io.BytesIO(data))
    dst.write_bytes(out.getvalue())


async def test_a_tampered_par_is_refused(lattice: Lattice, tmp_path: Path) -> None:
    lat = lattice
    path, _, _ = build_kvmem_par(tmp_path)
    target = par.current_target()
    swapped = tmp_path / "swapped.par"
    _rewrite_tar(path, swapped, {f"{target}.bin": b"#!/bin/sh\necho evil\n"})
    with pytest.raises(ProviderStartError, match=f"binary for {target} does not match"):
        await lat.sup.start(str(swapped))

    token = par.read_par(path).token
    head, body, sig = token.split(".")
    claims = jwt.b64url_decode(body).replace(b"KV in memory", b"KV in mem0ry")
    forged = tmp_path / "forged.par"
    _rewrite_tar(path, forged, {"claims.jwt": f"{head}.{jwt.b64url_encode(claims)}.{sig}"
                                .encode()})
    with pytest.raises(ProviderStartError, match="not validly signed"):
        await lat.sup.start(str(forged))

    def refs() -> list[str]:
        return [e["data"]["provider_ref"] for e in lat.events
                if e["type"].endswith("provider_start_failed")]

    await eventually(lambda: refs() == [str(swapped), str(forged)])
    assert lat.sup.list() == []
    assert not (lat.state_dir / "wasmcloudcache").exists()  # nothing unverified was written


def test_par_reading_and_extraction(tmp_path: Path) -> None:
    path, issuer, subject = build_kvmem_par(tmp_path)
    archive = par.read_par(path)
    assert archive.public_key == subject.public_key and archive.issuer == issuer.public_key
    assert (archive.capid, archive.vendor, archive.rev, archive.ver) == (KV, "lattice", 3,
                                                                         "0.1.0")
    assert archive.targets == sorted([par.current_target(), "aarch64-macos"])
    gz = tmp_path / "again.par.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert par.read_par(gz).binaries == archive.binaries

    first = par.extract(archive, tmp_path / "cache", link_name="Blue Link")
    assert first.name == "wasmcloud_keyvalue_blue_link"
    mtime = first.stat().st_mtime_ns
    assert par.extract(archive, tmp_path / "cache", link_name="Blue Link") == first
    assert first.stat().st_mtime_ns == mtime  # not rewritten when present
    with pytest.raises(par.ParError, match="has no binary for riscv64-plan9"):
        par.extract(archive, tmp_path / "cache", target="riscv64-plan9")

    (tmp_path / "junk.par").write_bytes(b"not a tar at all" * 40)
    with pytest.raises(par.ParError, match="not a provider archive"):
        par.read_par(tmp_path / "junk.par")
    assert par.current_target().count("-") == 1


# ---- no child outlives the host -----------------------------------------------------------------


def _children_running_kvmem() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and b"providers.kvmem" in cmdline and fields[0] != "Z":
            found.append(int(entry.name))
    return found


async def test_stop_all_leaves_no_child_process(lattice: Lattice) -> None:
    lat = lattice
    a = await lat.sup.start("kvmem")
    b = await lat.sup.start("kvmem", "second")
    await lat.sup.start("kvmem", "third", embedded=True)
    assert a.public_key == b.public_key and a.pid != b.pid
    assert sorted(_children_running_kvmem()) == sorted([a.pid, b.pid])
    await lat.sup.stop_all()
    assert lat.sup.list() == []
    assert _children_running_kvmem() == []

    def reasons() -> list[str]:
        return [e["data"]["reason"] for e in lat.events
                if e["type"].endswith("provider_stopped")]

    await eventually(lambda: reasons() == ["normal"] * 3)


HOST_SCRIPT = textwrap.dedent("""
    import asyncio, sys, tempfile
    from pathlib import Path
    import nats
    from lattice.connect import NatsOptions
    from lattice.host.events import EventPublisher
    from lattice.host.providers import ProviderSupervisor
    from lattice.keys import KeyPair, KeyRole

    async def main():
        nc = await nats.connect(sys.argv[1])
        cluster, host = KeyPair.generate(KeyRole.CLUSTER), KeyPair.generate(KeyRole.SERVER)
        sup = ProviderSupervisor(
            nc=nc, lattice="orphans", host_id=host.public_key, cluster_seed=cluster.seed,
            cluster_issuers=[cluster.public_key], nats=NatsOptions(url=sys.argv[1]),
            events=EventPublisher(nc, "orphans", host.public_key), links_for=lambda k, l: [],
            state_dir=Path(tempfile.mkdtemp()))
        info = await sup.start("kvmem")
        print(info.pid, flush=True)
        await asyncio.sleep(60)

    asyncio.run(main())
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
async def test_a_sigkilled_host_leaves_no_orphan(nats_server: object, tmp_path: Path) -> None:
    script = tmp_path / "host.py"
    script.write_text(HOST_SCRIPT)
    host = await asyncio.create_subprocess_exec(
        sys.executable, str(script), nats_server.url,  # type: ignore[attr-defined]
        stdout=subprocess.PIPE, cwd=REPO, start_new_session=True)
    child = 0
    try:
        assert host.stdout is not None
        child = int(await asyncio.wait_for(host.stdout.readline(), 20))
        assert alive(child)
        host.kill()  # SIGKILL: no cleanup code runs in the host
        await host.wait()
        await eventually(lambda: not alive(child), timeout=5)
    finally:
        if host.returncode is None:
            host.kill()
            await host.wait()
        if child and alive(child):
            os.kill(child, signal.SIGKILL)
