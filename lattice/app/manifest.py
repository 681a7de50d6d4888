"""App manifests: wadm's ``core.oam.dev/v1beta1`` Application (docs/manifest.md) as frozen
dataclasses.

Parsing validates everything up front and collects *all* problems into one
:class:`ManifestError`, so a deploy is refused before anything starts and the author fixes the
whole file in one go. Each message names the component and says how to fix it. Unknown trait
types are kept (a newer wadm manifest still round-trips) and reported in
:attr:`Manifest.warnings` instead of failing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import yaml

API_VERSION = "core.oam.dev/v1beta1"
KIND = "Application"
RESERVED_VERSION = "latest"
ACTOR = "actor"
CAPABILITY = "capability"
SPREADSCALER = "spreadscaler"
DAEMONSCALER = "daemonscaler"
LINKDEF = "linkdef"
DEFAULT_WEIGHT = 100
DEFAULT_LINK_NAME = "default"


class ManifestError(ValueError):
    """The manifest is invalid; ``errors`` lists every problem (one line each)."""

    def __init__(self, errors: list[str], name: str = "") -> None:
        self.errors = list(errors)
        what = f"manifest {name!r}" if name else "the manifest"
        plural = "s" if len(self.errors) != 1 else ""
        super().__init__(f"{what} is invalid ({len(self.errors)} problem{plural}):\n"
                         + "\n".join(f"  - {e}" for e in self.errors))


# --- model --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Hosts whose labels include every ``requirements`` pair get a ``weight`` share."""

    name: str
    requirements: dict[str, str] = field(default_factory=dict)
    weight: int = DEFAULT_WEIGHT

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "requirements": dict(self.requirements),
                "weight": self.weight}


@dataclass(frozen=True)
class SpreadScaler:
    """``replicas`` instances in total, split across ``spreads`` by weight."""

    type: ClassVar[str] = SPREADSCALER
    replicas: int
    spreads: tuple[Spread, ...] = ()

    def properties(self) -> dict[str, Any]:
        props: dict[str, Any] = {"replicas": self.replicas}
        if self.spreads:
            props["spread"] = [s.to_dict() for s in self.spreads]
        return props


@dataclass(frozen=True)
class DaemonScaler:
    """``replicas`` instances on every host matching any spread (weights are ignored)."""

    type: ClassVar[str] = DAEMONSCALER
    replicas: int
    spreads: tuple[Spread, ...] = ()

    properties = SpreadScaler.properties


@dataclass(frozen=True)
class LinkDef:
    """A link from the owning actor to the capability component ``target``."""

    type: ClassVar[str] = LINKDEF
    target: str
    values: dict[str, str] = field(default_factory=dict)

    def properties(self) -> dict[str, Any]:
        return {"target": self.target, "values": dict(self.values)}


@dataclass(frozen=True)
class UnsupportedTrait:
    """A trait type Lattice does not implement: kept verbatim, reported as a warning."""

    type: str
    properties: Any = None


Trait = SpreadScaler | DaemonScaler | LinkDef | UnsupportedTrait
Scaler = SpreadScaler | DaemonScaler


@dataclass(frozen=True)
class Component:
    name: str
    type: str  # ACTOR or CAPABILITY
    image: str
    contract: str = ""  # capabilities only
    link_name: str = DEFAULT_LINK_NAME  # capabilities only
    config: dict[str, Any] | str | None = None  # capabilities only; handed to the provider
    embedded: bool = False  # Lattice extension, capabilities only
    memory_limit_mib: int | None = None  # Lattice extension, actors only: memory per instance
    traits: tuple[Trait, ...] = ()

    @property
    def is_actor(self) -> bool:
        return self.type == ACTOR

    @property
    def scalers(self) -> list[Scaler]:
        return [t for t in self.traits if isinstance(t, SpreadScaler | DaemonScaler)]

    @property
    def linkdefs(self) -> list[LinkDef]:
        return [t for t in self.traits if isinstance(t, LinkDef)]

    def to_dict(self) -> dict[str, Any]:
        props: dict[str, Any] = {"image": self.image}
        if self.memory_limit_mib is not None:
            props["memory_limit_mib"] = self.memory_limit_mib
        if not self.is_actor:
            props.update(contract=self.contract, link_name=self.link_name)
            if self.config is not None:
                props["config"] = self.config
            if self.embedded:
                props["embedded"] = True
        traits = [{"type": t.type, "properties": t.properties if isinstance(t, UnsupportedTrait)
                   else t.properties()} for t in self.traits]
        doc: dict[str, Any] = {"name": self.name, "type": self.type, "properties": props}
        if traits:
            doc["traits"] = traits
        return doc


