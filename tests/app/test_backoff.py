"""The pure half of the reliability fixes: backoff for failing starts (cf. wadm#253) and the
rule that says when a stored status is stale. Events in → commands out, on a made-up clock:
nothing here sleeps or talks to NATS (the live halves are in test_reliability.py)."""

from __future__ import annotations

import itertools

import pytest

from lattice.app.backoff import Backoff
from lattice.app.scalers import (
    StartActor,
    StartProvider,
    event_retry_key,
    retry_key,
)
from lattice.app.status import DEPLOYED, FAILED, UNDEPLOYED, staleness
from tests.app.sim import Sim
from tests.app.test_scalers import actor, app, capability, daemon, spread


def failed_event(host: str, image: str) -> tuple[str, dict, str]:
    """What a host publishes for one failed actor start: both events, as lattice/host does."""
    return ("actors_start_failed", {"image_ref": image, "host_id": host, "annotations": {},
                                    "error": f"cannot fetch {image}"}, host)


def feed(backoff: Backoff, name: str, data: dict, source: str, now: float) -> None:
    """What the reconciler does with a host event (lattice/host/reconciler.py, _on_event)."""
    key = event_retry_key(name, data, source)
    assert key is not None
    if name.endswith("_failed"):
        backoff.failed(key, data["error"], now)
    else:
        backoff.succeeded(key)


def send(backoff: Backoff, plan_commands: list) -> list:
    for cmd in plan_commands:
        backoff.sent(retry_key(cmd))
    return plan_commands


