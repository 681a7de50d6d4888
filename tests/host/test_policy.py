"""The policy service (lattice/host/policy.py, docs/operations.md "Policy service") against a real
one: a separate Python process with nats-py, answering on a real nats-server.

The responder re-reads its rules file on every request (so a test changes the rules while it
runs), logs every request it gets as one JSON line *before* it answers (so when a host has a
decision, the log already counts the request), and checks each request's shape itself: a request
with a missing field or a wrong kind is denied with ``malformed request: …``, and every test
asserts that none was.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lattice.cli import main
from lattice.keys import KeyPair, KeyRole
from lattice.rpc import Entity, RpcError
from tests.actors import forward_payload
from tests.harness import until

pytestmark = pytest.mark.service

TOPIC = "lattice.policy"
CHANGES = "lattice.policy.changes"

RESPONDER = r'''
import asyncio, json, sys, time
import nats

URL, TOPIC, RULES, LOG = sys.argv[1:5]
SOURCE = {"publicKey", "contractId", "linkName", "capabilities", "issuer", "issuedOn",
          "expiresAt", "expired"}
TARGET = {"publicKey", "issuer", "contractId", "linkName"}
HOST = {"publicKey", "latticeId", "labels", "clusterIssuers"}
ACTIONS = {"start_actor", "start_provider", "perform_invocation"}


def problems(req):
    errs = []
    if not isinstance(req, dict):
        return ["not an object"]
    if not isinstance(req.get("requestId"), str) or len(req["requestId"]) < 8:
        errs.append("requestId")
    action = req.get("action")
    if action not in ACTIONS:
        errs.append(f"action {action!r}")
    for part, keys in (("source", SOURCE), ("target", TARGET), ("host", HOST)):
        doc = req.get(part)
        if not isinstance(doc, dict):
            errs.append(f"no {part}")
        elif keys - doc.keys():
            errs.append(f"{part} lacks {sorted(keys - doc.keys())}")
    if errs:
        return errs
    src, tgt, host = req["source"], req["target"], req["host"]
    if not isinstance(src["capabilities"], list) or not isinstance(src["expired"], bool):
        errs.append("source.capabilities/expired types")
    if not str(host["publicKey"]).startswith("N") or not isinstance(host["labels"], dict):
        errs.append("host.publicKey/labels")
    if not host["clusterIssuers"] or not all(str(c).startswith("C")
                                             for c in host["clusterIssuers"]):
        errs.append("host.clusterIssuers")
    if action == "start_actor":
        if src["publicKey"] is not None or not str(tgt["publicKey"]).startswith("M"):
            errs.append("start_actor: empty source, actor target")
        if tgt["contractId"] is not None:
            errs.append("start_actor: an actor has no contractId")
    elif action == "start_provider":
        if src["publicKey"] is not None or not str(tgt["publicKey"]).startswith("V"):
            errs.append("start_provider: empty source, provider target")
        if not tgt["contractId"] or not tgt["linkName"]:
            errs.append("start_provider: contractId and linkName")
    else:
        if not src["publicKey"] or not tgt["publicKey"]:
            errs.append("perform_invocation: source and target keys")
    return errs


def decide(req, rules):
    src, tgt = req["source"], req["target"]
    entity = {"start_actor": "actors", "start_provider": "providers"}.get(req["action"])
    if entity:
        for who in (tgt.get("name"), tgt["publicKey"]):
            if who in rules.get(f"deny_{entity}", {}):
                return False, rules[f"deny_{entity}"][who]
    else:
        for source, target, message in rules.get("deny_invocations", []):
            if src["publicKey"] == source and tgt["publicKey"] == target:
                return False, message
    return True, "permitted by the test policy"


async def main():
    nc = await nats.connect(URL)
    log = open(LOG, "a")

    async def on_request(msg):
        rules = json.load(open(RULES))
        if rules.get("silent"):
            return
        try:
            req = json.loads(msg.data)
        except ValueError:
            req = None
        errs = problems(req)
        log.write(json.dumps({"request": req, "problems": errs}) + "\n")
        log.flush()
        if errs:
            answer = {"permitted": False, "message": "malformed request: " + "; ".join(errs)}
        else:
            permitted, message = decide(req, rules)
            answer = {"permitted": permitted, "message": message}
        answer["requestId"] = (req or {}).get("requestId", "")
        if "ttlSeconds" in rules:
            answer["ttlSeconds"] = rules["ttlSeconds"]
        await msg.respond(json.dumps(answer).encode())

    await nc.subscribe(TOPIC, cb=on_request)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''


class PolicyService:
    """The responder process and its files."""

    def __init__(self, tmp: Path, url: str, topic: str = TOPIC) -> None:
        self.rules_file = tmp / f"rules-{topic}.json"
        self.log_file = tmp / f"requests-{topic}.jsonl"
        script = tmp / "responder.py"
        script.write_text(RESPONDER)
        self.rules()
        self.proc = subprocess.Popen(
            [sys.executable, str(script), url, topic, str(self.rules_file), str(self.log_file)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    async def ready(self) -> PolicyService:
        line = await asyncio.wait_for(asyncio.to_thread(self.proc.stdout.readline), 20)
        assert line.strip() == "ready", self.proc.stderr.read()
        return self

    def rules(self, **rules: Any) -> None:
        self.rules_file.write_text(json.dumps(rules))

    def requests(self, action: str | None = None) -> list[dict[str, Any]]:
        if not self.log_file.exists():
            return []
        lines = [json.loads(line) for line in self.log_file.read_text().splitlines()]
        bad = [entry for entry in lines if entry["problems"]]
        assert not bad, f"malformed policy requests: {bad}"
        return [e["request"] for e in lines if action is None or e["request"]["action"] == action]

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdout.close()
        self.proc.stderr.close()


@pytest.fixture
async def policy(nats_server, tmp_path):
    services: list[PolicyService] = []

    async def start(topic: str = TOPIC, **rules: Any) -> PolicyService:
        service = PolicyService(tmp_path, nats_server.url, topic)
        service.rules(**rules)
        services.append(service)
        return await service.ready()

    yield start
    for service in services:
        service.stop()


@pytest.fixture
async def events(lattice):
    seen: list[dict[str, Any]] = []

    async def on_event(msg):
        seen.append(json.loads(msg.data))

    sub = await lattice.nc.subscribe("wasmbus.evt.default", cb=on_event)
    await lattice.nc.flush()
    yield seen
    await sub.unsubscribe()


def event(seen: list[dict[str, Any]], kind: str, **match: Any) -> dict[str, Any] | None:
    return next((e["data"] for e in seen if e["type"].endswith(kind)
                 and all(e["data"].get(k) == v for k, v in match.items())), None)


async def cli(capsys, *argv: str) -> tuple[int, str]:
    """``lattice …`` in a worker thread (it runs its own event loop) while the host serves."""
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out + err


async def test_permitted_starts_and_calls_send_wasmclouds_request_shape(lattice, policy):
    service = await policy()
    host = await lattice.host(policy_topic=TOPIC)
    echo = await lattice.start_actor(host, lattice.module("echo"))
    fwd = await lattice.forwarder(host, "wasmcloud:keyvalue")
    kv = await lattice.start_provider(host, "kvmem", embedded=True)
    await lattice.link(fwd, kv, "wasmcloud:keyvalue")
    await lattice.call(echo, "Actor.HealthRequest", b"")
    await lattice.host_call(fwd, "wasmcloud:keyvalue", "KeyValue.Contains", b"\xa1k")

    starts = {r["target"]["publicKey"]: r for r in service.requests("start_actor")}
    assert set(starts) == {echo, fwd}
    start = starts[fwd]
    assert start["source"] == {"publicKey": None, "contractId": None, "linkName": None,
                               "capabilities": [], "issuer": None, "issuedOn": None,
                               "expiresAt": None, "expired": False, "name": None}
    assert start["target"]["name"] == "forward" and start["target"]["issuer"].startswith("A")
    assert start["host"] == {"publicKey": host.host_id, "issuer": host.cluster_key.public_key,
                             "latticeId": "default", "labels": host.labels,
                             "clusterIssuers": [lattice.cluster.public_key]}
    [provider] = service.requests("start_provider")
    assert provider["target"] == {"publicKey": kv, "issuer": None,
                                  "contractId": "wasmcloud:keyvalue", "linkName": "default",
                                  "name": "kvmem"}
    calls = {(r["source"]["publicKey"], r["target"]["publicKey"]): r
             for r in service.requests("perform_invocation")}
    # the test client → echo (inbound), the client → forward (inbound), forward → kvmem
    # (outbound, checked by the calling host: providers do not ask the policy service)
    assert set(calls) == {(lattice.me.public_key, echo), (lattice.me.public_key, fwd), (fwd, kv)}
    to_kv = calls[(fwd, kv)]
    assert to_kv["source"]["capabilities"] == ["wasmcloud:keyvalue"]
    assert to_kv["source"]["issuedOn"].isdigit() and to_kv["source"]["expired"] is False
    assert to_kv["target"]["contractId"] == "wasmcloud:keyvalue"
    assert to_kv["target"]["linkName"] == "default"


async def test_a_denied_actor_start_shows_the_services_message_in_the_cli(
        lattice, policy, events, capsys):
    await policy(deny_actors={"forbidden": "actors named forbidden may not run here"})
    host = await lattice.host(policy_topic=TOPIC)
    path = lattice.module("echo", name_claim="forbidden")
    code, output = await cli(capsys, "start", "actor", path, "--host-id", host.host_id,
                             "--wait", "20", "--nats-url", lattice.server.url)
    assert code != 0, output
    assert "Policy denied request to start actor forbidden" in output
    assert "actors named forbidden may not run here" in output
    failed = await until(lambda: event(events, "actors_start_failed"))
    assert "actors named forbidden may not run here" in failed["error"]
    assert not host.actors.actors
    # the same host starts an actor the policy permits
    code, output = await cli(capsys, "start", "actor", lattice.module("echo"), "--host-id",
                             host.host_id, "--wait", "20", "--nats-url", lattice.server.url)
    assert code == 0, output


async def test_a_denied_provider_start_is_refused_with_the_message(
        lattice, policy, events, capsys):
    service = await policy(deny_providers={"kvmem": "no in-memory stores in production"})
    host = await lattice.host(policy_topic=TOPIC)
    code, output = await cli(capsys, "start", "provider", "kvmem", "--embedded", "--host-id",
                             host.host_id, "--wait", "20", "--nats-url", lattice.server.url)
    assert code != 0, output
    assert "Policy denied request to start provider kvmem" in output
    assert "no in-memory stores in production" in output
    failed = await until(lambda: event(events, "provider_start_failed", provider_ref="kvmem"))
    assert "no in-memory stores in production" in failed["error"]
    assert host.providers.list() == []
    assert len(service.requests("start_provider")) == 1


async def test_denied_invocations_fail_with_the_message_for_the_caller(lattice, policy):
    service = await policy()
    host = await lattice.host(policy_topic=TOPIC)
    echo = await lattice.start_actor(host, lattice.module("echo"))
    fwd = await lattice.forwarder(host, "wasmcloud:keyvalue")
    kv = await lattice.start_provider(host, "kvmem", embedded=True)
    await lattice.link(fwd, kv, "wasmcloud:keyvalue")
    service.rules(deny_invocations=[
        [lattice.me.public_key, echo, "the test client may not call echo"],
        [fwd, echo, "forward may not call echo"],
        [fwd, kv, "forward may not use the store"]])

    # inbound (the host running echo checks): the caller gets the service's message
    with pytest.raises(RpcError, match="the test client may not call echo") as info:
        await lattice.call(echo, "Actor.HealthRequest", b"")
    assert "Policy denied request to invoke actor echo" in str(info.value)
    # another caller of the same actor is a pair of its own, and permitted
    other = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
    await lattice.rpc.invoke(other, Entity.actor(echo), "Actor.HealthRequest", b"")
    # an actor → an actor on the same host (no NATS hop): the calling actor gets a host error
    with pytest.raises(RpcError, match="forward may not call echo"):
        await lattice.call(fwd, "Actor.HealthRequest", forward_payload("", echo))
    # an actor → its linked provider
    with pytest.raises(RpcError, match="forward may not use the store"):
        await lattice.host_call(fwd, "wasmcloud:keyvalue", "KeyValue.Contains", b"\xa1k")
    assert host.actors.actors[echo] and host.providers.list()  # nothing stopped, only refused


async def test_decisions_are_cached_per_pair_until_revoked(lattice, policy):
    service = await policy()
    host = await lattice.host(policy_topic=TOPIC, policy_changes_topic=CHANGES)
    echo = await lattice.start_actor(host, lattice.module("echo"))

    def asked() -> int:
        return len(service.requests("perform_invocation"))

    await lattice.call(echo, "Actor.HealthRequest", b"")
    assert asked() == 1
    await lattice.call(echo, "Actor.HealthRequest", b"")
    assert asked() == 1  # cached
    # ten concurrent first calls of a new pair: one request between them
    other = Entity.actor(KeyPair.generate(KeyRole.MODULE).public_key)
    await asyncio.gather(*(lattice.rpc.invoke(other, Entity.actor(echo), "Actor.HealthRequest",
                                              b"") for _ in range(10)))
    assert asked() == 2

    async def change(body: dict[str, Any]) -> None:
        reply = await lattice.nc.request(CHANGES, json.dumps(body).encode(), timeout=5)
        assert json.loads(reply.data) == {"success": True}  # applied when answered

    # starts are cached too: a second instance of a running actor does not ask again
    await lattice.start_actor(host, host.actors.actors[echo].image_ref)
    await until(lambda: len(host.actors.actors[echo].instances) == 2)
    assert len(service.requests("start_actor")) == 1

    # a revocation naming another entity leaves these decisions alone...
    await change({"publicKey": KeyPair.generate(KeyRole.MODULE).public_key})
    await lattice.call(echo, "Actor.HealthRequest", b"")
    assert asked() == 2
    # ...one naming the caller drops its decision only
    await change({"source": lattice.me.public_key})
    await lattice.call(echo, "Actor.HealthRequest", b"")
    await lattice.rpc.invoke(other, Entity.actor(echo), "Actor.HealthRequest", b"")
    assert asked() == 3
    # the service changed its mind: without a revocation the cached permit still counts
    service.rules(deny_invocations=[[lattice.me.public_key, echo, "revoked by the operator"]])
    await lattice.call(echo, "Actor.HealthRequest", b"")
    assert asked() == 3
    # an empty message drops every decision: the next call asks again, and is denied
    await change({})
    with pytest.raises(RpcError, match="revoked by the operator"):
        await lattice.call(echo, "Actor.HealthRequest", b"")
    assert asked() == 4
    # wasmCloud's override: a decision for a request id replaces that cached decision
    last = service.requests("perform_invocation")[-1]["requestId"]
    await change({"requestId": last, "permitted": True, "message": "ok after all"})
    await lattice.call(echo, "Actor.HealthRequest", b"")
    assert asked() == 4


async def test_a_decision_with_an_expiry_is_asked_again_after_it(lattice, policy):
    service = await policy(ttlSeconds=0)  # expired on arrival: never cached
    host = await lattice.host(policy_topic=TOPIC)
    echo = await lattice.start_actor(host, lattice.module("echo"))
    for n in (1, 2, 3):
        await lattice.call(echo, "Actor.HealthRequest", b"")
        assert len(service.requests("perform_invocation")) == n
    # a default TTL on the host: cached, then asked again once it has passed
    host2 = await lattice.host(policy_topic=TOPIC, policy_cache_ttl=0.2)
    service.rules()
    other = await lattice.start_actor(host2, lattice.module("echo"))
    await lattice.call(other, "Actor.HealthRequest", b"")
    before = len(service.requests("perform_invocation"))

    async def asked_again() -> bool:
        await lattice.call(other, "Actor.HealthRequest", b"")
        return len(service.requests("perform_invocation")) > before
    await until(asked_again, timeout=10)


async def test_without_an_answer_the_host_fails_closed_unless_told_to_fail_open(
        lattice, policy, events):
    await policy("lattice.policy.silent", silent=True)  # subscribed, never answers
    hung = await lattice.host(policy_topic="lattice.policy.silent", policy_timeout=0.3)
    down = await lattice.host(policy_topic="lattice.policy.down")  # nobody subscribed
    open_ = await lattice.host(policy_topic="lattice.policy.down", policy_fail_open=True)

    for host, wanted in ((hung, "the policy service at lattice.policy.silent did not answer "
                                "within 0.3 s"),
                         (down, "the policy service at lattice.policy.down did not answer "
                                "within 1 s (nothing is subscribed to that topic)")):
        path = lattice.module("echo")
        ack = await lattice.ctl("cmd", host.host_id, "la", body={"actor_ref": path})
        assert ack["accepted"], ack
        failed = await until(lambda path=path: event(events, "actors_start_failed",
                                                     image_ref=path), timeout=15)
        assert wanted in failed["error"] and "--policy-fail-open" in failed["error"]
        assert not host.actors.actors

    # fail open: the start goes ahead, and so do calls; nothing is cached, each asks again
    echo = await lattice.start_actor(open_, lattice.module("echo"))
    await lattice.call(echo, "Actor.HealthRequest", b"")
    assert open_.policy is not None and open_.policy.requests == 2
    await lattice.call(echo, "Actor.HealthRequest", b"")
    assert open_.policy.requests == 3


async def test_without_a_policy_topic_nothing_is_asked(lattice):
    host = await lattice.host()
    assert host.policy is None and host.router.policy is None
    assert host.providers.policy_check is None
    echo = await lattice.start_actor(host, lattice.module("echo"))
    await lattice.call(echo, "Actor.HealthRequest", b"")


def test_lattice_host_takes_the_policy_options():
    from lattice.cli import build_parser
    from lattice.cli._common import CliError
    from lattice.cli.host import host_config

    def config(*argv: str):
        return host_config(build_parser().parse_args(["host", *argv]))

    c = config("--policy-topic", TOPIC, "--policy-changes-topic", CHANGES, "--policy-timeout",
               "0.5", "--policy-fail-open", "--policy-cache-ttl", "30")
    assert (c.policy_topic, c.policy_changes_topic, c.policy_timeout, c.policy_fail_open,
            c.policy_cache_ttl) == (TOPIC, CHANGES, 0.5, True, 30.0)
    c = config()
    assert (c.policy_topic, c.policy_changes_topic, c.policy_timeout, c.policy_fail_open,
            c.policy_cache_ttl) == (None, None, 1.0, False, None)
    for argv, why in ((["--policy-topic", "a.*"], "not a NATS subject"),
                      (["--policy-fail-open"], "need --policy-topic"),
                      (["--policy-topic", TOPIC, "--policy-timeout", "0"], "positive")):
        with pytest.raises(CliError, match=why):
            config(*argv)
