"""Source rows of your own in the embedded warehouse: a SQL test case's input files, loaded as tables.

A SQL test case (tests/sql/<ds>/<table>_v<N>/<case>/) names each input file after the table it
fills, `[<project>.]<dataset>.<table>.yaml|.yml|.json|.ndjson` (a YAML list of rows, a JSON array
or newline-delimited JSON). `pubdata load <case>` replaces those tables in the local warehouse
with the case's rows, so `pubdata run` publishes from them; the SQL tests load the same files the
same way into a scratch warehouse. A table the synthetic warehouse knows keeps its production
column types (a JSON column stays JSON, a record stays a STRUCT; columns left out are NULL, and a
column the table does not have is refused, naming it); any other table takes the types DuckDB
infers from the rows.
"""

from __future__ import annotations

import datetime as dt
import json
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import duckdb
import yaml

PARAMS_FILE = "query_params.yaml"
EXPECT_STEM = "expect"
ROW_SUFFIXES = (".yaml", ".yml", ".ndjson", ".json")
SYNTHETIC_MARK = "pubdata_synthetic"  # sources.synthetic's record of the spec a warehouse was generated with


class FixtureError(ValueError):
    """An input file that cannot be loaded; the message names the file and what to change."""


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows from a YAML list of mappings, a JSON array or newline-delimited JSON."""
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".ndjson":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif path.suffix == ".json":
            rows = json.loads(text)
        else:
            rows = yaml.safe_load(text) or []
    except (ValueError, yaml.YAMLError) as exc:
        raise FixtureError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}") from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise FixtureError(f"{path}: expected a list of rows (mappings of column to value)")
    return rows


def input_files(case: Path) -> list[Path]:
    """The case's input files: every row file but its parameters and its expected rows."""
    return [p for p in sorted(Path(case).iterdir())
            if p.suffix in ROW_SUFFIXES and p.name != PARAMS_FILE and p.stem != EXPECT_STEM]


def table_of(path: Path) -> tuple[str, str]:
    """(dataset, table) from `[<project>.]<dataset>.<table>.<suffix>`."""
    parts = path.stem.split(".")
    if len(parts) < 2:
        raise FixtureError(f"{path}: name an input file after its table, <dataset>.<table>{path.suffix} (optionally "
                           f"with the project, e.g. moz-fx-data-shared-prod.telemetry.clients_daily{path.suffix})")
    return parts[-2], parts[-1]


def table_schemas(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Column names and types of every table in a DuckDB file, by "<dataset>.<table>"."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema <> 'main' ORDER BY table_schema, table_name, ordinal_position"
        ).fetchall()
    finally:
        con.close()
    schemas: dict[str, list[tuple[str, str]]] = {}
    for schema, table, column, type_ in rows:
        schemas.setdefault(f"{schema}.{table}", []).append((column, type_))
    return schemas


@lru_cache(maxsize=1)
def production_schemas() -> dict[str, list[tuple[str, str]]]:
    """The synthetic tables' columns and types (the production ones), from a tiny generated warehouse."""
    from pubdata.sources.synthetic import SynthSpec, generate

    with tempfile.TemporaryDirectory(prefix="pubdata-schemas-") as tmp:
        path = Path(tmp) / "schemas.duckdb"
        generate(path, SynthSpec(scale=3, days=1))
        return table_schemas(path)


def jsonable(value: Any) -> Any:
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    raise TypeError(f"cannot write {value!r} as JSON")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def load_case(case: Path, warehouse: Path, schemas: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, int]:
    """Replace the tables of a case's input files in a DuckDB file (created if absent) with the
    case's rows; return the rows loaded per "<dataset>.<table>". Nothing is changed when a file is
    refused: every file is read and checked before the warehouse is opened."""
    case = Path(case)
    if not case.is_dir():
        raise FixtureError(f"{case}: not a directory; give a SQL test case, e.g. tests/sql/<ds>/<table>_v<N>/<case>/")
    files = input_files(case)
    if not files:
        raise FixtureError(f"{case}: no input files (<dataset>.<table>.yaml or .ndjson) in this directory")
    known = production_schemas() if schemas is None else schemas
    tables: list[tuple[str, str, list[dict[str, Any]], list[tuple[str, str]] | None, Path]] = []
    for path in files:
        dataset, table = table_of(path)
        rows = read_rows(path)
        schema = known.get(f"{dataset}.{table}")
        if schema is not None:
            types = dict(schema)
            unknown = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in types]
            if unknown:
                raise FixtureError(f"{path}: {', '.join(unknown)} is not a column of {dataset}.{table}; "
                                   f"its columns are {', '.join(types)}")
        tables.append((dataset, table, rows, schema, path))
    Path(warehouse).parent.mkdir(parents=True, exist_ok=True)
    loaded: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="pubdata-load-") as tmp:
        con = duckdb.connect(str(warehouse))
        try:
            con.execute("BEGIN")
            for dataset, table, rows, schema, path in tables:
                ndjson = Path(tmp) / f"{dataset}.{table}.ndjson"
                ndjson.write_text("".join(json.dumps(r, default=jsonable) + "\n" for r in rows), encoding="utf-8")
                con.execute(f"CREATE SCHEMA IF NOT EXISTS {_q(dataset)}")
                target = f"{_q(dataset)}.{_q(table)}"
                if schema is None:  # not a known source table: types are inferred from the rows
                    if not rows:
                        raise FixtureError(f"{path}: no rows, and {dataset}.{table} is not a table the synthetic "
                                           "warehouse knows, so its columns cannot be inferred: give at least one row")
                    con.execute(f"CREATE OR REPLACE TABLE {target} AS SELECT * FROM read_json_auto(?, format='newline_delimited')",
                                [str(ndjson)])
                else:
                    types = dict(schema)
                    given = list(dict.fromkeys(k for r in rows for k in r))
                    con.execute(f"CREATE OR REPLACE TABLE {target} ({', '.join(f'{_q(c)} {t}' for c, t in schema)})")
                    if rows:
                        columns = "{" + ", ".join(f"'{c}': '{types[c]}'" for c in given) + "}"
                        con.execute(f"INSERT INTO {target} BY NAME SELECT * FROM read_json(?, format='newline_delimited', "
                                    f"columns={columns})", [str(ndjson)])
                loaded[f"{dataset}.{table}"] = len(rows)
            # The warehouse is no longer what `pubdata synth` generated: forget its spec, so the
            # next `pubdata synth` regenerates every table instead of calling it up to date.
            con.execute(f"DROP TABLE IF EXISTS main.{SYNTHETIC_MARK}")
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise FixtureError(f"{case}: the rows do not load: {exc}") from None
        except BaseException:
            con.execute("ROLLBACK")
            raise
        finally:
            con.close()
    return loaded
