"""A local directory as the public bucket (embedded default), servable over plain HTTP.

Objects are written to a temporary file in the same directory and renamed into place, so a
reader never sees a partial object. Generations are the file's nanosecond mtime, checked and
bumped under an exclusive lock file, which gives the same compare-and-swap GCS offers. Every
change to a key takes its lock, and each new generation is strictly greater than the one it
replaces even when the clock is coarse or steps back: otherwise an old generation could become
current again and a stale writer's precondition would pass.

A bucket is flat and a directory is not: the public layout has both an object `.../v1/files`
(the listing) and objects under `.../v1/files/`. An object whose key is also a "directory" is kept
in that directory as the hidden file `.object` (moved there if the directory appears later);
`pubdata serve` maps URLs back to keys, so both resolve as they do on GCS.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from pubdata.errors import PreconditionFailed, StoreError
from pubdata.stores.base import Store, StoredObject

DIR_OBJECT = ".object"


class LocalStore(Store):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.url = f"file://{self.root}"

    def _plain_path(self, key: str) -> Path:
        parts = PurePosixPath(key).parts
        if not parts or key.startswith("/") or ".." in parts or parts[-1] == DIR_OBJECT:
            raise StoreError(f"invalid object key {key!r}: use a relative path without '..'")
        return self.root.joinpath(*parts)

    def _path(self, key: str) -> Path:
        path = self._plain_path(key)
        return path / DIR_OBJECT if path.is_dir() else path

    def _make_parents(self, key: str) -> None:
        """Turn any ancestor that is stored as a plain file into a directory holding `.object`."""
        parts = PurePosixPath(key).parts
        for i in range(1, len(parts)):
            ancestor_key = "/".join(parts[:i])
            ancestor = self.root.joinpath(*parts[:i])
            if ancestor.is_file():
                with self._locked(ancestor_key):
                    if ancestor.is_file():
                        moving = ancestor.with_name(f".{ancestor.name}.moving")
                        os.replace(ancestor, moving)
                        ancestor.mkdir(exist_ok=True)
                        os.replace(moving, ancestor / DIR_OBJECT)

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[None]:
        lock_dir = self.root.parent / f".{self.root.name}.locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        lock_path = lock_dir / (key.replace("/", "%2F") + ".lock")
        with open(lock_path, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    @staticmethod
    def _generation(path: Path) -> int:
        return path.stat().st_mtime_ns

    def read(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            with open(path, "rb") as fh:
                gen = os.fstat(fh.fileno()).st_mtime_ns
                return StoredObject(fh.read(), gen)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def _current_generation(self, path: Path) -> int:
        try:
            return self._generation(path)
        except (FileNotFoundError, NotADirectoryError):
            return 0

    def _replace(self, path: Path, writer, current: int) -> int:
        """Write through a temporary file and rename it over path; call with the key's lock held.

        The new generation is set on the temporary file before the rename, so no reader ever
        sees the new bytes with a generation that is about to change.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                writer(fh)
                fh.flush()
                os.fsync(fh.fileno())
                gen = os.fstat(fh.fileno()).st_mtime_ns
            if gen <= current:  # same tick as the last write, or the clock went back
                gen = current + 1
                os.utime(tmp, ns=(gen, gen))
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return gen

    def write(self, key, data, *, content_type, compress=False, if_generation_match=None, cache_control=None) -> int:
        self._make_parents(key)
        with self._locked(key):
            path = self._path(key)
            current = self._current_generation(path)
            if if_generation_match is not None and current != if_generation_match:
                raise PreconditionFailed(f"{key}: generation is {current}, expected {if_generation_match}")
            return self._replace(path, lambda fh: fh.write(data), current)

    def upload_file(self, key, path, *, content_type, compress=False) -> None:
        def copy(fh):
            with open(path, "rb") as src:
                shutil.copyfileobj(src, fh, 1024 * 1024)

        self._make_parents(key)
        with self._locked(key):
            dest = self._path(key)
            self._replace(dest, copy, self._current_generation(dest))

    def delete(self, key: str) -> None:
        path = self._path(key)
        with self._locked(key), contextlib.suppress(FileNotFoundError):
            path.unlink()

    def list(self, prefix: str) -> list[str]:
        # Every key under the prefix lives below the prefix's last complete directory.
        directory = prefix if prefix.endswith("/") else prefix.rpartition("/")[0]
        start = self.root.joinpath(*PurePosixPath(directory).parts)
        if not start.is_dir():
            return []
        out = []
        for dirpath, _dirs, files in os.walk(start):
            for name in files:
                if name == DIR_OBJECT and Path(dirpath) != self.root:
                    rel = Path(dirpath).relative_to(self.root).as_posix()
                elif name.startswith("."):
                    continue
                else:
                    rel = Path(dirpath, name).relative_to(self.root).as_posix()
                if rel.startswith(prefix):
                    out.append(rel)
        return sorted(out)

    def download_file(self, key: str, path) -> None:
        source = self._path(key)
        try:
            shutil.copyfile(source, path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise StoreError(f"cannot download {key}: it does not exist") from None

    def copy(self, src: str, dst: str) -> None:
        self.copy_from(self, src, dst, content_type="application/octet-stream")

    def copy_from(self, source: Store, src: str, dst: str, *, content_type: str, compress: bool = False) -> None:
        """From another local directory: a file copy into place (atomic, like every write here)."""
        if not isinstance(source, LocalStore):
            super().copy_from(source, src, dst, content_type=content_type, compress=compress)
            return
        path = source._path(src)
        if not path.is_file():
            raise StoreError(f"cannot copy {src} from {source.url}: it does not exist")
        self.upload_file(dst, path, content_type=content_type)

    def link(self, key: str) -> str:
        return self._path(key).as_uri()
