"""Dataset declarations: metadata/<ds>/<table>_v<N>.yaml plus its reviewed query.

A declaration is the contract between a data engineer, the data steward who reviewed it and the
pipeline. Loading is strict (unknown keys and wrong types are errors) and isolated: a broken file
yields a DeclarationError naming the file and field, and the other datasets still load.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import yaml
from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from pubdata.spec_cache import SpecCache

DATASET_ID_RE = re.compile(r"^(?P<ds>[a-z][a-z0-9_]*)\.(?P<table>[a-z][a-z0-9_]*)_v(?P<version>[1-9][0-9]*)$")
FILE_STEM_RE = re.compile(r"^(?P<table>[a-z][a-z0-9_]*)_v(?P<version>[1-9][0-9]*)$")
DEFAULT_MIN_BUCKET_SIZE = 5000
# libyaml's safe loader parses a declaration ~9x faster than the pure-Python one, and the dag
# processor loads every declaration on every parse; same documents, same errors.
SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Steward(_Strict):
    """The data steward's sign-off; required when any review question is answered yes."""

    name: str = Field(min_length=1)
    approved_on: dt.date
    link: AnyHttpUrl = Field(description="Where the sign-off is recorded (a bug comment).")


class Review(_Strict):
    bugs: list[AnyHttpUrl] = Field(min_length=1, description="Review bugs; at least one.")
    data_reviews: list[AnyHttpUrl] = Field(
        default_factory=list,
        description="Data-collection reviews covering every source field.",
    )
    steward: Steward | None = None


DimensionKind = Literal["date", "categorical", "geo_country", "geo_city", "numeric_bucket", "version"]


class Dimension(_Strict):
    name: Identifier
    category: int = Field(ge=1, le=4, description="Data-collection category: 1 technical ... 4 highly sensitive.")
    kind: DimensionKind = "categorical"
    description: str = ""
    data_review: bool = Field(
        default=True,
        description="False when this field has no corresponding data-collection review.",
    )


class Metric(_Strict):
    name: Identifier
    sensitive: bool = Field(description="True when the metric reveals or implies revenue (searches, ad clicks).")
    description: str = ""
    data_review: bool = True


class Policy(_Strict):
    aggregation_level: int = Field(ge=1, le=7)
    min_bucket_size: int = Field(default=DEFAULT_MIN_BUCKET_SIZE, ge=1)
    bucket_column: Identifier | None = Field(
        default=None,
        description="Distinct clients per row; the minimum bucket applies to it (required at level 2).",
    )
    dimensions: list[Dimension] = Field(min_length=1)
    metrics: list[Metric] = Field(min_length=1)

    @model_validator(mode="after")
    def _columns_consistent(self) -> Policy:
        names = [d.name for d in self.dimensions] + [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"column(s) declared twice: {', '.join(dupes)}; each output column is a dimension or a metric, once")
        if self.aggregation_level == 2 and self.bucket_column is None:
            raise ValueError("bucket_column is required at aggregation level 2: name the metric that counts distinct clients")
        if self.bucket_column is not None and self.bucket_column not in {m.name for m in self.metrics}:
            raise ValueError(f"bucket_column {self.bucket_column!r} is not one of the declared metrics")
        return self

    @property
    def columns(self) -> list[str]:
        return [d.name for d in self.dimensions] + [m.name for m in self.metrics]


class Export(_Strict):
    formats: list[Literal["json", "csv", "parquet"]] = Field(default_factory=lambda: ["json"], min_length=1)
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="Files are split at this size.")

    @field_validator("formats")
    @classmethod
    def _json_first(cls, v: list[str]) -> list[str]:
        if "json" not in v:
            raise ValueError("json is required (the public API serves JSON); add csv or parquet beside it")
        return v


class DeclarationFile(_Strict):
    """The YAML document, exactly as a data engineer writes it."""

    friendly_name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    owners: list[Email] = Field(min_length=1)
    review: Review
    policy: Policy
    schedule: str | None = Field(default="0 5 * * *", description="Cron expression, or null for manual runs.")
    start_date: dt.date
    incremental: bool = False
    partition_field: Identifier | None = None
    source_tables: list[str] = Field(
        default_factory=list,
        description="Fully qualified tables the query may read; empty means whatever the query reads.",
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Extra query parameters bound as @name."
    )
    export: Export = Field(default_factory=Export)
    labels: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _partition(self) -> DeclarationFile:
        if self.incremental and not self.partition_field:
            raise ValueError("partition_field is required when incremental is true")
        if self.partition_field and self.partition_field not in {d.name for d in self.policy.dimensions}:
            raise ValueError(f"partition_field {self.partition_field!r} must be a declared dimension")
        return self


