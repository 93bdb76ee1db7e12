"""Bucket backends behind one interface: a local directory (embedded default) and Google Cloud Storage.

The same interface serves the public bucket (PUBDATA_BUCKET), the private staging location
(PUBDATA_STAGING_BUCKET: export's parts and BigQuery's extract shards) and the private run state
(PUBDATA_STATE_URL: run records, quarantine marks, validation reports).
"""

from __future__ import annotations

from pathlib import Path

from pubdata.errors import ConfigurationError, PreconditionFailed, StoreError
from pubdata.stores.base import Store


def open_store(url: str) -> Store:
    """Open the store named by a url: file:///dir or gs://bucket[/prefix]."""
    if url.startswith("file://"):
        from pubdata.stores.local import LocalStore

        return LocalStore(url[len("file://"):])
    if url.startswith("gs://"):
        from pubdata.stores.gcs import GCSStore

        return GCSStore.from_url(url)
    raise ConfigurationError(f"{url!r} is not a supported bucket url: use file:///path/dir or gs://bucket[/prefix]")


def readable_through(private_url: str, public_url: str) -> bool:
    """Whether objects stored under private_url would be readable through the public bucket.

    A directory inside (or equal to) the public directory is served with it; on GCS, read access
    is granted per bucket (uniform bucket-level access), so any prefix of the public bucket is public.
    """
    if private_url.startswith("file://") and public_url.startswith("file://"):
        private = Path(private_url[len("file://"):]).resolve()
        public = Path(public_url[len("file://"):]).resolve()
        return private == public or public in private.parents
    if private_url.startswith("gs://") and public_url.startswith("gs://"):
        return private_url[len("gs://"):].split("/", 1)[0] == public_url[len("gs://"):].split("/", 1)[0]
    return False


def open_private(url: str, public_url: str, variable: str) -> Store:
    """Open a private store, refusing one the public could read through the public bucket."""
    if readable_through(url, public_url):
        raise ConfigurationError(
            f"{variable}={url} is readable through the public bucket PUBDATA_BUCKET={public_url}: "
            f"point {variable} at a private directory or a private GCS bucket"
        )
    return open_store(url)


__all__ = ["PreconditionFailed", "Store", "StoreError", "open_private", "open_store", "readable_through"]
