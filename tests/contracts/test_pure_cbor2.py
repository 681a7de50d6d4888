"""Python actors decode sqldb rows with cbor2's pure-Python codec (no C extension in wasm):
contracts.sqldb must work with it exactly as with the C one."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["_cbor2"] = None  # as inside a component: the C extension cannot load
import cbor2
assert not hasattr(cbor2, "break_marker"), "the C extension loaded after all"
from contracts.sqldb import decode_rows, has_break
assert decode_rows(cbor2.dumps([[1, "a", None]])) == [[1, "a", None]]
assert has_break(cbor2.loads(b"\\xff")) and has_break(cbor2.loads(b"\\x81\\xff"))
try:
    decode_rows(b"\\x81\\xff")
except Exception as exc:
    assert "invalid CBOR" in str(exc), exc
else:
    raise AssertionError("a stray break was accepted")
print("ok")
"""


def test_sqldb_rows_with_the_pure_python_cbor2() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
