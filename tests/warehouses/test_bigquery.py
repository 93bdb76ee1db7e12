"""The BigQuery warehouse, run through the real google-cloud-bigquery client over a fake HTTP transport.

Assertions are on the requests the client actually sent (job configurations, query strings),
which is what BigQuery would receive in production. The fake refuses what BigQuery refuses
that pubdata relies on (a job id inserted twice: 409 Already Exists).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import subprocess
import sys

import pytest
import requests

from pubdata.errors import ConfigurationError
from pubdata.warehouses.base import Column, JobScope, QueryError, StagedTable, WarehouseError
from pubdata.warehouses.bigquery import BigQueryWarehouse, label_value, query_parameters, staging_table_name
from tests.support.fake_bigquery import FakeBigQuery

PROJECT = "test-project"
DATASET_ID = "ds.page_loads_v1"
STAGING_TABLE = "ds__page_loads_v1__20261101"  # the run's own staging table: dataset and day
TABLE = f"{PROJECT}.pubdata_staging.{STAGING_TABLE}"
QUERY = (
    "SELECT submission_date, country, COUNT(DISTINCT client_id) AS client_count\n"
    "FROM `moz-fx-data-shared-prod.telemetry.clients_daily`\n"
    "WHERE submission_date = @submission_date\nGROUP BY 1, 2 HAVING client_count >= @min_clients"
)
DAY = dt.date(2026, 11, 1)
SCHEMA = [("submission_date", "DATE"), ("country", "STRING"), ("client_count", "INTEGER")]
ROWS = [(DAY, "FR", 7000), (DAY, "DE", 6000), (DAY, "Other", 9000)]


@pytest.fixture
def fake() -> FakeBigQuery:
    fake = FakeBigQuery(PROJECT)
    fake.add_result("clients_daily", SCHEMA, ROWS)
    return fake


def make_warehouse(fake: FakeBigQuery, **kwargs) -> BigQueryWarehouse:
    options = dict(
        location="US",
        retry_deadline=0.5,
        job_retry_deadline=1.0,
        retry_initial_delay=0.01,
        retry_maximum_delay=0.05,
        job_timeout=30,
        scope=JobScope(staging_expiration=dt.timedelta(days=14)),  # what the tasks give it: the quarantine period
    )
    options.update(kwargs)
    return BigQueryWarehouse(PROJECT, client=fake.client(location=options["location"]), **options)


@pytest.fixture
def wh(fake) -> BigQueryWarehouse:
    return make_warehouse(fake)


def stage(wh: BigQueryWarehouse, **kwargs) -> StagedTable:
    options = dict(
        dataset_id=DATASET_ID,
        query=QUERY,
        params={"submission_date": DAY, "min_clients": 5000},
        partition=DAY,
        partition_field="submission_date",
    )
    options.update(kwargs)
    return wh.stage(options.pop("dataset_id"), options.pop("query"), options.pop("params"), options.pop("partition"), **options)


# -- configuration -----------------------------------------------------------------------------


def test_from_url_reads_options_and_defaults():
    wh = BigQueryWarehouse.from_url(
        "bigquery://moz-fx-data-shared-prod?staging_dataset=tmp_pub&location=EU&maximum_bytes_billed=1000&job_timeout=90"
    )
    assert (wh.project, wh.staging_dataset, wh.location, wh.maximum_bytes_billed, wh.job_timeout) == (
        "moz-fx-data-shared-prod", "tmp_pub", "EU", 1000, 90.0
    )
    default = BigQueryWarehouse.from_url("bigquery://p")
    assert (default.staging_dataset, default.location, default.maximum_bytes_billed) == ("pubdata_staging", None, 1024**4)
    assert default.engine == "bigquery"


def test_each_dataset_has_its_own_byte_cap_under_the_deployments_ceiling():
    dataset = BigQueryWarehouse.from_url("bigquery://p", scope=JobScope(maximum_bytes_billed=50 * 1024**3))
    assert dataset.maximum_bytes_billed == 50 * 1024**3  # no shared default: the declaration's cap
    capped = BigQueryWarehouse.from_url("bigquery://p?maximum_bytes_billed=1000",
                                        scope=JobScope(maximum_bytes_billed=50 * 1024**3))
    assert capped.maximum_bytes_billed == 1000  # never above the deployment's ceiling


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("bigquery://", "expected bigquery://<project>"),
        ("bigquery://p?dataset=x", "unknown option 'dataset'"),
        ("bigquery://p?maximum_bytes_billed=10TB", "maximum_bytes_billed is a number of bytes"),
        ("bigquery://p/staging", "?staging_dataset="),
        ("bigquery://p?staging_dataset=bad-name", "not a BigQuery dataset name"),
    ],
)
def test_from_url_rejects_bad_urls(url, fragment):
    with pytest.raises(ConfigurationError, match=None) as err:
        BigQueryWarehouse.from_url(url)
    assert fragment in str(err.value)


def test_opening_the_warehouse_does_not_import_google_clients():
    code = (
        "import sys\n"
        "from pubdata.warehouses import open_warehouse\n"
        "wh = open_warehouse('bigquery://some-project?location=US')\n"
        "assert wh.engine == 'bigquery'\n"
        "loaded = [m for m in sys.modules if m.startswith(('google.cloud', 'great_expectations'))]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_names_and_labels_follow_bigquery_rules():
    assert staging_table_name("ds.page_loads_v12") == "ds__page_loads_v12__full"
    assert staging_table_name("ds.page_loads_v12", DAY) == "ds__page_loads_v12__20261101"
    with pytest.raises(ConfigurationError):
        staging_table_name("DS.Bad")
    long = label_value("a_dataset_with_a_rather_long_name.and_an_even_longer_table_name_v123")
    assert len(long) == 63 and set(long) <= set("abcdefghijklmnopqrstuvwxyz0123456789_-")
    assert label_value("ds.Page-Loads_v1") == "ds_page-loads_v1"


# -- stage ---------------------------------------------------------------------------------------


def test_stage_dry_runs_then_replaces_the_runs_staging_table(fake, wh):
    staged = stage(wh)

    assert staged == StagedTable(DATASET_ID, f"{PROJECT}.pubdata_staging", STAGING_TABLE, "2026-11-01")
    dry, real = fake.job_inserts()
    expected_params = [
        {"name": "submission_date", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2026-11-01"}},
        {"name": "min_clients", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "5000"}},
    ]

    assert dry["configuration"]["dryRun"] is True
    assert dry["configuration"]["query"]["useQueryCache"] is False
    assert dry["configuration"]["query"]["useLegacySql"] is False
    assert dry["configuration"]["query"]["query"] == QUERY
    assert dry["configuration"]["query"]["queryParameters"] == expected_params
    assert "destinationTable" not in dry["configuration"]["query"]

    config = real["configuration"]
    assert "dryRun" not in config
    q = config["query"]
    assert q["query"] == QUERY
    assert q["destinationTable"] == {"projectId": PROJECT, "datasetId": "pubdata_staging", "tableId": STAGING_TABLE}
    assert q["writeDisposition"] == "WRITE_TRUNCATE"
    assert "timePartitioning" not in q  # one table per day: replacing it replaces its schema too
    assert q["maximumBytesBilled"] == str(1024**4)
    assert config["jobTimeoutMs"] == "30000"  # BigQuery stops the job itself at job_timeout
    assert q["priority"] == "INTERACTIVE"
    assert q["useLegacySql"] is False
    assert q["parameterMode"] == "NAMED"
    assert q["queryParameters"] == expected_params
    assert config["labels"] == {"pubdata_dataset": "ds_page_loads_v1", "pubdata_step": "stage", "pubdata_partition": "2026-11-01"}
    assert real["jobReference"]["jobId"].startswith(f"pubdata_stage_{STAGING_TABLE}_")
    assert real["jobReference"]["jobId"].endswith("_1")
    assert real["jobReference"]["location"] == "US"

    job_id = real["jobReference"]["jobId"]
    waits = [(r.method, r.path) for r in fake.requests[2:4]]
    assert waits == [("GET", f"/projects/{PROJECT}/jobs/{job_id}"), ("GET", f"/projects/{PROJECT}/queries/{job_id}")]
    assert fake.requests[3].params["maxResults"] == "0"  # waits for the job without downloading rows
    assert fake.tables[TABLE].rows == ROWS
    # The staged table drops itself after the quarantine period, whether or not anyone purges it.
    [patch] = fake.calls("PATCH", r"/tables/")
    assert patch.path.endswith(f"/tables/{STAGING_TABLE}") and set(patch.body) >= {"expirationTime"}
    expires = dt.datetime.fromtimestamp(int(patch.body["expirationTime"]) / 1000, dt.UTC)
    assert dt.timedelta(days=13, hours=23) < expires - dt.datetime.now(dt.UTC) <= dt.timedelta(days=14)


def test_job_ids_derive_from_dataset_partition_and_run(fake):
    first = stage(make_warehouse(fake, scope=JobScope(run_id="scheduled__2026-11-01")))
    other_run = stage(make_warehouse(fake, scope=JobScope(run_id="scheduled__2026-11-02")))
    ids = [b["jobReference"]["jobId"] for b in fake.job_inserts() if not b["configuration"].get("dryRun")]
    assert first == other_run and len(set(ids)) == 2
    other_day = stage(make_warehouse(fake, scope=JobScope(run_id="scheduled__2026-11-01")),
                      params={"submission_date": DAY + dt.timedelta(days=1), "min_clients": 5000},
                      partition=DAY + dt.timedelta(days=1))
    assert other_day.table == "ds__page_loads_v1__20261102"
    assert fake.job_inserts()[-1]["jobReference"]["jobId"].startswith("pubdata_stage_ds__page_loads_v1__20261102_")


def test_a_retried_task_reattaches_to_the_job_its_killed_worker_started(fake):
    """The worker running stage dies while BigQuery runs the query; the retry must not pay again."""
    fake.polls_until_done = 3
    killed = make_warehouse(fake, scope=JobScope(run_id="scheduled__2026-11-01"))

    def die(job, **kwargs):
        raise KeyboardInterrupt("worker killed")

    killed._wait = die
    with pytest.raises(KeyboardInterrupt):
        stage(killed)
    [started] = [b["jobReference"]["jobId"] for b in fake.job_inserts()[1:]]
    assert fake.jobs[started]["status"]["state"] == "RUNNING"

    retried = make_warehouse(fake, scope=JobScope(run_id="scheduled__2026-11-01"))
    staged = stage(retried)

    inserts = [b for b in fake.job_inserts() if not b["configuration"].get("dryRun")]
    assert [b["jobReference"]["jobId"] for b in inserts] == [started, started]  # the second answered 409
    assert len([j for j in fake.jobs if j.startswith("pubdata_stage_")]) == 1  # one query paid for
    assert fake.calls("GET", rf"/jobs/{started}$")  # reattached: waited for that job
    assert fake.jobs[started]["status"]["state"] == "DONE" and fake.tables[TABLE].rows == ROWS
    assert staged.table == STAGING_TABLE


def test_a_finished_job_whose_table_is_gone_runs_again(fake):
    """The same run staged again after its publish dropped the table (a cleared DAG run)."""
    wh = make_warehouse(fake, scope=JobScope(run_id="scheduled__2026-11-01"))
    staged = stage(wh)
    wh.drop(staged)

    stage(make_warehouse(fake, scope=JobScope(run_id="scheduled__2026-11-01")))

    ids = [b["jobReference"]["jobId"] for b in fake.job_inserts() if not b["configuration"].get("dryRun")]
    assert [i[-2:] for i in ids] == ["_1", "_1", "_2"]  # attempt 1 exists (409), attempt 2 runs the query
    assert fake.tables[TABLE].rows == ROWS


def test_the_fake_is_as_strict_as_bigquery_about_job_ids(fake):
    body = {"jobReference": {"projectId": PROJECT, "jobId": "same"}, "configuration": {"query": {"query": "SELECT 1"}}}
    session = fake.session()
    url = f"https://bigquery.googleapis.com/bigquery/v2/projects/{PROJECT}/jobs"
    assert session.post(url, json=body).status_code == 200
    again = session.post(url, json=body)
    assert again.status_code == 409 and "Already Exists: Job" in again.json()["error"]["message"]


def test_stage_without_partition_replaces_the_whole_table(fake, wh):
    staged = stage(wh, partition=None, partition_field=None)

    assert staged.partition is None
    q = fake.job_inserts()[1]["configuration"]["query"]
    assert q["destinationTable"]["tableId"] == "ds__page_loads_v1__full"
    assert q["writeDisposition"] == "WRITE_TRUNCATE"
    assert "timePartitioning" not in q
    assert "pubdata_partition" not in fake.job_inserts()[1]["configuration"]["labels"]


def test_an_edited_query_with_other_columns_stages_again(fake, wh):
    """Schema changes are no query error: the run's table is replaced, schema and all."""
    stage(wh)
    fake.add_result("clients_daily", [("submission_date", "DATE"), ("country", "STRING"), ("os", "STRING"),
                                      ("client_count", "FLOAT")], [(DAY, "DE", "Linux", 6000.0)])

    staged = stage(wh, query=QUERY.replace("country,", "country, os,"))

    assert [c.name for c in wh.columns(staged)] == ["submission_date", "country", "os", "client_count"]
    assert wh.columns(staged)[-1].type == "FLOAT64"


