"""Cheap generators of bad input for the fuzz tests, and the checks every rejection must pass.

Everything draws from one ``random.Random`` so a run is reproducible from its seed
(``LATTICE_FUZZ_SEED``, default fixed); ``LATTICE_FUZZ_INPUTS`` changes the number of inputs
per entry point (default 10,000, the documented figure).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import msgpack

INPUTS = int(os.environ.get("LATTICE_FUZZ_INPUTS", "10000"))
SEED = int(os.environ.get("LATTICE_FUZZ_SEED", "20240611"))


def rng(salt: str) -> random.Random:
    """A generator for one test: the run's seed mixed with the test's name."""
    return random.Random(f"{SEED}:{salt}")


# ---- scalars ---------------------------------------------------------------------------------

EDGE_INTS = [0, 1, -1, 2, 7, 127, 128, 255, 256, -32, -33, 65535, 65536, 2**31 - 1, 2**31,
             -(2**31), 2**32 - 1, 2**32, 2**53, 2**63 - 1, 2**63, -(2**63), 2**64 - 1, 2**64,
             10**30]
EDGE_FLOATS = [0.0, -0.0, 0.5, 1e308, -1e308, 1e-320, float("inf"), float("-inf"), float("nan")]
# Strings that tend to break things: empty, huge, control characters, NUL, a lone surrogate,
# subject wildcards and separators, paths, URLs, keys of the right shape, JSON/YAML look-alikes.
EDGE_STRINGS = ["", " ", "default", "\x00", "\n", "\t\r", "\ud800", "\udcff", "é", "😀",
                "*", ">", ".", "a.b", "a b", "..", "../../etc/passwd", "/nonexistent/x.wasm",
                "file:///nonexistent/x.wasm", "lattice://", "oci://", "oci://127.0.0.1:9/x:1",
                "http://127.0.0.1:9/", "wasmcloud:keyvalue", "wasmcloud:builtin:logging",
                "KeyValue.Get", "Actor.HealthRequest", "M" * 56, "V" * 56, "N" * 56,
                "MAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "null", "true", "{}",
                "[]", "0", "-1", "1e999", "x" * 300, "y" * 5000, "%s%n", "${HOME}", "'", "\"",
                "\\", "<script>", "hostcore.os", "latest", "~nosuchuser-fuzz/x", "~nosuchuser-fuzz",
                "z." * 200, "q/" * 200 + "x.wasm"]
_ALPHABET = string.ascii_letters + string.digits + "_-.:*>{}[]\"'\\ \t\n\x00\x7fé😀\u2028"


def rand_str(r: random.Random, max_len: int = 24) -> str:
    roll = r.random()
    if roll < 0.3:
        return r.choice(EDGE_STRINGS)
    if roll < 0.4:  # arbitrary code points, surrogates included
        return "".join(chr(r.randrange(0x110000)) for _ in range(r.randrange(max_len + 1)))
    return "".join(r.choice(_ALPHABET) for _ in range(r.randrange(max_len + 1)))


def rand_int(r: random.Random) -> int:
    return r.choice(EDGE_INTS) * r.choice((1, -1)) if r.random() < 0.6 else r.randint(-999, 999)


def rand_bytes(r: random.Random, max_len: int = 64) -> bytes:
    if r.random() < 0.05:
        max_len = 4096
    return r.randbytes(r.randrange(max_len + 1))


# ---- structured garbage -------------------------------------------------------------------------


def rand_value(r: random.Random, depth: int = 3, *, json_only: bool = False) -> Any:
    """A random JSON-ish (or, unless ``json_only``, msgpack-ish: bytes too) value."""
    kinds = 7 if depth > 0 else 5
    kind = r.randrange(kinds if json_only else kinds + 1)
    if kind == 0:
        return None
    if kind == 1:
        return r.random() < 0.5
    if kind == 2:
        return rand_int(r)
    if kind == 3:
        return r.choice(EDGE_FLOATS) if r.random() < 0.5 else r.uniform(-1e6, 1e6)
    if kind == 4:
        return rand_str(r)
    if kind == 5:
        return [rand_value(r, depth - 1, json_only=json_only) for _ in range(r.randrange(4))]
    if kind == 6:
        return {rand_str(r, 8): rand_value(r, depth - 1, json_only=json_only)
                for _ in range(r.randrange(4))}
    return rand_bytes(r, 16)


def wrong_typed(r: random.Random, fields: list[str], *, json_only: bool = True) -> dict:
    """An object carrying some of ``fields`` (the names a handler reads) with random values
    (half of them strings, the type most fields want), plus now and then an unknown key."""
    doc = {name: rand_str(r) if r.random() < 0.5 else rand_value(r, 2, json_only=json_only)
           for name in r.sample(fields, r.randrange(len(fields) + 1))}
    if r.random() < 0.2:
        doc[rand_str(r, 8)] = rand_value(r, 1, json_only=json_only)
    return doc


def deep(r: random.Random, open_: str, close: str, inner: str = "") -> str:
    n = r.choice((50, 400, 1000, 5000, 100_000))
    return open_ * n + inner + close * n


def pack(value: Any) -> bytes:
    """msgpack of ``value`` (strings that cannot be UTF-8 travel as bin)."""
    def fix(v: Any) -> Any:
        if isinstance(v, str):
            try:
                v.encode()
            except UnicodeEncodeError:
                return v.encode("utf-8", "surrogatepass")
            return v
        if isinstance(v, list):
            return [fix(x) for x in v]
        if isinstance(v, dict):
            return {fix(k): fix(x) for k, x in v.items()}
        if isinstance(v, int) and not -(2**63) <= v < 2**64:
            return str(v)
        return v
    return msgpack.packb(fix(value), use_bin_type=True)


def json_text(r: random.Random, value: Any) -> bytes:
    """JSON of ``value`` as a real client might send it (or not quite: NaN, huge numbers)."""
    text = json.dumps(value, ensure_ascii=r.random() < 0.5)
    return text.encode("utf-8", "surrogatepass")


def mutate(r: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    """Flip bits, overwrite, insert, delete, truncate, duplicate: a few of them at random."""
    out = bytearray(data)
    for _ in range(rounds or r.randint(1, 4)):
        op = r.randrange(7)
        pos = r.randrange(len(out) + 1)
        if op == 0 and out:  # flip one bit
            i = r.randrange(len(out))
            out[i] ^= 1 << r.randrange(8)
        elif op == 1 and out:  # overwrite a byte with an interesting one
            out[r.randrange(len(out))] = r.choice((0x00, 0xFF, 0x7F, 0x80, 0xC0, 0xC1, 0xDE,
                                                   0xDF, 0x90, 0xA0, r.randrange(256)))
        elif op == 2:  # insert a few random bytes
            out[pos:pos] = r.randbytes(r.randint(1, 8))
        elif op == 3 and out:  # delete a slice
            del out[pos:pos + r.randint(1, 8)]
        elif op == 4:  # truncate
            del out[pos:]
        elif op == 5 and out:  # duplicate a slice
            end = min(len(out), pos + r.randint(1, 16))
            out[pos:pos] = out[pos:end]
        else:  # random tail
            out += r.randbytes(r.randint(1, 8))
    return bytes(out)


# ---- what a rejection must look like ------------------------------------------------------------

# Texts that mean an internal Python error leaked instead of a message written for people.
_RAW = re.compile(
    r"Traceback \(most recent call last\)|maximum recursion depth|object has no attribute|"
    r"is not subscriptable|object is not iterable|unhashable type|positional argument|"
    r"^(KeyError|IndexError|TypeError|AttributeError|RecursionError|UnicodeDecodeError|"
    r"UnicodeEncodeError|ValueError|AssertionError)\b|list index out of range|"
    r"^host error:|Exceeds the limit \(4300 digits\)|^'[^']*'$|^\d+$")


def unclear(text: Any) -> str | None:
    """Why ``text`` is not an acceptable rejection message, or None when it is."""
    if not isinstance(text, str) or not text.strip():
        return f"empty or non-text error {text!r:.80}"
    found = _RAW.search(text)
    if found:
        return f"raw Python error text ({found.group(0)!r}): {text[:300]!r}"
    return None


def check_error(exc: BaseException, allowed: tuple[type[BaseException], ...]) -> str | None:
    """None when ``exc`` is one of the product's error types with a clear message."""
    if not isinstance(exc, allowed):
        return f"{type(exc).__name__} escaped: {str(exc)[:300]!r}"
    return unclear(str(exc))


