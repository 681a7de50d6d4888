"""`lattice app` as a user drives it: validation errors before anything starts, deploy with
--wait, list/status/history, immutable versions, undeploy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.actors import signed
from tests.app.test_reconciler import manifest
from tests.harness import Lattice

KV = "wasmcloud:keyvalue"


async def app_cli(lattice: Lattice, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lattice", "app", *args, "--nats-url", lattice.server.url,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


async def test_app_cli_end_to_end(lattice: Lattice, tmp_path: Path) -> None:
    await lattice.host(reconcile_interval=1.0)
    image = tmp_path / "fwd.wasm"
    image.write_bytes(signed("forward", caps=[KV]))

    bad = tmp_path / "bad.yaml"
    doc = manifest("shop", "v1", str(image))
    doc["spec"]["components"][0]["traits"][1]["properties"]["target"] = "nowhere"
    doc["spec"]["components"].append({"name": "kv", "type": "capability",
                                      "properties": {"image": "kvmem"}})
    bad.write_text(yaml.safe_dump(doc))
    code, _, err = await app_cli(lattice, "deploy", str(bad))
    assert code == 1
    assert "not a valid app manifest" in err and "nowhere" in err and "contract" in err

    good = tmp_path / "shop.yaml"
    good.write_text(yaml.safe_dump(manifest("shop", "v1", "./fwd.wasm", replicas=1)))
    code, out, err = await app_cli(lattice, "deploy", str(good), "--wait", "60")
    assert code == 0, err
    assert "uploaded fwd.wasm as lattice://sha256:" in err
    assert out.startswith("shop v1: deployed"), out

    code, out, _ = await app_cli(lattice, "list", "--json")
    assert json.loads(out) == [{"name": "shop", "deployed": "v1", "latest": "v1",
                                "status": "deployed"}]
    code, out, _ = await app_cli(lattice, "status", "shop")
    assert code == 0 and "deployed" in out and "fwd" in out

    # the same version with other content is refused: versions are immutable
    good.write_text(yaml.safe_dump(manifest("shop", "v1", "./fwd.wasm", replicas=2)))
    code, _, err = await app_cli(lattice, "deploy", str(good), "--wait", "0")
    assert code == 1 and "bump metadata.annotations.version" in err

    code, out, _ = await app_cli(lattice, "history", "shop")
    assert code == 0 and out.strip().startswith("* v1")

    code, out, err = await app_cli(lattice, "undeploy", "shop")
    assert code == 0 and "undeployed" in out, err
    code, out, _ = await app_cli(lattice, "status", "nosuch")
    assert code == 1
