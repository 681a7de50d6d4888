"""Manifest parsing and validation (docs/manifest.md): the documented example, every rule's
message, aliases, unsupported traits and the storage round trip."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from lattice.app.manifest import (
    Component,
    DaemonScaler,
    LinkDef,
    Manifest,
    ManifestError,
    Spread,
    SpreadScaler,
    UnsupportedTrait,
    iter_scalers,
    load_manifest,
)

EXAMPLE = Path(__file__).with_name("kvcounter.yaml")


def example() -> dict:
    import yaml
    return yaml.safe_load(EXAMPLE.read_text())


def errors_of(doc) -> list[str]:
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(doc)
    return info.value.errors


def only_error(doc) -> str:
    errors = errors_of(doc)
    assert len(errors) == 1, errors
    return errors[0]


def comp(doc: dict, name: str) -> dict:
    return next(c for c in doc["spec"]["components"] if c["name"] == name)


# --- the documented example ---------------------------------------------------------------------


def test_the_manifest_md_example_parses_completely():
    m = load_manifest(EXAMPLE.read_text())
    assert (m.name, m.version, m.description) == ("kvcounter", "v0.1.0", "HTTP counter")
    counter, kv, http = m.components
    assert counter == Component(
        name="counter", type="actor", image="./actors/kvcounter/build/kvcounter_s.wasm",
        traits=(SpreadScaler(3, (Spread("eu", {"region": "eu"}, 80),
                                 Spread("us", {"region": "us"}, 20))),
                LinkDef("kv", {"URL": "redis://127.0.0.1:6379/"}),
                LinkDef("http", {"port": "8080"})))
    assert kv == Component(name="kv", type="capability", image="keyvalue-redis",
                           contract="wasmcloud:keyvalue", link_name="default",
                           config={"url": "redis://127.0.0.1:6379/"}, embedded=False,
                           traits=(DaemonScaler(1),))
    assert http.contract == "wasmcloud:httpserver" and http.link_name == "default"
    assert http.config is None and http.traits == (SpreadScaler(1),)
    assert m.warnings == ()
    assert [sid for _, sid in iter_scalers(counter)] == ["counter/spreadscaler"]


def test_bytes_and_dicts_load_the_same():
    text = EXAMPLE.read_text()
    assert load_manifest(text.encode()) == load_manifest(example()) == load_manifest(text)


def test_to_dict_is_json_and_round_trips():
    m = load_manifest(EXAMPLE.read_text())
    doc = m.to_dict()
    assert Manifest.from_dict(json.loads(json.dumps(doc))) == m
    counter = comp(doc, "counter")
    assert counter["properties"] == {"image": "./actors/kvcounter/build/kvcounter_s.wasm"}
    assert counter["traits"][0] == {"type": "spreadscaler", "properties": {
        "replicas": 3, "spread": [{"name": "eu", "requirements": {"region": "eu"}, "weight": 80},
                                  {"name": "us", "requirements": {"region": "us"}, "weight": 20}]}}
    assert doc["metadata"] == {"name": "kvcounter",
                               "annotations": {"version": "v0.1.0", "description": "HTTP counter"}}


def test_defaults_link_name_weight_and_empty_spread():
    doc = example()
    del comp(doc, "kv")["properties"]["link_name"]
    comp(doc, "counter")["traits"][0]["properties"]["spread"] = [
        {"name": "all", "requirements": {}}]
    m = Manifest.from_dict(doc)
    assert m.component("kv").link_name == "default"
    assert m.component("counter").scalers[0].spreads == (Spread("all", {}, 100),)


def test_instances_is_an_alias_of_replicas():
    doc = example()
    props = comp(doc, "counter")["traits"][0]["properties"]
    props["instances"] = props.pop("replicas")
    m = Manifest.from_dict(doc)
    assert m.component("counter").scalers[0].replicas == 3
    assert "instances" not in json.dumps(m.to_dict())  # stored canonically as replicas
    props["replicas"] = 3  # both, agreeing: fine
    assert Manifest.from_dict(doc) == m


def test_yaml_scalars_become_the_text_a_user_typed():
    doc = example()
    comp(doc, "counter")["traits"][2]["properties"]["values"] = {
        "port": 8080, "readonly_mode": True, "ratio": 0.5}
    comp(doc, "counter")["traits"][0]["properties"]["spread"][0]["requirements"] = {"zone": 1}
    c = Manifest.from_dict(doc).component("counter")
    assert c.linkdefs[1].values == {"port": "8080", "readonly_mode": "true", "ratio": "0.5"}
    assert c.scalers[0].spreads[0].requirements == {"zone": "1"}


def test_config_may_be_an_opaque_string_and_embedded_true():
    doc = example()
    comp(doc, "kv")["properties"].update(config="opaque;string", embedded=True)
    kv = Manifest.from_dict(doc).component("kv")
    assert (kv.config, kv.embedded) == ("opaque;string", True)
    assert Manifest.from_dict(Manifest.from_dict(doc).to_dict()).component("kv") == kv


def test_component_without_traits_and_a_numeric_version():
    doc = example()
    comp(doc, "http").pop("traits")
    doc["metadata"]["annotations"]["version"] = 2
    m = Manifest.from_dict(doc)
    assert m.component("http").traits == () and m.version == "2"


def test_resolve_paths_only_touches_relative_paths(tmp_path):
    m = load_manifest(EXAMPLE.read_text()).resolve_paths(tmp_path / "app")
    assert m.component("counter").image == str(
        tmp_path / "app" / "actors/kvcounter/build/kvcounter_s.wasm")
    assert m.component("kv").image == "keyvalue-redis"


# --- unsupported traits -------------------------------------------------------------------------


def test_unknown_trait_types_are_kept_and_reported():
    doc = example()
    comp(doc, "counter")["traits"].append({"type": "autoscaler", "properties": {"max": 9}})
    m = Manifest.from_dict(doc)
    assert m.component("counter").traits[-1] == UnsupportedTrait("autoscaler", {"max": 9})
    assert m.warnings == ("component counter: trait type 'autoscaler' is not supported by "
                          "Lattice: it is kept but has no effect",)
    again = Manifest.from_dict(m.to_dict())
    assert again == m and again.warnings == m.warnings


def test_ignored_properties_and_several_scalers_are_warnings():
    doc = example()
    comp(doc, "counter")["properties"]["contract"] = "wasmcloud:x"
    comp(doc, "counter")["traits"][0]["properties"]["spreads"] = []
    comp(doc, "http")["traits"].append({"type": "daemonscaler", "properties": {"replicas": 1}})
    w = Manifest.from_dict(doc).warnings
    assert "component counter: property 'contract' is ignored for a actor" in w
    assert "component counter: spreadscaler: property 'spreads' is ignored" in w
    assert "component http: 2 scaler traits: each one starts its own instances" in w


# --- validation ---------------------------------------------------------------------------------


def test_api_version_and_kind():
    doc = example()
    doc["apiVersion"] = "core.oam.dev/v1alpha1"
    doc["kind"] = "Deployment"
    assert errors_of(doc) == [
        "apiVersion is 'core.oam.dev/v1alpha1': set `apiVersion: core.oam.dev/v1beta1`",
        "kind is 'Deployment': set `kind: Application`"]


def test_name_and_version_are_required():
    doc = example()
    del doc["metadata"]["name"]
    del doc["metadata"]["annotations"]["version"]
    assert errors_of(doc) == [
        "metadata.name is missing: give the app a name that is unique in the lattice",
        "metadata.annotations.version is missing: add a version, e.g. `version: v0.1.0`"]
    assert only_error({**example(), "metadata": None}) == (
        "metadata is missing: add metadata.name and metadata.annotations.version")


def test_version_latest_is_reserved():
    doc = example()
    doc["metadata"]["annotations"]["version"] = "latest"
    assert only_error(doc) == ("metadata.annotations.version 'latest' is reserved: choose "
                               "another version, e.g. v0.1.0")


def test_a_float_version_must_be_quoted():
    doc = example()
    doc["metadata"]["annotations"]["version"] = 1.1
    assert "quote it" in only_error(doc)


def test_duplicate_component_names():
    doc = example()
    doc["spec"]["components"].append(copy.deepcopy(comp(doc, "http")))
    assert only_error(doc) == ("component http: the name is used twice (components #3 and #4): "
                               "give each component a unique name")


def test_unknown_component_type():
    doc = example()
    comp(doc, "http")["type"] = "provider"
    comp(doc, "counter")["traits"].pop(2)  # the linkdef to http would be a follow-up error
    assert only_error(doc) == ("component http: type 'provider' is not supported: use `actor` "
                               "or `capability`")


def test_a_linkdef_to_a_broken_component_adds_no_noise():
    doc = example()
    comp(doc, "http")["type"] = "provider"
    assert len(errors_of(doc)) == 1


def test_capability_needs_a_contract():
    doc = example()
    del comp(doc, "kv")["properties"]["contract"]
    assert only_error(doc) == ("component kv: a capability needs properties.contract, e.g. "
                               "`contract: wasmcloud:keyvalue`")


def test_image_is_required():
    doc = example()
    del comp(doc, "counter")["properties"]["image"]
    assert only_error(doc) == ("component counter: properties.image is missing: set it to an "
                               "OCI reference, a file:// URL or a path")


def test_linkdef_target_missing():
    doc = example()
    comp(doc, "counter")["traits"][1]["properties"]["target"] = "kvv"
    assert only_error(doc) == (
        "component counter: linkdef target 'kvv' is not a component of this app: set target to "
        "a capability component (capabilities here: kv, http)")


def test_linkdef_target_is_an_actor():
    doc = example()
    doc["spec"]["components"].append({"name": "other", "type": "actor",
                                      "properties": {"image": "o.wasm"}})
    comp(doc, "counter")["traits"][1]["properties"]["target"] = "other"
    assert only_error(doc) == (
        "component counter: linkdef target 'other' is an actor, not a capability: link to a "
        "capability component (actors call each other without links)")


def test_linkdef_without_target():
    doc = example()
    del comp(doc, "counter")["traits"][1]["properties"]["target"]
    assert only_error(doc) == ("component counter: linkdef: target is missing: set it to the "
                               "name of a capability component of this app")


def test_linkdef_only_on_actors():
    doc = example()
    comp(doc, "kv")["traits"].append({"type": "linkdef", "properties": {"target": "http"}})
    assert only_error(doc) == (
        "component kv: a linkdef is only allowed on actors: move it to the actor component "
        "that calls this capability")


def test_two_linkdefs_to_one_contract_and_link_name():
    doc = example()
    kv2 = copy.deepcopy(comp(doc, "kv"))
    kv2["name"] = "kv2"
    doc["spec"]["components"].append(kv2)
    comp(doc, "counter")["traits"].append({"type": "linkdef", "properties": {"target": "kv2"}})
    assert only_error(doc) == (
        "component counter: linkdefs to 'kv' and 'kv2' both use contract wasmcloud:keyvalue "
        "with link name default: remove one, or give one of the capabilities another link_name")
    comp(doc, "kv2")["properties"]["link_name"] = "cache"
    assert Manifest.from_dict(doc).component("counter").linkdefs[2].target == "kv2"


@pytest.mark.parametrize("weight", [0, -5, "heavy", True])
def test_weights_must_be_positive(weight):
    doc = example()
    comp(doc, "counter")["traits"][0]["properties"]["spread"][1]["weight"] = weight
    assert only_error(doc) == (
        f"component counter: spreadscaler: spread 'us' has weight {weight!r}: weights must be "
        "whole numbers > 0 (default 100)")


@pytest.mark.parametrize("replicas", [None, -1, "three", 1.5])
def test_replicas_must_be_a_whole_number(replicas):
    doc = example()
    props = comp(doc, "http")["traits"][0]["properties"]
    if replicas is None:
        del props["replicas"]
        what = "is missing"
    else:
        props["replicas"] = replicas
        what = f"is {replicas!r}"
    assert only_error(doc) == (f"component http: spreadscaler: replicas {what}: set "
                               "`replicas` to a whole number ≥ 0")


def test_replicas_and_instances_must_agree():
    doc = example()
    comp(doc, "kv")["traits"][0]["properties"]["instances"] = 2
    assert only_error(doc) == ("component kv: daemonscaler: replicas (1) and its alias "
                               "instances (2) disagree: keep only `replicas`")


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda p: p.update(spread={"name": "eu"}),
     "component counter: spreadscaler: spread must be a list of {name, requirements, weight}"),
    (lambda p: p["spread"][0].pop("name"),
     "component counter: spreadscaler: spread #1 needs a name (it labels the instances it "
     "places)"),
    (lambda p: p["spread"][1].update(name="eu"),
     "component counter: spreadscaler: spread 'eu' is declared twice: give each spread a unique "
     "name"),
    (lambda p: p["spread"][0].update(requirements=["region=eu"]),
     "component counter: spreadscaler: spread 'eu' requirements must be a mapping of names to "
     "values"),
    (lambda p: p["spread"][0].update(requirements={"region": ["eu"]}),
     "component counter: spreadscaler: spread 'eu' requirements: 'region' has no text value "
     "(['eu']): give a string, number or boolean (quote an empty string)"),
])
def test_spread_properties_that_do_not_parse(mutate, message):
    doc = example()
    mutate(comp(doc, "counter")["traits"][0]["properties"])
    assert only_error(doc) == message


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c["traits"][1].update(properties="kv"),
     "component counter: linkdef: properties must be a mapping with `target`"),
    (lambda c: c["traits"][1]["properties"].update(values=["URL"]),
     "component counter: linkdef to kv: values must be a mapping of names to values"),
    (lambda c: c["traits"][0].update(properties=None),
     "component counter: spreadscaler: properties must be a mapping with `replicas`"),
    (lambda c: c["traits"].append({"properties": {}}),
     "component counter: trait #4 needs a `type` (spreadscaler, daemonscaler or linkdef) and "
     "`properties`"),
    (lambda c: c.update(traits={"type": "spreadscaler"}),
     "component counter: traits must be a list of {type, properties}"),
])
def test_trait_properties_that_do_not_parse(mutate, message):
    doc = example()
    mutate(comp(doc, "counter"))
    assert only_error(doc) == message


@pytest.mark.parametrize(("props", "message"), [
    ({"embedded": "yes"}, "component kv: properties.embedded must be true or false"),
    ({"config": ["a"]}, "component kv: properties.config must be a mapping or a string"),
    ({"link_name": ""}, "component kv: properties.link_name must be non-empty text (or left "
                        "out for `default`)"),
])
def test_capability_properties_that_do_not_parse(props, message):
    doc = example()
    comp(doc, "kv")["properties"].update(props)
    assert only_error(doc) == message


def test_config_must_be_json():
    import datetime
    doc = example()
    comp(doc, "kv")["properties"]["config"] = {"since": datetime.date(2024, 1, 1)}
    assert "not JSON" in only_error(doc)


def test_all_errors_are_collected_in_one_exception():
    doc = example()
    doc["metadata"]["annotations"]["version"] = "latest"
    del comp(doc, "kv")["properties"]["contract"]
    comp(doc, "counter")["traits"][0]["properties"]["spread"][0]["weight"] = 0
    comp(doc, "counter")["traits"][2]["properties"]["target"] = "nope"
    with pytest.raises(ManifestError) as info:
        Manifest.from_dict(doc)
    err = info.value
    assert len(err.errors) == 4
    text = str(err)
    assert text.startswith("manifest 'kvcounter' is invalid (4 problems):\n  - ")
    assert all(e in text for e in err.errors)


@pytest.mark.parametrize(("source", "message"), [
    ("apiVersion: [", "the manifest is not valid YAML"),
    ("- a\n- b\n", "the manifest must be a YAML mapping"),
    ("apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata: {name: a, annotations: "
     "{version: v1}}\n", "spec.components is missing"),
])
def test_unreadable_documents(source, message):
    with pytest.raises(ManifestError, match=message):
        load_manifest(source)


def test_an_app_with_no_components_is_valid():
    m = load_manifest("apiVersion: core.oam.dev/v1beta1\nkind: Application\n"
                      "metadata: {name: a, annotations: {version: v1}}\nspec: {components: []}\n")
    assert m.components == ()