class Findings:
    """Problems seen during a run, grouped by kind, with one example each (for the assert)."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[Any]] = {}

    def add(self, problem: str | None, example: Any = None) -> None:
        if problem is None:
            return
        key = problem[:120]
        self.kinds.setdefault(key, []).append(example)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def report(self) -> str:
        lines = []
        for key, examples in self.kinds.items():
            lines.append(f"{len(examples)}x {key}\n    e.g. {examples[0]!r:.300}")
        return "\n".join(lines)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # log.exception() = an exception nobody handled on purpose: a bug, whatever its level;
        # "NATS client error" = an exception escaped a subscription callback (lattice.nats)
        if (record.exc_info or record.levelno >= logging.ERROR
                or record.msg == "NATS client error"):
            self.records.append(record)


@contextmanager
def unhandled_errors(*loggers: str) -> Iterator[list[logging.LogRecord]]:
    """Collect ERROR records and records with a traceback from ``loggers`` (default: the
    product's), i.e. what the host logs when an exception reached a catch-all."""
    handler = _Capture()
    names = loggers or ("lattice", "providers", "nats", "asyncio")
    saved = []
    for name in names:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        if logger.level == logging.NOTSET or logger.level > logging.WARNING:
            logger.setLevel(logging.WARNING)
        logger.addHandler(handler)
    connect_log = logging.getLogger("lattice.nats")
    saved.append((connect_log, connect_log.level))
    connect_log.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        for logger, level in reversed(saved):
            logger.removeHandler(handler)
            logger.setLevel(level)


def describe_records(records: list[logging.LogRecord]) -> str:
    out = []
    for rec in records[:10]:
        exc = rec.exc_info[1] if rec.exc_info else None
        error = getattr(rec, "error", "")
        out.append(f"{rec.name}: {rec.getMessage()[:200]} {error!s:.200}"
                   + (f" [{type(exc).__name__}: {str(exc)[:200]}]" if exc else ""))
    return "\n".join(out)


def choose(r: random.Random, makers: list[Callable[[random.Random], Any]]) -> Any:
    return r.choice(makers)(r)
