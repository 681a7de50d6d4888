"""`lattice call --wasm`: the local runner, through the CLI entry point."""

from __future__ import annotations

import json

import wasmtime

from actors import ROOT as ACTORS
from lattice.claims import verify_module
from lattice.cli import main
from lattice.wasm import strip_custom_sections
from tests.actors import signed, wat

ECHO = str(ACTORS / "echo-wasmbus" / "echo.wasm")
REQUEST = '{"method": "GET", "path": "/hello", "queryString": "a=1", "body": "hi"}'


def test_bundled_echo_is_signed_and_matches_its_source():
    module = (ACTORS / "echo-wasmbus" / "echo.wasm").read_bytes()
    claims = verify_module(module)
    assert claims.name == "echo" and claims.caps == ["wasmcloud:httpserver"]
    source = wasmtime.wat2wasm((ACTORS / "echo-wasmbus" / "echo.wat").read_text())
    code = ("name", "jwt", "wasmcloud_jwt")
    assert strip_custom_sections(module, code) == strip_custom_sections(source, code), (
        "actors/echo-wasmbus/echo.wasm is stale: rebuild it as actors/echo-wasmbus/README.md says")


def test_call_prints_the_decoded_http_response(capsys):
    assert main(["call", "--wasm", ECHO, "HttpServer.HandleRequest", "--data", REQUEST]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["statusCode"] == 200
    assert json.loads(out["body"]) == {"body": [104, 105], "method": "GET", "path": "/hello",
                                       "query_string": "a=1"}


def test_call_json_output_names_the_actor(capsys, tmp_path):
    data = tmp_path / "req.json"
    data.write_text(REQUEST)
    assert main(["call", "--wasm", ECHO, "HttpServer.HandleRequest", "--data", f"@{data}",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["name"] == "echo" and doc["actor"].startswith("M")
    assert doc["operation"] == "HttpServer.HandleRequest"
    assert doc["result"]["statusCode"] == 200


def test_unsigned_wat_is_refused_without_the_development_flag(capsys):
    path = str(ACTORS / "echo-wasmbus" / "echo.wat")
    assert main(["call", "--wasm", path, "HttpServer.HandleRequest", "--data", REQUEST]) == 1
    err = capsys.readouterr().err
    assert "no claims" in err and "--allow-unsigned" in err and "lattice claims sign" in err
    assert main(["call", "--wasm", path, "HttpServer.HandleRequest", "--data", REQUEST,
                 "--allow-unsigned"]) == 0


def test_provider_calls_are_checked_against_claims_then_links(capsys, tmp_path):
    entitled = tmp_path / "kvcounter.wasm"
    entitled.write_bytes(signed("kvcounter", caps=["wasmcloud:httpserver", "wasmcloud:keyvalue"]))
    assert main(["call", "--wasm", str(entitled), "HttpServer.HandleRequest", "--data",
                 REQUEST]) == 1
    err = capsys.readouterr().err
    assert "no provider is linked for wasmcloud:keyvalue (link name default)" in err

    unentitled = tmp_path / "kvcounter_unpriv.wasm"
    unentitled.write_bytes(signed("kvcounter", caps=["wasmcloud:httpserver"]))
    assert main(["call", "--wasm", str(unentitled), "HttpServer.HandleRequest", "--data",
                 REQUEST]) == 1
    err = capsys.readouterr().err
    assert "Invocation not authorized: missing capability claim for wasmcloud:keyvalue" in err
    assert "--cap wasmcloud:keyvalue" in err


def test_bad_input_gets_a_clear_error(capsys):
    assert main(["call", "--wasm", ECHO, "HttpServer.HandleRequest", "--data", "{bad"]) == 1
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["call", "--wasm", ECHO, "HttpServer.HandleRequest", "--data",
                 '{"nope": 1}']) == 1
    assert "does not fit HttpServer.HandleRequest's input" in capsys.readouterr().err
    assert main(["call", "--wasm", ECHO, "NumberGen.Random32", "--data", '"x"']) == 1
    assert "takes no input" in capsys.readouterr().err
    assert main(["call", "--wasm", "/nonexistent.wasm", "HttpServer.HandleRequest",
                 "--data", REQUEST]) == 1
    assert "cannot read /nonexistent.wasm" in capsys.readouterr().err


def test_guest_failure_is_reported_with_its_kind(capsys, tmp_path):
    looping = tmp_path / "loop.wasm"
    looping.write_bytes(signed("loop"))
    assert main(["call", "--wasm", str(looping), "Loop", "--timeout", "0.5"]) == 1
    assert "(timeout)" in capsys.readouterr().err
    assert main(["call", "--wasm", str(looping), "Loop", "--timeout", "0.5", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["kind"] == "timeout"


def test_unknown_operation_is_sent_as_plain_msgpack(capsys, tmp_path):
    # An actor's own interface (not in docs/contracts.md): JSON in as msgpack, msgpack out as JSON.
    # misuse.wat answers "Ping" with the raw bytes "pong", which is not msgpack...
    misuse = tmp_path / "misuse.wasm"
    misuse.write_bytes(signed("misuse"))
    assert main(["call", "--wasm", str(misuse), "Ping", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["result"] == {"base64": "cG9uZw=="}


def test_missing_data_means_defaults_for_messages_and_an_error_for_scalars(capsys):
    assert main(["call", "--wasm", ECHO, "HttpServer.HandleRequest", "--json"]) == 0
    body = json.loads(json.loads(capsys.readouterr().out)["result"]["body"])
    assert body == {"body": [], "method": "GET", "path": "", "query_string": ""}
    assert main(["call", "--wasm", ECHO, "KeyValue.Get"]) == 1
    assert "KeyValue.Get needs --data" in capsys.readouterr().err


def test_wat_helper_compiles():
    assert wat("echo").startswith(b"\0asm")
