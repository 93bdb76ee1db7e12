"""The production path end to end: BigQuery (the real google-cloud-bigquery client over a fake HTTP
transport that records every request) stages the reviewed query into the run's staging table and
extracts it to the private staging bucket; the GCS side runs against fake-gcs-server, through a
server-side copy into the public layout of the public bucket. Run state lives in the private
bucket too. Also: transient errors are retried, permanent ones fail fast with a message that says
what to fix, and the public bucket stays untouched when they do."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from pubdata.config import settings
from pubdata.errors import ConfigurationError, StagedTableChanged
from pubdata.orchestration import records, tasks
from pubdata.policy.geo import geo_values
from pubdata.warehouses.bigquery import BigQueryWarehouse
from tests.support.fake_bigquery import FakeBigQuery
from tests.support.gcs_emulator import create_bucket
from tests.support.project import copy_project

pytestmark = pytest.mark.gcs

PROJECT = "test-project"
EXAMPLE = "telemetry_public.page_loads_by_country_v1"
DAY = dt.date(2026, 11, 1)
RUN_ID = "scheduled__2026-11-01T05:00:00+00:00"
STAGING_TABLE = "telemetry_public__page_loads_by_country_v1__20261101"
MAX_BYTES_BILLED = 5 * 1024**4
# What BigQuery returns for the staged query: the published columns, then the pipeline's own
# (the distinct clients it counted, the row's group, whether every client is in one row).
SCHEMA = [("submission_date", "DATE"), ("country", "STRING"), ("os", "STRING"), ("locale", "STRING"),
          ("normalized_channel", "STRING"), ("page_loads", "INTEGER"), ("client_count", "INTEGER"),
          ("_pubdata_units", "INTEGER"), ("_pubdata_row", "STRING"), ("_pubdata_disjoint", "BOOLEAN")]
ROWS = [(DAY, c, os_, loc, "release", 100_000 + i * 37, 5000 + i * 11, 5000 + i * 11, f'{{"b":0,"k0":{i}}}', True)
        for i, (c, os_, loc) in enumerate((c, o, l) for c in ("DE", "FR", "US", "Other") for o in ("Linux", "Windows_NT")
                                          for l in ("de", "en-US", "fr"))]
_ARROW = {"DATE": pa.date32(), "STRING": pa.string(), "INTEGER": pa.int64(), "FLOAT": pa.float64(), "BOOLEAN": pa.bool_()}
EXPECTED = sorted(
    ({"submission_date": DAY.isoformat(), "country": r[1], "os": r[2], "locale": r[3], "normalized_channel": r[4],
      "page_loads": r[5], "client_count": r[6]} for r in ROWS),
    key=lambda r: tuple(r.values()),
)
FINGERPRINT = f"{len(ROWS)}:1234:5678"  # what the fake answers the fingerprint query with
PASSED = {"outcome": "passed", "checks": 9, "warnings": [], "fingerprint": FINGERPRINT}


class ExtractingFakeBigQuery(FakeBigQuery):
    """Extract jobs really write their output to the bucket, as BigQuery does: Parquet shards named
    by the wildcard (12 digits), rows in no particular order, split at arbitrary points."""

    def __init__(self, project: str, gcs_endpoint: str):
        super().__init__(project)
        self.gcs_endpoint = gcs_endpoint

    def _advance(self, job):
        done_before = job["status"]["state"] == "DONE"
        super()._advance(job)
        config = job["configuration"]
        if done_before or "extract" not in config or job["status"].get("errorResult"):
            return
        extract = config["extract"]
        source = extract["sourceTable"]
        name, _, partition = source["tableId"].partition("$")
        table = self.tables[f"{source['projectId']}.{source['datasetId']}.{name}"]
        rows = list(table.partitions.get(partition or None, []))
        random.Random(7).shuffle(rows)
        fields = table.resource["schema"]["fields"]
        schema = pa.schema([(f["name"], _ARROW[f["type"]]) for f in fields])
        uri = extract["destinationUris"][0]
        assert extract["destinationFormat"] == "PARQUET", "this fake writes Parquet extracts only"
        bucket, _, pattern = uri[len("gs://"):].partition("/")
        shards = [rows[: len(rows) // 3], rows[len(rows) // 3:]]
        for i, shard in enumerate(shards):
            sink = io.BytesIO()
            columns = list(zip(*shard)) if shard else [[] for _ in fields]
            pq.write_table(pa.table([pa.array(col, type=t) for col, t in zip(columns, schema.types)], schema=schema),
                           sink, compression="zstd")
            response = requests.post(
                f"{self.gcs_endpoint}/upload/storage/v1/b/{bucket}/o",
                params={"uploadType": "media", "name": pattern.replace("*", f"{i:012d}")},
                data=sink.getvalue(), headers={"Content-Type": "application/octet-stream"}, timeout=10,
            )
            response.raise_for_status()
        job["statistics"]["extract"] = {"destinationUriFileCounts": [str(len(shards))]}


@pytest.fixture
def production(tmp_path, monkeypatch, gcs_endpoint):
    """PUBDATA_WAREHOUSE=bigquery://, PUBDATA_BUCKET=gs://: the configuration a deployment uses."""
    copy_project(tmp_path / "project")
    bucket = create_bucket(gcs_endpoint)
    private = create_bucket(gcs_endpoint)
    base_url = f"{gcs_endpoint}/{bucket}/public/"
    monkeypatch.setenv("PUBDATA_PROJECT", str(tmp_path / "project"))
    monkeypatch.setenv("PUBDATA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PUBDATA_WAREHOUSE", f"bigquery://{PROJECT}?location=US&maximum_bytes_billed={MAX_BYTES_BILLED}")
    monkeypatch.setenv("PUBDATA_BUCKET", f"gs://{bucket}/public")
    monkeypatch.setenv("PUBDATA_STAGING_BUCKET", f"gs://{private}/staging")
    monkeypatch.setenv("PUBDATA_STATE_URL", f"gs://{private}/state")
    monkeypatch.setenv("PUBDATA_PUBLIC_BASE_URL", base_url)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint)
    fake = ExtractingFakeBigQuery(PROJECT, gcs_endpoint)
    fake.add_result("clients_daily", SCHEMA, ROWS)
    fake.add_result("SELECT count(*)", [("f0_", "INTEGER")], [(len(ROWS),)])
    fake.add_result("WHERE NOT _pubdata_disjoint", [("f0_", "INTEGER")], [(0,)])
    fake.add_result("FARM_FINGERPRINT(TO_JSON_STRING(r))", [("f0_", "STRING")], [(FINGERPRINT,)])

    def open_warehouse(url, *, home=None, scope=None):
        # The real warehouse from the real URL; only its client's HTTP goes to the fake.
        return BigQueryWarehouse.from_url(url, scope=scope, client=fake.client(location="US"), retry_deadline=5.0,
                                          job_retry_deadline=5.0, retry_initial_delay=0.01, retry_maximum_delay=0.05,
                                          job_timeout=30)

    monkeypatch.setattr(tasks, "open_warehouse", open_warehouse)
    from pubdata.stores import open_store

    return {"fake": fake, "bucket": bucket, "private": private, "base_url": base_url,
            "store": open_store(f"gs://{bucket}/public"), "staging": open_store(f"gs://{private}/staging")}


