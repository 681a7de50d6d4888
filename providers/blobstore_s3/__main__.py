"""``python -m providers.blobstore_s3``: the process the host spawns (HostData on stdin)."""

from lattice.provider import run_provider
from providers.blobstore_s3 import BlobstoreS3Provider

if __name__ == "__main__":
    run_provider(BlobstoreS3Provider)