@dataclass(frozen=True)
class Declaration:
    """A loaded, validated dataset: the YAML plus the reviewed query and where both came from."""

    dataset: str
    table: str
    version: int
    spec: DeclarationFile
    query: str
    metadata_path: Path
    query_path: Path
    expectations_path: Path | None

    @property
    def id(self) -> str:
        return f"{self.dataset}.{self.table}_v{self.version}"

    @property
    def dag_id(self) -> str:
        return dag_id_for(self.id)

    @property
    def query_sha256(self) -> str:
        return hashlib.sha256(self.query.encode("utf-8")).hexdigest()

    @property
    def table_path(self) -> str:
        """Path of the table under api/v1/tables/."""
        return f"{self.dataset}/{self.table}/v{self.version}"


@dataclass(frozen=True)
class DeclarationError:
    """A declaration that could not be loaded: where, which field, what to do."""

    path: Path
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}" + (f": {self.field}" if self.field else "")
        return f"{where}: {self.message}"


class DeclarationLoadError(Exception):
    def __init__(self, errors: list[DeclarationError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def dag_id_for(dataset_id: str) -> str:
    m = DATASET_ID_RE.match(dataset_id)
    if not m:
        raise ValueError(f"not a dataset id: {dataset_id!r} (expected <ds>.<table>_v<N>)")
    return f"publish_{m['ds']}__{m['table']}_v{m['version']}"


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_declaration(metadata_path: Path, project: Path, cache: SpecCache | None = None) -> Declaration:
    """Load one declaration; raise DeclarationLoadError naming file and field on any problem.

    cache: validated declarations from earlier loads, keyed by the YAML text (pubdata.spec_cache).
    """
    metadata_path = Path(metadata_path)
    rel = _relative(metadata_path, project)
    ds = metadata_path.parent.name
    m = FILE_STEM_RE.match(metadata_path.stem)
    if not m or not re.match(r"^[a-z][a-z0-9_]*$", ds):
        raise DeclarationLoadError([DeclarationError(
            rel, "", "file must be metadata/<dataset>/<table>_v<N>.yaml with lowercase letters, digits and "
            "underscores; rename it",
        )])
    text = metadata_path.read_text(encoding="utf-8")
    spec = cache.get(text) if cache is not None else None
    if spec is None:
        spec = _parse_spec(text, rel)
        if cache is not None:
            cache.put(text, spec)
    table, version = m["table"], int(m["version"])
    query_path = project / "sql" / ds / f"{metadata_path.stem}.sql"
    if not query_path.is_file():
        raise DeclarationLoadError([DeclarationError(
            rel, "query", f"reviewed query {_relative(query_path, project)} is missing; add it beside the declaration",
        )])
    query = query_path.read_text(encoding="utf-8")
    if not query.strip():
        raise DeclarationLoadError([DeclarationError(_relative(query_path, project), "query", "the query file is empty")])
    exp_path = project / "expectations" / ds / f"{metadata_path.stem}.yaml"
    return Declaration(
        dataset=ds,
        table=table,
        version=version,
        spec=spec,
        query=query,
        metadata_path=metadata_path,
        query_path=query_path,
        expectations_path=exp_path if exp_path.is_file() else None,
    )


def _parse_spec(text: str, rel: Path) -> DeclarationFile:
    try:
        raw = yaml.load(text, Loader=SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        field = f"line {mark.line + 1}" if mark else ""
        raise DeclarationLoadError([DeclarationError(rel, field, f"not valid YAML: {getattr(exc, 'problem', exc)}")]) from None
    if not isinstance(raw, dict):
        raise DeclarationLoadError([DeclarationError(rel, "", "expected a mapping of keys (friendly_name, description, ...)")])
    try:
        return DeclarationFile.model_validate(raw)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key; remove it or check its spelling (see schema/declaration.schema.json)"
            elif err["type"] == "missing":
                msg = "required key is missing"
            elif "input" in err and err["type"] not in ("value_error",):
                msg = f"{msg} (got {err['input']!r})"
            errors.append(DeclarationError(rel, _loc(err["loc"]), msg))
        raise DeclarationLoadError(errors) from None


@dataclass
class Catalog:
    """Every declaration under metadata/, split into the ones that loaded and the ones that did not."""

    declarations: dict[str, Declaration]
    errors: list[DeclarationError]


def declaration_paths(project: Path) -> list[Path]:
    return sorted((project / "metadata").glob("*/*.yaml"))


def load_all(project: Path, cache: SpecCache | None = None) -> Catalog:
    decls: dict[str, Declaration] = {}
    errors: list[DeclarationError] = []
    for path in declaration_paths(project):
        try:
            d = load_declaration(path, project, cache)
        except DeclarationLoadError as exc:
            errors.extend(exc.errors)
            continue
        decls[d.id] = d
    if cache is not None:
        cache.save()
    return Catalog(decls, errors)


def _relative(path: Path, project: Path) -> Path:
    # Lexically first: resolve() walks every path component, a third of loading a declaration.
    try:
        return Path(path).relative_to(project)
    except ValueError:
        pass
    try:
        return Path(path).resolve().relative_to(Path(project).resolve())
    except ValueError:
        return Path(path)
