"""Reference parsing and the cache's verification (no services)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lattice.artifacts import (
    ArtifactCache,
    DigestMismatch,
    InvalidReference,
    LatticeRef,
    OciRef,
    is_remote_ref,
    lattice_ref,
    looks_like_oci,
    parse_lattice_ref,
    parse_oci_ref,
)
from lattice.artifacts.refs import check_tag, tag_key

HEX = "ab" * 32


def test_lattice_refs() -> None:
    assert parse_lattice_ref(f"lattice://sha256:{HEX}/echo.wasm") == LatticeRef(
        digest=f"sha256:{HEX}", name="echo.wasm")
    assert parse_lattice_ref(f"sha256:{HEX.upper()}") == LatticeRef(digest=f"sha256:{HEX}")
    assert parse_lattice_ref(HEX) == LatticeRef(digest=f"sha256:{HEX}")
    assert parse_lattice_ref("lattice://acme/echo:0.1.0") == LatticeRef(tag="acme/echo:0.1.0")
    assert str(parse_lattice_ref("echo:1")) == "lattice://echo:1"
    assert lattice_ref(HEX, "dir/my echo.wasm") == f"lattice://sha256:{HEX}/my_echo.wasm"
    assert tag_key("acme/echo:0.1.0") == "acme/echo/0.1.0"
    for bad in ("lattice://sha256:abc", "lattice://echo", "lattice://echo:..", "a:b:c",
                "lattice://sha256:1"):
        with pytest.raises(InvalidReference):
            parse_lattice_ref(bad)
    with pytest.raises(InvalidReference, match="NAME:VERSION"):
        check_tag("echo")


def test_oci_refs() -> None:
    assert parse_oci_ref("oci://127.0.0.1:5000/acme/echo:0.1") == OciRef(
        "127.0.0.1:5000", "acme/echo", "0.1")
    assert parse_oci_ref("localhost/echo") == OciRef("localhost", "echo", "latest")
    ref = parse_oci_ref(f"ghcr.io/acme/kv:1.0@sha256:{HEX}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        "ghcr.io", "acme/kv", "1.0", f"sha256:{HEX}")
    assert ref.reference == f"sha256:{HEX}" and not ref.loopback
    assert parse_oci_ref("oci://[::1]:5000/echo:1").loopback
    assert parse_oci_ref("127.0.0.1:5000/echo:1").host == "127.0.0.1"
    assert str(parse_oci_ref("127.0.0.1:5000/echo:1")) == "oci://127.0.0.1:5000/echo:1"
    for bad in ("oci://echo", "oci://h.io/Upper:1", "acme/echo:1", "oci://h.io/e:bad tag",
                f"oci://h.io/e@sha512:{HEX}"):
        with pytest.raises(InvalidReference):
            parse_oci_ref(bad)


def test_what_a_host_fetches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert looks_like_oci("127.0.0.1:5000/echo:1") and looks_like_oci("localhost/echo:1")
    assert not looks_like_oci("actors/echo.wasm") and not looks_like_oci("./a.b/echo.wasm")
    assert is_remote_ref(f"lattice://sha256:{HEX}") and is_remote_ref("oci://h.io/x:1")
    assert not is_remote_ref("file:///tmp/echo.wasm") and not is_remote_ref("kvmem")
    local = tmp_path / "build.d" / "echo.wasm"
    local.parent.mkdir()
    local.write_bytes(b"\0asm")
    monkeypatch.chdir(tmp_path)
    assert looks_like_oci("build.d/echo.wasm") and not is_remote_ref("build.d/echo.wasm")


def test_the_cache_verifies_content(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    data = b"\0asm\x01\0\0\0"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    fh, tmp = cache.temp_file()
    with fh:
        fh.write(b"something else")
    with pytest.raises(DigestMismatch, match="refusing it"):
        cache.store(tmp, digest, "echo.wasm", source="a test")
    assert not tmp.exists() and cache.lookup(digest) is None
    fh, tmp = cache.temp_file()
    with fh:
        fh.write(data)
    path = cache.store(tmp, digest, "", source="a test", fallback="echo")
    assert path.name == "echo.wasm" and path.read_bytes() == data
    assert cache.lookup(digest, "other.wasm") == path.parent / "other.wasm"
    path.write_bytes(b"\0asm garbage")  # altered on disk: dropped, not used
    (path.parent / "other.wasm").unlink()
    assert cache.lookup(digest) is None and not path.exists()
