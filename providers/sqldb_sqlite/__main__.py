"""``python -m providers.sqldb_sqlite``: the process the host spawns (HostData on stdin)."""

from lattice.provider import run_provider
from providers.sqldb_sqlite import SqlDbSqliteProvider

if __name__ == "__main__":
    run_provider(SqlDbSqliteProvider)