def test_query_parameters_get_bigquery_types():
    params = query_parameters(
        {
            "d": DAY,
            "d_iso": "2026-11-01",
            "ts": dt.datetime(2026, 11, 1, 12, 30),
            "ts_cet": dt.datetime(2026, 11, 1, 12, 30, tzinfo=dt.timezone(dt.timedelta(hours=1))),
            "n": 5000,
            "f": 0.25,
            "b": True,
            "s": "DE",
            "not_a_date": "2026-13-01",
            "x": decimal.Decimal("1.5"),
            "countries": ["DE", "FR"],
        }
    )
    reprs = {p.name: p.to_api_repr() for p in params}
    types = {name: r["parameterType"].get("type") for name, r in reprs.items()}
    assert types == {
        "d": "DATE", "d_iso": "DATE", "ts": "TIMESTAMP", "ts_cet": "TIMESTAMP", "n": "INT64", "f": "FLOAT64",
        "b": "BOOL", "s": "STRING", "not_a_date": "STRING", "x": "NUMERIC", "countries": "ARRAY",
    }
    assert reprs["ts"]["parameterValue"]["value"] == "2026-11-01 12:30:00+00:00"
    assert reprs["ts_cet"]["parameterValue"]["value"] == "2026-11-01 11:30:00+00:00"
    assert reprs["b"]["parameterValue"]["value"] == "true"
    assert reprs["countries"]["parameterType"]["arrayType"] == {"type": "STRING"}
    assert reprs["countries"]["parameterValue"]["arrayValues"] == [{"value": "DE"}, {"value": "FR"}]

    for bad in ({"none": None}, {"empty": []}, {"mixed": [1, "a"]}, {"bad name": 1}):
        with pytest.raises(ConfigurationError):
            query_parameters(bad)