# Great Expectations runs inside BigQuery and cannot over this fake (tests/warehouses/test_bigquery.py
# builds its batch): the runs here hand export and publish what validate hands them when the suite passes.


def _run(production, run_id: str = RUN_ID) -> dict:
    staged = tasks.stage(EXAMPLE, DAY, run_id)
    exported = tasks.export(EXAMPLE, staged, PASSED, run_id)
    return {"staged": staged, "exported": exported, "published": tasks.publish(EXAMPLE, staged, PASSED, exported, run_id)}


def test_stage_extract_publish_end_to_end(production):
    fake, store, base_url = production["fake"], production["store"], production["base_url"]

    run = _run(production)

    # -- stage: a dry run, then a query job into the day's partition --------------------------
    inserts = fake.job_inserts()
    dry, stage_job, extract_job = inserts[0]["configuration"], inserts[1]["configuration"], inserts[2]["configuration"]
    countries = sorted(geo_values("geo_country") - {"Other"})
    params = [
        {"name": "_pubdata_valid_country", "parameterType": {"type": "ARRAY", "arrayType": {"type": "STRING"}},
         "parameterValue": {"arrayValues": [{"value": c} for c in countries]}},
        {"name": "min_bucket_size", "parameterType": {"type": "INT64"}, "parameterValue": {"value": "5000"}},
        {"name": "submission_date", "parameterType": {"type": "DATE"}, "parameterValue": {"value": "2026-11-01"}},
    ]
    reviewed = (settings().project / "sql/telemetry_public/page_loads_by_country_v1.sql").read_text()
    q = stage_job["query"]
    # The reviewed query as BigQuery runs it: rolled up into Other by the pipeline (the valid
    # countries bound as an array parameter), the warehouse counts the distinct clients of every
    # row and drops rows under the minimum, whatever the query computes; parameters stay bound.
    assert "WITH _pubdata_cells AS (" in q["query"] and "UNNEST(@_pubdata_valid_country)" in q["query"]
    assert "COUNT(DISTINCT clients_daily.client_id) AS _pubdata_units" in q["query"]
    assert q["query"].endswith("HAVING COUNT(DISTINCT clients_daily.client_id) >= 5000")
    assert "@submission_date" in q["query"] and "--" not in q["query"] and reviewed != q["query"]
    assert dry["dryRun"] is True and dry["query"]["query"] == q["query"]
    assert sorted(dry["query"]["queryParameters"], key=lambda p: p["name"]) == params
    assert sorted(q["queryParameters"], key=lambda p: p["name"]) == params
    assert q["destinationTable"] == {"projectId": PROJECT, "datasetId": "pubdata_staging", "tableId": STAGING_TABLE}
    assert q["writeDisposition"] == "WRITE_TRUNCATE"
    assert "timePartitioning" not in q
    assert q["maximumBytesBilled"] == str(1024**4)  # the dataset's cap (1 TiB by default), under the deployment's ceiling
    assert stage_job["jobTimeoutMs"] == "30000"  # job_timeout, enforced by BigQuery too
    assert q["useLegacySql"] is False
    labels = {"pubdata_dataset": "telemetry_public_page_loads_by_country_v1", "pubdata_partition": "2026-11-01"}
    assert stage_job["labels"] == {**labels, "pubdata_step": "stage"}

    # -- export: an extract job into the private staging bucket, as Parquet ------------------
    staging = f"exports/telemetry_public/page_loads_by_country/v1/2026-11-01/{RUN_ID.replace(':', '_').replace('+', '_')}"
    assert extract_job["extract"] == {
        "sourceTable": {"projectId": PROJECT, "datasetId": "pubdata_staging", "tableId": STAGING_TABLE},
        "destinationUris": [f"gs://{production['private']}/staging/{staging}/extract/part-*.parquet"],
        "destinationFormat": "PARQUET",
        "compression": "ZSTD",
    }
    assert extract_job["labels"] == {**labels, "pubdata_step": "extract"}
    assert all(e["staged_key"].startswith(staging + "/") for e in run["exported"]["files"])
    # No rows came through the BigQuery API: no tabledata.list, no result pages of the staged table.
    assert not fake.calls("GET", r"/data$")

    # -- publish: the public layout on GCS, read back as the public would ---------------------
    index = requests.get(base_url + "all-datasets.json", timeout=10).json()
    entry = index["telemetry_public"]["page_loads_by_country"]["v1"]
    listing = requests.get(entry["files_uri"], timeout=10).json()
    assert list(listing) == ["2026-11-01"]
    rows = []
    for url in listing["2026-11-01"]:
        assert url.startswith(base_url + "api/v1/tables/telemetry_public/page_loads_by_country/v1/files/2026-11-01/")
        assert url.endswith("/000000000000.json")
        response = requests.get(url, timeout=10, stream=True)
        assert response.headers["Content-Encoding"] == "gzip"
        rows += json.loads(response.raw.read(decode_content=True))
    assert rows == EXPECTED  # every row, sorted by every column, though the shards were shuffled
    meta = requests.get(entry["metadata_uri"], timeout=10).json()
    assert meta["row_count"] == len(ROWS)
    assert meta["query"]["sha256"] == hashlib.sha256(reviewed.encode()).hexdigest()
    assert requests.get(meta["query"]["url"], timeout=10).text == reviewed
    assert [c["type"] for c in meta["schema"]][:2] == ["DATE", "STRING"]
    package = requests.get(entry["datapackage_uri"], timeout=10).json()
    assert [r["path"] for r in package["resources"]] == listing["2026-11-01"]

    # Nothing private ever reached the public bucket, and nothing is left behind: the extract
    # shards and the staged files are gone, and the run's staging table and its side table were dropped.
    public = store.list("")
    assert public and all(k.startswith("api/") or k == "all-datasets.json" for k in public), public
    assert production["staging"].list("") == []
    deleted = [c.path.rsplit("/", 1)[-1] for c in fake.calls("DELETE")]
    assert STAGING_TABLE in deleted and f"{STAGING_TABLE}__differencing" in deleted
    # The run record is in the private state bucket, where every worker and `pubdata status` read it.
    record = records.RunRecords.open(settings()).get(EXAMPLE, "2026-11-01")
    assert record.state == "published" and settings().state_url.startswith("gs://")


