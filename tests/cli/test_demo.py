"""The README's main command: `lattice up --demo` brings up a lattice on embedded defaults with
kvcounter deployed and prints its URL; the counter counts; the README's next step (the app's
Redis version, examples/kvcounter-redis.yaml) moves it to Redis; `lattice down` stops it all."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request

import redis
import yaml

import actors
from lattice.natsd import free_port, port_open

EXAMPLES = actors.ROOT.parent / "examples"


def test_up_demo_serves_kvcounter_then_down_stops_it(tmp_path, redis_url) -> None:
    env = {**os.environ, "LATTICE_STATE_DIR": str(tmp_path / "state")}
    nats_port, http_port = free_port(), free_port()
    nats_url = f"nats://127.0.0.1:{nats_port}"  # nothing answers there: `up` starts nats-server
    lattice = [sys.executable, "-m", "lattice"]
    up = subprocess.run([*lattice, "up", "--demo", "--detach", "--port", str(http_port),
                         "--nats-url", nats_url], env=env, capture_output=True, text=True,
                        timeout=240)
    try:
        assert up.returncode == 0, up.stderr + up.stdout
        url = f"http://127.0.0.1:{http_port}/"
        assert f"kvcounter is serving at {url}" in up.stdout
        for expected in (1, 2):
            with urllib.request.urlopen(url + "counter", timeout=10) as reply:
                assert reply.read() == (b'{"counter":%d,"key":"counter:/counter"}' % expected)

        # The README's Redis step, on the test's Redis database and the demo's port.
        doc = yaml.safe_load((EXAMPLES / "kvcounter-redis.yaml").read_text())
        for comp in doc["spec"]["components"]:
            for trait in comp.get("traits", []):
                values = trait.get("properties", {}).get("values")
                if trait["type"] == "linkdef" and values is not None:
                    if "URL" in values:
                        values["URL"] = redis_url
                    if "port" in values:
                        values["port"] = str(http_port)
        redis_manifest = EXAMPLES / f".test-redis-{http_port}.yaml"  # relative image paths
        redis_manifest.write_text(yaml.safe_dump(doc))
        try:
            deploy = subprocess.run([*lattice, "app", "deploy", str(redis_manifest),
                                     "--nats-url", nats_url], env=env, capture_output=True,
                                    text=True, timeout=120)
        finally:
            redis_manifest.unlink()
        assert deploy.returncode == 0, deploy.stderr + deploy.stdout
        assert "kvcounter v0.2.0: deployed" in deploy.stdout
        with urllib.request.urlopen(url + "counter", timeout=10) as reply:
            assert reply.read() == b'{"counter":1,"key":"counter:/counter"}'  # a fresh store
        assert redis.Redis.from_url(redis_url).get("counter:/counter") == b"1"
    finally:
        down = subprocess.run([*lattice, "down"], env=env, capture_output=True, text=True,
                              timeout=60)
    assert down.returncode == 0, down.stderr
    assert not port_open("127.0.0.1", http_port) and not port_open("127.0.0.1", nats_port)


def test_up_demo_refuses_a_busy_port_before_starting_anything(tmp_path) -> None:
    import socket

    env = {**os.environ, "LATTICE_STATE_DIR": str(tmp_path / "state")}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        up = subprocess.run([sys.executable, "-m", "lattice", "up", "--demo", "--detach",
                             "--port", str(port), "--nats-url",
                             f"nats://127.0.0.1:{free_port()}"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert up.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use: pick another with --port" in up.stderr
    assert not (tmp_path / "state" / "up.json").exists()