def test_bytes_over_the_limit_are_refused_before_the_real_job(fake):
    wh = make_warehouse(fake, maximum_bytes_billed=1024**3)
    fake.dry_run_bytes = 3 * 1024**4

    with pytest.raises(QueryError) as err:
        stage(wh)

    message = str(err.value)
    assert "would process 3.0 TiB, over the limit of 1.0 GiB (maximum_bytes_billed)" in message
    assert "sql/ds/page_loads_v1.sql" in message
    assert [b["configuration"].get("dryRun") for b in fake.job_inserts()] == [True]
    assert len(fake.requests) == 1


def test_syntax_error_becomes_query_error_with_bigquery_message(fake, wh):
    fake.fail_job("clients_daily", "invalidQuery", "Unrecognized name: contry; Did you mean country? at [1:26]")

    with pytest.raises(QueryError) as err:
        stage(wh)

    assert str(err.value) == (
        "the reviewed query failed in BigQuery: Unrecognized name: contry; Did you mean country? at [1:26]; "
        "fix the query in sql/ds/page_loads_v1.sql"
    )
    assert len(fake.requests) == 1  # a 400 is never retried


def test_runtime_job_failure_becomes_query_error(fake, wh):
    fake.fail_job("clients_daily", "invalidQuery", "division by zero: 1 / 0", dry_run=False)

    with pytest.raises(QueryError, match="the reviewed query failed in BigQuery: division by zero: 1 / 0"):
        stage(wh)
    assert len(fake.job_inserts()) == 2  # dry run + the job; an invalid query is not re-run


