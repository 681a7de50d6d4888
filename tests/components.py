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
