"""Operation registry: names, contracts, directions and lookups."""

import pytest

import contracts
from contracts import (
    CONTRACTS,
    OPERATIONS,
    Operation,
    UnknownOperation,
    blobstore,
    builtin_logging,
    builtin_numbergen,
    core,
    httpclient,
    httpserver,
    keyvalue,
    messaging,
    sqldb,
)

# docs/contracts.md §8 (minus testing, latticecontrol and factorial, which are out of scope).
EXPECTED = {
    "wasmcloud:httpserver": ["HttpServer.HandleRequest"],
    "wasmcloud:httpclient": ["HttpClient.Request"],
    "wasmcloud:keyvalue": [
        "KeyValue.Get",
        "KeyValue.Set",
        "KeyValue.Del",
        "KeyValue.Contains",
        "KeyValue.Increment",
        "KeyValue.ListAdd",
        "KeyValue.ListDel",
        "KeyValue.ListClear",
        "KeyValue.ListRange",
        "KeyValue.SetAdd",
        "KeyValue.SetDel",
        "KeyValue.SetQuery",
        "KeyValue.SetUnion",
        "KeyValue.SetIntersection",
        "KeyValue.SetClear",
    ],
    "wasmcloud:sqldb": ["SqlDb.Execute", "SqlDb.Query"],
    "wasmcloud:blobstore": [
        "Blobstore.ContainerExists",
        "Blobstore.CreateContainer",
        "Blobstore.GetContainerInfo",
        "Blobstore.ListContainers",
        "Blobstore.RemoveContainers",
        "Blobstore.ObjectExists",
        "Blobstore.GetObjectInfo",
        "Blobstore.ListObjects",
        "Blobstore.RemoveObjects",
        "Blobstore.PutObject",
        "Blobstore.PutChunk",
        "Blobstore.GetObject",
        "ChunkReceiver.ReceiveChunk",
    ],
    "wasmcloud:messaging": [
        "Messaging.Publish",
        "Messaging.Request",
        "MessageSubscriber.HandleMessage",
    ],
    "wasmcloud:builtin:logging": ["Logging.WriteLog"],
    "wasmcloud:builtin:numbergen": [
        "NumberGen.GenerateGuid",
        "NumberGen.RandomInRange",
        "NumberGen.Random32",
    ],
    "": ["Actor.HealthRequest"],
}

MODULES = [
    httpserver,
    httpclient,
    keyvalue,
    sqldb,
    blobstore,
    messaging,
    builtin_logging,
    builtin_numbergen,
    core,
]


def test_contracts_and_operation_strings():
    assert {cid: [op.name for op in ops] for cid, ops in CONTRACTS.items()} == EXPECTED
    assert sorted(OPERATIONS) == sorted(n for names in EXPECTED.values() for n in names)
    for cid, ops in CONTRACTS.items():
        assert all(op.contract_id == cid for op in ops)


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_module_exports(module):
    assert CONTRACTS[module.CONTRACT_ID] == module.OPERATIONS
    constants = {v for k, v in vars(module).items() if k.isupper() and isinstance(v, str)}
    for op in module.OPERATIONS:
        assert isinstance(op, Operation)
        assert op.name in constants, f"{module.__name__} lacks a constant for {op.name}"
        assert OPERATIONS[op.name] is op


def test_directions():
    by_direction = {op.name: op.direction for op in OPERATIONS.values()}
    assert by_direction["HttpServer.HandleRequest"] == "provider->actor"
    assert by_direction["MessageSubscriber.HandleMessage"] == "provider->actor"
    assert by_direction["ChunkReceiver.ReceiveChunk"] == "provider->actor"
    assert by_direction["Actor.HealthRequest"] == "host->actor"
    assert by_direction["Logging.WriteLog"] == "actor->host"
    assert by_direction["NumberGen.Random32"] == "actor->host"
    assert by_direction["KeyValue.Get"] == "actor->provider"
    assert set(by_direction.values()) == set(contracts.DIRECTIONS)


def test_service_and_method():
    op = contracts.operation("ChunkReceiver.ReceiveChunk")
    assert (op.service, op.method) == ("ChunkReceiver", "ReceiveChunk")


def test_specs():
    op = contracts.operation("Blobstore.ListContainers")
    assert op.input is None and op.output == list[blobstore.ContainerMetadata]
    assert contracts.operation("KeyValue.Increment").output is contracts.I32
    assert contracts.type_name(contracts.operation("KeyValue.ListAdd").output) == "U32"


def test_lookup_close_match():
    with pytest.raises(UnknownOperation) as err:
        contracts.operation("KeyValue.get")
    assert str(err.value) == "unknown operation 'KeyValue.get'; did you mean 'KeyValue.Get'?"
    assert isinstance(err.value, KeyError)


def test_lookup_several_or_no_matches():
    with pytest.raises(UnknownOperation, match="did you mean one of"):
        contracts.operation("KeyValue.SetDl")
    with pytest.raises(UnknownOperation, match=r"look like 'Service\.Method'"):
        contracts.operation("Get")
    with pytest.raises(UnknownOperation, match=r"^unknown operation 'Zzz\.Qqq'$"):
        contracts.operation("Zzz.Qqq")


def test_operation_validation():
    with pytest.raises(ValueError, match="direction"):
        Operation("x", "A.B", None, None, "sideways")
    with pytest.raises(ValueError, match=r"Service\.Method"):
        Operation("x", "AB", None, None, "actor->provider")
    with pytest.raises(TypeError, match="unsupported"):
        Operation("x", "A.B", object, None, "actor->provider")


def test_wire_names():
    from contracts._codec import wire_name

    cases = {
        "query_string": "queryString",
        "status_code": "statusCode",
        "list_name": "listName",
        "db_type": "dbType",
        "is_last": "isLast",
        "reply_to": "replyTo",
        "body": "body",
        "cancel_and_remove": "cancelAndRemove",
        "timeout_ms": "timeoutMs",
    }
    assert {k: wire_name(k) for k in cases} == cases


def test_wire_name_override():
    from dataclasses import dataclass, field

    @dataclass
    class Entity:
        public_key: str = field(default="", metadata={contracts.WIRE: "public_key"})
        link_name: str = ""

    assert contracts.encode(Entity, Entity("M", "l")) == bytes.fromhex(
        "82 aa 7075626c69635f6b6579 a1 4d a8 6c696e6b4e616d65 a1 6c".replace(" ", "")
    )