def test_transient_job_failure_reruns_the_job(fake, wh):
    fake.fail_job("clients_daily", "jobRateLimitExceeded", "Exceeded rate limits", dry_run=False, times=1)

    stage(wh)

    dry, first, second = fake.job_inserts()
    assert first["jobReference"]["jobId"] != second["jobReference"]["jobId"]
    assert (first["jobReference"]["jobId"][-2:], second["jobReference"]["jobId"][-2:]) == ("_1", "_2")  # next attempt
    assert second["jobReference"]["jobId"].startswith(f"pubdata_stage_{STAGING_TABLE}_")
    assert second["configuration"] == first["configuration"]
    assert fake.tables[TABLE].rows == ROWS


def test_500_on_job_insert_is_retried_with_the_same_job_id(fake, wh):
    fake.fail("POST", r"/jobs$", status=500, reason="backendError", body_contains="destinationTable")

    stage(wh)

    dry, failed, retried = fake.job_inserts()
    assert failed == retried  # same jobId: a retried insert cannot start a second job
    assert fake.tables[TABLE].rows == ROWS


def test_429_and_connection_reset_while_waiting_are_retried(fake, wh):
    fake.fail("GET", r"/jobs/", status=429, reason="rateLimitExceeded", message="Exceeded rate limits: too many api requests")
    fake.fail("GET", r"/queries/", exception=requests.exceptions.ConnectionError(ConnectionResetError(104, "Connection reset by peer")))

    stage(wh)

    assert len(fake.calls("GET", r"/jobs/")) == 2
    assert len(fake.calls("GET", r"/queries/")) == 2


