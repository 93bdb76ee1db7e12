"""The dataset's own expectations file, expectations/<ds>/<table>_v<N>.yaml (format in README.md).

Every mistake is reported as `file:line: where: what`, so `pubdata check` points at the line;
line numbers come from the YAML node tree (yaml.compose), which keeps each node's position.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from pubdata.declarations import Declaration
from pubdata.declarations.loader import yaml_error_position, yaml_error_text
from pubdata.declarations.untrusted import clip, compose_yaml, read_text, shorten
from pubdata.errors import ExpectationsFileError, FileRefused
from pubdata.validation.batch_sql import SOURCE_DIALECT, BatchSqlError, batch_query, unknown_columns
from pubdata.validation.expectations import build_expectation
from pubdata.validation.expectations.row_count_band import DEFAULT_ROW_COUNT_BAND, RowCountBand
from pubdata.validation.expectations.totals import MARKER_RE, Total, totals_expectation
from pubdata.validation.spec import SEVERITIES, ExpectationSpec

if TYPE_CHECKING:
    from pubdata.warehouses.base import Warehouse

TOP_KEYS = ("expectations", "totals", "row_count")


@dataclass
class DatasetExpectations:
    specs: list[ExpectationSpec] = field(default_factory=list)
    row_count: RowCountBand | None = DEFAULT_ROW_COUNT_BAND


def _lines(node: yaml.Node | None, path: tuple = (), out: dict | None = None) -> dict[tuple, int]:
    """{(key, index, key, ...): 1-based line} for every node of a composed YAML document.

    A mapping entry is placed at its key's line (a block value starts on the next one).
    """
    out = {} if out is None else out
    if node is None:
        return out
    out.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            out[child] = key.start_mark.line + 1
            _lines(value, child, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _lines(item, path + (i,), out)
    return out


def _camel(name: str) -> str:
    if "_" not in name:
        return name
    return "".join(part.capitalize() for part in name.split("_"))


class _Reader:
    def __init__(self, path: Path, lines: dict[tuple, int]):
        self.path, self.lines = path, lines

    def fail(self, where: tuple, message: str) -> ExpectationsFileError:
        line = None
        for n in range(len(where), -1, -1):  # the deepest node we have a line for
            line = self.lines.get(where[:n])
            if line is not None:
                break
        label = "".join(f"[{p}]" if isinstance(p, int) else (f".{clip(str(p), 40)}" if i else clip(str(p), 40))
                        for i, p in enumerate(where))
        # Values from the file are echoed through shorten(); the whole message is bounded too.
        return ExpectationsFileError(f"{self.path}:{line or 1}: {label or 'file'}: {clip(message, 500)}")


def load(path: Path | None, decl: Declaration | None = None,
         warehouse: type[Warehouse] | Warehouse | None = None) -> DatasetExpectations:
    """Parse and check the file. With the declaration, totals are checked against the declared
    columns and built into expectations; without it, only their fields are checked. SQL is
    rendered for the warehouse's dialect (BigQuery's, the file's own, when none is given)."""
    dialect = warehouse.SQL_DIALECT if warehouse is not None else SOURCE_DIALECT
    if path is None:
        return DatasetExpectations()
    path = Path(path)
    try:  # one parse: the node tree gives the line numbers, the same tree the values
        value, node = compose_yaml(read_text(path), yaml.SafeLoader)
        raw = value or {}
        lines = _lines(node)
    except FileRefused as exc:
        raise ExpectationsFileError(f"{path}:{exc.line or 1}: {exc}") from None
    except yaml.YAMLError as exc:
        line, column = yaml_error_position(exc)
        raise ExpectationsFileError(f"{path}:{line or 1}{f':{column}' if column else ''}: not valid YAML: "
                                    f"{yaml_error_text(exc)}") from None
    r = _Reader(path, lines)
    if not isinstance(raw, dict) or set(raw) - set(TOP_KEYS):
        extra = sorted(set(raw) - set(TOP_KEYS)) if isinstance(raw, dict) else []
        where = (extra[0],) if extra else ()
        raise r.fail(where, f"top-level keys are {', '.join(TOP_KEYS)}"
                     + (f"; unknown: {', '.join(map(str, extra))}" if extra else ""))
    out = DatasetExpectations()
    items = raw.get("expectations") or []
    if not isinstance(items, list):
        raise r.fail(("expectations",), "expected a list of expectations")
    for i, item in enumerate(items):
        out.specs.append(_expectation(r, ("expectations", i), item, dialect, decl))
    totals = raw.get("totals") or []
    if not isinstance(totals, list):
        raise r.fail(("totals",), "expected a list of totals")
    for i, item in enumerate(totals):
        if decl is None:  # without the declaration the SQL cannot be built; the fields are still checked
            _total_fields(r, ("totals", i), item)
        else:
            out.specs.append(totals_expectation(decl, _total(r, ("totals", i), item, decl), dialect))
    if "row_count" in raw:
        out.row_count = _band(r, raw["row_count"])
    return out


