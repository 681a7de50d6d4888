"""``python -m providers.blobstore_fs``: the process the host spawns (HostData on stdin)."""

from lattice.provider import run_provider
from providers.blobstore_fs import BlobstoreFsProvider

if __name__ == "__main__":
    run_provider(BlobstoreFsProvider)
