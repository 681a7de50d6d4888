"""A lattice host (docs/wire.md §3, §6, §7): actors over NATS RPC, provider supervision, the control
interface and the lattice store.

    host = Host(HostConfig(nats=NatsOptions(url="nats://127.0.0.1:4222")))
    await host.start()
    await host.run_until_stopped()   # SIGINT/SIGTERM or a ctl stop
"""

from lattice.host.config import HostConfig
from lattice.host.host import Host

__all__ = ["Host", "HostConfig"]