def test_delays_double_up_to_the_cap():
    b = Backoff(1.0, 60.0)
    assert [b.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert b.delay(10_000) == 60  # no overflow however long it keeps failing
    with pytest.raises(ValueError):
        Backoff(0, 1)


def test_a_failing_start_is_held_back_then_retried_with_doubling_waits():
    sim = Sim({"a": {}})
    m = app(actor("web", "bad:v1", spread(1)))
    b = Backoff(base=1.0, cap=4.0)
    now = 0.0
    sent_at = []
    # Drive it the way a tight loop would: a pass every 0.1 s (each failure event triggers one).
    while now < 30.0:
        plan = sim.reconcile(m, holds=b.holds(now))
        starts = [c for c in plan.commands if isinstance(c, StartActor)]
        if starts:
            assert not plan.held
            sent_at.append(round(now, 1))
            send(b, starts)
            # the host answers at once: the start failed
            feed(b, *failed_event("a", "bad:v1"), now=now + 0.05)
        else:
            # held: no command, and the status says what failed and that it is waiting
            [held] = plan.held
            assert held.component == "web" and held.command.host_id == "a"
            assert held.hold.error == "cannot fetch bad:v1"
            assert plan.app_status == FAILED
            assert plan.reasons == ["web: 0/1 instances (web keeps failing: cannot fetch "
                                    "bad:v1)"]
        now = round(now + 0.1, 1)
    gaps = [round(b2 - b1, 1) for b1, b2 in itertools.pairwise(sent_at)]
    # 1, 2, 4, then the cap (each gap also holds the 0.05 s the failure took, rounded up to a
    # pass): non-decreasing, and 10 attempts in 30 s where the tight loop would make 300.
    assert gaps == [1.1, 2.1, 4.1, 4.1, 4.1, 4.1, 4.1, 4.1], gaps
    assert len(sent_at) == 9


def test_backoff_is_per_host_and_command():
    sim = Sim({"a": {}, "b": {}})
    m = app(actor("web", "web:v1", daemon(1)), capability("kv", "kvbad:v1", daemon(1)))
    b = Backoff(1.0, 60.0)
    send(b, sim.reconcile(m).commands)
    feed(b, *failed_event("a", "web:v1"), now=0.0)          # only host a failed the actor
    feed(b, "provider_start_failed", {"provider_ref": "kvbad:v1", "link_name": "default",
                                      "error": "no such provider"}, "b", now=0.0)
    plan = sim.reconcile(m, holds=b.holds(0.5))
    assert [(type(c).__name__, c.host_id) for c in plan.commands] == [
        ("StartProvider", "a"), ("StartActor", "b")]
    assert sorted((type(h.command).__name__, h.command.host_id) for h in plan.held) == [
        ("StartActor", "a"), ("StartProvider", "b")]
    assert plan.app_status == FAILED


def test_a_success_resets_the_schedule_and_duplicates_count_once():
    b = Backoff(1.0, 60.0)
    cmd = StartActor("a", "web:v1", 1)
    key = retry_key(cmd)
    for t in range(3):
        b.sent(key)
        feed(b, "actor_start_failed", {"actor_ref": "web:v1", "error": "boom"}, "a", now=t)
        # the same failure again, as the second of the two events a host publishes
        feed(b, *failed_event("a", "web:v1"), now=t)
    assert b.holds(2.0)[key].attempts == 3 and b.holds(2.0)[key].retry_at == 2.0 + 4.0
    feed(b, "actors_started", {"image_ref": "web:v1", "host_id": "a"}, "a", now=3.0)
    assert b.holds(3.0) == {}
    b.sent(key)
    feed(b, *failed_event("a", "web:v1"), now=10.0)
    assert b.holds(10.0)[key].retry_at == 11.0  # base again
    # a failure of a start we did not send (someone else's) does not move the schedule
    other = retry_key(StartProvider("a", "x", "default", "c"))
    feed(b, "provider_start_failed", {"provider_ref": "x", "error": "no"}, "a", now=10.0)
    assert other not in b.holds(10.0)


def test_refused_commands_back_off_and_plans_forget_what_they_no_longer_want():
    b = Backoff(0.5, 2.0)
    cmd = StartActor("a", "web:v1", 2, {"x": "y"})
    key = retry_key(cmd)
    assert key == retry_key(StartActor("a", "web:v1", 1))  # count and annotations excluded
    b.sent(key)
    b.failed(key, "refused", now=0.0)                     # the host refused the command
    assert b.next_due(0.0) == 0.5
    b.retain([])                                         # the app no longer asks for it
    assert b.holds(0.0) == {} and b.next_due(0.0) is None


def test_held_commands_do_not_block_a_satisfied_app():
    sim = Sim({"a": {}})
    m = app(actor("web", "web:v1", spread(1)))
    sim.converge(m)
    b = Backoff(1.0, 60.0)
    b.sent(("actor", "a", "web:v1", ""))
    b.failed(("actor", "a", "web:v1", ""), "old failure", now=0.0)
    plan = sim.reconcile(m, holds=b.holds(0.1))
    assert plan.commands == [] and plan.held == [] and plan.app_status == DEPLOYED


# --- stale status -------------------------------------------------------------------------------


def stale(**kw) -> str:
    args = {"status": DEPLOYED, "leader": "NL", "updated_at": 100.0, "interval": 1.0,
            "now": 101.0, "lease_holder": "NL", "gone": set(), "hosts": ["NL", "NB"]}
    return staleness(**{**args, **kw})


def test_a_current_status_is_repeated():
    assert stale() == ""
    assert stale(interval=0.0, now=10_000.0) == ""  # written by an older reconciler


def test_a_status_is_stale_when_what_it_was_computed_from_is_gone():
    assert "NL" in stale(gone={"NL"}) and "gone" in stale(gone={"NL"})
    assert "no reconciler holds the lease" in stale(lease_holder=None)
    assert "NN has not recomputed it yet" in stale(lease_holder="NN")
    assert "host NB, which ran its instances, is gone" in stale(gone={"NB"})
    assert "not recomputed for 9 s" in stale(now=109.0)  # > 3 intervals + 5 s slack
    assert stale(now=107.0) == ""


def test_undeployed_is_final():
    assert stale(status=UNDEPLOYED, undeployed=True, lease_holder=None, now=1e9) == ""
    assert stale(status=UNDEPLOYED, undeployed=False, lease_holder=None) != ""
