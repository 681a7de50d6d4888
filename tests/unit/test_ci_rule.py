"""The CI rule: with LATTICE_REQUIRE_SERVICES=1 a skipped service-backed test fails the run,
whether the skip comes from a test marked ``service``, from a service fixture used by an unmarked
test, or from a module that skips itself while collecting."""

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


# An unmarked test using a service fixture that finds its service down (as the Redis, PostgreSQL
# and S3 fixtures do through service_missing), and a module skipped at collection.
_FIXTURE_TEST = """
import pytest

from conftest import service_missing

@pytest.fixture
def redis_url():
    service_missing("Redis at redis://127.0.0.1:1")

def test_uses_redis(redis_url):
    assert redis_url
"""

_MODULE_SKIP = """
import pytest

pytest.skip("no driver for this service", allow_module_level=True)

def test_never_runs():
    assert False
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, required: bool,
         source: str = _TEST):
    shutil.copy(REPO / "tests" / "conftest.py", pytester.path / "conftest.py")
    pytester.makeini("[pytest]\nmarkers =\n    service: needs a real service\n")
    pytester.makepyfile(test_sample=source)
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


def test_a_service_fixture_fails_an_unmarked_test_in_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, required=True, source=_FIXTURE_TEST)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*Redis at redis://127.0.0.1:1 is not reachable*"
                                 "LATTICE_REQUIRE_SERVICES=1 forbids skipping it*"])


def test_a_service_fixture_skips_locally(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, required=False, source=_FIXTURE_TEST)
    assert result.ret == pytest.ExitCode.OK
    result.assert_outcomes(skipped=1)


def test_a_module_skipped_at_collection_fails_the_run_in_ci(pytester, monkeypatch):
    result = _run(pytester, monkeypatch, required=True, source=_MODULE_SKIP)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*service-backed tests were skipped*",
                                 "*test_sample.py (skipped while collecting)*"])
