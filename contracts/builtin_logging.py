"""``wasmcloud:builtin:logging`` (crate 0.11.0): answered by the host itself."""

from dataclasses import dataclass

from ._operation import ACTOR_TO_HOST, Operation

CONTRACT_ID = "wasmcloud:builtin:logging"
WRITE_LOG = "Logging.WriteLog"

LEVELS = ("debug", "info", "warn", "error")  # the only levels every host accepts


@dataclass(slots=True)
class LogEntry:
    level: str = "info"
    text: str = ""


OPERATIONS = (Operation(CONTRACT_ID, WRITE_LOG, LogEntry, None, ACTOR_TO_HOST),)
