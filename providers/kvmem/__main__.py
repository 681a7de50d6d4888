"""``python -m providers.kvmem``: the process the host spawns (HostData arrives on stdin)."""

from lattice.provider import run_provider
from providers.kvmem import KvMemProvider

if __name__ == "__main__":
    run_provider(KvMemProvider)
