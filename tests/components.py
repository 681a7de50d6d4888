"""Build the test components in tests/actors/components/ (written straight against the WIT, no
SDK) with componentize-py, cached by source hash in the persistent test cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from actors import ROOT as ACTORS_ROOT

HERE = Path(__file__).resolve().parent / "actors" / "components"
WIT = ACTORS_ROOT / "wit"


def _cache() -> Path:
    return Path(os.environ["LATTICE_CACHE_DIR"]) / "test-components"


def build_raw(name: str) -> bytes:
    """The unsigned component for tests/actors/components/NAME (module ``guest``)."""
    src = HERE / name
    digest = hashlib.sha256()
    for path in sorted([*src.rglob("*.py"), *WIT.glob("*.wit")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    out = _cache() / f"{name}-{digest.hexdigest()[:20]}.wasm"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "c.wasm"
            cmd = [str(Path(sys.executable).with_name("componentize-py")), "-q", "-d", str(WIT),
                   "-w", "actor", "componentize", "-p", str(src), "guest", "-o", str(target)]
            subprocess.run(cmd, check=True, capture_output=True)
            os.replace(target, out)
    return out.read_bytes()


def lattice_build(actor: str, output: Path) -> Path:
    """``lattice build actors/ACTOR -o OUTPUT``, the CLI in a subprocess, as a user runs it.

    ``build_actor`` keeps unsigned components by source hash under ``$LATTICE_CACHE_DIR/builds``
    (the persistent test cache, see tests/conftest.py), so componentize-py runs only when the
    actor's sources changed; the signing keys are the session's ``$LATTICE_KEYS_DIR``. Writing
    to OUTPUT keeps the repo's ``actors/*/build`` untouched."""
    cmd = [sys.executable, "-m", "lattice", "build", str(ACTORS_ROOT / actor), "-o", str(output),
           "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise AssertionError(f"`lattice build actors/{actor}` failed ({done.returncode}):\n"
                             f"{done.stderr}{done.stdout}")
    assert done.stdout.strip() == str(output), done.stdout
    return output
