"""``Operation``: one wire operation string bound to its contract, payload types and direction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from . import _codec

ACTOR_TO_PROVIDER = "actor->provider"
PROVIDER_TO_ACTOR = "provider->actor"
ACTOR_TO_HOST = "actor->host"  # builtins answered by the host itself
HOST_TO_ACTOR = "host->actor"
DIRECTIONS = (ACTOR_TO_PROVIDER, PROVIDER_TO_ACTOR, ACTOR_TO_HOST, HOST_TO_ACTOR)


def _label(op: str, which: str, spec: Any) -> str:
    # Errors name the message type when there is one ("HttpResponse.status_code: ..."),
    # otherwise the operation side ("KeyValue.Increment output: ...").
    if isinstance(spec, type) and dataclasses.is_dataclass(spec):
        return spec.__name__
    return f"{op} {which}"


@dataclass(frozen=True)
class Operation:
    """A contract operation. ``input``/``output`` are type specs, or None for a 0-byte payload."""

    contract_id: str
    name: str  # wire operation string, e.g. "KeyValue.Increment"
    input: Any
    output: Any
    direction: str

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(f"{self.name}: direction must be one of {DIRECTIONS}")
        if "." not in self.name:
            raise ValueError(f"operation {self.name!r} must look like 'Service.Method'")
        # Compile the codecs now so a bad type spec fails at import, not on the first call.
        for spec in (self.input, self.output):
            if spec is not None:
                _codec.type_name(spec)
        object.__setattr__(self, "_in", _label(self.name, "input", self.input))
        object.__setattr__(self, "_out", _label(self.name, "output", self.output))

    @property
    def service(self) -> str:
        """Smithy service name, the part before the last '.' (what actors route on)."""
        return self.name.rpartition(".")[0]

    @property
    def method(self) -> str:
        return self.name.rpartition(".")[2]

    def encode_input(self, value: Any, *, fmt: str = "msgpack") -> bytes:
        return _codec.encode(self.input, value, fmt=fmt, label=self._in)  # type: ignore[attr-defined]

    def decode_input(self, data: bytes) -> Any:
        return _codec.decode(self.input, data, label=self._in)  # type: ignore[attr-defined]

    def encode_output(self, value: Any, *, fmt: str = "msgpack") -> bytes:
        return _codec.encode(self.output, value, fmt=fmt, label=self._out)  # type: ignore[attr-defined]

    def decode_output(self, data: bytes) -> Any:
        return _codec.decode(self.output, data, label=self._out)  # type: ignore[attr-defined]

    def input_from_json(self, obj: Any) -> Any:
        return _codec.from_json(self.input, obj, label=self._in)  # type: ignore[attr-defined]

    def output_from_json(self, obj: Any) -> Any:
        return _codec.from_json(self.output, obj, label=self._out)  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return (
            f"Operation({self.name!r}, contract={self.contract_id!r}, "
            f"{_codec.type_name(self.input)} -> {_codec.type_name(self.output)}, {self.direction})"
        )


class UnknownOperation(KeyError):
    """Lookup of an operation string that no contract defines."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else "unknown operation"