def test_rerun_gives_identical_files_and_leaves_nothing_stale(production):
    store = production["store"]
    first = _run(production)["published"]
    keys = store.list("api/v1/tables/telemetry_public/page_loads_by_country/v1/files/")
    data = {k: store.read(k).data for k in keys}

    second = _run(production)["published"]

    assert second["files"] == first["files"] and second["version"] == first["version"]
    assert {k: store.read(k).data for k in store.list("api/v1/tables/telemetry_public/page_loads_by_country/v1/files/")} == data
    assert production["staging"].list("") == []


def test_transient_errors_are_retried(production):
    fake = production["fake"]
    staged = tasks.stage(EXAMPLE, DAY, RUN_ID)
    fake.fail("POST", r"/jobs$", status=503, reason="backendError", times=1)
    fake.fail("GET", r"/jobs/pubdata_extract_", status=429, reason="rateLimitExceeded", times=1)
    fake.fail("GET", r"/jobs/pubdata_extract_", exception=requests.ConnectionError("connection reset by peer"), times=1)
    inserts_before = len(fake.calls("POST", r"/jobs$"))

    exported = tasks.export(EXAMPLE, staged, PASSED, RUN_ID)

    assert [f.times for f in fake.faults] == [0, 0, 0]  # every fault was met, and survived
    assert exported and len(fake.calls("POST", r"/jobs$")) == inserts_before + 2  # the 503, then the retry
    assert tasks.publish(EXAMPLE, staged, PASSED, exported, RUN_ID)["rows"] == len(ROWS)


