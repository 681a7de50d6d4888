"""The host side of the control interface (docs/wire.md §3.3): JSON over
``wasmbus.ctl.{lattice}.…``.

Queries answer from this host's caches. Commands are acknowledged at once
(``{"accepted": true, "error": ""}``) and carried out in the background; their outcome is
published as events, which is what clients wait for. Field spellings of every client generation
are accepted (§3.3.2 version skew).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from lattice.artifacts import set_registry_credentials
from lattice.connect import settle
from lattice.host.actors import ActorCommandError
from lattice.links import LinkDefinition, check_link
from lattice.rpc import subjects

if TYPE_CHECKING:
    from lattice.host.host import Host

log = logging.getLogger("lattice.host.control")

Handler = Callable[[dict[str, Any], Msg], Awaitable[Any]]


def ack(error: str = "") -> bytes:
    return json.dumps({"accepted": not error, "error": error}).encode()


def _count(body: dict[str, Any], default: int) -> int:
    # ctl ≥0.30 sends `count` as an alias of max_concurrent, possibly null (= unbounded).
    for key in ("count", "max_concurrent", "max_instances"):
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{key} must be a whole number ≥ 0, got {value!r}")
        return value
    return default


# Typed reads of a command's fields, so a wrong type is refused before the command is
# acknowledged, instead of failing later in the background where only the host log sees it.

def _text(body: dict[str, Any], *names: str, default: str = "") -> str:
    """The first of ``names`` present in ``body``: a string (null and "" mean ``default``)."""
    for name in names:
        value = body.get(name)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string, got {type(value).__name__} {value!r:.60}")
        return value
    return default


def _labels(body: dict[str, Any], name: str = "annotations") -> dict[str, str]:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{name} must be an object of string values, e.g. "
                         f'{{"zone": "eu"}}, got {value!r:.60}')
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r:.60}")
    return value


class ControlServer:
    def __init__(self, host: Host) -> None:
        self.host = host
        self._subs: list[Any] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def _subject(self, *parts: str) -> str:
        return subjects.ctl(self.host.lattice, *parts, prefix=self.host.config.ctl_prefix)

    async def start(self) -> None:
        nc, hid = self.host.ctl_nc, self.host.host_id
        prefix = self._subject()
        table: list[tuple[str, str | None, Callable[[Msg], Awaitable[None]]]] = [
            (self._subject("ping", "hosts"), None, self._ping),
            (self._subject("linkdefs", "*"), f"{prefix}.linkdefs", self._linkdefs),
            (self._subject("get", "*"), f"{prefix}.get", self._get),
            (self._subject("get", hid, "inv"), None, self._inventory),
            (self._subject("cmd", hid, "*"), None, self._command),
            (self._subject("auction", ">"), None, self._auction),
            (self._subject("labels", hid, "*"), None, self._labels),
            (self._subject("registries", "put"), None, self._registries),
        ]
        for subject, queue, cb in table:
            self._subs.append(await nc.subscribe(subject, queue=queue or "", cb=cb))
        await settle(nc)  # answerable before host_started goes out

    async def stop(self) -> None:
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()

    # ---- plumbing --------------------------------------------------------------------------------

    async def _respond(self, msg: Msg, data: bytes) -> None:
        if msg.reply:
            with contextlib.suppress(Exception):
                await msg.respond(data)

    def _body(self, msg: Msg) -> dict[str, Any]:
        if not msg.data:
            return {}
        try:
            doc = json.loads(msg.data)
        except RecursionError:  # not a ValueError: without this, no reply at all
            raise ValueError("the request body is JSON nested too deeply") from None
        except UnicodeDecodeError:
            raise ValueError("the request body is not JSON: it is not UTF-8 text") from None
        except ValueError as exc:  # JSONDecodeError, or a number of over 4300 digits
            if isinstance(exc, json.JSONDecodeError):
                raise
            raise ValueError("the request body holds a number too long to read") from None
        if not isinstance(doc, dict):
            raise ValueError("expected a JSON object")
        return doc

    def _background(self, coro: Awaitable[None], what: str) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("control command failed", extra={"command": what})
        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- queries ---------------------------------------------------------------------------------

    async def _ping(self, msg: Msg) -> None:
        await self._respond(msg, json.dumps(self.host.ping_reply()).encode())

    async def _inventory(self, msg: Msg) -> None:
        await self._respond(msg, json.dumps(self.host.inventory()).encode())

    async def _get(self, msg: Msg) -> None:
        what = msg.subject.rsplit(".", 1)[-1]
        store = self.host.store
        if what == "claims":
            doc: dict[str, Any] = {"claims": store.claims_list()}
        elif what == "links":
            doc = {"links": [link.to_wire() for link in store.links]}
        else:
            doc = {"error": f"unknown query {what}"}
        await self._respond(msg, json.dumps(doc).encode())

    # ---- lattice commands ------------------------------------------------------------------------

    async def _linkdefs(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        try:
            body = self._body(msg)
            actor_id = _text(body, "actor_id")
            contract_id = _text(body, "contract_id")
            link_name = _text(body, "link_name", default="default")
            if not actor_id or not contract_id:
                raise ValueError("actor_id and contract_id are required")
            if verb == "put":
                provider_id = _text(body, "provider_id")
                if not provider_id:
                    raise ValueError("provider_id is required")
                values = _labels(body, "values")
                # Refused here, before it is acknowledged or stored: its ids become subjects.
                link = check_link(LinkDefinition(actor_id, provider_id, contract_id, link_name,
                                                 values))
                await self.host.store.put_link(link)
            elif verb == "del":
                if not await self.host.store.delete_link(actor_id, contract_id, link_name):
                    raise ValueError(f"no link for actor {actor_id}, contract {contract_id}, "
                                     f"link name {link_name}")
            else:
                raise ValueError(f"unknown linkdefs verb {verb}")
        except (ValueError, AttributeError) as exc:
            await self._respond(msg, ack(str(exc)))
            return
        except Exception as exc:
            await self._respond(msg, ack(f"could not store the link: {exc}"))
            return
        await self._respond(msg, ack())

    async def _auction(self, msg: Msg) -> None:
        kind = msg.subject.rsplit(".", 1)[-1]
        try:
            body = self._body(msg)
        except ValueError:
            return
        wanted = body.get("constraints") or {}
        if not isinstance(wanted, dict):
            return  # not an auction anyone can match: stay silent
        constraints = {str(k): str(v) for k, v in wanted.items()}
        labels = self.host.labels
        if any(labels.get(k) != v for k, v in constraints.items()):
            return  # not a match: stay silent
        if kind == "actor":
            doc = {"actor_ref": body.get("actor_ref", ""), "constraints": constraints,
                   "host_id": self.host.host_id}
        elif kind == "provider":
            link_name = str(body.get("link_name") or "default")
            ref = str(body.get("provider_ref", ""))
            try:
                subjects.check_link_name(link_name)
            except subjects.InvalidSubjectToken:
                return  # no host could run it: the client says why before it asks
            if self.host.provider_runs(ref, link_name):
                return
            doc = {"provider_ref": ref, "link_name": link_name, "constraints": constraints,
                   "host_id": self.host.host_id}
        else:
            return
        await self._respond(msg, json.dumps(doc).encode())

    async def _labels(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        try:
            body = self._body(msg)
            key = _text(body, "key")
            if not key:
                raise ValueError("key is required")
            if key.startswith("hostcore."):
                raise ValueError(f"label {key} is built in and cannot be changed")
            if verb == "put":
                self.host.labels[key] = _text(body, "value")
            elif verb == "del":
                if self.host.labels.pop(key, None) is None:
                    raise ValueError(f"this host has no label {key}")
            else:
                raise ValueError(f"unknown labels verb {verb}")
        except ValueError as exc:
            await self._respond(msg, ack(str(exc)))
            return
        await self._respond(msg, ack())
        await self.host.events.publish("labels_changed", {"host_id": self.host.host_id,
                                                          "labels": dict(self.host.labels)})

    async def _registries(self, msg: Msg) -> None:
        """``registries.put``: credentials for OCI registries, used by every later pull."""
        try:
            set_registry_credentials(self._body(msg))
        except ValueError as exc:
            await self._respond(msg, ack(f"invalid registries.put body: {exc}"))
            return
        await self._respond(msg, ack())

    # ---- host commands ---------------------------------------------------------------------------

    async def _command(self, msg: Msg) -> None:
        verb = msg.subject.rsplit(".", 1)[-1]
        handler = {"la": self._launch_actor, "sa": self._stop_actor, "scale": self._scale_actor,
                   "upd": self._update_actor, "lp": self._launch_provider,
                   "sp": self._stop_provider, "stop": self._stop_host}.get(verb)
        if handler is None:
            await self._respond(msg, ack(f"unknown command {verb}"))
            return
        try:
            body = self._body(msg)
            work = handler(body)  # validates synchronously, returns the background part
        except (ValueError, ActorCommandError) as exc:
            await self._respond(msg, ack(str(exc)))
            return
        await self._respond(msg, ack())
        self._background(work, verb)

    def _launch_actor(self, body: dict[str, Any]) -> Awaitable[None]:
        ref = _text(body, "actor_ref")
        if not ref:
            raise ValueError("actor_ref is required")
        count = max(1, _count(body, 1))
        annotations = _labels(body)
        memory = body.get("memory_limit_mib")
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)
                                   or memory < 1):
            raise ValueError(f"memory_limit_mib must be a whole number of MiB ≥ 1, got "
                             f"{memory!r:.60}")
        self.host.actors.check_capacity(None, count)  # refused in the ack, not after it
        return self._start_actor(ref, count, annotations, memory)

    async def _start_actor(self, ref: str, count: int, annotations: dict[str, str],
                           memory_limit_mib: int | None = None) -> None:
        try:
            await self.host.actors.start(ref, count, annotations,
                                         memory_limit_mib=memory_limit_mib)
        except ActorCommandError as exc:
            await self.host.events.publish("actor_start_failed", {"actor_ref": ref,
                                                                  "error": str(exc)})
            await self.host.events.publish("actors_start_failed", {
                "public_key": "", "image_ref": ref, "annotations": annotations,
                "host_id": self.host.host_id, "error": str(exc)})

    def _stop_actor(self, body: dict[str, Any]) -> Awaitable[None]:
        key = _text(body, "actor_id", "actor_ref")
        if not key:
            raise ValueError("actor_ref (the actor's public key) is required")
        if key not in self.host.actors.actors:
            raise ValueError(f"actor {key} is not running on host {self.host.host_id}")
        return self.host.actors.stop(key, _count(body, 0), _labels(body))

    def _scale_actor(self, body: dict[str, Any]) -> Awaitable[None]:
        ref = _text(body, "actor_ref")
        key = _text(body, "actor_id") or self._key_for_ref(ref)
        if not key and not ref:
            raise ValueError("actor_id or actor_ref is required")
        count = _count(body, 1)
        annotations = _labels(body)
        self.host.actors.check_capacity(key or None, count, replace=True)

        async def work() -> None:
            try:
                if key:
                    await self.host.actors.scale(key, ref or None, count, annotations)
                else:
                    await self.host.actors.start(ref, count, annotations)
                await self.host.events.publish("actor_scaled", {
                    "public_key": key, "host_id": self.host.host_id, "image_ref": ref,
                    "annotations": annotations, "max_instances": count})
            except ActorCommandError as exc:
                await self.host.events.publish("actor_scale_failed", {
                    "public_key": key, "host_id": self.host.host_id, "image_ref": ref,
                    "annotations": annotations, "max_instances": count, "error": str(exc)})
        return work()

    def _key_for_ref(self, ref: str) -> str:
        for running in self.host.actors.actors.values():
            if running.image_ref == ref:
                return running.key
        return ""

    def _update_actor(self, body: dict[str, Any]) -> Awaitable[None]:
        new_ref = _text(body, "new_actor_ref")
        key = _text(body, "actor_id")
        if not new_ref or not key:
            raise ValueError("actor_id and new_actor_ref are required")
        if key not in self.host.actors.actors:
            raise ValueError(f"actor {key} is not running on host {self.host.host_id}")

        async def work() -> None:
            try:
                await self.host.actors.update(key, new_ref)
            except ActorCommandError as exc:
                running = self.host.actors.actors.get(key)
                for inst in running.instances if running else []:
                    await self.host.events.publish("actor_update_failed", {
                        "public_key": key, "revision": inst.revision,
                        "instance_id": inst.instance_id, "reason": str(exc),
                        "host_id": self.host.host_id})
                if not running or not running.instances:
                    await self.host.events.publish("actor_update_failed", {
                        "public_key": key, "revision": 0, "instance_id": "",
                        "reason": str(exc), "host_id": self.host.host_id})
        return work()

    def _launch_provider(self, body: dict[str, Any]) -> Awaitable[None]:
        ref = _text(body, "provider_ref")
        if not ref:
            raise ValueError("provider_ref is required")
        link_name = subjects.check_link_name(_text(body, "link_name", default="default"))
        config = body.get("configuration", body.get("config")) or ""
        if not isinstance(config, str | dict | list):
            raise ValueError("configuration must be a string or a JSON object, got "
                             f"{config!r:.60}")
        if not isinstance(config, str):
            config = json.dumps(config)
        annotations, embedded = _labels(body), _flag(body, "embedded")
        contract_id = _text(body, "contract_id") or None
        if self.host.provider_runs(ref, link_name):
            raise ValueError(f"provider {ref} with link name {link_name} already runs on this "
                             "host")
        return self.host.start_provider(ref, link_name, config_json=config,
                                        annotations=annotations, embedded=embedded,
                                        contract_id=contract_id)

    def _stop_provider(self, body: dict[str, Any]) -> Awaitable[None]:
        key = _text(body, "provider_ref", "provider_id")
        link_name = _text(body, "link_name", default="default")
        if not key:
            raise ValueError("provider_ref (the provider's public key) is required")
        async def work() -> None:
            await self.host.providers.stop(key, link_name)
        return work()

    def _stop_host(self, body: dict[str, Any]) -> Awaitable[None]:
        async def work() -> None:
            self.host.request_stop()
        return work()
