"""`lattice keys gen` and `lattice claims sign|inspect`, driven through ``lattice.cli.main``."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
import wasmtime

from lattice import claims as wc
from lattice.cli import main
from lattice.cli._common import CliError
from lattice.cli.claims import parse_duration
from lattice.keys import KeyPair, KeyRole, decode_public_key

WAT = '(module (memory (export "memory") 1) (func (export "answer") (result i32) i32.const 42))'


@pytest.fixture
def keys_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys"
    monkeypatch.setenv("LATTICE_KEYS_DIR", str(path))
    return path


@pytest.fixture
def wat_file(tmp_path: Path) -> Path:
    path = tmp_path / "echo.wat"
    path.write_text(WAT)
    return path


@pytest.fixture
def wasm_file(tmp_path: Path) -> Path:
    path = tmp_path / "echo.wasm"
    path.write_bytes(wasmtime.wat2wasm(WAT))
    return path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "role", ["account", "module", "server", "service", "cluster", "operator", "user"]
)
def test_keys_gen_text(capsys: pytest.CaptureFixture[str], role: str) -> None:
    code, out, _ = _run(capsys, "keys", "gen", role)
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("Public Key: ") and lines[1].startswith("Seed: ")
    public, seed = lines[0].split(": ")[1], lines[1].split(": ")[1]
    expected = KeyRole.parse(role)
    assert KeyPair.from_seed(seed).public_key == public
    assert decode_public_key(public)[0] is expected


def test_keys_gen_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "keys", "gen", "module", "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"role", "public_key", "seed"}
    assert data["role"] == "module" and data["public_key"].startswith("M")
    assert KeyPair.from_seed(data["seed"]).public_key == data["public_key"]


@pytest.mark.parametrize("role", ["wizard", "curve"])
def test_keys_gen_bad_role(capsys: pytest.CaptureFixture[str], role: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["keys", "gen", role])
    assert info.value.code == 2
    assert "choose one of account" in capsys.readouterr().err


# --- claims sign --------------------------------------------------------------------------------


def test_sign_wat_generates_keys_and_writes_s_wasm(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wat_file: Path
) -> None:
    code, out, err = _run(capsys, "claims", "sign", str(wat_file), "--name", "echo",
                          "--cap", "wasmcloud:keyvalue", "--call-alias", "Demo/Echo")
    assert code == 0, err
    output = wat_file.with_name("echo_s.wasm")
    account_file, module_file = keys_dir / "echo_account.nk", keys_dir / "echo_module.nk"
    assert "generated account key A" in out and str(account_file) in out
    assert "generated module key M" in out and str(module_file) in out
    assert str(output) in out and "demo/echo" in out
    for path in (account_file, module_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    claims = wc.verify_module(output.read_bytes())
    assert claims.caps == ["wasmcloud:keyvalue"] and claims.call_alias == "demo/echo"
    assert claims.issuer == KeyPair.from_seed(account_file.read_text()).public_key
    assert claims.subject == KeyPair.from_seed(module_file.read_text()).public_key


def test_resign_reuses_keys_and_overwrites_wasm_in_place(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path
) -> None:
    assert _run(capsys, "claims", "sign", str(wasm_file), "-n", "echo")[0] == 0
    first = wc.verify_module(wasm_file.read_bytes())
    code, out, _ = _run(capsys, "claims", "sign", str(wasm_file), "-n", "echo", "--rev", "2",
                        "--ver", "0.2.0", "--tag", "x")
    assert code == 0
    assert "reused account key" in out and "reused module key" in out
    second = wc.verify_module(wasm_file.read_bytes())
    assert second.subject == first.subject and second.issuer == first.issuer
    assert (second.rev, second.ver, second.tags) == (2, "0.2.0", ["x"])
    assert len([s for s in wc.iter_sections(wasm_file.read_bytes())
                if s.name in wc.SECTION_NAMES]) == 1


def test_sign_with_explicit_seeds_and_seed_files(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path, tmp_path: Path
) -> None:
    account, module_key = KeyPair.generate(KeyRole.ACCOUNT), KeyPair.generate(KeyRole.MODULE)
    seed_file = tmp_path / "module.nk"
    seed_file.write_text(module_key.seed + "\n")
    out_file = tmp_path / "signed.wasm"
    code, out, err = _run(capsys, "claims", "sign", str(wasm_file), "-n", "echo", "--issuer",
                          account.seed, "--subject", str(seed_file), "-o", str(out_file))
    assert code == 0, err
    assert "generated" not in out and not keys_dir.exists()
    claims = wc.verify_module(out_file.read_bytes())
    assert (claims.issuer, claims.subject) == (account.public_key, module_key.public_key)
    assert wc.extract_claims(wasm_file.read_bytes()) is None  # input left alone


def test_sign_rejects_wrong_key_roles(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path
) -> None:
    module_seed = KeyPair.generate(KeyRole.MODULE).seed
    code, _, err = _run(capsys, "claims", "sign", str(wasm_file), "-n", "e", "--issuer",
                        module_seed)
    assert code == 1
    assert "--issuer: expected an account key (A…), got a module key (M…)" in err
    code, _, err = _run(capsys, "claims", "sign", str(wasm_file), "-n", "e", "--issuer", "nope")
    assert code == 1 and "neither a seed" in err
    public = KeyPair.generate(KeyRole.ACCOUNT).public_key
    code, _, err = _run(capsys, "claims", "sign", str(wasm_file), "-n", "e", "--issuer", public)
    assert code == 1 and "needs a seed (SA…), not a public key" in err


def test_sign_input_errors_leave_no_keys_behind(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path
) -> None:
    code, _, err = _run(capsys, "claims", "sign", str(wasm_file), "-n", "e", "--cap", "keyvalue")
    assert code == 1 and "did you mean 'wasmcloud:keyvalue'" in err
    code, _, err = _run(capsys, "claims", "sign", str(wasm_file), "-n", "e", "-a", "a$b")
    assert code == 1 and "may only contain" in err
    code, _, err = _run(capsys, "claims", "sign", str(wasm_file), "-n", "e", "--expires", "3x")
    assert code == 1 and "'3x' is not a duration" in err
    assert not keys_dir.exists()


def test_sign_missing_and_broken_files(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "claims", "sign", str(tmp_path / "none.wasm"), "-n", "e")
    assert code == 1 and "cannot read" in err
    bad_wat = tmp_path / "bad.wat"
    bad_wat.write_text("(module (func $x (unknown-op)))")
    code, _, err = _run(capsys, "claims", "sign", str(bad_wat), "-n", "e")
    assert code == 1 and "cannot compile" in err
    not_wasm = tmp_path / "x.wasm"
    not_wasm.write_text('{"json": true}')
    code, _, err = _run(capsys, "claims", "sign", str(not_wasm), "-n", "e")
    assert code == 1 and "not a WebAssembly binary" in err


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30d", 30 * 86400), ("12h", 43200), ("90m", 5400), ("3600s", 3600), ("7", 7 * 86400),
     ("2w", 14 * 86400), (" 1D ", 86400)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text, "--expires") == seconds


@pytest.mark.parametrize("text", ["", "d", "1.5h", "-1d", "3x", "1 day"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(CliError, match="is not a duration"):
        parse_duration(text, "--expires")


# --- claims inspect -----------------------------------------------------------------------------


def test_inspect_valid_module(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path
) -> None:
    _run(capsys, "claims", "sign", str(wasm_file), "-n", "echo", "-c", "wasmcloud:keyvalue",
         "-a", "demo/echo", "--rev", "3", "--ver", "1.0.0", "--expires", "30d")
    code, out, _ = _run(capsys, "claims", "inspect", str(wasm_file))
    assert code == 0
    for label in ("Issuer:", "Subject:", "Name:", "Capabilities:", "Tags:", "Call alias:",
                  "Revision:", "Version:", "Issued:", "Expires:", "Not before:", "Module hash:"):
        assert label in out
    assert "wasmcloud:keyvalue" in out and "demo/echo" in out and "1.0.0" in out
    assert "UTC" in out and "immediately" in out
    assert out.strip().splitlines()[-1].split() == ["Verdict:", "valid"]


def test_inspect_json(capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path) -> None:
    _run(capsys, "claims", "sign", str(wasm_file), "-n", "echo")
    code, out, _ = _run(capsys, "claims", "inspect", str(wasm_file), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["valid"] is True and data["verdict"] == "valid" and data["error"] is None
    assert data["claims"]["name"] == "echo"
    assert data["actual_hash"] == data["claims"]["module_hash"]


def test_inspect_unsigned_explains_how_to_sign(
    capsys: pytest.CaptureFixture[str], wasm_file: Path, wat_file: Path
) -> None:
    for path in (wasm_file, wat_file):
        code, out, _ = _run(capsys, "claims", "inspect", str(path))
        assert code == 1
        assert "carries no claims" in out and "lattice claims sign" in out
    code, out, _ = _run(capsys, "claims", "inspect", str(wasm_file), "--json")
    data = json.loads(out)
    assert code == 1 and data["error"]["code"] == "no-claims" and data["claims"] is None


def test_inspect_tampered_module_still_shows_claims(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path
) -> None:
    _run(capsys, "claims", "sign", str(wasm_file), "-n", "echo")
    wasm_file.write_bytes(wasm_file.read_bytes().replace(b"\x41\x2a\x0b", b"\x41\x2b\x0b"))
    code, out, _ = _run(capsys, "claims", "inspect", str(wasm_file))
    assert code == 1
    assert "Name:" in out and "echo" in out and "Actual hash:" in out
    assert "Verdict:" in out and "module hash mismatch" in out
    code, out, _ = _run(capsys, "claims", "inspect", str(wasm_file), "--json")
    assert json.loads(out)["error"]["code"] == "hash-mismatch"


def test_inspect_not_yet_valid(
    capsys: pytest.CaptureFixture[str], keys_dir: Path, wasm_file: Path
) -> None:
    _run(capsys, "claims", "sign", str(wasm_file), "-n", "echo", "--not-before", "1h")
    code, out, _ = _run(capsys, "claims", "inspect", str(wasm_file))
    assert code == 1 and "claims are not valid until" in out


def test_inspect_garbage(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "x.wasm"
    path.write_text('{"a": 1}')
    code, out, _ = _run(capsys, "claims", "inspect", str(path))
    assert code == 1 and "not a WebAssembly binary: file starts with 7b 22" in out
