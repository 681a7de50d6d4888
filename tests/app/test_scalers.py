"""Scalers and reconcile: placement, scaling, ownership, upgrades, links, undeploy, status.

Plans are applied with the in-memory host of tests/app/sim.py, then reconciled again: a
satisfied lattice must give no commands.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from lattice.app.manifest import Manifest
from lattice.app.scalers import (
    APP_KEY,
    MANAGED_BY,
    MANAGED_BY_KEY,
    SCALER_KEY,
    SPREAD_KEY,
    DeleteLink,
    PutLink,
    Snapshot,
    StartActor,
    StartProvider,
    StopActor,
    StopProvider,
    UpdateActor,
    reconcile,
    split_replicas,
    undeploy_commands,
)
from lattice.app.status import DEPLOYED, FAILED, RECONCILING
from lattice.links import LinkDefinition
from tests.app.sim import Sim, actor_key, provider_key

EXAMPLE = Path(__file__).with_name("kvcounter.yaml")
OWN = {MANAGED_BY_KEY: MANAGED_BY, APP_KEY: "shop"}


def app(*components: dict, name: str = "shop", version: str = "v1") -> Manifest:
    return Manifest.from_dict({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
        "metadata": {"name": name, "annotations": {"version": version}},
        "spec": {"components": list(components)}})


def actor(name: str = "web", image: str = "web:v1", *traits: dict) -> dict:
    return {"name": name, "type": "actor", "properties": {"image": image},
            "traits": list(traits)}


def capability(name: str = "kv", image: str = "kvmem:v1", *traits: dict,
               contract: str = "wasmcloud:keyvalue", **props) -> dict:
    return {"name": name, "type": "capability",
            "properties": {"image": image, "contract": contract, **props},
            "traits": list(traits)}


def spread(replicas: int, *spreads: tuple[str, dict, int]) -> dict:
    props: dict = {"replicas": replicas}
    if spreads:
        props["spread"] = [{"name": n, "requirements": r, "weight": w} for n, r, w in spreads]
    return {"type": "spreadscaler", "properties": props}


def daemon(replicas: int, *requirements: dict) -> dict:
    props: dict = {"replicas": replicas}
    if requirements:
        props["spread"] = [{"name": f"s{i}", "requirements": r}
                           for i, r in enumerate(requirements)]
    return {"type": "daemonscaler", "properties": props}


def link(target: str, **values: str) -> dict:
    return {"type": "linkdef", "properties": {"target": target, "values": values}}


def web_counts(sim: Sim, scaler: str = "web/spreadscaler", **extra: str) -> dict[str, int]:
    return sim.actor_counts({**OWN, SCALER_KEY: scaler, **extra})


# --- spread rounding ----------------------------------------------------------------------------


@pytest.mark.parametrize(("replicas", "weights", "shares"), [
    (3, [80, 20], [2, 1]),      # remainders .4/.6: the larger remainder wins
    (1, [80, 20], [1, 0]),
    (4, [80, 20], [3, 1]),      # 3.2 / 0.8
    (5, [50, 50], [3, 2]),      # tie on remainder and weight: declared first
    (2, [100, 100, 100], [1, 1, 0]),
    (1, [20, 80], [0, 1]),
    (10, [1, 1, 1], [4, 3, 3]),
    (7, [30, 30, 40], [2, 2, 3]),  # 2.1/2.1/2.8
    (0, [80, 20], [0, 0]),
])
def test_split_replicas(replicas, weights, shares):
    assert split_replicas(replicas, weights) == shares
    assert sum(shares) == replicas


# --- spreadscaler -------------------------------------------------------------------------------


def regions() -> Sim:
    return Sim({"eu1": {"region": "eu"}, "eu2": {"region": "eu"}, "us1": {"region": "us"}})


WEIGHTED = spread(3, ("eu", {"region": "eu"}, 80), ("us", {"region": "us"}, 20))


def test_spread_by_weights_places_and_balances():
    sim = regions()
    m = app(actor("web", "web:v1", WEIGHTED))
    plan = sim.reconcile(m)
    base = {**OWN, SCALER_KEY: "web/spreadscaler"}
    assert plan.commands == [
        StartActor("eu1", "web:v1", 1, {**base, SPREAD_KEY: "eu"}),
        StartActor("eu2", "web:v1", 1, {**base, SPREAD_KEY: "eu"}),
        StartActor("us1", "web:v1", 1, {**base, SPREAD_KEY: "us"})]
    assert plan.app_status == RECONCILING
    assert plan.reasons == ["web: 0/3 instances"]
    sim.apply(plan.commands)
    again = sim.reconcile(m)
    assert again.commands == [] and again.app_status == DEPLOYED and again.reasons == []


def test_a_spread_without_matching_host_is_unsatisfied_with_a_reason():
    sim = Sim({"eu1": {"region": "eu"}})
    m = app(actor("counter", "counter:v1", WEIGHTED))
    plan = sim.converge(m)
    assert sim.actor_counts(OWN) == {"eu1": 2}
    assert plan.app_status == RECONCILING
    assert plan.reasons == ["counter: 2/3 instances, no host with region=us"]
    status = next(s for s in plan.statuses if s.component == "counter")
    assert (status.satisfied, status.running, status.desired) == (False, 2, 3)


def test_a_host_joining_gets_the_waiting_share_without_moving_anything():
    sim = Sim({"eu1": {"region": "eu"}})
    m = app(actor("web", "web:v1", WEIGHTED))
    sim.converge(m)
    sim.add_host("us1", region="us")
    plan = sim.reconcile(m)
    assert [type(c) for c in plan.commands] == [StartActor]
    assert plan.commands[0].host_id == "us1"
    sim.apply(plan.commands)
    sim.add_host("eu2", region="eu")  # no rebalancing onto a new host: nothing to do
    assert sim.reconcile(m).commands == []
    assert web_counts(sim) == {"eu1": 2, "us1": 1}


def test_a_host_leaving_has_its_share_placed_elsewhere():
    sim = Sim({h: {"region": "eu"} for h in ("a", "b", "c")})
    m = app(actor("web", "web:v1", spread(6)))
    sim.converge(m)
    assert web_counts(sim) == {"a": 2, "b": 2, "c": 2}
    sim.remove_host("b")
    plan = sim.reconcile(m)
    assert plan.reasons == ["web: 4/6 instances"]
    sim.apply(plan.commands)
    assert web_counts(sim) == {"a": 3, "c": 3}
    assert sim.reconcile(m).commands == []


def test_new_instances_prefer_hosts_that_already_run_the_module():
    sim = Sim({"a": {}, "b": {}})
    sim.run_unmanaged_actor("b", "web:v1", 1)
    plan = sim.reconcile(app(actor("web", "web:v1", spread(1))))
    assert [(c.host_id, c.count) for c in plan.commands] == [("b", 1)]


def test_scale_up_and_down():
    sim = Sim({h: {} for h in ("a", "b", "c")})
    sim.converge(app(actor("web", "web:v1", spread(4))))
    assert web_counts(sim) == {"a": 2, "b": 1, "c": 1}
    plan = sim.reconcile(app(actor("web", "web:v1", spread(2)), version="v2"))
    # most loaded first, then the highest host id
    assert plan.commands == [
        StopActor("a", actor_key("web"), 1, {**OWN, SCALER_KEY: "web/spreadscaler",
                                              SPREAD_KEY: "default"}),
        StopActor("c", actor_key("web"), 1, {**OWN, SCALER_KEY: "web/spreadscaler",
                                              SPREAD_KEY: "default"})]
    sim.apply(plan.commands)
    assert web_counts(sim) == {"a": 1, "b": 1}
    sim.converge(app(actor("web", "web:v1", spread(7)), version="v3"))
    assert web_counts(sim) == {"a": 3, "b": 2, "c": 2}
    sim.converge(app(actor("web", "web:v1", spread(0)), version="v4"))
    assert web_counts(sim) == {}


def test_label_change_moves_instances_to_matching_hosts():
    sim = Sim({"a": {"region": "eu"}, "b": {"region": "us"}})
    m = app(actor("web", "web:v1", spread(2, ("eu", {"region": "eu"}, 100))))
    sim.converge(m)
    sim.host("a").labels["region"] = "us"
    sim.host("b").labels["region"] = "eu"
    plan = sim.reconcile(m)
    assert [(type(c).__name__, c.host_id, c.count) for c in plan.commands] == [
        ("StartActor", "b", 2), ("StopActor", "a", 2)]  # start before stop: no capacity dip
    sim.apply(plan.commands)
    assert web_counts(sim) == {"b": 2}


def test_overlapping_spreads_count_their_own_instances():
    sim = Sim({"a": {"region": "eu"}, "b": {"region": "us"}})
    m = app(actor("web", "web:v1", spread(4, ("eu", {"region": "eu"}, 50), ("any", {}, 50))))
    sim.converge(m)
    assert sim.actor_counts({**OWN, SPREAD_KEY: "eu"}) == {"a": 2}
    assert sim.actor_counts({**OWN, SPREAD_KEY: "any"}) == {"a": 1, "b": 1}


# --- daemonscaler -------------------------------------------------------------------------------


def test_daemon_runs_replicas_on_every_matching_host():
    sim = Sim({"a": {"region": "eu"}, "b": {"region": "eu"}, "c": {"region": "us"}})
    m = app(actor("web", "web:v1", daemon(2, {"region": "eu"})))
    plan = sim.converge(m)
    assert web_counts(sim, "web/daemonscaler") == {"a": 2, "b": 2}
    assert plan.app_status == DEPLOYED
    sim.add_host("d", region="eu")
    sim.host("a").labels["region"] = "us"
    plan = sim.reconcile(m)
    assert plan.reasons == ["web: 2/4 instances"]
    sim.apply(plan.commands)
    assert web_counts(sim, "web/daemonscaler") == {"b": 2, "d": 2}


def test_daemon_without_spreads_covers_all_hosts_and_reports_no_match():
    sim = Sim({"a": {}, "b": {}})
    sim.converge(app(actor("web", "web:v1", daemon(1))))
    assert web_counts(sim, "web/daemonscaler") == {"a": 1, "b": 1}
    plan = sim.converge(app(actor("web", "web:v1", daemon(1, {"gpu": "yes"})), version="v2"))
    assert web_counts(sim, "web/daemonscaler") == {}
    assert plan.reasons == ["web: 0/0 instances, no host with gpu=yes"]


def test_provider_daemon_runs_one_per_host():
    sim = Sim({"a": {}, "b": {}})
    plan = sim.reconcile(app(capability("kv", "kvmem:v1", daemon(3), config={"x": 1},
                                        embedded=True, link_name="cache")))
    ann = {**OWN, SCALER_KEY: "kv/daemonscaler"}
    assert plan.commands == [
        StartProvider("a", "kvmem:v1", "cache", "wasmcloud:keyvalue", '{"x": 1}', True, ann),
        StartProvider("b", "kvmem:v1", "cache", "wasmcloud:keyvalue", '{"x": 1}', True, ann)]


def test_provider_spread_needs_distinct_hosts():
    sim = Sim({"a": {}, "b": {}})
    plan = sim.converge(app(capability("kv", "kvmem:v1", spread(3))))
    assert sorted(h.id for h in sim.snapshot.hosts if h.providers) == ["a", "b"]
    assert plan.reasons == ["kv: 2/3 instances, 1 more need free hosts (2 match, a host runs "
                            "one kv per link name)"]


# --- ownership ----------------------------------------------------------------------------------


def test_unmanaged_and_foreign_instances_are_never_counted_or_touched():
    sim = Sim({"a": {}, "b": {}})
    sim.run_unmanaged_actor("a", "web:v1", 3)
    sim.run_unmanaged_actor("a", "web:v1", 2, {**OWN, APP_KEY: "other-app",
                                               SCALER_KEY: "web/spreadscaler"})
    sim.apply([StartProvider("b", "kvmem:v1", "default", "wasmcloud:keyvalue")])
    m = app(actor("web", "web:v1", spread(2)), capability("kv", "kvmem:v1", daemon(1)))
    plan = sim.converge(m)
    assert web_counts(sim) == {"a": 1, "b": 1}
    assert sim.actor_counts() == {"a": 6, "b": 1}
    # b already runs kvmem outside the app: the app cannot start its own there
    assert [p.annotations for p in sim.host("b").providers] == [{}]
    assert plan.reasons == ["kv: 1/2 instances, waiting on 1 host(s) where kvmem:v1 (link name "
                            "default) runs outside this scaler or is still stopping"]
    for cmd in undeploy_commands("shop", sim.snapshot, sim.owned):
        assert cmd.annotations.items() >= OWN.items()
    sim.apply(undeploy_commands("shop", sim.snapshot, sim.owned))
    assert sim.actor_counts() == {"a": 5}
    assert [p.annotations for h in sim.snapshot.hosts for p in h.providers] == [{}]


def test_stop_commands_filter_on_the_scalers_annotations():
    sim = Sim({"a": {}})
    sim.run_unmanaged_actor("a", "web:v1", 2)
    sim.converge(app(actor("web", "web:v1", spread(3))))
    plan = sim.reconcile(app(actor("web", "web:v1", spread(1)), version="v2"))
    [stop] = plan.commands
    assert isinstance(stop, StopActor) and stop.count == 2
    assert stop.annotations == {**OWN, SCALER_KEY: "web/spreadscaler", SPREAD_KEY: "default"}
    sim.apply(plan.commands)
    assert sim.actor_counts() == {"a": 3}


def test_removed_components_and_changed_traits_are_stopped():
    sim = Sim({"a": {}})
    sim.converge(app(actor("web", "web:v1", spread(2)), actor("api", "api:v1", spread(1)),
                     capability("kv", "kvmem:v1", spread(1))))
    plan = sim.reconcile(app(actor("web", "web:v1", daemon(1)), version="v2"))
    kinds = sorted((type(c).__name__, getattr(c, "count", 1)) for c in plan.commands)
    assert kinds == [("StartActor", 1), ("StopActor", 1), ("StopActor", 2), ("StopProvider", 1)]
    assert "web: stopping 2 instances no longer in the manifest" in plan.reasons
    assert "api: stopping 1 instances no longer in the manifest" in plan.reasons
    sim.apply(plan.commands)
    assert sim.actor_counts() == {"a": 1}
    assert sim.reconcile(app(actor("web", "web:v1", daemon(1)), version="v2")).commands == []


# --- upgrades -----------------------------------------------------------------------------------


def test_new_actor_image_is_a_live_update():
    sim = Sim({"a": {}, "b": {}})
    sim.converge(app(actor("web", "web:v1", spread(3))))
    m2 = app(actor("web", "web:v2", spread(3)), version="v2")
    plan = sim.reconcile(m2)
    ann = {**OWN, SCALER_KEY: "web/spreadscaler"}
    assert plan.commands == [UpdateActor("a", actor_key("web"), "web:v2", ann),
                             UpdateActor("b", actor_key("web"), "web:v2", ann)]
    assert plan.reasons == ["web: 3/3 instances, 3 updating to web:v2"]
    sim.apply(plan.commands)
    assert sim.reconcile(m2).commands == []
    assert {a.image_ref for h in sim.snapshot.hosts for a in h.actors} == {"web:v2"}


def test_upgrade_and_scale_up_waits_for_the_update_on_busy_hosts():
    sim = Sim({"a": {}, "b": {}})
    sim.converge(app(actor("web", "web:v1", spread(1))))
    m2 = app(actor("web", "web:v2", spread(4)), version="v2")
    plan = sim.reconcile(m2)
    # host a runs v1 and would refuse a v2 start until updated: the new ones go to b now
    assert plan.commands == [
        UpdateActor("a", actor_key("web"), "web:v2", {**OWN, SCALER_KEY: "web/spreadscaler"}),
        StartActor("b", "web:v2", 3, {**OWN, SCALER_KEY: "web/spreadscaler",
                                      SPREAD_KEY: "default"})]
    sim.converge(m2)
    assert web_counts(sim) == {"a": 1, "b": 3}


def test_new_provider_image_is_stop_then_start():
    sim = Sim({"a": {}})
    sim.converge(app(capability("kv", "kvmem:v1", daemon(1))))
    m2 = app(capability("kv", "kvmem:v2", daemon(1)), version="v2")
    first = sim.step(m2)
    assert [type(c) for c in first.commands] == [StopProvider]
    second = sim.step(m2)
    assert [type(c) for c in second.commands] == [StartProvider]
    assert sim.reconcile(m2).commands == []
    assert [p.image_ref for p in sim.host("a").providers] == ["kvmem:v2"]


# --- links --------------------------------------------------------------------------------------


def linked(values: dict | None = None, version: str = "v1", with_link: bool = True) -> Manifest:
    traits = [spread(1)] + ([link("kv", **(values or {"URL": "x"}))] if with_link else [])
    return app(actor("web", "web:v1", *traits), capability("kv", "kvmem:v1", spread(1)),
               version=version)


def test_links_wait_for_keys_then_are_put():
    sim = Sim({"a": {}})
    first = sim.step(linked())
    assert "web: link to kv waits for web to run" in first.reasons
    second = sim.step(linked())
    assert second.commands == [PutLink(actor_key("web"), provider_key("kvmem"),
                                       "wasmcloud:keyvalue", "default", {"URL": "x"})]
    third = sim.reconcile(linked())
    assert third.commands == [] and third.app_status == DEPLOYED
    assert sim.owned == [LinkDefinition(actor_key("web"), provider_key("kvmem"),
                                        "wasmcloud:keyvalue", "default", {"URL": "x"})]


def test_link_waits_for_its_provider():
    sim = Sim({"a": {}})
    m = app(actor("web", "web:v1", spread(1), link("kv")),
            capability("kv", "kvmem:v1", spread(1, ("gpu", {"gpu": "yes"}, 1))))
    plan = sim.converge(m)
    assert plan.reasons == ["kv: 0/1 instances, no host with gpu=yes",
                            "web: link to kv waits for provider kv (kvmem:v1) to run"]


def test_changed_values_are_put_and_removed_linkdefs_deleted():
    sim = Sim({"a": {}})
    sim.converge(linked())
    plan = sim.step(linked({"URL": "y"}, version="v2"))
    assert [type(c) for c in plan.commands] == [PutLink]
    assert sim.snapshot.links[0].values == {"URL": "y"}
    plan = sim.step(linked(version="v3", with_link=False))
    assert plan.commands == [DeleteLink(actor_key("web"), "wasmcloud:keyvalue", "default")]
    assert sim.snapshot.links == [] and sim.owned == []
    assert sim.reconcile(linked(version="v3", with_link=False)).commands == []


def test_links_the_app_did_not_put_are_never_deleted():
    sim = Sim({"a": {}})
    sim.converge(linked(with_link=False))
    foreign = LinkDefinition(actor_key("web"), "VOTHER", "wasmcloud:blobstore", "default")
    sim.snapshot.links.append(foreign)
    assert sim.reconcile(linked(with_link=False)).commands == []
    assert undeploy_commands("shop", sim.snapshot, sim.owned) == [
        StopActor("a", actor_key("web"), 1, OWN),
        StopProvider("a", provider_key("kvmem"), "default", "wasmcloud:keyvalue",
                     {**OWN, SCALER_KEY: "kv/spreadscaler", SPREAD_KEY: "default"})]


def test_a_link_replaced_by_someone_else_is_no_longer_owned():
    sim = Sim({"a": {}})
    sim.converge(linked())
    key = (actor_key("web"), "wasmcloud:keyvalue", "default")
    sim.snapshot.links = [LinkDefinition(*key[:1], "VELSE", *key[1:])]
    plan = sim.step(linked(version="v2", with_link=False))
    assert plan.commands == [] and sim.owned == []


def test_owned_links_survive_while_their_actor_is_down():
    sim = Sim({"a": {}})
    sim.converge(linked())
    sim.remove_host("a")
    sim.add_host("b")
    plan = sim.reconcile(linked())
    assert not any(isinstance(c, DeleteLink) for c in plan.commands)
    assert len(plan.owned_links) == 1


def test_a_component_without_scaler_is_not_started_but_can_be_linked():
    m = app(actor("web", "web:v1", spread(1), link("kv")), capability("kv", "kvmem:v1"))
    # Not started: with no kvmem running, the app starts its actor and never the provider; the
    # link waits for a provider somebody else runs.
    sim = Sim({"a": {}})
    issued = [c for _ in range(3) for c in sim.step(m).commands]
    assert any(isinstance(c, StartActor) for c in issued)
    assert not any(isinstance(c, StartProvider) for c in issued), issued
    assert sim.host("a").providers == []
    assert "web: link to kv waits for provider kv (kvmem:v1) to run" in sim.reconcile(m).reasons
    # ...but can be linked: once an operator runs kvmem, the app links its actor to it.
    sim = Sim({"a": {}})
    sim.apply([StartProvider("a", "kvmem:v1", "default", "wasmcloud:keyvalue")])
    plan = sim.converge(m)
    assert len(sim.host("a").providers) == 1  # still only the operator's
    assert plan.app_status == DEPLOYED
    none = next(s for s in plan.statuses if s.component == "kv")
    assert (none.kind, none.satisfied, none.reason) == (
        "none", True, "kv: not started by the app (no scaler trait)")
    assert sim.links() == {(actor_key("web"), provider_key("kvmem"), "wasmcloud:keyvalue",
                            "default")}


# --- whole apps ---------------------------------------------------------------------------------


def example_sim() -> tuple[Sim, Manifest]:
    return (Sim({"eu1": {"region": "eu"}, "eu2": {"region": "eu"}, "us1": {"region": "us"}}),
            Manifest.from_dict(yaml.safe_load(EXAMPLE.read_text())))


def test_the_example_app_deploys_and_stays_quiet():
    sim, m = example_sim()
    plan = sim.converge(m)
    assert plan.app_status == DEPLOYED and plan.reasons == []
    assert sim.actor_counts({**OWN, APP_KEY: "kvcounter"}) == {"eu1": 1, "eu2": 1, "us1": 1}
    assert len(sim.links()) == 2
    again = reconcile(m, copy.deepcopy(sim.snapshot), sim.owned)
    assert again.commands == []


def test_undeploy_stops_everything_the_app_owns_and_deletes_its_links():
    sim, m = example_sim()
    sim.converge(m)
    commands = undeploy_commands("kvcounter", sim.snapshot, sim.owned)
    assert [type(c) for c in commands[:2]] == [DeleteLink, DeleteLink]
    sim.apply(commands)
    assert sim.snapshot.links == [] and sim.actor_counts() == {}
    assert all(not h.providers for h in sim.snapshot.hosts)
    assert undeploy_commands("kvcounter", sim.snapshot, sim.owned) == []


def test_failures_make_an_unsatisfied_app_failed():
    sim = Sim({"a": {}})
    m = app(actor("web", "web:v1", spread(1)))
    plan = sim.reconcile(m, failures={"web": "module not found"})
    assert plan.app_status == FAILED
    assert plan.reasons == ["web: 0/1 instances (web keeps failing: module not found)"]
    sim.apply(plan.commands)
    assert sim.reconcile(m, failures={"web": "stale"}).app_status == DEPLOYED


def test_snapshot_from_inventories():
    from lattice.ctl import HostInventory
    inv = HostInventory.from_wire({
        "host_id": "NA", "labels": {"region": "eu"},
        "actors": [{"id": "MW", "image_ref": "web:v1",
                    "instances": [{"annotations": {**OWN, SCALER_KEY: "web/spreadscaler",
                                                   SPREAD_KEY: "default"},
                                   "instance_id": "i1", "revision": 1}]}],
        "providers": [{"id": "VK", "image_ref": "kvmem:v1", "contract_id": "wasmcloud:keyvalue",
                       "link_name": "default", "annotations": {}}]})
    snap = Snapshot.from_inventories([inv], [])
    assert snap.hosts[0].labels == {"region": "eu"}
    assert snap.hosts[0].actors[0].instances == [{**OWN, SCALER_KEY: "web/spreadscaler",
                                                  SPREAD_KEY: "default"}]
    plan = reconcile(app(actor("web", "web:v1", spread(1)), capability("kv", "kvmem:v1")),
                     snap)
    assert plan.commands == [] and plan.app_status == DEPLOYED