@dataclass(frozen=True)
class Manifest:
    name: str
    version: str
    description: str = ""
    components: tuple[Component, ...] = ()
    #: Non-fatal findings (unsupported traits, ignored properties); not part of equality.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_yaml(cls, text: str | bytes) -> Manifest:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ManifestError([f"the manifest is not valid YAML: {exc}"]) from None
        except RecursionError:
            raise ManifestError(["the manifest is not valid YAML: nested too deeply"]) from None
        except ValueError as exc:  # a date that does not exist, a number of 4300+ digits
            reason = "a number has too many digits" if "digits" in str(exc) else str(exc)
            raise ManifestError([f"the manifest is not valid YAML: a value cannot be read "
                                 f"({reason})"]) from None
        _check_size(doc)
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Manifest:
        return _Parser().parse(doc)

    def to_dict(self) -> dict[str, Any]:
        """The canonical manifest (JSON-able; aliases resolved, defaults filled in):
        ``Manifest.from_dict(m.to_dict()) == m``."""
        annotations = {"version": self.version}
        if self.description:
            annotations["description"] = self.description
        return {"apiVersion": API_VERSION, "kind": KIND,
                "metadata": {"name": self.name, "annotations": annotations},
                "spec": {"components": [c.to_dict() for c in self.components]}}

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    def map_images(self, fn: Callable[[str], str]) -> Manifest:
        """A copy with every component image passed through ``fn``. Hosts report a component's
        ``image_ref`` exactly as it was sent, so resolve refs once, before deploying."""
        return replace(self, components=tuple(replace(c, image=fn(c.image))
                                              for c in self.components))

    def resolve_paths(self, base_dir: str | os.PathLike[str]) -> Manifest:
        """Relative path images (``./x.wasm``, ``../x.par``) made absolute against the
        manifest's directory; names, absolute paths and URLs are kept. No filesystem access."""
        def resolve(image: str) -> str:
            if image.startswith(("./", "../")):
                return os.path.normpath(os.path.join(os.fspath(base_dir), image))
            return image
        return self.map_images(resolve)


MAX_VALUES = 100_000


def _check_size(doc: Any) -> None:
    """Refuse a document that holds more than MAX_VALUES values once its YAML aliases are
    expanded (an alias "bomb" of nine nested lists of nine is 387 million, and every error
    message or JSON dump of it would run for ever)."""
    seen, stack = 0, [doc]
    while stack:
        value = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise ManifestError([f"the manifest holds more than {MAX_VALUES:,} values once "
                                 "its YAML aliases (*name) are expanded: write it out plainly"])
        if isinstance(value, Mapping):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)


def load_manifest(source: str | bytes | Mapping[str, Any]) -> Manifest:
    """A manifest from YAML (or JSON) text or an already-loaded mapping."""
    if isinstance(source, str | bytes):
        return Manifest.from_yaml(source)
    return Manifest.from_dict(source)


# --- parsing ------------------------------------------------------------------------------------


_CAPABILITY_PROPS = {"image", "contract", "link_name", "config", "embedded"}
_SCALER_PROPS = {"replicas", "instances", "spread"}


