"""Builtins: logging (including the stdlib bridge) and numbergen."""

from __future__ import annotations

import logging as stdlog

import pytest

from contracts.builtin_logging import LogEntry
from contracts.builtin_numbergen import RangeLimit
from lattice_actor import HostError, numbergen
from lattice_actor import logging as log


def test_log_levels_and_formatting(host):
    host.on("Logging.WriteLog", lambda entry: None)
    log.debug("d")
    log.info("hello %s #%d", "world", 3)
    log.warn("w")
    log.warning("w2")
    log.error("e %r", "x")
    log.log("WARNING", "upper")
    log.info("100% literal")  # no args: no %-formatting
    assert [c.value for c in host.calls] == [
        LogEntry("debug", "d"), LogEntry("info", "hello world #3"), LogEntry("warn", "w"),
        LogEntry("warn", "w2"), LogEntry("error", "e 'x'"), LogEntry("warn", "upper"),
        LogEntry("info", "100% literal")]
    call = host.last
    assert (call.binding, call.namespace, call.operation) == (
        "default", "wasmcloud:builtin:logging", "Logging.WriteLog")
    with pytest.raises(ValueError, match=r"debug, info, warn, error"):
        log.log("loud", "x")


def test_stdlib_logging_bridge(host):
    host.on("Logging.WriteLog", lambda entry: None)
    logger = stdlog.getLogger("sdk-test-bridge")
    logger.propagate = False
    handler = log.install(stdlog.DEBUG, logger)
    try:
        assert log.install(stdlog.DEBUG, logger) is handler  # idempotent
        logger.debug("dbg")
        logger.info("n=%d", 5)
        logger.warning("careful")
        logger.critical("bad")
        assert [c.value for c in host.calls] == [
            LogEntry("debug", "sdk-test-bridge: dbg"), LogEntry("info", "sdk-test-bridge: n=5"),
            LogEntry("warn", "sdk-test-bridge: careful"),
            LogEntry("error", "sdk-test-bridge: bad")]
    finally:
        logger.removeHandler(handler)


def test_numbergen(host):
    host.on("NumberGen.GenerateGuid", lambda _: "3f2a7c4e-0000-4000-8000-000000000000")
    host.on("NumberGen.RandomInRange", lambda limit: limit.max)
    host.on("NumberGen.Random32", lambda _: 2**32 - 1)
    assert numbergen.generate_guid() == "3f2a7c4e-0000-4000-8000-000000000000"
    assert host.last.payload == b"" and host.last.namespace == "wasmcloud:builtin:numbergen"
    assert numbergen.random_in_range(1, 6) == 6
    assert host.last.value == RangeLimit(1, 6)
    assert numbergen.random_32() == 2**32 - 1
    assert [c.operation for c in host.calls] == [
        "NumberGen.GenerateGuid", "NumberGen.RandomInRange", "NumberGen.Random32"]
    for low, high in ((5, 1), (-1, 3), (0, 2**32)):
        with pytest.raises(ValueError, match=r"low <= high"):
            numbergen.random_in_range(low, high)


def test_builtin_denied(host):
    def deny(_):
        raise RuntimeError("Invocation not authorized: missing capability claim for "
                           "wasmcloud:builtin:numbergen")

    host.on("NumberGen.Random32", deny)
    with pytest.raises(HostError, match=r"missing capability claim"):
        numbergen.random_32()
