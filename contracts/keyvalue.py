"""``wasmcloud:keyvalue`` (crate 0.12.0): string values, lists and sets. All keys are "dflt"."""

from dataclasses import dataclass

from ._codec import I32, U32
from ._operation import ACTOR_TO_PROVIDER, Operation

CONTRACT_ID = "wasmcloud:keyvalue"

GET = "KeyValue.Get"
SET = "KeyValue.Set"
DEL = "KeyValue.Del"
CONTAINS = "KeyValue.Contains"
INCREMENT = "KeyValue.Increment"
LIST_ADD = "KeyValue.ListAdd"
LIST_DEL = "KeyValue.ListDel"
LIST_CLEAR = "KeyValue.ListClear"
LIST_RANGE = "KeyValue.ListRange"
SET_ADD = "KeyValue.SetAdd"
SET_DEL = "KeyValue.SetDel"
SET_QUERY = "KeyValue.SetQuery"
SET_UNION = "KeyValue.SetUnion"
SET_INTERSECTION = "KeyValue.SetIntersection"
SET_CLEAR = "KeyValue.SetClear"

StringList = list[str]


@dataclass(slots=True)
class GetResponse:
    value: str = ""  # "" when the key does not exist
    exists: bool = False


@dataclass(slots=True)
class SetRequest:
    key: str = ""
    value: str = ""
    expires: U32 = 0  # seconds; 0 = never


@dataclass(slots=True)
class IncrementRequest:
    key: str = ""
    value: I32 = 0  # may be negative


@dataclass(slots=True)
class ListAddRequest:
    list_name: str = ""
    value: str = ""


@dataclass(slots=True)
class ListDelRequest:
    list_name: str = ""
    value: str = ""  # removes the first match


@dataclass(slots=True)
class ListRangeRequest:
    list_name: str = ""
    start: I32 = 0  # 0-based, inclusive
    stop: I32 = 0  # inclusive


@dataclass(slots=True)
class SetAddRequest:
    set_name: str = ""
    value: str = ""


@dataclass(slots=True)
class SetDelRequest:
    set_name: str = ""
    value: str = ""


def _op(name: str, input_: object, output: object) -> Operation:
    return Operation(CONTRACT_ID, name, input_, output, ACTOR_TO_PROVIDER)


OPERATIONS = (
    _op(GET, str, GetResponse),
    _op(SET, SetRequest, None),
    _op(DEL, str, bool),
    _op(CONTAINS, str, bool),
    _op(INCREMENT, IncrementRequest, I32),
    _op(LIST_ADD, ListAddRequest, U32),
    _op(LIST_DEL, ListDelRequest, bool),
    _op(LIST_CLEAR, str, bool),
    _op(LIST_RANGE, ListRangeRequest, StringList),
    _op(SET_ADD, SetAddRequest, U32),
    _op(SET_DEL, SetDelRequest, U32),
    _op(SET_QUERY, str, StringList),
    _op(SET_UNION, StringList, StringList),
    _op(SET_INTERSECTION, StringList, StringList),
    _op(SET_CLEAR, str, bool),
)
