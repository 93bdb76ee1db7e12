"""No column of the staged table is forbidden in public output (identifiers, IPs, raw URLs, ...)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pubdata.policy.forbidden import forbidden_reason

NAME = "ExpectTableColumnsToExcludeForbidden"


@lru_cache(maxsize=1)
def gx_expectations() -> dict[str, type]:
    """The expectation, defined on first use (GX is imported only when a validation runs)."""
    from typing import ClassVar

    from great_expectations.expectations.expectation import BatchExpectation

    class ExpectTableColumnsToExcludeForbidden(BatchExpectation):
        """No column of the table is forbidden in public output (identifiers, IPs, raw URLs, ...)."""

        extra_forbidden: list[str] = []
        metric_dependencies: ClassVar[tuple[str, ...]] = ("table.columns",)
        success_keys: ClassVar[tuple[str, ...]] = ("extra_forbidden",)
        args_keys: ClassVar[tuple[str, ...]] = ("extra_forbidden",)

        def _validate(self, metrics: dict[str, Any], runtime_configuration: Any = None,
                      execution_engine: Any = None) -> dict[str, Any]:
            columns = [str(c) for c in metrics["table.columns"]]
            extra = {n.lower() for n in (self.extra_forbidden or [])}
            found = {}
            for col in columns:
                reason = forbidden_reason(col) or ("forbidden by this dataset" if col.lower() in extra else None)
                if reason:
                    found[col] = reason
            return {"success": not found, "result": {"observed_value": found or columns}}

    ExpectTableColumnsToExcludeForbidden.__module__ = __name__
    return {NAME: ExpectTableColumnsToExcludeForbidden}
