"""The networked commands against a stand-in host on real NATS, and their pure parts (argument
checks, name resolution, tables). The real-host tests are in test_ctl_cli.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors import ROOT as ACTORS
from lattice.cli import build_parser, main
from lattice.cli._common import CliError, parse_pairs, resolve_claim, table
from lattice.cli.actor import file_ref, local_actor
from lattice.cli.host import host_config
from lattice.keys import KeyPair, KeyRole
from tests.cli.conftest import ACTOR_KEY, CLAIMS, HOST_ID, PROVIDER_KEY

ECHO = ACTORS / "echo-wasmbus" / "echo.wasm"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def url(nats_server, threaded_responder) -> str:
    return nats_server.url


def test_get_hosts_inventory_links_claims(capsys, url):
    code, out, _ = run(capsys, "get", "hosts", "--nats-url", url, "--wait", "0.3")
    assert code == 0 and HOST_ID in out and "calm-lake-7" in out and "zone=eu" in out
    assert "hostcore.os" not in out  # built-in labels are noise in the table
    code, out, _ = run(capsys, "get", "hosts", "--nats-url", url, "--wait", "0.3", "--json")
    assert json.loads(out)[0]["id"] == HOST_ID
    code, out, _ = run(capsys, "get", "inventory", "calm-lake-7", "--nats-url", url)
    assert code == 0 and f"Host {HOST_ID} (calm-lake-7)" in out
    assert ACTOR_KEY in out and "echo" in out and PROVIDER_KEY in out
    code, out, _ = run(capsys, "get", "inventory", "--nats-url", url, "--json")
    (inv,) = json.loads(out)
    assert len(inv["actors"][0]["instances"]) == 2
    code, out, _ = run(capsys, "get", "links", "--nats-url", url)
    assert ACTOR_KEY in out and "wasmcloud:keyvalue" in out and "BUCKET=demo" in out
    code, out, _ = run(capsys, "get", "claims", "--nats-url", url)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["NAME", "PUBLIC", "KEY"]
    assert any(line.startswith("echo") and "demo/echo" in line for line in lines)
    assert any(line.startswith("kvmem") and "provider" in line for line in lines)


def test_unknown_host_lists_the_running_ones(capsys, url):
    code, _, err = run(capsys, "get", "inventory", "nope", "--nats-url", url)
    assert code == 1 and "no host 'nope'" in err and HOST_ID in err


def test_link_put_and_del_by_claims_name(capsys, url, threaded_responder):
    code, out, _ = run(capsys, "link", "put", "echo", "kvmem", "wasmcloud:keyvalue", "A=1",
                       "B=x=y", "--link-name", "l2", "--nats-url", url)
    assert code == 0 and "Linked actor" in out
    assert threaded_responder.bodies("linkdefs.put") == [
        {"actor_id": ACTOR_KEY, "provider_id": PROVIDER_KEY, "contract_id": "wasmcloud:keyvalue",
         "link_name": "l2", "values": {"A": "1", "B": "x=y"}}]
    code, out, _ = run(capsys, "link", "del", "demo/echo", "wasmcloud:keyvalue", "--nats-url",
                       url, "--json")
    assert code == 0 and json.loads(out)["actor_id"] == ACTOR_KEY
    code, _, err = run(capsys, "link", "put", "echo", "redis", "wasmcloud:keyvalue",
                       "--nats-url", url)
    assert code == 1 and "no provider named 'redis'" in err and "kvmem" in err


def test_start_actor_auctions_and_sends_an_absolute_file_url(capsys, url, threaded_responder,
                                                             monkeypatch):
    monkeypatch.chdir(ECHO.parent)
    code, out, _ = run(capsys, "start", "actor", "echo.wasm", "--constraint", "zone=eu",
                       "--count", "2", "--wait", "0", "--nats-url", url)
    assert code == 0 and "accepted to start actor echo" in out
    (body,) = threaded_responder.bodies(f"cmd.{HOST_ID}.la")
    # a local path is uploaded into the lattice's object store; hosts fetch it by digest
    assert body["actor_ref"].startswith("lattice://sha256:") and \
        body["actor_ref"].endswith("/echo.wasm") and body["count"] == 2
    code, _, err = run(capsys, "start", "actor", str(ECHO), "--constraint", "zone=us",
                       "--nats-url", url)
    assert code == 1 and "no host with labels zone=us" in err and "--host-id" in err


def test_refusals_and_missing_files_are_reported(capsys, url, threaded_responder):
    threaded_responder.refuse = "provider kvmem with link name default already runs"
    code, _, err = run(capsys, "start", "provider", "kvmem", "--host-id", HOST_ID,
                       "--nats-url", url)
    assert code == 1 and "already runs" in err
    code, _, err = run(capsys, "start", "actor", "missing.wasm", "--nats-url", url)
    assert code == 1 and "missing.wasm does not exist" in err


def test_no_nats_and_no_hosts(capsys, nats_server):
    code, _, err = run(capsys, "get", "hosts", "--nats-url", "nats://127.0.0.1:1")
    assert code == 1 and "cannot connect to NATS" in err and "lattice up" in err
    code, out, err = run(capsys, "get", "hosts", "--nats-url", nats_server.url)
    assert code == 0 and out == "" and "no hosts on lattice default" in err
    code, _, err = run(capsys, "stop", "actor", "echo", "--nats-url", nats_server.url)
    assert code == 1 and "is a host running?" in err


def test_call_needs_exactly_one_form(capsys):
    code, _, err = run(capsys, "call", "--wasm", str(ECHO), "echo", "Op")
    assert code == 1 and "with --wasm give only the OPERATION" in err
    code, _, err = run(capsys, "call", "Op")
    assert code == 1 and "lattice call ACTOR OPERATION" in err
    code, _, err = run(capsys, "call", "echo", "Op", "--allow-unsigned")
    assert code == 1 and "--allow-unsigned only apply to a local run" in err


def test_down_when_nothing_runs(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("LATTICE_STATE_DIR", str(tmp_path))
    code, out, _ = run(capsys, "down")
    assert code == 0 and "Nothing to stop" in out


def test_host_options_become_a_host_config(monkeypatch):
    monkeypatch.setenv("LATTICE_CLUSTER_ISSUERS", "")
    seed = KeyPair.generate(KeyRole.CLUSTER)
    issuer = KeyPair.generate(KeyRole.CLUSTER).public_key
    args = build_parser().parse_args([
        "host", "--nats-url", "nats://h:1", "--lattice", "blue", "--label", "zone=eu",
        "--cluster-seed", seed.seed, "--cluster-issuer", issuer, "--rpc-timeout", "5",
        "--heartbeat", "2", "--allow-unsigned"])
    config = host_config(args)
    assert config.nats.url == "nats://h:1" and config.lattice == "blue"
    assert config.labels == {"zone": "eu"} and config.cluster_issuers == [issuer]
    assert config.cluster_seed == seed.seed and config.allow_unsigned
    assert (config.rpc_timeout, config.heartbeat_interval) == (5.0, 2.0)
    bad = build_parser().parse_args(["host", "--host-seed", seed.seed])
    with pytest.raises(CliError, match="--host-seed must be a server seed"):
        host_config(bad)
    bad = build_parser().parse_args(["host", "--lattice", "a.b"])
    with pytest.raises(CliError, match="--lattice"):
        host_config(bad)


def test_name_resolution():
    assert resolve_claim(CLAIMS, ACTOR_KEY, "actor") == ACTOR_KEY
    assert resolve_claim(CLAIMS, "echo", "actor") == ACTOR_KEY
    assert resolve_claim(CLAIMS, "demo/echo", "actor") == ACTOR_KEY
    assert resolve_claim(CLAIMS, "kvmem", "provider") == PROVIDER_KEY
    with pytest.raises(CliError, match=r"no actor named 'kvmem'.*echo"):
        resolve_claim(CLAIMS, "kvmem", "actor")
    twin = {**CLAIMS[0], "sub": KeyPair.generate(KeyRole.MODULE).public_key}
    with pytest.raises(CliError, match="several actors are named 'echo'"):
        resolve_claim([*CLAIMS, twin], "echo", "actor")


def test_pure_helpers(tmp_path):
    assert parse_pairs(["a=1", "b="], "--label") == {"a": "1", "b": ""}
    with pytest.raises(CliError, match="--label takes KEY=VALUE"):
        parse_pairs(["a"], "--label")
    assert table(["A", "BB"], [["xyz", "1"]]) == "A    BB\nxyz  1"
    ref, path = file_ref(str(ECHO), suffixes=(".wasm",))
    assert ref == f"file://{ECHO.resolve()}" and path == ECHO
    assert file_ref("ghcr.io/acme/echo:0.1", suffixes=(".wasm",)) == ("ghcr.io/acme/echo:0.1",
                                                                       None)
    with pytest.raises(CliError):
        file_ref(f"file://{tmp_path}/nope.wasm", suffixes=(".wasm",))
    local = local_actor(ECHO)
    assert local.name == "echo" and local.key.startswith("M")
    assert local_actor(Path(ACTORS / "echo-wasmbus" / "echo.wat")).key == ""


def test_a_host_that_never_reports_shows_progress_then_advice(capsys, url):
    code, _, err = run(capsys, "start", "actor", str(ECHO), "--host-id", HOST_ID, "--wait",
                       "2.3", "--nats-url", url)
    assert code == 1
    assert f"waiting for host {HOST_ID[:8]}… (calm-lake-7) to start actor echo (2 s)" in err
    assert "accepted the command but reported no outcome within 2.3 s" in err
    assert "--wait" in err


# --- input that used to end in a traceback or a silent mistake -----------------------------------


def test_data_with_a_lone_surrogate_is_a_clear_error(capsys):
    code, out, err = run(capsys, "call", "--wasm", str(ECHO), "HttpServer.HandleRequest",
                         "--data", '{"path": "\\ud800"}')
    assert code != 0 and out == ""
    assert "not valid Unicode ('\\ud800')" in err and "Traceback" not in err


def test_data_file_that_is_not_utf8_is_a_clear_error(capsys, tmp_path: Path):
    bad = tmp_path / "req.json"
    bad.write_bytes(b'{"path": "/\xff"}')
    code, _, err = run(capsys, "call", "--wasm", str(ECHO), "HttpServer.HandleRequest",
                       "--data", f"@{bad}")
    assert code != 0
    assert f"--data file {bad} is not UTF-8 text (byte 11)" in err and "Traceback" not in err


def test_claims_sign_refuses_a_zero_lifetime(capsys, tmp_path: Path):
    out_file = tmp_path / "signed.wasm"
    code, _, err = run(capsys, "claims", "sign", str(ECHO), "--name", "e", "--expires", "0s",
                       "-o", str(out_file))
    assert code != 0
    assert "would sign claims that have already expired" in err
    assert not out_file.exists()


def test_host_limits_and_backoff_flags_reach_the_config():
    args = build_parser().parse_args(["host", "--memory-limit", "16", "--component-memory-limit",
                                      "200", "--max-instances", "10", "--retry-backoff", "0.5",
                                      "--retry-backoff-max", "5"])
    config = host_config(args)
    assert config.runtime.memory_limit == 16 << 20
    assert config.runtime.component_memory_limit == 200 << 20
    assert (config.max_instances, config.retry_backoff, config.retry_backoff_max) == (10, 0.5, 5)
    with pytest.raises(CliError, match="--max-instances must be a whole number of at least 1"):
        host_config(build_parser().parse_args(["host", "--max-instances", "0"]))
