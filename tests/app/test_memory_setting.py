"""An actor component's own memory cap (`properties.memory_limit_mib`, a Lattice extension)
travels from the manifest into the start commands; bad values are refused by name."""

from __future__ import annotations

import pytest

from lattice.app.manifest import Manifest, ManifestError
from lattice.app.scalers import StartActor
from tests.app.sim import Sim


def _app(props: dict) -> Manifest:
    return Manifest.from_dict({
        "apiVersion": "core.oam.dev/v1beta1", "kind": "Application",
        "metadata": {"name": "shop", "annotations": {"version": "v1"}},
        "spec": {"components": [{
            "name": "web", "type": "actor", "properties": {"image": "web:v1", **props},
            "traits": [{"type": "spreadscaler", "properties": {"replicas": 2}}]}]}})


def test_the_cap_reaches_every_start_command() -> None:
    manifest = _app({"memory_limit_mib": 256})
    assert not manifest.warnings
    plan = Sim({"a": {}}).step(manifest)
    starts = [c for c in plan.commands if isinstance(c, StartActor)]
    assert starts and all(c.memory_limit_mib == 256 for c in starts)
    assert manifest.components[0].to_dict()["properties"]["memory_limit_mib"] == 256


def test_without_it_hosts_use_their_own() -> None:
    plan = Sim({"a": {}}).step(_app({}))
    assert all(c.memory_limit_mib is None for c in plan.commands if isinstance(c, StartActor))


@pytest.mark.parametrize("value", [0, -5, "256", 1.5, True])
def test_a_bad_value_is_refused_by_name(value) -> None:
    with pytest.raises(ManifestError) as err:
        _app({"memory_limit_mib": value})
    assert "web: properties.memory_limit_mib must be a whole number of MiB" in str(err.value)
