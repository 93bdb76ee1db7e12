"""The store interface: what publishing needs from a bucket, and nothing more.

Keys are '/'-separated paths relative to the bucket root (api/v1/tables/...). Every write is
atomic per object: a reader sees the whole old object or the whole new one. Generations give
optimistic concurrency for shared objects such as all-datasets.json: `if_generation_match=0`
means "only if absent", any other number "only if unchanged since I read it".
"""

from __future__ import annotations

import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from pubdata.errors import PreconditionFailed, StoreError

__all__ = ["PreconditionFailed", "Store", "StoreError", "StoredObject"]


@dataclass(frozen=True)
class StoredObject:
    data: bytes
    generation: int


class Store(ABC):
    url: str

    @abstractmethod
    def read(self, key: str) -> StoredObject | None:
        """The object's bytes (decompressed) and generation, or None when absent."""

    @abstractmethod
    def write(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str,
        compress: bool = False,
        if_generation_match: int | None = None,
        cache_control: str | None = None,
    ) -> int:
        """Write an object atomically and return its new generation.

        compress asks for gzip content-encoding where the backend serves it transparently (GCS).
        Raises PreconditionFailed when if_generation_match does not hold.
        """

    @abstractmethod
    def upload_file(self, key: str, path: Path, *, content_type: str, compress: bool = False) -> None:
        """Upload a local file without holding it in memory."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Delete an object; absent objects are fine."""

    @abstractmethod
    def list(self, prefix: str) -> list[str]:
        """Keys under a prefix, sorted."""

    @abstractmethod
    def copy(self, src: str, dst: str) -> None:
        """Server-side copy of one object."""

    def link(self, key: str) -> str:
        """A URL a person with access to this store can open (on-call reading a report)."""
        return f"{self.url}/{key}"

    def copy_from(self, source: Store, src: str, dst: str, *, content_type: str, compress: bool = False) -> None:
        """Copy an object of another store here: server-side where both are the same kind of store
        (a GCS rewrite works across buckets), else streamed through a local temporary file.

        content_type and compress are used when the object has to be uploaded again.
        """
        if source is self:
            self.copy(src, dst)
            return
        with tempfile.TemporaryDirectory(prefix="pubdata-copy-") as tmp:
            path = Path(tmp) / "object"
            source.download_file(src, path)
            self.upload_file(dst, path, content_type=content_type, compress=compress)

    def exists(self, key: str) -> bool:
        return self.read(key) is not None

    def download_file(self, key: str, path: Path) -> None:
        """Save an object (decompressed) to a local file; backends override this to stream."""
        obj = self.read(key)
        if obj is None:
            raise StoreError(f"cannot download {key}: it does not exist")
        Path(path).write_bytes(obj.data)
