"""``python -m providers.keyvalue_nats``: the process the host spawns (HostData on stdin)."""

from lattice.provider import run_provider
from providers.keyvalue_nats import KeyValueNatsProvider

if __name__ == "__main__":
    run_provider(KeyValueNatsProvider)