def test_permanent_errors_fail_fast_and_say_what_to_fix(production):
    fake, store = production["fake"], production["store"]
    _run(production)  # a published day to keep intact
    public_before = {k: store.read(k).data for k in store.list("api/")}
    staged = tasks.stage(EXAMPLE, DAY, "manual__again")
    fake.fail("POST", r"/jobs$", status=403, reason="accessDenied",
              message="Access Denied: Table test-project:pubdata_staging: Permission bigquery.tables.export denied",
              times=5)
    inserts_before = len(fake.calls("POST", r"/jobs$"))

    with pytest.raises(ConfigurationError) as info:
        tasks.export(EXAMPLE, staged, PASSED, "manual__again")

    message = str(info.value)
    assert "accessDenied" in message and "roles/bigquery.jobUser" in message
    assert len(fake.calls("POST", r"/jobs$")) == inserts_before + 1  # not retried
    public_after = {k: store.read(k).data for k in store.list("api/")}
    assert public_after == public_before


def test_a_partition_changed_after_validation_is_not_exported(production):
    fake, store = production["fake"], production["store"]
    staged = tasks.stage(EXAMPLE, DAY, RUN_ID)
    fake.add_result("FARM_FINGERPRINT(TO_JSON_STRING(r))", [("f0_", "STRING")], [(f"{len(ROWS) + 1}:1:2",)])

    with pytest.raises(StagedTableChanged, match=f"{len(ROWS)} rows validated, {len(ROWS) + 1} now"):
        tasks.export(EXAMPLE, staged, PASSED, RUN_ID)

    assert store.list("api/") == [] and production["staging"].list("") == []
    fingerprint = [c for c in fake.calls("POST", r"/queries$") if "FARM_FINGERPRINT" in c.body["query"]][-1]
    assert f"pubdata_staging.{STAGING_TABLE}` AS r" in fingerprint.body["query"]  # the day's own table
