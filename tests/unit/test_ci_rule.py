"""The CI rule: with LATTICE_REQUIRE_SERVICES=1 a skipped service-backed test fails the run."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import REPO

pytest_plugins = ["pytester"]

_TEST = """
import pytest

@pytest.mark.service
def test_needs_redis():
    pytest.skip("redis is down")

def test_plain():
    assert True
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: bool):
    shutil.copy(REPO / "tests" / "conftest.py", pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    service: needs a real service\n")
    pytester.makepyfile(test_sample=_TEST)
    if required:
        monkeypatch.setenv("LATTICE_REQUIRE_SERVICES", "1")
    else:
        monkeypatch.delenv("LATTICE_REQUIRE_SERVICES", raising=False)
    return pytester.runpytest_subprocess()


def test_skipped_service_test_fails_the_run_in_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, required=True)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*service-backed tests were skipped*", "*test_needs_redis*"])


def test_skipped_service_test_is_only_a_skip_locally(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, required=False)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(passed=1, skipped=1)
