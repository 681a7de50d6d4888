"""``python -m providers.messaging_nats``: the process the host spawns (HostData on stdin)."""

from lattice.provider import run_provider
from providers.messaging_nats import MessagingNatsProvider

if __name__ == "__main__":
    run_provider(MessagingNatsProvider)