def _severity(r: _Reader, where: tuple, item: dict, default: str = "fail") -> str:
    severity = item.get("severity", default)
    if severity not in SEVERITIES:
        raise r.fail(where + ("severity",), f"{shorten(severity)} is not one of {', '.join(SEVERITIES)}")
    return severity


COLUMN_ARGUMENTS = ("column", "column_A", "column_B", "column_list", "column_set", "columns")
"""GX arguments that name columns of the batch (one name, or a list of names)."""


def _declared(r: _Reader, where: tuple, names: list[str], decl: Declaration, what: str) -> None:
    """Every column an expectation names must be a declared column: the staged rows have no other."""
    declared = list(decl.spec.policy.columns)
    for name in names:
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]}? " if close else ""
            raise r.fail(where, f"{what} {clip(name, 60)}, which is not a declared column of "
                         f"{decl.id} ({', '.join(declared)}); {hint}name a declared dimension or metric, or remove "
                         "the expectation if its column was removed")


def _expectation(r: _Reader, where: tuple, item: Any, dialect: str, decl: Declaration | None = None) -> ExpectationSpec:
    import great_expectations as gx

    if not isinstance(item, dict):
        raise r.fail(where, "expected a mapping with `expectation:` or `sql:`")
    unknown = set(item) - {"expectation", "kwargs", "severity", "description", "sql"}
    if unknown:
        raise r.fail(where + (sorted(unknown)[0],), f"unknown key(s) {', '.join(sorted(unknown))}; "
                     "use expectation, kwargs, severity, description or sql")
    severity = _severity(r, where, item)
    if "sql" in item:
        try:
            query = batch_query(item["sql"], write=dialect)
        except BatchSqlError as exc:
            raise r.fail(where + ("sql",), f"{exc}. An expectation is one SELECT over {{batch}} whose rows are "
                         "the violations") from None
        if decl is not None:
            _declared(r, where + ("sql",), unknown_columns(item["sql"], set(decl.spec.policy.columns)), decl,
                      "the query reads column")
        spec = ExpectationSpec("UnexpectedRowsExpectation", {"unexpected_rows_query": query}, severity,
                               item.get("description") or "SQL expectation", "dataset")
        key = "sql"
    elif "expectation" in item:
        name = _camel(str(item["expectation"]))
        cls = getattr(gx.expectations, name, None)
        if cls is None:
            raise r.fail(where + ("expectation",),
                         f"{shorten(item['expectation'])} is not a Great Expectations 1.x expectation")
        if any(f.endswith("query") for f in getattr(cls, "__fields__", {})):
            raise r.fail(where + ("expectation",), f"{name} runs SQL text as written; write the query under "
                         "`sql:` instead, where it is checked to be one SELECT over {batch}")
        kwargs = item.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise r.fail(where + ("kwargs",), "expected a mapping of argument names to values")
        if decl is not None:
            for arg in COLUMN_ARGUMENTS:
                value = kwargs.get(arg)
                names = [value] if isinstance(value, str) else [v for v in value if isinstance(v, str)] \
                    if isinstance(value, list) else []
                _declared(r, where + ("kwargs", arg), names, decl, f"{arg} names column")
        spec = ExpectationSpec(name, dict(kwargs), severity,
                               item.get("description") or f"{name} {json.dumps(kwargs, default=str)}", "dataset")
        key = "kwargs" if "kwargs" in item else "expectation"
    else:
        raise r.fail(where, "give either `expectation:` (a GX expectation name) or `sql:`")
    try:
        build_expectation(spec)
    except Exception as exc:  # pydantic errors from GX: a bad or missing argument, a bad query
        allowed = list(getattr(getattr(gx.expectations, spec.name, None), "__fields__", {})) if "sql" not in item else []
        raise r.fail(where + (key,), f"{_argument_errors(exc, allowed)}; check the argument names and types") from None
    return spec


