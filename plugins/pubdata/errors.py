"""Every error pubdata raises, in two families that decide what Airflow does with a failed task.

DataError: the data, the query, the declaration or the configuration is wrong. Retrying cannot
help, so the task fails at once and on-call is told what to fix.
InfrastructureError: something we depend on failed (the warehouse, the bucket, the network).
Retried with back-off; if it keeps failing, reported as infrastructure, never as bad data.

`classify` is the one place that turns any exception into one of the two; the DAG factory,
alerts and `pubdata status` all ask it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

ErrorKind = Literal["data", "infrastructure"]


class PubdataError(Exception):
    """Base of every pubdata error."""


class DataError(PubdataError):
    """Permanent: fix the input (data, query, declaration, configuration); never retried."""


class InfrastructureError(PubdataError):
    """Transient: a service or the network failed; retried."""


# -- data errors --------------------------------------------------------------------------------


class DeclarationInvalid(DataError):
    """A declaration (or its query) cannot be loaded as written; `problems` says where and why."""

    def __init__(self, problems: list[object]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


class FileRefused(DataError):
    """A committed file is not safe to read (not UTF-8, too large, not a regular file, a YAML alias
    bomb); callers name the file. `line` is where the problem is, when known."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


class PolicyRefused(DataError):
    """The publishing policy does not allow this dataset to be published as declared."""


class NotValidated(DataError):
    """Export or publish was asked for data that has not passed validation."""


class StagedTableChanged(DataError):
    """The staged table is not what validation saw (its fingerprint changed): nothing is exported."""


class QueryError(DataError):
    """The reviewed query itself is wrong (syntax, unknown column, missing table): fix the query."""


class _WithReport(PubdataError):
    def __init__(self, message: str, report: object = None):
        super().__init__(message)
        self.report = report


class ValidationFailed(_WithReport, DataError):
    """The staged data broke at least one `fail` expectation; it stays internal as quarantine."""


class ExpectationsFileError(DataError):
    """expectations/<ds>/<table>_v<N>.yaml is malformed; the message names file, line and fix."""


class ConfigurationError(DataError):
    """The deployment's settings are wrong (a URL, a permission, a missing bucket or dataset)."""


class UsageError(DataError):
    """A command was asked for something it cannot do as asked; the message says what to change."""


# -- infrastructure errors ----------------------------------------------------------------------


class WarehouseError(InfrastructureError):
    """The warehouse could not do what was asked (unreachable, timed out, failed internally)."""


class StoreError(InfrastructureError):
    """A bucket operation failed."""


class PreconditionFailed(StoreError):
    """The object changed (or appeared) since it was read: re-read and try again."""


class ValidationError(_WithReport, InfrastructureError):
    """An expectation could not be evaluated: never a pass, never a data failure."""


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def classify(exc: BaseException | None) -> ErrorKind:
    """`data` when the exception (or one it was raised from) is a DataError, else `infrastructure`.

    An exception that is neither family (a bug, a library error nobody translated) counts as
    infrastructure: retrying is harmless, and on-call sees the traceback.
    """
    for link in _chain(exc):
        if isinstance(link, DataError):
            return "data"
        if isinstance(link, InfrastructureError):
            return "infrastructure"
    return "infrastructure"


def find(exc: BaseException | None, kind: type[BaseException]) -> BaseException | None:
    """The first exception of `kind` in exc's chain of causes, or None."""
    for link in _chain(exc):
        if isinstance(link, kind):
            return link
    return None
