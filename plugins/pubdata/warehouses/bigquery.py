"""BigQuery, the production warehouse: reviewed queries run as written, staged into one table per dataset and day.

Queries run untouched with `@params` bound as typed query parameters; a dry run refuses one over
the dataset's `maximum_bytes_billed` before it costs anything, and BigQuery enforces the same cap
and `job_timeout_ms` on the job itself. Each run's result replaces a staging table of its own
(`<ds>__<table>_v<N>__<YYYYMMDD>`, or `__full`), which expires by itself once the quarantine
period has passed (BigQuery counts a *partition's* expiration from the partition's date, which
would delete a backfilled day as soon as it is written; a table's counts from when it is set).
Replacing a whole table also replaces its schema, so an edited query that changes its columns
simply stages again.

Job ids are derived from the dataset, the partition, the run and the job's configuration, plus
an attempt number: a retried task (its worker killed mid-query) inserts the same id, meets
BigQuery's 409 Already Exists and waits for the running job instead of paying for the query
twice; a job that failed for a transient reason is followed by the next attempt's id.
Transient failures of API calls are retried by the client's own retry objects; everything else
becomes a QueryError (fix the query) or a ConfigurationError (fix the setup). google.cloud is
imported inside methods only: the DAG processor imports this package while parsing.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime as dt
import decimal
import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from pubdata.errors import ConfigurationError, QueryError, WarehouseError
from pubdata.ids import DatasetId
from pubdata.warehouses.base import STAGED, Column, ExportSource, JobScope, StagedTable, StagePlan, Warehouse

if TYPE_CHECKING:  # pragma: no cover - typing only
    from google.cloud import bigquery

    from pubdata.stores.base import Store

DEFAULT_STAGING_DATASET = "pubdata_staging"
# Each dataset declares its own cap (declarations: maximum_bytes_billed, 1 TiB by default); this
# is the cap of jobs run for no dataset. ?maximum_bytes_billed= in PUBDATA_WAREHOUSE is a
# deployment-wide ceiling above which no dataset's cap goes.
DEFAULT_MAXIMUM_BYTES_BILLED = 1024**4
DEFAULT_JOB_TIMEOUT = 60 * 60.0
MAX_JOB_ATTEMPTS = 8
# Job failures that clear by themselves: the job is run again (under the next attempt's id).
_TRANSIENT_JOB_REASONS = frozenset({"backendError", "internalError", "rateLimitExceeded", "jobRateLimitExceeded",
                                    "jobBackendError", "jobInternalError"})
DEFAULT_EXPORT_PAGE_SIZE = 10_000

_BQ_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_ISO_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# 403s that clear by themselves: retried like any transient failure; other refusals need a fix.
_TRANSIENT_REFUSALS = frozenset({"quotaExceeded", "rateLimitExceeded"})
_URL_OPTIONS = ("staging_dataset", "location", "maximum_bytes_billed", "job_timeout")

# Legacy type names returned in table schemas, mapped to the Standard SQL names the queries use.
_STANDARD_TYPES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "RECORD": "STRUCT",
}

_EXPORT_FORMATS = {
    # fmt: (destination_format, compression)
    "json": ("NEWLINE_DELIMITED_JSON", "GZIP"),
    "csv": ("CSV", "GZIP"),
    "parquet": ("PARQUET", "ZSTD"),
}


def staging_table_name(dataset_id: str, partition: dt.date | None = None) -> str:
    """`<ds>.<table>_v<N>` and a day -> `<ds>__<table>_v<N>__<YYYYMMDD>` (`__full` without a day):
    one staging table per dataset and partition, never shared."""
    try:
        name = DatasetId.parse(dataset_id).staging_name
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return f"{name}__{partition.strftime('%Y%m%d') if partition is not None else 'full'}"


def sql_path(dataset_id: str | None) -> str:
    """Where the reviewed query of a dataset lives, so error messages can point at it."""
    if dataset_id is None:
        return "the reviewed query"
    return DatasetId.parse(dataset_id).query_path(Path(".")).as_posix()


def label_value(text: str) -> str:
    """BigQuery label rules: lowercase, [a-z0-9_-], at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "_", text.lower())[:63]


def query_parameters(params: dict[str, Any]) -> list[Any]:
    """Typed BigQuery query parameters for `@name` placeholders; the value never touches the SQL text.

    bool is tested before int and datetime before date because they are subclasses; naive
    datetimes are taken as UTC (TIMESTAMP has no time zone of its own). A string that is exactly
    YYYY-MM-DD is a DATE, as in the embedded engine: Airflow hands dates over as ISO strings, and
    BigQuery will not compare a STRING parameter with a DATE column.
    """
    from google.cloud import bigquery

    out: list[Any] = []
    for name, value in params.items():
        if not _PARAM_NAME_RE.match(name):
            raise ConfigurationError(f"query parameter name {name!r} is not a valid BigQuery parameter name")
        if isinstance(value, (list, tuple)):
            if not value:
                raise ConfigurationError(f"query parameter @{name} is an empty list: BigQuery needs an element type")
            types = {_param_type(name, v) for v in value}
            if len(types) != 1:
                raise ConfigurationError(f"query parameter @{name} mixes types {sorted(types)}: use one type per array")
            out.append(bigquery.ArrayQueryParameter(name, types.pop(), [_param_value(v) for v in value]))
        else:
            out.append(bigquery.ScalarQueryParameter(name, _param_type(name, value), _param_value(value)))
    return out