class _Parser:
    """One validation pass; problems accumulate in ``errors`` instead of raising early."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.broken: set[str] = set()  # components already reported (no follow-up errors)

    def parse(self, doc: Any) -> Manifest:
        if not isinstance(doc, Mapping):
            raise ManifestError(["the manifest must be a YAML mapping with apiVersion, kind, "
                                 "metadata and spec"])
        if doc.get("apiVersion") != API_VERSION:
            self.errors.append(f"apiVersion is {doc.get('apiVersion')!r}: set "
                               f"`apiVersion: {API_VERSION}`")
        if doc.get("kind") != KIND:
            self.errors.append(f"kind is {doc.get('kind')!r}: set `kind: {KIND}`")
        name, version, description = self._metadata(doc.get("metadata"))
        components = self._components(doc.get("spec"))
        self._cross_check(components)
        if self.errors:
            raise ManifestError(self.errors, name)
        return Manifest(name=name, version=version, description=description,
                        components=tuple(components), warnings=tuple(self.warnings))

    # -- metadata --

    def _metadata(self, meta: Any) -> tuple[str, str, str]:
        if not isinstance(meta, Mapping):
            self.errors.append("metadata is missing: add metadata.name and "
                               "metadata.annotations.version")
            return "", "", ""
        name = meta.get("name")
        if not isinstance(name, str) or not name.strip():
            self.errors.append("metadata.name is missing: give the app a name that is unique "
                               "in the lattice")
            name = ""
        annotations = meta.get("annotations")
        if annotations is None:
            annotations = {}
        if not isinstance(annotations, Mapping):
            self.errors.append("metadata.annotations must be a mapping: add "
                               "`version: v0.1.0` under it")
            annotations = {}
        version = annotations.get("version")
        if isinstance(version, bool) or not isinstance(version, str | int):
            if version is None:
                self.errors.append("metadata.annotations.version is missing: add a version, "
                                   "e.g. `version: v0.1.0`")
            else:
                self.errors.append(f"metadata.annotations.version {version!r} is not text: "
                                   f"quote it, e.g. `version: \"{version}\"`")
            version = ""
        version = str(version).strip()
        if version == RESERVED_VERSION:
            self.errors.append("metadata.annotations.version 'latest' is reserved: choose "
                               "another version, e.g. v0.1.0")
        description = annotations.get("description")
        if description is not None and not isinstance(description, str):
            self.errors.append("metadata.annotations.description must be text: quote it")
            description = None
        return name, version, description or ""

    # -- components --

    def _components(self, spec: Any) -> list[Component]:
        if not isinstance(spec, Mapping) or not isinstance(spec.get("components"), list):
            self.errors.append("spec.components is missing: list the app's actors and "
                               "capabilities under spec.components")
            return []
        components: list[Component] = []
        seen: dict[str, int] = {}
        for index, raw in enumerate(spec["components"], start=1):
            comp = self._component(index, raw)
            if comp is None:
                continue
            if comp.name in seen:
                self.errors.append(f"component {comp.name}: the name is used twice (components "
                                   f"#{seen[comp.name]} and #{index}): give each component a "
                                   "unique name")
                continue
            seen[comp.name] = index
            components.append(comp)
        return components

    def _component(self, index: int, raw: Any) -> Component | None:
        if not isinstance(raw, Mapping):
            self.errors.append(f"component #{index}: not a mapping: give it name, type, "
                               "properties and traits")
            return None
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            self.errors.append(f"component #{index}: name is missing: give it a name unique "
                               "within the app")
            return None
        where = f"component {name}"
        kind = raw.get("type")
        if kind not in (ACTOR, CAPABILITY):
            self.errors.append(f"{where}: type {kind!r} is not supported: use `{ACTOR}` or "
                               f"`{CAPABILITY}`")
            self.broken.add(name)
            return None
        props = raw.get("properties")
        if props is None:
            props = {}
        if not isinstance(props, Mapping):
            self.errors.append(f"{where}: properties must be a mapping with at least `image`")
            props = {}
        image = props.get("image")
        if not isinstance(image, str) or not image.strip():
            self.errors.append(f"{where}: properties.image is missing: set it to an OCI "
                               "reference, a file:// URL or a path"
                               + ("" if kind == ACTOR else ", or a built-in provider name"))
            image = ""
        allowed = {"image", "memory_limit_mib"} if kind == ACTOR else _CAPABILITY_PROPS
        for key in props:
            if key not in allowed:
                self.warnings.append(f"{where}: property {key!r} is ignored for a {kind}")
        memory = props.get("memory_limit_mib") if kind == ACTOR else None
        if memory is not None and (isinstance(memory, bool) or not isinstance(memory, int)
                                   or memory < 1):
            self.errors.append(f"{where}: properties.memory_limit_mib must be a whole number of "
                               f"MiB, at least 1 (e.g. 256), got {memory!r:.40}")
            memory = None
        comp = Component(name=name, type=kind, image=image, memory_limit_mib=memory,
                         traits=self._traits(where, kind, raw.get("traits")))
        if kind == CAPABILITY:
            comp = self._capability(where, comp, props)
        return comp

    def _capability(self, where: str, comp: Component, props: Mapping[str, Any]) -> Component:
        contract = props.get("contract")
        if not isinstance(contract, str) or not contract.strip():
            self.errors.append(f"{where}: a capability needs properties.contract, e.g. "
                               "`contract: wasmcloud:keyvalue`")
            contract = ""
        link_name = props.get("link_name", DEFAULT_LINK_NAME)
        if link_name is None:
            link_name = DEFAULT_LINK_NAME
        if not isinstance(link_name, str) or not link_name.strip():
            self.errors.append(f"{where}: properties.link_name must be non-empty text (or left "
                               "out for `default`)")
            link_name = DEFAULT_LINK_NAME
        config = props.get("config")
        if config is not None:
            if not isinstance(config, str | Mapping):
                self.errors.append(f"{where}: properties.config must be a mapping or a string")
                config = None
            elif isinstance(config, Mapping):
                try:
                    config = json.loads(json.dumps(config))
                except (TypeError, ValueError):
                    self.errors.append(f"{where}: properties.config holds values that are not "
                                       "JSON (e.g. a date or binary): quote them as strings")
                    config = None
        embedded = props.get("embedded", False)
        if embedded is None:
            embedded = False
        if not isinstance(embedded, bool):
            self.errors.append(f"{where}: properties.embedded must be true or false")
            embedded = False
        return replace(comp, contract=contract, link_name=link_name, config=config,
                       embedded=embedded)

    # -- traits --

    def _traits(self, where: str, kind: str, raw: Any) -> tuple[Trait, ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.errors.append(f"{where}: traits must be a list of {{type, properties}}")
            return ()
        traits: list[Trait] = []
        scalers = 0
        for index, entry in enumerate(raw, start=1):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("type"), str):
                self.errors.append(f"{where}: trait #{index} needs a `type` (spreadscaler, "
                                   "daemonscaler or linkdef) and `properties`")
                continue
            ttype, props = entry["type"], entry.get("properties")
            trait: Trait | None
            if ttype in (SPREADSCALER, DAEMONSCALER):
                trait = self._scaler(f"{where}: {ttype}", ttype, props)
                scalers += 1
            elif ttype == LINKDEF:
                if kind != ACTOR:
                    self.errors.append(f"{where}: a linkdef is only allowed on actors: move it "
                                       "to the actor component that calls this capability")
                    continue
                trait = self._linkdef(f"{where}: linkdef", props)
            else:
                self.warnings.append(f"{where}: trait type {ttype!r} is not supported by "
                                     "Lattice: it is kept but has no effect")
                try:  # kept, so it must survive the JSON the app store writes
                    props = json.loads(json.dumps(props))
                except (TypeError, ValueError, RecursionError):
                    self.errors.append(f"{where}: trait {ttype!r} has properties that are not "
                                       "JSON (e.g. a date or binary): quote them as strings")
                    continue
                trait = UnsupportedTrait(ttype, props)
            if trait is not None:
                traits.append(trait)
        if scalers > 1:
            self.warnings.append(f"{where}: {scalers} scaler traits: each one starts its own "
                                 "instances")
        return tuple(traits)

    def _scaler(self, where: str, ttype: str, props: Any) -> Scaler | None:
        if not isinstance(props, Mapping):
            self.errors.append(f"{where}: properties must be a mapping with `replicas`")
            return None
        for key in props:
            if key not in _SCALER_PROPS:
                self.warnings.append(f"{where}: property {key!r} is ignored")
        replicas = props.get("replicas")
        instances = props.get("instances")
        if replicas is not None and instances is not None and replicas != instances:
            self.errors.append(f"{where}: replicas ({replicas!r}) and its alias instances "
                               f"({instances!r}) disagree: keep only `replicas`")
            return None
        count = replicas if replicas is not None else instances
        ok = True
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            what = "is missing" if count is None else f"is {count!r}"
            self.errors.append(f"{where}: replicas {what}: set `replicas` to a whole number "
                               "≥ 0")
            ok = False
        spreads = self._spreads(where, props.get("spread"))
        if spreads is None or not ok:
            return None
        cls = SpreadScaler if ttype == SPREADSCALER else DaemonScaler
        return cls(replicas=count, spreads=spreads)

    def _spreads(self, where: str, raw: Any) -> tuple[Spread, ...] | None:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            self.errors.append(f"{where}: spread must be a list of {{name, requirements, "
                               "weight}")
            return None
        spreads: list[Spread] = []
        ok = True
        names: set[str] = set()
        for index, entry in enumerate(raw, start=1):
            if not isinstance(entry, Mapping):
                self.errors.append(f"{where}: spread #{index} must be a mapping with name, "
                                   "requirements and weight")
                ok = False
                continue
            name = entry.get("name")
            if not isinstance(name, str) or not name.strip():
                self.errors.append(f"{where}: spread #{index} needs a name (it labels the "
                                   "instances it places)")
                ok = False
                continue
            label = f"{where}: spread {name!r}"
            if name in names:
                self.errors.append(f"{label} is declared twice: give each spread a unique name")
                ok = False
            names.add(name)
            weight = entry.get("weight", DEFAULT_WEIGHT)
            if weight is None:
                weight = DEFAULT_WEIGHT
            if isinstance(weight, bool) or not isinstance(weight, int) or weight <= 0:
                self.errors.append(f"{label} has weight {weight!r}: weights must be whole "
                                   f"numbers > 0 (default {DEFAULT_WEIGHT})")
                ok = False
            requirements = self._string_map(f"{label} requirements",
                                            entry.get("requirements"))
            if requirements is None:
                ok = False
                continue
            if ok:
                spreads.append(Spread(name=name, requirements=requirements, weight=weight))
        return tuple(spreads) if ok else None

    def _linkdef(self, where: str, props: Any) -> LinkDef | None:
        if not isinstance(props, Mapping):
            self.errors.append(f"{where}: properties must be a mapping with `target`")
            return None
        for key in props:
            if key not in ("target", "values"):
                self.warnings.append(f"{where}: property {key!r} is ignored")
        target = props.get("target")
        if not isinstance(target, str) or not target.strip():
            self.errors.append(f"{where}: target is missing: set it to the name of a "
                               "capability component of this app")
            return None
        values = self._string_map(f"{where} to {target}: values", props.get("values"))
        if values is None:
            return None
        return LinkDef(target=target, values=values)

    def _string_map(self, where: str, raw: Any) -> dict[str, str] | None:
        """Labels and link values are string maps on the wire; YAML scalars are written the
        way a user typed them (``true`` → "true", 8080 → "8080")."""
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.errors.append(f"{where} must be a mapping of names to values")
            return None
        out: dict[str, str] = {}
        for key, value in raw.items():
            text = _scalar_text(value)
            if text is None:
                self.errors.append(f"{where}: {key!r} has no text value ({value!r}): give a "
                                   "string, number or boolean (quote an empty string)")
                return None
            out[str(key)] = text
        return out

    # -- cross-component rules --

    def _cross_check(self, components: list[Component]) -> None:
        by_name = {c.name: c for c in components}
        for comp in components:
            seen: dict[tuple[str, str], str] = {}
            for link in comp.linkdefs:
                target = by_name.get(link.target)
                where = f"component {comp.name}: linkdef"
                if target is None and link.target in self.broken:
                    continue
                if target is None:
                    known = ", ".join(c.name for c in components if not c.is_actor) or "none"
                    self.errors.append(f"{where} target {link.target!r} is not a component of "
                                       f"this app: set target to a capability component "
                                       f"(capabilities here: {known})")
                    continue
                if target.is_actor:
                    self.errors.append(f"{where} target {link.target!r} is an actor, not a "
                                       "capability: link to a capability component (actors "
                                       "call each other without links)")
                    continue
                key = (target.contract, target.link_name)
                if key in seen:
                    self.errors.append(
                        f"{where}s to {seen[key]!r} and {link.target!r} both use contract "
                        f"{target.contract} with link name {target.link_name}: remove one, "
                        "or give one of the capabilities another link_name")
                    continue
                seen[key] = link.target


def _scalar_text(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def iter_scalers(component: Component) -> Iterator[tuple[Scaler, str]]:
    """Each scaler trait of ``component`` with its stable id: ``{component}/{type}``, and
    ``{component}/{type}#{n}`` for the n-th (n ≥ 2) of one type. The id stays the same across
    versions, so a new manifest version scales or updates what the old one started."""
    seen: dict[str, int] = {}
    for trait in component.scalers:
        seen[trait.type] = seen.get(trait.type, 0) + 1
        n = seen[trait.type]
        yield trait, f"{component.name}/{trait.type}" + (f"#{n}" if n > 1 else "")