def _argument_errors(exc: Exception, allowed: list[str] | None = None) -> str:
    """`column: required argument missing; colum: unknown argument (did you mean column?)` from GX's
    pydantic error, in words rather than pydantic's."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        try:
            parts = []
            for e in errors():
                name = ".".join(str(p) for p in e.get("loc", ())) or "arguments"
                kind = str(e.get("type", ""))
                if kind in ("value_error.missing", "missing"):
                    parts.append(f"{name}: required argument missing")
                elif kind in ("value_error.extra", "extra_forbidden"):
                    close = difflib.get_close_matches(name, allowed or [], n=1, cutoff=0.6)
                    parts.append(f"{name}: unknown argument" + (f" (did you mean {close[0]}?)" if close else ""))
                else:
                    parts.append(f"{name}: {e.get('msg')}")
            if parts:
                return "; ".join(parts)
        except Exception:  # not pydantic's shape after all
            pass
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _total_fields(r: _Reader, where: tuple, item: Any) -> tuple[str, str, list[str], float, str]:
    if not isinstance(item, dict):
        raise r.fail(where, "expected a mapping with dimension, value and metrics")
    unknown = set(item) - {"dimension", "value", "metrics", "tolerance", "severity"}
    if unknown:
        raise r.fail(where + (sorted(unknown)[0],), f"unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("dimension", "value", "metrics"):
        if key not in item:
            raise r.fail(where, f"`{key}:` is required")
    value = str(item["value"])
    if not MARKER_RE.match(value):
        raise r.fail(where + ("value",), f"{shorten(value)}: use letters, digits, spaces, '_', '.', '-' (at most 64)")
    metrics = item["metrics"]
    if not isinstance(metrics, list) or not metrics or not all(isinstance(m, str) for m in metrics):
        raise r.fail(where + ("metrics",), "expected a non-empty list of metric names")
    tolerance = item.get("tolerance", 0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise r.fail(where + ("tolerance",), f"{shorten(tolerance)} is not a number >= 0")
    return str(item["dimension"]), value, metrics, float(tolerance), _severity(r, where, item)


def _total(r: _Reader, where: tuple, item: Any, decl: Declaration) -> Total:
    dimension, value, metrics, tolerance, severity = _total_fields(r, where, item)
    p = decl.spec.policy
    if dimension not in {d.name for d in p.dimensions}:
        raise r.fail(where + ("dimension",), f"{shorten(dimension)} is not a declared dimension "
                     f"({', '.join(d.name for d in p.dimensions)})")
    for i, m in enumerate(metrics):
        if m not in {x.name for x in p.metrics}:
            raise r.fail(where + ("metrics", i), f"{shorten(m)} is not a declared metric")
        if m == p.bucket_column:
            raise r.fail(where + ("metrics", i), f"{shorten(m)} counts distinct clients, which do not add up across "
                         "cells; list additive metrics only")
    if value == p.other_label:
        raise r.fail(where + ("value",), f"{value} is the grouped label (policy.other_label): its rows are published "
                     "cells of rare values, not totals; mark totals with another value, such as All")
    return Total(dimension, value, tuple(metrics), tolerance, severity)


def _band(r: _Reader, raw: Any) -> RowCountBand | None:
    if raw is False or raw is None:
        return None
    where = ("row_count",)
    if not isinstance(raw, dict):
        raise r.fail(where, "expected min_ratio, max_ratio and severity, or false for no band")
    unknown = set(raw) - {"min_ratio", "max_ratio", "severity"}
    if unknown:
        raise r.fail(where + (sorted(unknown)[0],), f"unknown key(s) {', '.join(sorted(unknown))}")
    low = raw.get("min_ratio", DEFAULT_ROW_COUNT_BAND.min_ratio)
    high = raw.get("max_ratio", DEFAULT_ROW_COUNT_BAND.max_ratio)
    for key, v in (("min_ratio", low), ("max_ratio", high)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise r.fail(where + (key,), f"{shorten(v)} is not a number >= 0")
    if low > high:
        raise r.fail(where + ("min_ratio",), f"min_ratio {low} is above max_ratio {high}")
    return RowCountBand(float(low), float(high), _severity(r, where, raw, DEFAULT_ROW_COUNT_BAND.severity))
