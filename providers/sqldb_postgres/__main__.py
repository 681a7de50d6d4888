"""``python -m providers.sqldb_postgres``: the process the host spawns (HostData on stdin)."""

from lattice.provider import run_provider
from providers.sqldb_postgres import SqlDbPostgresProvider

if __name__ == "__main__":
    run_provider(SqlDbPostgresProvider)
