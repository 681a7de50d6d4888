"""Where actor signing keys live: ``{keys_dir}/{name}_{account|module}.nk``, as wash keeps them.

Shared by ``lattice claims sign`` and ``lattice build``, so an actor keeps one module key (its
identity) however it is signed. Errors are :class:`KeyStoreError` with the fix in the message.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lattice.keys import KeyPair, KeyRole, NKeyError, is_public_key
from lattice.paths import keys_dir, private_dir


class KeyStoreError(ValueError):
    pass


def _seed_from_text(text: str, role: KeyRole, where: str, allow_public: bool) -> KeyPair:
    try:
        if allow_public and is_public_key(text):
            return KeyPair.from_public_key(text, role)
        return KeyPair.from_seed(text, role)
    except NKeyError as exc:
        raise KeyStoreError(f"{where}: {exc}") from exc


def key_from_arg(value: str, role: KeyRole, option: str, allow_public: bool = False) -> KeyPair:
    """A seed given inline, or the path of a file holding one."""
    text = value.strip()
    if (text.startswith("S") and len(text) == 58) or (allow_public and is_public_key(text)):
        return _seed_from_text(text, role, option, allow_public)
    path = Path(value).expanduser()
    if path.is_file():
        try:
            content = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeyStoreError(f"{option}: cannot read seed file {path}: {exc}") from exc
        return _seed_from_text(content, role, f"{option} file {path}", allow_public)
    if is_public_key(text):
        raise KeyStoreError(f"{option} needs a seed (S{role.letter}…), not a public key")
    raise KeyStoreError(
        f"{option} is neither a seed (S{role.letter}…, 58 characters) nor an existing file: {value}"
    )


def key_file_stem(name: str) -> str:
    # The name ends up in a file name: keep it portable and free of path separators.
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip()).strip("._") or "actor"


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def stored_key(stem: str, role: KeyRole) -> tuple[KeyPair, str]:
    """Reuse ``{keys_dir}/{stem}_{role}.nk`` or generate it; returns the pair and a note."""
    word = role.name.lower()
    path = keys_dir() / f"{stem}_{word}.nk"
    if path.is_file():
        pair = key_from_arg(str(path), role, f"stored {word} key")
        return pair, f"reused {word} key {pair.public_key} (seed in {path})"
    pair = KeyPair.generate(role)
    private_dir(path.parent)
    try:
        _write_private(path, pair.seed)
    except OSError as exc:
        raise KeyStoreError(f"cannot save the new {word} seed to {path}: {exc.strerror}") from exc
    return pair, f"generated {word} key {pair.public_key} (seed saved to {path})"