def _param_type(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, decimal.Decimal):
        return "NUMERIC"
    if isinstance(value, str):
        return "DATE" if _iso_date(value) else "STRING"
    if isinstance(value, bytes):
        return "BYTES"
    if isinstance(value, dt.datetime):
        return "TIMESTAMP"
    if isinstance(value, dt.date):
        return "DATE"
    raise ConfigurationError(
        f"query parameter @{name} has type {type(value).__name__}, which has no BigQuery type here: "
        "use bool, int, float, Decimal, str, bytes, date, datetime or a list of one of them"
    )


def _param_value(value: Any) -> Any:
    if isinstance(value, str) and _iso_date(value):
        return _iso_date(value)
    if isinstance(value, dt.datetime) and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def _iso_date(value: str) -> dt.date | None:
    if not _ISO_DATE_RE.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


class BigQueryWarehouse(Warehouse):
    """Stages reviewed queries in `<project>.<staging_dataset>`, validates and exports from there.

    Retry knobs exist so tests (and impatient deployments) can shorten them: `retry_deadline`
    bounds the retries of one API call, `job_retry_deadline` bounds re-running a query job that
    failed for a transient reason, `retry_initial_delay`/`retry_maximum_delay` shape the backoff.
    """

    engine = "bigquery"
    SQL_DIALECT = "bigquery"
    FINGERPRINT = ("SELECT FORMAT('%d:%d:%s', COUNT(*), IFNULL(BIT_XOR(h), 0), "
                   "CAST(IFNULL(SUM(CAST(h AS BIGNUMERIC)), 0) AS STRING)) "
                   "FROM (SELECT FARM_FINGERPRINT(TO_JSON_STRING(r)) AS h FROM {table} AS r)")
    STRING_TYPE = "STRING"
    REGEX_CONTAINS = "REGEXP_CONTAINS({expression}, r'{pattern}')"
    TYPE_FAMILIES = {
        "date": frozenset({"DATE"}),
        "timestamp": frozenset({"TIMESTAMP", "DATETIME"}),
        "time": frozenset({"TIME"}),
        "string": frozenset({"STRING"}),
        "boolean": frozenset({"BOOL"}),
        "integer": frozenset({"INT64"}),
        "fractional": frozenset({"FLOAT64", "NUMERIC", "BIGNUMERIC"}),
        "object": frozenset({"STRUCT", "JSON"}),
    }

    @staticmethod
    def quote(name: str) -> str:
        if "`" in name or "\\" in name:
            raise ValueError(f"column name {name!r} cannot be quoted for BigQuery")
        return f"`{name}`"


    @classmethod
    def type_family(cls, type_name: str) -> str:
        if type_name.strip().upper().startswith("ARRAY<"):
            return "array"
        return super().type_family(re.sub(r"<.*", "", type_name))

    def __init__(
        self,
        project: str,
        staging_dataset: str = DEFAULT_STAGING_DATASET,
        location: str | None = None,
        maximum_bytes_billed: int | None = None,
        client: bigquery.Client | None = None,
        *,
        scope: JobScope | None = None,
        job_timeout: float = DEFAULT_JOB_TIMEOUT,
        retry_deadline: float = 600.0,
        job_retry_deadline: float = 2400.0,
        retry_initial_delay: float = 1.0,
        retry_maximum_delay: float = 60.0,
        export_page_size: int = DEFAULT_EXPORT_PAGE_SIZE,
    ) -> None:
        if not project or "/" in project or "`" in project:
            raise ConfigurationError(f"BigQuery project {project!r} is not a project id")
        if not _BQ_DATASET_RE.match(staging_dataset):
            raise ConfigurationError(
                f"staging_dataset {staging_dataset!r} is not a BigQuery dataset name (letters, digits, underscores)"
            )
        if maximum_bytes_billed is not None and maximum_bytes_billed <= 0:
            raise ConfigurationError(f"maximum_bytes_billed must be positive, got {maximum_bytes_billed}")
        self.project = project
        self.staging_dataset = staging_dataset
        self.location = location
        self.scope = scope or JobScope()
        self.ceiling = int(maximum_bytes_billed) if maximum_bytes_billed is not None else None
        # The dataset's cap, never above the deployment's ceiling.
        caps = [c for c in (self.scope.maximum_bytes_billed, self.ceiling) if c is not None]
        self.maximum_bytes_billed = min(caps) if caps else DEFAULT_MAXIMUM_BYTES_BILLED
        self.job_timeout = job_timeout
        self.retry_deadline = retry_deadline
        self.job_retry_deadline = job_retry_deadline
        self.retry_initial_delay = retry_initial_delay
        self.retry_maximum_delay = retry_maximum_delay
        self.export_page_size = export_page_size
        self._client = client
        self._tables: dict[str, Any] = {}

    @classmethod
    def from_url(cls, url: str, *, home: Path | None = None, **kwargs: Any) -> BigQueryWarehouse:
        """`bigquery://<project>[?staging_dataset=&location=&maximum_bytes_billed=&job_timeout=]` (PUBDATA_WAREHOUSE).

        home (the embedded stack's state directory) is not used: BigQuery keeps its own state.
        maximum_bytes_billed here is the deployment's ceiling; each dataset's own cap comes in scope.
        """
        parts = urlsplit(url)
        if parts.scheme != "bigquery" or not parts.netloc:
            raise ConfigurationError(f"PUBDATA_WAREHOUSE={url!r}: expected bigquery://<project>[?staging_dataset=...]")
        if parts.path not in ("", "/"):
            raise ConfigurationError(
                f"PUBDATA_WAREHOUSE={url!r}: name the staging dataset with ?staging_dataset=, not as a path"
            )
        options: dict[str, Any] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
            if key not in _URL_OPTIONS:
                raise ConfigurationError(
                    f"PUBDATA_WAREHOUSE={url!r}: unknown option {key!r}; known: {', '.join(_URL_OPTIONS)}"
                )
            options[key] = value
        try:
            if "maximum_bytes_billed" in options:
                options["maximum_bytes_billed"] = int(options["maximum_bytes_billed"])
            if "job_timeout" in options:
                options["job_timeout"] = float(options["job_timeout"])
        except ValueError as exc:
            raise ConfigurationError(
                f"PUBDATA_WAREHOUSE={url!r}: {exc}; maximum_bytes_billed is a number of bytes, job_timeout seconds"
            ) from None
        if options.get("location") == "":
            options["location"] = None
        return cls(parts.netloc, **options, **kwargs)

    # -- client and retry settings ---------------------------------------------------------

    @property
    def client(self) -> bigquery.Client:
        """The client, created on first use with Application Default Credentials."""
        if self._client is None:
            from google.api_core.client_info import ClientInfo
            from google.cloud import bigquery

            import pubdata

            with self._errors("connecting to BigQuery"):
                self._client = bigquery.Client(
                    project=self.project,
                    location=self.location,
                    client_info=ClientInfo(user_agent=f"pubdata/{pubdata.__version__}"),
                )
        return self._client

    @property
    def _retry(self):
        """Per-request retry: the client's own predicate (429, 5xx, resets), our deadline and backoff."""
        from google.cloud.bigquery.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.retry_deadline).with_delay(
            initial=self.retry_initial_delay, maximum=self.retry_maximum_delay
        )

    @property
    def _job_retry(self):
        """Re-runs a query job that failed for a transient reason (jobRateLimitExceeded, backendError)."""
        from google.cloud.bigquery.retry import DEFAULT_JOB_RETRY

        return DEFAULT_JOB_RETRY.with_timeout(self.job_retry_deadline).with_delay(
            initial=self.retry_initial_delay, maximum=self.retry_maximum_delay
        )

    # -- Warehouse interface ---------------------------------------------------------------

    def stage_query(
        self,
        dataset_id: str,
        plan: StagePlan,
        params: dict[str, Any],
        partition: dt.date | None,
        *,
        partition_field: str | None = None,
        order_by: list[str] | None = None,
    ) -> StagedTable:
        """Dry-run the query, refuse it if it would bill too much, then write it to staging.

        The result replaces the run's own staging table (one per dataset and day), schema
        included, which then expires after the quarantine period (scope.staging_expiration).
        partition_field and order_by are not used: the table holds one day only, and BigQuery
        tables keep no row order, so export sorts.
        """
        from google.cloud import bigquery

        query = plan.query  # BigQuery computes a CTE read twice twice; maximum_bytes_billed caps both
        if isinstance(partition, dt.datetime):
            partition = partition.date()
        table = staging_table_name(dataset_id, partition)
        staged = StagedTable(
            dataset_id=dataset_id,
            location=f"{self.project}.{self.staging_dataset}",
            table=table,
            partition=partition.isoformat() if partition is not None else None,
        )
        bound = query_parameters(params)
        self._tables.pop(self._table_id(staged), None)
        with self._errors("staging", dataset_id=dataset_id):
            dry = self.client.query(
                query,
                job_config=bigquery.QueryJobConfig(
                    dry_run=True, use_query_cache=False, use_legacy_sql=False, query_parameters=bound
                ),
                location=self.location,
                retry=self._retry,
                job_retry=None,
            )
            would_process = dry.total_bytes_processed
            if would_process is not None and would_process > self.maximum_bytes_billed:
                raise QueryError(
                    f"the reviewed query of {dataset_id} would process {_human_bytes(would_process)}, over the "
                    f"limit of {_human_bytes(self.maximum_bytes_billed)} (maximum_bytes_billed); restrict it in "
                    f"{sql_path(dataset_id)} (filter on the source's partition column, read fewer columns) or "
                    "raise maximum_bytes_billed in PUBDATA_WAREHOUSE"
                )

            config = bigquery.QueryJobConfig(
                destination=self._destination(staged),
                write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
                maximum_bytes_billed=self.maximum_bytes_billed,
                labels=self._labels(staged, "stage"),
                priority=bigquery.QueryPriority.INTERACTIVE,
                use_legacy_sql=False,
                query_parameters=bound,
            )
            config.job_timeout_ms = int(self.job_timeout * 1000)

            def start(job_id: str):
                return self.client.query(query, job_config=config, location=self.location, retry=self._retry,
                                         job_retry=None, job_id=job_id)

            self._run_job(staged, "stage", [query, config.to_api_repr()], start, reuse=lambda job: self._exists(staged))
            self._expire(staged)
        return staged

    def columns(self, staged: StagedTable) -> list[Column]:
        """The staged table's schema, with Standard SQL type names (INT64, not INTEGER)."""
        table = self._table(staged)
        return [Column(f.name, _standard_type(f)) for f in table.schema]

    def scalar(self, staged: StagedTable, sql: str) -> Any:
        """Run `sql` with `{table}` naming the staged rows and return its one value."""
        from google.cloud import bigquery

        text = sql.format(table=f"`{self._table_id(staged)}`")
        config = bigquery.QueryJobConfig(
            maximum_bytes_billed=self.maximum_bytes_billed,
            labels=self._labels(staged, "validate"),
            use_legacy_sql=False,
        )
        config.job_timeout_ms = int(self.job_timeout * 1000)
        with self._errors("running a validation query", staged=staged):
            rows = self.client.query_and_wait(
                text,
                job_config=config,
                location=self.location,
                retry=self._retry,
                job_retry=self._job_retry,
                wait_timeout=self.job_timeout,
                max_results=2,
            )
            result = [tuple(row.values()) for row in rows]
        if len(result) != 1 or len(result[0]) != 1:
            shape = f"{len(result)} row(s)" if len(result) != 1 else f"{len(result[0])} columns"
            raise ConfigurationError(
                f"a scalar validation query must return one row with one column, got {shape}: {text}"
            )
        return result[0][0]

    def side(self, staged: StagedTable, name: str) -> StagedTable:
        """A table of its own beside the run's staging table (which is already per day): `<table>__<name>`."""
        return StagedTable(staged.dataset_id, staged.location, f"{staged.table}__{name}", None)

    def write_side(self, staged: StagedTable, name: str, sql: str, params: dict[str, Any]) -> StagedTable:
        """A query job over the staged partition (as _pubdata_staged) and the sources into the side table."""
        import sqlglot
        from google.cloud import bigquery
        from sqlglot import exp

        side = self.side(staged, name)
        tree = sqlglot.parse_one(sql, read="bigquery")
        staged_rows = sqlglot.parse_one(f"SELECT * FROM `{self._table_id(staged)}`", read="bigquery")
        for table in list(tree.find_all(exp.Table)):
            if table.name == STAGED and not table.args.get("db"):
                table.replace(exp.Subquery(this=staged_rows.copy(), alias=exp.TableAlias(this=exp.to_identifier(STAGED))))
        config = bigquery.QueryJobConfig(
            destination=bigquery.TableReference.from_string(self._table_id(side)),
            write_disposition=bigquery.WriteDisposition.WRITE_TRUNCATE,
            maximum_bytes_billed=self.maximum_bytes_billed,
            labels=self._labels(staged, name),
            use_legacy_sql=False,
            query_parameters=query_parameters(params),
        )
        config.job_timeout_ms = int(self.job_timeout * 1000)
        text = tree.sql("bigquery")

        def start(job_id: str):
            return self.client.query(text, job_config=config, location=self.location, retry=self._retry,
                                     job_retry=None, job_id=job_id)

        with self._errors(f"checking {name}", staged=staged):
            self._run_job(side, name, [text, config.to_api_repr()], start, reuse=lambda job: self._exists(side))
            self._expire(side)
        self._tables.pop(self._table_id(side), None)
        return side

    def rows(self, staged: StagedTable, sql: str, limit: int = 20) -> list[tuple[Any, ...]]:
        from google.cloud import bigquery

        text = sql.format(table=f"`{self._table_id(staged)}`")
        with self._errors("running a validation query", staged=staged):
            found = self.client.query_and_wait(
                text,
                job_config=bigquery.QueryJobConfig(maximum_bytes_billed=self.maximum_bytes_billed,
                                                   labels=self._labels(staged, "validate"), use_legacy_sql=False),
                location=self.location, retry=self._retry, job_retry=self._job_retry, wait_timeout=self.job_timeout,
                max_results=limit,
            )
            return [tuple(row.values()) for row in list(found)[:limit]]

    def gx_batch(self, context: Any, staged: StagedTable) -> Any:
        """A GX batch over exactly the staged partition, evaluated in BigQuery through sqlalchemy-bigquery.

        GX's bigquery datasource is its generic SQL datasource under the type GX expects for this
        dialect (the generic one warns). Its engine authenticates with Application Default
        Credentials, like `client`, and its connection string carries the location, the byte cap
        and the labels of our own jobs. Building the batch runs no query.
        """
        from great_expectations.datasource.fluent.interfaces import TestConnectionError

        asset_name = self._gx_asset_name(staged)
        try:
            datasource = context.data_sources.add_or_update_bigquery(
                name=self.gx_datasource_name(staged), connection_string=self.gx_connection_string(staged)
            )
            if asset_name in datasource.get_asset_names():
                datasource.delete_asset(asset_name)
            asset = datasource.add_query_asset(name=asset_name, query=self.gx_query(staged))
            return asset.add_batch_definition_whole_table("staged").get_batch()
        except TestConnectionError as exc:
            raise ConfigurationError(
                f"Great Expectations could not connect to BigQuery project {self.project}: {exc}; "
                "set up Application Default Credentials (gcloud auth application-default login, or "
                "GOOGLE_APPLICATION_CREDENTIALS)"
            ) from exc

    @contextlib.contextmanager
    def export_source(self, staged: StagedTable, work: Path, store: Store,
                      staging_prefix: str) -> Iterator[ExportSource]:
        """The staged partition as Parquet shards on local disk, read by DuckDB (which sorts them).

        Into a gs:// bucket an extract job writes the shards, so no rows pass through the API;
        into any other store the rows are read page by page with tabledata.list (free). Either
        way the shards have no row order, so export sorts them.
        """
        import duckdb

        if store.url.startswith("gs://"):
            shards = self._extract_shards(staged, work, store, staging_prefix)
        else:
            shards = self._download_shards(staged, work)
        files = "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in shards) + "]"
        con = duckdb.connect()
        try:
            yield ExportSource(con, f"read_parquet({files})", None, work / "spill")
        finally:
            con.close()

    def _extract_shards(self, staged: StagedTable, work: Path, store: Store, staging_prefix: str) -> list[Path]:
        """Extract job -> Parquet shards under the store's staging prefix -> local files (the bucket's removed)."""
        extract_prefix = f"{staging_prefix}/extract/"
        self.extract_to_gcs(staged, f"{store.url}/{extract_prefix}part-*.parquet", fmt="parquet")
        shards = [k for k in store.list(extract_prefix) if k.endswith(".parquet")]
        if not shards:
            raise ConfigurationError(
                f"the extract job for {staged.dataset_id} ({staged.partition or 'full table'}) wrote no files under "
                f"{store.url}/{extract_prefix}: check that the BigQuery service account may write to the bucket "
                "(roles/storage.objectAdmin)"
            )
        local = []
        for i, key in enumerate(shards):
            path = work / "shards" / f"{i:06d}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            store.download_file(key, path)
            local.append(path)
        for key in shards:
            store.delete(key)
        return local

    def _download_shards(self, staged: StagedTable, work: Path) -> list[Path]:
        """The staged partition read page by page (tabledata.list) into one local Parquet shard."""
        import pyarrow.parquet as pq
        from google.cloud import bigquery

        path = work / "shards" / "000000.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors("exporting", staged=staged):
            rows = self.client.list_rows(
                bigquery.Table(self._table_id(staged), schema=self._table(staged).schema),
                page_size=self.export_page_size, retry=self._retry, timeout=self.job_timeout,
            )
            writer = None
            try:
                for batch in rows.to_arrow_iterable():  # one page at a time, with the table's Arrow types
                    if writer is None:
                        writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
                    writer.write_batch(batch)
                if writer is None:
                    raise WarehouseError(f"BigQuery returned no result pages for {staged.dataset_id}, not even an empty one")
            finally:
                if writer is not None:
                    writer.close()
        return [path]

    def drop(self, staged: StagedTable) -> None:
        """Delete the run's staging table; absent is fine."""
        self._tables.pop(self._table_id(staged), None)
        with self._errors("dropping the staged table", staged=staged):
            self.client.delete_table(self._table_id(staged), not_found_ok=True, retry=self._retry)

    def source_ready(self, table: str, day: dt.date) -> bool:
        """Whether the source table's partition for the day has rows, from INFORMATION_SCHEMA.PARTITIONS.

        Partition metadata only: no rows are read. A table that is not partitioned by day has
        nothing to wait for.
        """
        from google.cloud import bigquery

        parts = table.replace("`", "").split(".")
        if len(parts) != 3 or not all(_BQ_DATASET_RE.match(p) for p in parts[1:]):
            raise ConfigurationError(f"source table {table!r} is not project.dataset.table: fix source_tables")
        project, dataset, name = parts
        sql = (f"SELECT partition_id, total_rows FROM `{project}.{dataset}.INFORMATION_SCHEMA.PARTITIONS` "
               "WHERE table_name = @table_name")
        config = bigquery.QueryJobConfig(
            use_legacy_sql=False, maximum_bytes_billed=self.maximum_bytes_billed,
            query_parameters=[bigquery.ScalarQueryParameter("table_name", "STRING", name)],
            labels={"pubdata_step": "wait_for_source"},
        )
        with self._errors(f"checking whether {table} has arrived for {day}"):
            rows = [tuple(r.values()) for r in self.client.query_and_wait(
                sql, job_config=config, location=self.location, retry=self._retry, job_retry=self._job_retry,
                wait_timeout=self.job_timeout)]
        if not rows:
            raise QueryError(f"source table {table} does not exist (no partitions in its INFORMATION_SCHEMA): "
                             "fix source_tables in the declaration")
        by_id = {str(pid): int(n or 0) for pid, n in rows}
        if set(by_id) <= {"None", "__UNPARTITIONED__"}:
            return True  # not partitioned: nothing to wait for
        return by_id.get(day.strftime("%Y%m%d"), 0) > 0

    # -- production extras -----------------------------------------------------------------

    def extract_to_gcs(self, staged: StagedTable, destination_uri: str, fmt: str = "json") -> str:
        """Export the staged partition to GCS with an extract job (no rows pass through us); return the job id.

        json and csv are gzip-compressed, parquet is zstd-compressed inside the file. Tables over
        1 GB need a wildcard in destination_uri (`gs://bucket/prefix/part-*.json.gz`). Row order
        is not defined: publish through `export` when the file must be deterministic.
        """
        from google.cloud import bigquery

        if fmt not in _EXPORT_FORMATS:
            raise ConfigurationError(f"export format {fmt!r} is not one of {', '.join(_EXPORT_FORMATS)}")
        if not destination_uri.startswith("gs://"):
            raise ConfigurationError(f"destination_uri {destination_uri!r} is not a gs:// URI")
        destination_format, compression = _EXPORT_FORMATS[fmt]
        config = bigquery.ExtractJobConfig(
            destination_format=destination_format, compression=compression, labels=self._labels(staged, "extract")
        )
        config.job_timeout_ms = int(self.job_timeout * 1000)

        def start(job_id: str):
            return self.client.extract_table(
                bigquery.TableReference.from_string(self._table_id(staged)), destination_uri, job_config=config,
                location=self.location, retry=self._retry, job_id=job_id,
            )

        with self._errors("extracting to GCS", staged=staged):
            job = self._run_job(staged, "extract", [destination_uri, config.to_api_repr()], start)
        return job.job_id

    def gx_datasource_name(self, staged: StagedTable) -> str:
        return f"pubdata_bigquery_{label_value(staged.location.replace('.', '_'))}"

    def gx_connection_string(self, staged: StagedTable) -> str:
        """sqlalchemy-bigquery URL for the staging dataset, with our location, byte cap and labels."""
        project, dataset = _split_location(staged.location)
        query: dict[str, str] = {}
        if self.location:
            query["location"] = self.location
        query["maximum_bytes_billed"] = str(self.maximum_bytes_billed)
        query["labels"] = ",".join(f"{k}:{v}" for k, v in self._labels(staged, "validate").items())
        return f"bigquery://{project}/{dataset}?{urlencode(query)}"

    def gx_query(self, staged: StagedTable) -> str:
        """The SELECT behind the GX asset: the run's staging table."""
        return f"SELECT * FROM `{self._table_id(staged)}`"

    # -- helpers ---------------------------------------------------------------------------

    def _table_id(self, staged: StagedTable) -> str:
        return f"{staged.location}.{staged.table}"

    def _destination(self, staged: StagedTable):
        from google.cloud import bigquery

        return bigquery.TableReference.from_string(self._table_id(staged))

    def _table(self, staged: StagedTable):
        """The staged table's metadata (schema), fetched once per process."""
        key = self._table_id(staged)
        if key not in self._tables:
            with self._errors("reading the staged table's schema", staged=staged):
                self._tables[key] = self.client.get_table(key, retry=self._retry)
        return self._tables[key]

    def _exists(self, staged: StagedTable) -> bool:
        from google.api_core.exceptions import NotFound

        try:
            self.client.get_table(self._table_id(staged), retry=self._retry)
        except NotFound:
            return False
        return True

    def _expire(self, staged: StagedTable) -> None:
        """Let the staged table expire by itself after the quarantine period (scope.staging_expiration)."""
        from google.cloud import bigquery

        if self.scope.staging_expiration is None:
            return
        table = bigquery.Table(self._destination(staged))
        table.expires = dt.datetime.now(dt.UTC) + self.scope.staging_expiration
        self.client.update_table(table, ["expires"], retry=self._retry)

    def _labels(self, staged: StagedTable, step: str) -> dict[str, str]:
        """Labels on every job, so billing and the job list show which dataset and run spent what."""
        labels = {"pubdata_dataset": label_value(staged.dataset_id), "pubdata_step": step}
        if staged.partition is not None:
            labels["pubdata_partition"] = label_value(staged.partition)
        return labels

    def _run_job(self, staged: StagedTable, step: str, fingerprint: list[Any], start: Any,
                 reuse: Any = lambda job: False) -> Any:
        """Start this run's job for a step, or find the one an earlier attempt started, and wait for it.

        The id is `pubdata_<step>_<staging table>_<digest>_<attempt>`, the digest covering the run
        and everything the job would do (query, parameters, destination), so an edited query
        never meets an old job. Attempt 1, 2, ... are tried in order: an insert answered 409
        Already Exists found a job of this very run and step. Still running, it is waited for (a
        retried task reattaches instead of paying twice); finished, it counts only if
        `reuse(job)` says its result is still there (else the next attempt starts afresh); failed
        for a transient reason, the next attempt starts a new one; failed for good, its error is
        raised.
        """
        from google.api_core import exceptions as gexc

        digest = hashlib.sha256(json.dumps([self.scope.run_id, *fingerprint], sort_keys=True,
                                           default=str).encode()).hexdigest()[:16]
        base = f"pubdata_{step}_{staged.table}_{digest}"
        deadline = time.monotonic() + self.job_retry_deadline
        delay = self.retry_initial_delay
        for attempt in range(1, MAX_JOB_ATTEMPTS + 1):
            job_id = f"{base}_{attempt}"
            try:
                job = start(job_id)
            except gexc.Conflict:
                job = self.client.get_job(job_id, location=self.location, retry=self._retry)
                if job.state == "DONE" and job.error_result and _transient_job_error(job.error_result):
                    continue  # that attempt failed by itself; start the next
                if job.state == "DONE" and not job.error_result and not reuse(job):
                    continue  # it succeeded, but what it wrote is gone (published and dropped, cleared)
            try:
                self._wait(job)
                return job
            except gexc.GoogleAPICallError:
                failed = job.state == "DONE" and job.error_result and _transient_job_error(job.error_result)
                if not failed or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, self.retry_maximum_delay)
        raise WarehouseError(f"BigQuery's {step} job for {staged.dataset_id} failed {MAX_JOB_ATTEMPTS} times "
                             f"for transient reasons (last {base}_{MAX_JOB_ATTEMPTS}); run the task again later")

    def _gx_asset_name(self, staged: StagedTable) -> str:
        return staged.table

    def _wait(self, job, **result_kwargs: Any):
        """Wait for a job within job_timeout; cancel it when the wait gives up, so it stops spending."""
        from google.cloud import bigquery

        kwargs: dict[str, Any] = {"retry": self._retry, "timeout": self.job_timeout}
        if isinstance(job, bigquery.QueryJob):
            kwargs["job_retry"] = None  # its id is ours: _run_job decides what runs again
        try:
            return job.result(**kwargs, **result_kwargs)
        except concurrent.futures.TimeoutError:
            with contextlib.suppress(Exception):
                job.cancel(retry=self._retry, timeout=30)
            raise WarehouseError(
                f"BigQuery job {job.job_id} did not finish within {self.job_timeout:g} s and was cancelled; "
                "raise job_timeout in PUBDATA_WAREHOUSE if the query is expected to take longer"
            ) from None

    @contextlib.contextmanager
    def _errors(
        self, action: str, *, dataset_id: str | None = None, staged: StagedTable | None = None
    ) -> Iterator[None]:
        """Client exceptions -> QueryError (fix the query) or WarehouseError (fix the setup, or retry later)."""
        import requests
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as auth_exc

        dataset_id = dataset_id or (staged.dataset_id if staged else None)
        where = f" for {dataset_id}" if dataset_id else ""
        try:
            yield
        except WarehouseError:
            raise
        except gexc.RetryError as exc:
            raise WarehouseError(
                f"BigQuery kept failing while {action}{where}, even after retrying: {_message(exc.cause or exc)}; "
                "this is on BigQuery's side or the network's: run the task again later"
            ) from exc
        except gexc.BadRequest as exc:
            raise self._bad_request(exc, action, dataset_id) from exc
        except gexc.Forbidden as exc:
            reason = _reason(exc)
            fix = {
                "accessDenied": (
                    f"grant the account roles/bigquery.jobUser on project {self.project}, "
                    "roles/bigquery.dataViewer on the tables the query reads and "
                    f"roles/bigquery.dataEditor on {self.project}.{self.staging_dataset}"
                ),
                "billingNotEnabled": f"enable billing on project {self.project}",
                "quotaExceeded": "wait for the quota to reset or raise it in the Cloud console",
                "responseTooLarge": "export with extract_to_gcs instead of reading results",
            }.get(reason or "", "check the account's permissions and the project's quotas")
            refused: type[WarehouseError | ConfigurationError] = (
                WarehouseError if reason in _TRANSIENT_REFUSALS else ConfigurationError)
            raise refused(
                f"BigQuery refused {action}{where} ({reason or 'forbidden'}): {_message(exc)}; {fix}"
            ) from exc
        except gexc.NotFound as exc:
            message = _message(exc)
            if f"Dataset {self.project}:{self.staging_dataset}" in message:
                raise ConfigurationError(
                    f"the staging dataset {self.project}.{self.staging_dataset} does not exist ({message}): create it "
                    f"(bq mk --dataset {'--location=' + self.location + ' ' if self.location else ''}"
                    f"{self.project}:{self.staging_dataset}) or set staging_dataset= in PUBDATA_WAREHOUSE"
                ) from exc
            if action == "staging":
                raise QueryError(
                    f"the reviewed query reads a table that does not exist{where}: {message}; fix the table names in "
                    f"{sql_path(dataset_id)}, or check that location={self.location or 'auto'} is where they live"
                ) from exc
            raise WarehouseError(
                f"not found while {action}{where}: {message}; stage the dataset again "
                "(the staged table may have been dropped or expired)"
            ) from exc
        except gexc.GoogleAPIError as exc:
            raise WarehouseError(f"BigQuery failed while {action}{where}: {_message(exc)}") from exc
        except auth_exc.GoogleAuthError as exc:
            raise ConfigurationError(
                f"no usable Google credentials while {action}{where}: {exc}; run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from exc
        except concurrent.futures.TimeoutError as exc:
            raise WarehouseError(f"BigQuery did not answer in time while {action}{where}: raise job_timeout") from exc
        except requests.RequestException as exc:
            raise WarehouseError(f"could not reach BigQuery while {action}{where}: {exc}") from exc

    def _bad_request(self, exc, action: str, dataset_id: str | None) -> QueryError | ConfigurationError:
        reason, message = _reason(exc), _message(exc)
        if reason == "bytesBilledLimitExceeded":
            return QueryError(
                f"BigQuery stopped a query{' of ' + dataset_id if dataset_id else ''} at the limit of "
                f"{_human_bytes(self.maximum_bytes_billed)} (maximum_bytes_billed): {message}; restrict the query "
                "or raise maximum_bytes_billed in PUBDATA_WAREHOUSE"
            )
        if action == "staging":
            return QueryError(
                f"the reviewed query failed in BigQuery: {message}; fix the query in {sql_path(dataset_id)}"
            )
        where = f" for {dataset_id}" if dataset_id else ""
        return QueryError(f"BigQuery rejected the SQL while {action}{where}: {message}")


def _transient_job_error(error_result: dict[str, Any]) -> bool:
    return error_result.get("reason") in _TRANSIENT_JOB_REASONS


def _split_location(location: str) -> tuple[str, str]:
    """`project.dataset` -> parts; project ids may contain dots (domain-scoped), dataset names cannot."""
    project, _, dataset = location.rpartition(".")
    if not project or not dataset:
        raise ConfigurationError(f"staged location {location!r} is not <project>.<dataset>")
    return project, dataset


def _standard_type(field) -> str:
    name = _STANDARD_TYPES.get(field.field_type, field.field_type)
    return f"ARRAY<{name}>" if field.mode == "REPEATED" else name


def _reason(exc) -> str | None:
    try:
        return exc.errors[0]["reason"]
    except (AttributeError, IndexError, KeyError, TypeError):
        return None


def _message(exc) -> str:
    """BigQuery's own words, without the client's request URL and job footer."""
    try:
        message = exc.errors[0]["message"]
        if message:
            return str(message)
    except (AttributeError, IndexError, KeyError, TypeError):
        pass
    return str(getattr(exc, "message", None) or exc).split("\n\nLocation:")[0]


def _human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        value /= 1024
        if value < 1024 or unit == "PiB":
            break
    return f"{value:.1f} {unit}"
