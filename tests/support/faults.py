"""Failure injection for retry tests: stores and a warehouse that fail at their n-th operation.

A `Faults` counts every operation the wrapped stores and warehouse perform, in order, and makes
the n-th one fail: "before" (the operation never happens, as when a request is refused) or
"after" (it happens and then the task dies, as when a worker is killed or an answer is lost).
The error is a transient infrastructure error, the kind Airflow retries.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pubdata.errors import StoreError, WarehouseError
from pubdata.stores.base import Store, StoredObject

T = TypeVar("T")
Mode = Literal["before", "after"]


class Injected(StoreError):
    """The failure a test injected (a transient error: retried)."""


class Faults:
    def __init__(self, fail_at: int | None = None, mode: Mode = "before"):
        self.fail_at, self.mode = fail_at, mode
        self.steps: list[str] = []

    def step(self, what: str, do: Callable[[], T]) -> T:
        self.steps.append(what)
        hit = self.fail_at is not None and len(self.steps) == self.fail_at
        if hit and self.mode == "before":
            raise Injected(f"injected failure before step {self.fail_at}: {what}")
        result = do()
        if hit:
            raise Injected(f"injected failure after step {self.fail_at}: {what}")
        return result


class FaultyStore(Store):
    """Every operation of the inner store is a step."""

    def __init__(self, inner: Store, faults: Faults, name: str):
        self.inner, self.faults, self.name, self.url = inner, faults, name, inner.url

    def _step(self, op: str, key: str, do: Callable[[], T]) -> T:
        return self.faults.step(f"{self.name}.{op} {key}", do)

    def read(self, key: str) -> StoredObject | None:
        return self._step("read", key, lambda: self.inner.read(key))

    def exists(self, key: str) -> bool:
        return self._step("exists", key, lambda: self.inner.exists(key))

    def write(self, key: str, data: bytes, **kwargs: Any) -> int:
        return self._step("write", key, lambda: self.inner.write(key, data, **kwargs))

    def upload_file(self, key: str, path: Path, **kwargs: Any) -> None:
        return self._step("upload", key, lambda: self.inner.upload_file(key, path, **kwargs))

    def download_file(self, key: str, path: Path) -> None:
        return self._step("download", key, lambda: self.inner.download_file(key, path))

    def delete(self, key: str) -> None:
        return self._step("delete", key, lambda: self.inner.delete(key))

    def list(self, prefix: str) -> list[str]:
        return self._step("list", prefix, lambda: self.inner.list(prefix))

    def copy(self, src: str, dst: str) -> None:
        return self._step("copy", dst, lambda: self.inner.copy(src, dst))

    def copy_from(self, source: Store, src: str, dst: str, **kwargs: Any) -> None:
        origin = source.inner if isinstance(source, FaultyStore) else source
        return self._step("copy_from", dst, lambda: self.inner.copy_from(origin, src, dst, **kwargs))

    def link(self, key: str) -> str:
        return self.inner.link(key)


class FaultyWarehouse:
    """The warehouse's task-level operations are steps (a validation run is one step, not each query)."""

    STEPS = ("stage", "scalar", "columns", "drop", "source_ready")

    def __init__(self, inner: Any, faults: Faults):
        self.inner, self.faults = inner, faults

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in self.STEPS:
            return attr

        def stepped(*args: Any, **kwargs: Any) -> Any:
            try:
                return self.faults.step(f"warehouse.{name}", lambda: attr(*args, **kwargs))
            except Injected as exc:
                raise WarehouseError(str(exc)) from exc
        return stepped

    @contextlib.contextmanager
    def export_source(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        with self.faults.step("warehouse.export_source", lambda: self.inner.export_source(*args, **kwargs)) as source:
            yield source
