"""`lattice call --wasm` on Python actors, through the CLI entry point, as the actors' READMEs
show it: the component built by `lattice build` runs in an in-process host and the decoded
result is printed.

echo answers HttpServer.HandleRequest (a contract operation: --data is the typed HttpRequest);
ponger answers Pingpong.Ping (its own interface: --data is a JSON value sent as msgpack);
pinger reaches ponger by call alias when ponger is started next to it with --with.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lattice.cli import main
from tests.components import lattice_build

# A cold cache builds three actors with componentize-py and compiles them (~20 s each here).
pytestmark = pytest.mark.timeout(600)

ECHO_REQUEST = '{"method": "GET", "path": "/hi", "queryString": "a=1", "body": "yo"}'


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """echo, ponger, pinger and kvcounter built by `lattice build` (cached by source hash)."""
    out = tmp_path_factory.mktemp("call-wasm")
    return {name: str(lattice_build(name, out / f"{name}_s.wasm"))
            for name in ("echo", "ponger", "pinger", "kvcounter")}


def call(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["call", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_echo_prints_the_decoded_http_response(built, capsys) -> None:
    code, out, err = call(capsys, "--wasm", built["echo"], "HttpServer.HandleRequest",
                          "--data", ECHO_REQUEST)
    assert code == 0, err
    response = json.loads(out)
    assert response["statusCode"] == 200
    assert response["header"]["content-type"] == ["application/json"]
    assert json.loads(response["body"]) == {"method": "GET", "path": "/hi", "query": {"a": "1"},
                                            "headers": {}, "body": "yo"}


def test_echo_json_output_from_a_data_file(built, capsys, tmp_path: Path) -> None:
    data = tmp_path / "req.json"
    data.write_text(json.dumps({"method": "POST", "path": "/x", "body": "ünïcode",
                                "header": {"x-a": ["1"]}}))
    code, out, err = call(capsys, "--wasm", built["echo"], "HttpServer.HandleRequest",
                          "--data", f"@{data}", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["name"] == "echo" and doc["actor"].startswith("M")
    assert doc["operation"] == "HttpServer.HandleRequest"
    assert json.loads(doc["result"]["body"]) == {
        "method": "POST", "path": "/x", "query": {}, "headers": {"x-a": "1"}, "body": "ünïcode"}


def test_ponger_takes_typed_json_input(built, capsys) -> None:
    code, out, err = call(capsys, "--wasm", built["ponger"], "Pingpong.Ping",
                          "--data", '{"from": "me", "n": 5}')
    assert code == 0, err
    assert json.loads(out) == {"pong": 6, "to": "me", "by": "ponger"}


def test_pinger_reaches_ponger_by_call_alias_with_with(built, capsys) -> None:
    request = '{"method": "GET", "path": "/ping", "queryString": "n=41"}'
    code, out, err = call(capsys, "--wasm", built["pinger"], "--with", built["ponger"],
                          "HttpServer.HandleRequest", "--data", request)
    assert code == 0, err
    response = json.loads(out)
    assert response["statusCode"] == 200, response
    assert json.loads(response["body"]) == {
        "sent": 41, "reply": {"pong": 42, "to": "pinger", "by": "ponger"}}

    # Without ponger, the host's reason reaches pinger, which answers 502 with it.
    code, out, err = call(capsys, "--wasm", built["pinger"], "HttpServer.HandleRequest",
                          "--data", request)
    assert code == 0, err
    response = json.loads(out)
    assert response["statusCode"] == 502 and "ponger did not answer" in response["body"]


def test_bad_input_gets_a_clear_error(built, capsys) -> None:
    # Input the actor itself refuses: its own error text, and exit status 1.
    code, out, err = call(capsys, "--wasm", built["ponger"], "Pingpong.Ping", "--data", '"nope"')
    assert (code, out) == (1, "")
    *log, last = err.strip().splitlines()
    assert last == ('error: Pingpong.Ping failed (guest): Pingpong.Ping wants a map '
                    '{"from": str, "n": int}')
    # before it, the actor's own traceback (its stderr) points at the line that raised
    assert any("app.py" in line and "in ping" in line for line in log), err

    # ... and the same as JSON with --json.
    code, out, err = call(capsys, "--wasm", built["ponger"], "Pingpong.Ping", "--data", '[1]',
                          "--json")
    assert code == 1
    doc = json.loads(out)
    assert doc["name"] == "ponger" and doc["kind"] == "guest"
    assert "Pingpong.Ping wants a map" in doc["error"]

    # Input that does not fit the contract's message never reaches the actor.
    code, out, err = call(capsys, "--wasm", built["echo"], "HttpServer.HandleRequest",
                          "--data", '{"nope": 1}')
    assert (code, out) == (1, "")
    assert "error: --data does not fit HttpServer.HandleRequest's input" in err

    code, out, err = call(capsys, "--wasm", built["echo"], "HttpServer.HandleRequest",
                          "--data", "{bad")
    assert (code, out) == (1, "")
    assert "error: --data is not valid JSON" in err


def test_a_capability_without_a_provider_is_named(built, capsys) -> None:
    # kvcounter is signed for wasmcloud:keyvalue, but providers come with a lattice.
    code, out, err = call(capsys, "--wasm", built["kvcounter"], "HttpServer.HandleRequest",
                          "--data", '{"path": "/counter"}')
    assert (code, out) == (1, "")
    assert "no provider is linked for wasmcloud:keyvalue (link name default)" in err


def test_a_missing_file_is_reported(capsys, tmp_path: Path) -> None:
    missing = tmp_path / "nope_s.wasm"
    code, out, err = call(capsys, "--wasm", str(missing), "HttpServer.HandleRequest")
    assert (code, out) == (1, "")
    assert err.startswith("error: ") and str(missing) in err