def test_persistent_server_errors_become_warehouse_error_quickly(fake, wh):
    staged = stage(wh)
    fake.fail("GET", r"/tables/", status=503, reason="backendError", message="Service unavailable", times=1000)

    with pytest.raises(WarehouseError) as err:
        wh.columns(staged)

    assert not isinstance(err.value, QueryError)
    assert "kept failing while reading the staged table's schema for ds.page_loads_v1" in str(err.value)
    assert "Service unavailable" in str(err.value)
    assert len(fake.calls("GET", r"/tables/")) > 1


def test_persistent_errors_while_waiting_for_a_job_give_up_within_the_job_retry_deadline(fake, wh):
    fake.fail("GET", r"/jobs/", status=500, reason="backendError", times=10_000)

    with pytest.raises(WarehouseError, match="kept failing while staging for ds.page_loads_v1"):
        stage(wh)


def test_access_denied_names_the_roles_to_grant(fake, wh):
    fake.fail("POST", r"/jobs$", status=403, reason="accessDenied",
              message="Access Denied: Project test-project: User does not have bigquery.jobs.create permission")

    with pytest.raises(ConfigurationError) as err:
        stage(wh)

    assert not isinstance(err.value, QueryError)
    assert "BigQuery refused staging for ds.page_loads_v1 (accessDenied)" in str(err.value)
    assert "roles/bigquery.jobUser" in str(err.value)


def test_missing_staging_dataset_says_how_to_create_it():
    fake = FakeBigQuery(PROJECT, datasets=())
    fake.add_result("clients_daily", SCHEMA, ROWS)
    wh = make_warehouse(fake)

    with pytest.raises(ConfigurationError) as err:
        stage(wh)

    assert not isinstance(err.value, QueryError)
    assert "bq mk --dataset --location=US test-project:pubdata_staging" in str(err.value)


def test_missing_source_table_is_a_query_error(fake, wh):
    fake.fail("POST", r"/jobs$", status=404, reason="notFound", body_contains='"dryRun"',
              message="Not found: Table moz-fx-data-shared-prod:telemetry.clients_dayli was not found in location US")

    with pytest.raises(QueryError, match="reads a table that does not exist.*clients_dayli.*sql/ds/page_loads_v1.sql"):
        stage(wh)


def test_job_that_outlives_the_timeout_is_cancelled(fake):
    wh = make_warehouse(fake, job_timeout=0.3)
    fake.never_finish = True

    with pytest.raises(WarehouseError, match="did not finish within 0.3 s and was cancelled"):
        stage(wh)

    job_id = fake.job_inserts()[1]["jobReference"]["jobId"]
    assert fake.calls("POST", rf"/jobs/{job_id}/cancel$")


# -- reading the staged table ---------------------------------------------------------------------


def test_columns_use_standard_sql_type_names(fake, wh):
    fake.add_table(TABLE, [("d", "DATE"), ("n", "INTEGER"), ("f", "FLOAT"), ("b", "BOOLEAN"), ("t", "TIMESTAMP"), ("x", "NUMERIC")])
    staged = StagedTable(DATASET_ID, f"{PROJECT}.pubdata_staging", STAGING_TABLE, None)

    assert wh.columns(staged) == [
        Column("d", "DATE"), Column("n", "INT64"), Column("f", "FLOAT64"), Column("b", "BOOL"),
        Column("t", "TIMESTAMP"), Column("x", "NUMERIC"),
    ]
    assert fake.requests[-1].path == f"/projects/{PROJECT}/datasets/pubdata_staging/tables/{STAGING_TABLE}"


def test_reading_a_staged_table_that_is_gone_says_to_stage_again(fake, wh):
    staged = StagedTable(DATASET_ID, f"{PROJECT}.pubdata_staging", "ds__page_loads_v1", None)

    with pytest.raises(WarehouseError, match="stage the dataset again") as err:
        wh.columns(staged)
    assert not isinstance(err.value, QueryError)


