"""``wasmcloud:builtin:numbergen`` (crate 0.11.0): answered by the host itself."""

from dataclasses import dataclass

from ._codec import U32
from ._operation import ACTOR_TO_HOST, Operation

CONTRACT_ID = "wasmcloud:builtin:numbergen"

GENERATE_GUID = "NumberGen.GenerateGuid"
RANDOM_IN_RANGE = "NumberGen.RandomInRange"
RANDOM_32 = "NumberGen.Random32"


@dataclass(slots=True)
class RangeLimit:
    """Both ends inclusive: min <= n <= max (the op's doc comment saying [min,max) is stale)."""

    min: U32 = 0
    max: U32 = 0


OPERATIONS = (
    Operation(CONTRACT_ID, GENERATE_GUID, None, str, ACTOR_TO_HOST),  # lower-case uuid v4
    Operation(CONTRACT_ID, RANDOM_IN_RANGE, RangeLimit, U32, ACTOR_TO_HOST),
    Operation(CONTRACT_ID, RANDOM_32, None, U32, ACTOR_TO_HOST),
)
