"""``python -m providers.keyvalue_redis``: the process the host spawns (HostData on stdin)."""

from lattice.provider import run_provider
from providers.keyvalue_redis import KeyValueRedisProvider

if __name__ == "__main__":
    run_provider(KeyValueRedisProvider)
