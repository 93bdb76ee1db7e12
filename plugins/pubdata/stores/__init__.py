"""Public bucket backends: a local directory (embedded default) and Google Cloud Storage."""

from __future__ import annotations

from pubdata.errors import ConfigurationError, PreconditionFailed, StoreError
from pubdata.stores.base import Store


def open_store(url: str) -> Store:
    """Open the store named by a PUBDATA_BUCKET url: file:///dir or gs://bucket[/prefix]."""
    if url.startswith("file://"):
        from pubdata.stores.local import LocalStore

        return LocalStore(url[len("file://"):])
    if url.startswith("gs://"):
        from pubdata.stores.gcs import GCSStore

        return GCSStore.from_url(url)
    raise ConfigurationError(f"PUBDATA_BUCKET={url!r} is not supported: use file:///path/dir or gs://bucket")


__all__ = ["PreconditionFailed", "Store", "StoreError", "open_store"]