def test_missing_credentials_say_how_to_log_in(tmp_path, monkeypatch):
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud credentials either
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # and do not probe the metadata server
    wh = BigQueryWarehouse("some-project")

    with pytest.raises(ConfigurationError, match="gcloud auth application-default login"):
        wh.client


def test_scalar_reads_the_runs_staging_table(fake, wh):
    staged = stage(wh)
    fake.add_result("MIN(client_count)", [("f0_", "INTEGER")], [(6000,)])

    assert wh.scalar(staged, "SELECT MIN(client_count) FROM {table} AS t") == 6000

    body = fake.calls("POST", r"/queries$")[-1].body
    assert body["query"] == f"SELECT MIN(client_count) FROM `{TABLE}` AS t"
    assert body["useLegacySql"] is False
    assert body["maximumBytesBilled"] == str(1024**4)
    assert body["labels"] == {"pubdata_dataset": "ds_page_loads_v1", "pubdata_step": "validate", "pubdata_partition": "2026-11-01"}
    assert body["location"] == "US"


def test_scalar_needs_exactly_one_value(fake, wh):
    staged = stage(wh)
    fake.add_result("country FROM", [("country", "STRING")], [("DE",), ("FR",)])

    with pytest.raises(ConfigurationError, match="one row with one column, got 2 row"):
        wh.scalar(staged, "SELECT country FROM {table}")


def test_bad_validation_sql_is_a_query_error(fake, wh):
    staged = stage(wh)
    fake.fail_job("no_such_column", "invalidQuery", "Unrecognized name: no_such_column at [1:12]")

    with pytest.raises(QueryError, match="rejected the SQL while running a validation query.*no_such_column"):
        wh.scalar(staged, "SELECT MAX(no_such_column) FROM {table}")


# -- export -----------------------------------------------------------------------------------------


def export_parts(wh, staged, fmt, out):
    """What the export task writes for this staged partition into a local (non-GCS) store, every
    column published, ordered by all of them."""
    from pubdata.publishing import rows
    from pubdata.stores.local import LocalStore

    columns = [c.name for c in wh.columns(staged)]
    with wh.export_source(staged, out, LocalStore(out / "bucket"), "_staging/x") as source:
        rows.check_finite(source, columns, staged.dataset_id)
        return rows.write_parts(source, columns, fmt, 10**6, out / fmt, what=staged.dataset_id)


def test_export_into_a_local_store_reads_tabledata_page_by_page_and_sorts(fake, tmp_path):
    wh = make_warehouse(fake, export_page_size=2)
    staged = stage(wh)
    inserted = len(fake.job_inserts())

    (part,) = export_parts(wh, staged, "json", tmp_path)

    assert json.loads(part.path.read_text()) == [
        {"submission_date": "2026-11-01", "country": "DE", "client_count": 6000},
        {"submission_date": "2026-11-01", "country": "FR", "client_count": 7000},
        {"submission_date": "2026-11-01", "country": "Other", "client_count": 9000},
    ]
    assert len(fake.job_inserts()) == inserted, "tabledata.list is free: no query job"
    pages = fake.calls("GET", r"/data$")
    assert {r.path for r in pages} == {f"/projects/{PROJECT}/datasets/pubdata_staging/tables/{STAGING_TABLE}/data"}
    assert [r.params.get("pageToken") for r in pages] == [None, "2"]
    assert all(r.params["maxResults"] == "2" for r in pages)


def test_export_csv_and_parquet(fake, wh, tmp_path):
    import pyarrow.parquet as pq

    staged = stage(wh)

    (csv_part,) = export_parts(wh, staged, "csv", tmp_path / "c")
    assert csv_part.path.read_text().splitlines() == [
        "submission_date,country,client_count", "2026-11-01,DE,6000", "2026-11-01,FR,7000", "2026-11-01,Other,9000",
    ]
    (parquet_part,) = export_parts(wh, staged, "parquet", tmp_path / "p")
    table = pq.read_table(parquet_part.path)
    assert table.column("country").to_pylist() == ["DE", "FR", "Other"]
    assert str(table.schema.field("client_count").type) == "int64"
    assert pq.ParquetFile(parquet_part.path).metadata.row_group(0).column(0).compression == "ZSTD"


