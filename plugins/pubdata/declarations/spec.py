"""The declaration file's model: metadata/<ds>/<table>_v<N>.yaml exactly as an engineer writes it.

Frozen pydantic models with extra="forbid": an unknown key or a wrong type is an error naming the
field. schema/declaration.schema.json is generated from these models (pubdata.declarations.schema).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from pubdata.declarations.airflow_limits import OWNERS_MAX, cron_problem

DEFAULT_MIN_BUCKET_SIZE = 5000
# 1 TiB: several times what a day of a daily aggregate over clients_daily scans, far below a
# runaway scan of a whole telemetry history. Raise it per dataset, with the reviewer's knowledge.
DEFAULT_MAXIMUM_BYTES_BILLED = 1024**4
Format = Literal["json", "csv", "parquet"]

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]
FieldPath = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){0,2}$")]
"""A column, or a field of a record column (`client_info.client_id`): at most three names."""
# Characters no published text may hold: HTML, XML (feed.xml) and JSON readers refuse or mangle
# them (C0 and C1 controls but tab, line feed and carriage return; lone surrogates; U+FFFE/FFFF).
_NOT_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_NOT_ONE_LINE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def _without(pattern: re.Pattern[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        found = pattern.search(value)
        if found:
            raise ValueError(f"holds the control character U+{ord(found.group()):04X} at character {found.start() + 1}, "
                             f"which {what}; remove it")
        return value
    return check


Text = Annotated[str, AfterValidator(_without(_NOT_TEXT, "the public pages, feed and JSON cannot carry"))]
"""Text that is published (descriptions): line breaks and tabs allowed, control characters not."""
Line = Annotated[str, AfterValidator(_without(_NOT_ONE_LINE, "a one-line text (a title, a name) cannot hold"))]
"""A published one-line text (titles, names): no line breaks or control characters."""
# 254 characters: the longest address SMTP carries (RFC 5321), well inside Airflow's owner link.
Email = Annotated[str, StringConstraints(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$", max_length=254)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Steward(_Strict):
    """The data steward's sign-off; required when any review question is answered yes."""

    name: Line = Field(min_length=1)
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
    description: Text = ""
    data_review: bool = Field(
        default=True,
        description="False when this field has no corresponding data-collection review.",
    )


class Metric(_Strict):
    name: Identifier
    sensitive: bool = Field(description="True when the metric reveals or implies revenue (searches, ad clicks).")
    description: Text = ""
    data_review: bool = True


INTERNAL_PREFIX = "_pubdata"
"""Columns the pipeline adds to a staged table for its own checks; never declared, never published."""


class Rollup(_Strict):
    """Rare combinations grouped into `label` by the pipeline, dimension by dimension."""

    steps: list[Identifier | list[Identifier]] = Field(
        min_length=1,
        description=(
            "Dimensions relabelled as `label`, in this order, while a row has fewer than min_bucket_size clients: "
            "each step adds its dimension(s) to those already relabelled. Cells are first published with every "
            "dimension as it is; the clients of the cells under the minimum are then grouped again with the first "
            "step's dimensions relabelled, and so on; what is still under the minimum after the last step is "
            "dropped."
        ),
    )

    @property
    def dimensions(self) -> list[str]:
        return [d for step in self.steps for d in ([step] if isinstance(step, str) else step)]


class Policy(_Strict):
    aggregation_level: int = Field(ge=1, le=7)
    privacy_unit: FieldPath = Field(
        default="client_id",
        description=(
            "The column of the source tables that identifies one client, or a field of a record "
            "(client_info.client_id in Glean tables). The pipeline counts its distinct values behind every "
            "published row, in the warehouse, and drops rows under min_bucket_size."
        ),
    )
    min_bucket_size: int = Field(default=DEFAULT_MIN_BUCKET_SIZE, ge=1)
    bucket_column: Identifier | None = Field(
        default=None,
        description="Distinct clients per row; the minimum bucket applies to it (required at level 2).",
    )
    dimensions: list[Dimension] = Field(min_length=1)
    metrics: list[Metric] = Field(min_length=1)
    other_label: str = Field(
        default="Other", min_length=1, max_length=64,
        description="The value that stands for grouped rare combinations (Mozilla writes OTHER).",
    )
    rollup: Rollup | None = Field(
        default=None,
        description=(
            "Let the pipeline group rare combinations into other_label: the query is then a plain GROUP BY of "
            "the dimensions with counts and sums (level 2 only)."
        ),
    )

    @model_validator(mode="after")
    def _columns_consistent(self) -> Policy:
        names = [d.name for d in self.dimensions] + [m.name for m in self.metrics]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"column(s) declared twice: {', '.join(dupes)}; each output column is a dimension or a metric, once")
        internal = [n for n in names if n.startswith(INTERNAL_PREFIX)]
        if internal:
            raise ValueError(f"column name(s) {', '.join(internal)} start with {INTERNAL_PREFIX}, which the pipeline "
                             "keeps for its own columns; rename them")
        if self.rollup is not None:
            dims = {d.name for d in self.dimensions}
            unknown = [d for d in self.rollup.dimensions if d not in dims]
            if unknown:
                raise ValueError(f"rollup step(s) {', '.join(unknown)} are not declared dimensions")
            repeated = sorted({d for d in self.rollup.dimensions if self.rollup.dimensions.count(d) > 1})
            if repeated:
                raise ValueError(f"rollup relabels {', '.join(repeated)} more than once; name each dimension once")
            if self.aggregation_level != 2:
                raise ValueError("rollup groups rare combinations under the minimum bucket: it needs aggregation level 2")
        if self.aggregation_level == 2 and self.bucket_column is None:
            raise ValueError("bucket_column is required at aggregation level 2: name the metric that counts distinct clients")
        if self.bucket_column is not None and self.bucket_column not in {m.name for m in self.metrics}:
            raise ValueError(f"bucket_column {self.bucket_column!r} is not one of the declared metrics")
        return self

    @property
    def columns(self) -> list[str]:
        return [d.name for d in self.dimensions] + [m.name for m in self.metrics]


