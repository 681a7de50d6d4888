"""Core operations that belong to no contract (``Actor.HealthRequest``).

``HealthCheckResponse`` is also what providers answer on their ``.health`` NATS subject.
"""

from dataclasses import dataclass

from ._operation import HOST_TO_ACTOR, Operation

CONTRACT_ID = ""  # travels without a contract id
HEALTH_REQUEST = "Actor.HealthRequest"


@dataclass(slots=True)
class HealthCheckRequest:
    """Empty struct: encoded as an empty map ``80`` (``90`` is accepted on receive)."""


@dataclass(slots=True)
class HealthCheckResponse:
    healthy: bool = True  # prelude Boolean: always written
    message: str | None = None


OPERATIONS = (
    Operation(CONTRACT_ID, HEALTH_REQUEST, HealthCheckRequest, HealthCheckResponse, HOST_TO_ACTOR),
)
