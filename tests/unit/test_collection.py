"""Every test folder contributes tests to the default run.

pytest's default ``norecursedirs`` once skipped ``tests/build/`` (54 tests) without a word. This
collects the suite the way the README's ``pytest`` does and fails for any folder under tests/ that
holds test files but yields no collected test."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def _folders_with_test_files() -> set[str]:
    return {path.parent.relative_to(REPO).as_posix()
            for path in (REPO / "tests").rglob("test_*.py")
            if "__pycache__" not in path.parts}


def _uncollected(*pytest_args: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *pytest_args], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"collection failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    collected = {line.split("::", 1)[0].rsplit("/", 1)[0]
                 for line in run.stdout.splitlines() if "::" in line}
    folders = _folders_with_test_files()
    assert folders, "found no test files at all"
    return sorted(folders - collected)


def test_every_test_folder_is_collected() -> None:
    missing = _uncollected()
    assert not missing, (f"pytest collects nothing from {missing}: check norecursedirs and "
                         "testpaths in pyproject.toml, and the files' names")


def test_the_check_sees_a_folder_that_pytest_skips() -> None:
    # pytest's own default, which hid tests/build/: the check above must notice it.
    assert _uncollected("-o", "norecursedirs=build") == ["tests/build"]