def test_export_of_an_empty_partition_is_an_empty_file(fake, wh, tmp_path):
    import pyarrow.parquet as pq

    fake.add_result("clients_daily", SCHEMA, [])
    staged = stage(wh)

    (part,) = export_parts(wh, staged, "json", tmp_path / "j")
    assert part.rows == 0 and json.loads(part.path.read_text()) == []
    (part,) = export_parts(wh, staged, "csv", tmp_path / "c")
    assert part.path.read_text() == "submission_date,country,client_count\n"
    (part,) = export_parts(wh, staged, "parquet", tmp_path / "p")
    assert pq.read_table(part.path).column_names == ["submission_date", "country", "client_count"]


def test_export_refuses_nan(fake, wh, tmp_path):
    from pubdata.errors import DataError

    fake.add_result("clients_daily", [("country", "STRING"), ("ratio", "FLOAT")], [("DE", "NaN")])
    staged = stage(wh)

    with pytest.raises(DataError, match="NaN or infinity in ratio"):
        export_parts(wh, staged, "json", tmp_path / "j")
    assert not (tmp_path / "j" / "json").exists()


def test_extract_to_gcs_runs_an_extract_job(fake, wh):
    staged = stage(wh)

    job_id = wh.extract_to_gcs(staged, "gs://bucket/staging/ds/page_loads_v1/2026-11-01/part-*.json.gz")

    body = fake.job_inserts()[-1]
    assert body["jobReference"]["jobId"] == job_id and job_id.startswith(f"pubdata_extract_{STAGING_TABLE}_")
    assert body["configuration"]["jobTimeoutMs"] == "30000"
    assert body["configuration"]["extract"] == {
        "sourceTable": {"projectId": PROJECT, "datasetId": "pubdata_staging", "tableId": STAGING_TABLE},
        "destinationUris": ["gs://bucket/staging/ds/page_loads_v1/2026-11-01/part-*.json.gz"],
        "destinationFormat": "NEWLINE_DELIMITED_JSON",
        "compression": "GZIP",
    }
    assert body["configuration"]["labels"] == {"pubdata_dataset": "ds_page_loads_v1", "pubdata_step": "extract", "pubdata_partition": "2026-11-01"}

    wh.extract_to_gcs(staged, "gs://bucket/x-*.csv.gz", fmt="csv")
    wh.extract_to_gcs(staged, "gs://bucket/x-*.parquet", fmt="parquet")
    formats = [(b["configuration"]["extract"]["destinationFormat"], b["configuration"]["extract"]["compression"]) for b in fake.job_inserts()[-2:]]
    assert formats == [("CSV", "GZIP"), ("PARQUET", "ZSTD")]

    with pytest.raises(ConfigurationError):
        wh.extract_to_gcs(staged, "/tmp/x.json")
    with pytest.raises(ConfigurationError):
        wh.extract_to_gcs(staged, "gs://bucket/x", fmt="avro")


# -- drop -------------------------------------------------------------------------------------------


def test_drop_deletes_the_runs_table_and_tolerates_absence(fake, wh):
    staged = stage(wh)
    assert TABLE in fake.tables

    wh.drop(staged)
    wh.drop(staged)  # already gone: fine

    deletes = fake.calls("DELETE")
    assert [r.path for r in deletes] == [f"/projects/{PROJECT}/datasets/pubdata_staging/tables/{STAGING_TABLE}"] * 2
    assert TABLE not in fake.tables


# -- source readiness -------------------------------------------------------------------------------


def test_a_source_is_ready_once_its_days_partition_has_rows(fake, wh):
    partitions = "INFORMATION_SCHEMA.PARTITIONS"
    fake.add_result(partitions, [("partition_id", "STRING"), ("total_rows", "INTEGER")],
                    [("20261031", 120_000), ("20261101", 0)])
    source = "moz-fx-data-shared-prod.telemetry.clients_daily"

    assert wh.source_ready(source, DAY - dt.timedelta(days=1)) is True
    assert wh.source_ready(source, DAY) is False  # the partition exists but is still empty
    assert wh.source_ready(source, DAY + dt.timedelta(days=1)) is False  # not there at all

    body = fake.calls("POST", r"/queries$")[-1].body
    assert body["query"].startswith("SELECT partition_id, total_rows FROM "
                                    "`moz-fx-data-shared-prod.telemetry.INFORMATION_SCHEMA.PARTITIONS`")
    assert body["queryParameters"][0]["parameterValue"] == {"value": "clients_daily"}  # bound, not spliced
    fake.add_result(partitions, [("partition_id", "STRING"), ("total_rows", "INTEGER")], [(None, 5)])
    assert wh.source_ready(source, DAY) is True  # not partitioned: nothing to wait for
    with pytest.raises(ConfigurationError, match="project.dataset.table"):
        wh.source_ready("clients_daily", DAY)


