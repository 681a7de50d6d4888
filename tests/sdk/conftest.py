"""Shared fixtures for the SDK tests: a clean registry per test and a recording fake host.

The fake host decodes every request with the contracts' codecs (independently of the SDK's
client code) and answers with values the test registers per operation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import contracts
from lattice_actor import testing


@dataclass
class Call:
    binding: str
    namespace: str
    operation: str
    payload: bytes
    value: Any


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.answers: dict[str, Callable[[Any], Any]] = {}

    def on(self, operation: str, fn: Callable[[Any], Any]) -> Recorder:
        self.answers[operation] = fn
        return self

    def __call__(self, binding: str, namespace: str, operation: str, payload: bytes) -> bytes:
        assert isinstance(payload, bytes)
        op = contracts.OPERATIONS.get(operation)
        value = op.decode_input(payload) if op is not None else payload
        self.calls.append(Call(binding, namespace, operation, payload, value))
        result = self.answers[operation](value)
        if op is not None:
            return op.encode_output(result)
        return result

    def ops(self) -> list[str]:
        return [c.operation for c in self.calls]

    @property
    def last(self) -> Call:
        return self.calls[-1]


@pytest.fixture(autouse=True)
def _clean_sdk():
    testing.reset()
    yield
    testing.reset()


@pytest.fixture
def host() -> Recorder:
    recorder = Recorder()
    testing.set_host(recorder)
    return recorder