class Export(_Strict):
    formats: list[Format] = Field(default_factory=lambda: list[Format](["json"]), min_length=1)
    max_file_bytes: int = Field(default=256 * 1024 * 1024, ge=1024, description="Files are split at this size.")

    @field_validator("formats")
    @classmethod
    def _json_first(cls, v: list[str]) -> list[str]:
        if "json" not in v:
            raise ValueError("json is required (the public API serves JSON); add csv or parquet beside it")
        return v


class DeclarationFile(_Strict):
    """The YAML document, exactly as a data engineer writes it."""

    friendly_name: Line = Field(min_length=1)
    description: Text = Field(min_length=1)
    owners: list[Email] = Field(min_length=1)
    review: Review
    policy: Policy
    schedule: str | None = Field(default="0 5 * * *", description="Cron expression, or null for manual runs.")
    start_date: dt.date
    incremental: bool = Field(
        default=False,
        description="Each run computes one day (one partition of partition_field) and publishes it beside the earlier days.",
    )
    incremental_export: bool = Field(
        default=False,
        description="Publish an incremental table day by day (files/<date>/..., listing {date: [urls]}). False (Mozilla's "
                    "default): every run publishes the whole accumulated table, all days ordered by partition_field, "
                    "as one file set with a flat listing. Needs incremental: true.",
    )
    partition_field: Identifier | None = None
    source_tables: list[Line] = Field(
        default_factory=list,
        description="Fully qualified tables the query may read; empty means whatever the query reads. "
                    "Each run waits until every one of them has rows for the run's day.",
    )
    params: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="Extra query parameters bound as @name."
    )
    maximum_bytes_billed: int = Field(
        default=DEFAULT_MAXIMUM_BYTES_BILLED, ge=1,
        description="Bytes one run of the query may scan in BigQuery (dry-run checked, then enforced by BigQuery); "
                    "default 1 TiB (1099511627776).",
    )
    export: Export = Field(default_factory=Export)
    labels: dict[Line, Line] = Field(default_factory=dict)
    refused_on_purpose: Line | None = Field(
        default=None, min_length=1,
        description="Why this declaration is kept although the policy refuses it (an example of a refusal): "
                    "`pubdata check` reports the refusal without failing, and fails once the policy would allow it.",
    )

    @field_validator("schedule")
    @classmethod
    def _schedule_airflow_runs(cls, v: str | None) -> str | None:
        if v is not None:
            problem = cron_problem(v)
            if problem:
                raise ValueError(f"{v[:80]!r} {problem}; Airflow would drop the DAG without an error")
        return v

    @field_validator("owners")
    @classmethod
    def _owners_fit_airflow(cls, v: list[str]) -> list[str]:
        if len(",".join(v)) > OWNERS_MAX:
            raise ValueError(f"the owners joined by commas are over Airflow's limit of {OWNERS_MAX} characters; "
                             "list a team address instead of every person")
        return v

    @model_validator(mode="after")
    def _partition(self) -> DeclarationFile:
        if self.incremental and not self.partition_field:
            raise ValueError("partition_field is required when incremental is true")
        if self.incremental_export and not self.incremental:
            raise ValueError("incremental_export: true needs incremental: true (only a table published day by day can "
                             "be exported day by day): set incremental: true with a partition_field, or remove "
                             "incremental_export")
        if self.partition_field and self.partition_field not in {d.name for d in self.policy.dimensions}:
            raise ValueError(f"partition_field {self.partition_field!r} must be a declared dimension")
        return self

    @property
    def per_day_files(self) -> bool:
        """Whether the public files and listing are per day (files/<date>/...): incremental_export."""
        return self.incremental and self.incremental_export
