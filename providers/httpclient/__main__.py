"""``python -m providers.httpclient``: the process the host spawns (HostData arrives on stdin)."""

from lattice.provider import run_provider
from providers.httpclient import HttpClientProvider

if __name__ == "__main__":
    run_provider(HttpClientProvider)
