"""``python -m providers.httpserver``: the process the host spawns (HostData arrives on stdin)."""

from lattice.provider import run_provider
from providers.httpserver import HttpServerProvider

if __name__ == "__main__":
    run_provider(HttpServerProvider)