# -- Great Expectations -----------------------------------------------------------------------------


def test_gx_connection_string_is_understood_by_sqlalchemy_bigquery(wh):
    from sqlalchemy.engine import make_url
    from sqlalchemy_bigquery.parse_url import parse_url

    staged = StagedTable(DATASET_ID, f"{PROJECT}.pubdata_staging", STAGING_TABLE, "2026-11-01")
    url = wh.gx_connection_string(staged)

    project, location, dataset, *_, job_config, _, _ = parse_url(make_url(url))
    assert (project, location, dataset) == (PROJECT, "US", "pubdata_staging")
    assert job_config.maximum_bytes_billed == 1024**4
    assert job_config.labels == {"pubdata_dataset": "ds_page_loads_v1", "pubdata_step": "validate", "pubdata_partition": "2026-11-01"}


@pytest.mark.filterwarnings("ignore:Cannot create BigQuery Storage client")
def test_gx_batch_is_a_query_asset_over_the_runs_table(fake, wh, tmp_path, monkeypatch):
    """Builds the datasource, asset and batch with real GX; nothing is executed in BigQuery here."""
    gx = pytest.importorskip("great_expectations")
    adc = tmp_path / "adc.json"  # offline credentials: enough for GX to build its engine, never used
    adc.write_text(json.dumps({"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(adc))
    staged = stage(wh)
    requests_before = len(fake.requests)
    context = gx.get_context(mode="ephemeral")

    batch = wh.gx_batch(context, staged)
    wh.gx_batch(context, staged)  # a second run in the same context replaces the asset

    datasource = context.data_sources.get(wh.gx_datasource_name(staged))
    assert datasource.connection_string == wh.gx_connection_string(staged)
    asset = datasource.get_asset(STAGING_TABLE)
    assert asset.query == f"SELECT * FROM `{TABLE}`"
    assert batch.data_asset.name == asset.name
    assert fake.requests[requests_before:] == []  # building the batch ran nothing in BigQuery


def test_a_stage_plan_is_one_bigquery_statement_and_its_side_table_reads_the_staged_rows(fake, wh):
    """The statement DuckDB transpiles (tests/sql/test_rewrite.py) is the one BigQuery runs, as it is:
    the same HAVING on the warehouse's count, the roll-up's valid countries as an ARRAY<STRING> parameter;
    when rows overlap, the differencing query runs over the run's staging table into a side table."""
    from pubdata.declarations.spec import DeclarationFile
    from pubdata.sql.rewrite import plan
    from pubdata.warehouses.base import DIFFERENCING, STAGED
    from tests.support.staging import declaration

    spec = DeclarationFile.model_validate(declaration(rollup=True))
    query = ("SELECT @submission_date AS submission_date, country, os, locale, normalized_channel, "
             "SUM(page_loads) AS page_loads, COUNT(DISTINCT client_id) AS client_count "
             "FROM `moz-fx-data-shared-prod.telemetry.clients_daily` WHERE submission_date = @submission_date "
             "GROUP BY country, os, locale, normalized_channel")
    stage_plan = plan(query, spec)
    fake.add_result("WHERE NOT _pubdata_disjoint", [("f0_", "INTEGER")], [(2,)])  # some client in two rows
    staged = wh.stage(DATASET_ID, stage_plan, {"submission_date": DAY}, DAY, partition_field="submission_date")

    inserts = fake.job_inserts()
    dry, real, side = inserts[0]["configuration"], inserts[1]["configuration"], inserts[2]["configuration"]
    assert dry["query"]["query"] == real["query"]["query"] == stage_plan.query
    params = {p["name"]: p for p in real["query"]["queryParameters"]}
    assert params["_pubdata_valid_country"]["parameterType"] == {"type": "ARRAY", "arrayType": {"type": "STRING"}}
    assert {"value": "DE"} in params["_pubdata_valid_country"]["parameterValue"]["arrayValues"]
    assert side["query"]["destinationTable"]["tableId"] == wh.side(staged, DIFFERENCING).table == f"{STAGING_TABLE}__differencing"
    text = side["query"]["query"]
    assert f"FROM (SELECT * FROM `{TABLE}`) AS {STAGED}" in text
    assert side["labels"]["pubdata_step"] == DIFFERENCING
    assert inserts[2]["jobReference"]["jobId"].startswith(f"pubdata_differencing_{STAGING_TABLE}__differencing_")
