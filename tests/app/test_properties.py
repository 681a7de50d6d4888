"""Property test: for random hosts, labels, manifests and lattice changes, the applied plans
converge to the manifest (counts per spread/host as documented) without touching unmanaged
instances, and a reconcile of the converged lattice yields no commands."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lattice.app.manifest import Manifest
from lattice.app.scalers import (
    APP_KEY,
    MANAGED_BY,
    MANAGED_BY_KEY,
    SCALER_KEY,
    SPREAD_KEY,
    StartProvider,
    split_replicas,
)
from tests.app.sim import Sim, actor_key, provider_key

OWN = {MANAGED_BY_KEY: MANAGED_BY, APP_KEY: "prop"}
REGIONS = ["eu", "us", "ap"]

labels = st.fixed_dictionaries({"region": st.sampled_from(REGIONS)},
                               optional={"zone": st.sampled_from(["a", "b"])})
requirements = st.one_of(
    st.just({}),
    st.builds(lambda r: {"region": r}, st.sampled_from([*REGIONS, "mars"])),
    st.builds(lambda r, z: {"region": r, "zone": z}, st.sampled_from(REGIONS),
              st.sampled_from(["a", "b"])))
spreads = st.lists(st.tuples(requirements, st.integers(1, 100)), max_size=3).map(
    lambda items: [{"name": f"s{i}", "requirements": r, "weight": w}
                   for i, (r, w) in enumerate(items)])
scaler = st.tuples(st.sampled_from(["spreadscaler", "daemonscaler"]), st.integers(0, 8),
                   spreads).map(lambda t: {"type": t[0], "properties": {"replicas": t[1],
                                                                        "spread": t[2]}})


@st.composite
def scenarios(draw):
    hosts = {f"h{i}": draw(labels) for i in range(draw(st.integers(1, 6)))}
    web = draw(scaler)
    kv = draw(st.one_of(st.none(), scaler))
    with_link = draw(st.booleans())
    unmanaged = draw(st.lists(st.tuples(st.sampled_from(sorted(hosts)), st.integers(1, 3)),
                              max_size=2))
    foreign_kv = draw(st.lists(st.sampled_from(sorted(hosts)), max_size=1, unique=True))
    change = {
        "web": draw(scaler), "kv": draw(st.one_of(st.none(), scaler)),
        "drop": draw(st.lists(st.sampled_from(sorted(hosts)), max_size=2, unique=True)),
        "add": draw(st.lists(labels, max_size=2)),
        "relabel": draw(st.lists(st.tuples(st.sampled_from(sorted(hosts)), labels),
                                 max_size=2)),
        "bump": draw(st.booleans()),
    }
    return hosts, web, kv, with_link, unmanaged, foreign_kv, change


def manifest(web: dict, kv: dict | None, with_link: bool, tag: str = "v1") -> Manifest:
    web_traits = [web] + ([{"type": "linkdef", "properties": {"target": "kv",
                                                              "values": {"k": "v"}}}]
                          if with_link else [])
    return Manifest.from_dict({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
        "metadata": {"name": "prop", "annotations": {"version": tag}},
        "spec": {"components": [
            {"name": "web", "type": "actor", "properties": {"image": f"web:{tag}"},
             "traits": web_traits},
            {"name": "kv", "type": "capability",
             "properties": {"image": f"kvmem:{tag}", "contract": "wasmcloud:keyvalue"},
             "traits": [kv] if kv else []}]}})


def unmanaged_count(sim: Sim) -> int:
    return sum(1 for h in sim.snapshot.hosts for a in h.actors for ann in a.instances
               if ann.get(APP_KEY) != "prop")


def check(sim: Sim, m: Manifest) -> None:
    web, kv = m.component("web"), m.component("kv")
    hosts = sorted(sim.snapshot.hosts, key=lambda h: h.id)
    # A host running only someone else's older build of web refuses ours (same key).
    blocked = {h.id for h in hosts for a in h.actors
               if a.id == actor_key("web") and a.image_ref != web.image}
    [trait] = web.scalers
    mine = {**OWN, SCALER_KEY: f"web/{trait.type}"}
    if trait.type == "spreadscaler":
        names = [s.name for s in trait.spreads] or ["default"]
        reqs = [s.requirements for s in trait.spreads] or [{}]
        shares = split_replicas(trait.replicas, [s.weight for s in trait.spreads] or [100])
        for name, req, share in zip(names, reqs, shares, strict=True):
            counts = sim.actor_counts({**mine, SPREAD_KEY: name})
            matching = {h.id for h in hosts if h.matches(req)}
            assert set(counts) <= matching
            expected = share if matching - blocked else 0
            assert sum(counts.values()) == expected, (name, counts, share)
    else:
        counts = sim.actor_counts(mine)
        eligible = {h.id for h in hosts
                    if not trait.spreads or any(h.matches(s.requirements) for s in trait.spreads)}
        want = {h: trait.replicas for h in eligible - blocked if trait.replicas}
        assert counts == want

    # providers: at most one per host and link name; daemons fill every free eligible host
    for h in hosts:
        keys = [(p.id, p.link_name) for p in h.providers]
        assert len(keys) == len(set(keys))
    kv_scalers = kv.scalers
    if kv_scalers:
        [ktrait] = kv_scalers
        owner = {**OWN, SCALER_KEY: f"kv/{ktrait.type}"}
        ours = {h.id for h in hosts for p in h.providers
                if all(p.annotations.get(k) == v for k, v in owner.items())}
        taken = {h.id for h in hosts for p in h.providers if h.id not in ours}
        if ktrait.type == "daemonscaler":
            eligible = {h.id for h in hosts if not ktrait.spreads
                        or any(h.matches(s.requirements) for s in ktrait.spreads)}
            assert ours == (eligible - taken if ktrait.replicas else set())
        else:
            specs = ktrait.spreads or ()
            shares = split_replicas(ktrait.replicas, [s.weight for s in specs] or [100])
            for spec_name, req, share in zip([s.name for s in specs] or ["default"],
                                             [s.requirements for s in specs] or [{}], shares,
                                             strict=True):
                placed = {h.id for h in hosts for p in h.providers
                          if p.annotations.get(SPREAD_KEY) == spec_name
                          and p.annotations.get(SCALER_KEY) == owner[SCALER_KEY]}
                assert len(placed) <= share
                if len(placed) < share:  # only when every matching host is already taken
                    assert {h.id for h in hosts if h.matches(req)} <= ours | taken
    else:
        assert not any(p.annotations for h in hosts for p in h.providers)

    # links: present when declared and both ends run; never when not declared; a declared
    # link whose actor or provider is down stays (it is only waiting)
    web_runs = bool(sim.actor_counts(mine))
    kv_runs = any(p.image_ref == kv.image or p.annotations.get(APP_KEY) == "prop"
                  for h in hosts for p in h.providers)
    the_link = {(actor_key("web"), provider_key("kvmem"), "wasmcloud:keyvalue", "default")}
    if not web.linkdefs:
        assert sim.links() == set()
    elif web_runs and kv_runs:
        assert sim.links() == the_link
    else:
        assert sim.links() <= the_link


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_random_lattices_converge_and_stay_quiet(scenario):
    hosts, web, kv, with_link, unmanaged, foreign_kv, change = scenario
    sim = Sim(hosts)
    for host, n in unmanaged:
        sim.run_unmanaged_actor(host, "web:v1", n)
    for host in foreign_kv:
        sim.apply([StartProvider(host, "kvmem:v1", "default", "wasmcloud:keyvalue")])
    before = unmanaged_count(sim)

    m1 = manifest(web, kv, with_link)
    plan = sim.converge(m1)
    check(sim, m1)
    assert unmanaged_count(sim) == before
    assert all(st.satisfied for st in plan.statuses) == (plan.app_status == "deployed")

    # the lattice changes and a new version is deployed
    for host in change["drop"]:
        sim.remove_host(host)
    for i, extra in enumerate(change["add"]):
        sim.add_host(f"n{i}", **extra)
    for host, new_labels in change["relabel"]:
        if any(h.id == host for h in sim.snapshot.hosts):
            sim.host(host).labels = dict(new_labels)
    survivors = unmanaged_count(sim)
    m2 = manifest(change["web"], change["kv"], with_link, "v2" if change["bump"] else "v1")
    sim.converge(m2, rounds=4)
    check(sim, m2)
    assert unmanaged_count(sim) == survivors
