"""The public record next to the data: query.sql and its sha256, review links, the four policy answers
and verdict, schema with descriptions, row counts, per-file checksums, pipeline version; a
Frictionless Data Package that `frictionless` validates against the data itself; a schema.org
Dataset in JSON-LD, standalone and embedded in the dataset's page."""

from __future__ import annotations

import hashlib
import json
import re
import socket

import pytest
import requests

import pubdata
from pubdata.publishing.metadata import FIELD_TYPES
from pubdata.stores.local import LocalStore
from pubdata.warehouses.bigquery import BigQueryWarehouse
from pubdata.warehouses.duckdb import DuckDBWarehouse
from tests.support.catalog_browser import PUBLIC_JARGON
from tests.support.harness import DAY, Harness


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """Two published days of a dataset in JSON, CSV and Parquet, served over HTTP as the public sees it."""
    from pubdata.stores.serve import start

    port = _free_port()
    base = f"http://127.0.0.1:{port}/"
    store = LocalStore(tmp_path / "public")
    harness = Harness(tmp_path, store, base_url=base)
    decl = harness.declare("ds.transparent_v1", formats=("json", "csv", "parquet"), max_file_bytes=1024)
    harness.publish(decl, marker=1, n=30, day=DAY.replace(day=2))
    harness.publish(decl, marker=2, n=20)
    server = start(store, "127.0.0.1", port)
    yield harness, decl, base + decl.dataset_id.public_prefix + "/"
    server.shutdown()


def test_metadata_records_how_the_data_was_made(served):
    harness, decl, prefix = served
    meta = requests.get(prefix + "metadata.json", timeout=10).json()
    query = requests.get(prefix + "query.sql", timeout=10)

    assert query.content == decl.query.encode() == decl.query_path.read_bytes()
    assert meta["query"]["sha256"] == hashlib.sha256(query.content).hexdigest() == decl.query_sha256
    assert meta["query"]["url"] == prefix + "query.sql"
    assert meta["review_links"] == ["https://bugzilla.mozilla.org/show_bug.cgi?id=1414839"]
    answers = meta["policy"]["review_questions"]
    assert [a["number"] for a in answers] == [1, 2, 3, 4] and all(a["answer"] is False and a["reason"] for a in answers)
    assert meta["policy"]["verdict"] == "publishable"
    assert [(c["name"], c["description"]) for c in meta["schema"]] == [
        ("submission_date", "Day"), ("country", "A made-up cell"), ("client_count", "Clients of the cell"),
        ("marker", "Which publish wrote the row"),
    ]
    assert meta["row_count"] == 50
    assert {p: e["rows"] for p, e in meta["partitions"].items()} == {"2026-11-01": 20, "2026-11-02": 30}
    assert meta["pipeline_version"] == pubdata.__version__
    for entry in meta["partitions"].values():
        assert {f["format"] for f in entry["files"]} == {"json", "csv", "parquet"}
        for f in entry["files"]:
            body = requests.get(f["url"], timeout=10).content
            assert hashlib.sha256(body).hexdigest() == f["sha256"] and len(body) == f["bytes"]
            assert f"/{entry['version']}/" in f["url"]
    assert meta["links"]["datapackage"] == prefix + "datapackage.json"
    index = requests.get(prefix.split("api/")[0] + "all-datasets.json", timeout=10).json()
    assert index["ds"]["transparent"]["v1"]["datapackage_uri"] == prefix + "datapackage.json"


def test_frictionless_validates_the_package_against_the_data(served):
    from frictionless import validate

    harness, decl, prefix = served
    package = requests.get(prefix + "datapackage.json", timeout=10).json()
    meta = requests.get(prefix + "metadata.json", timeout=10).json()
    files = [f for p in sorted(meta["partitions"]) for f in meta["partitions"][p]["files"]]
    assert [r["path"] for r in package["resources"]] == [f["url"] for f in files]
    assert [r["hash"] for r in package["resources"]] == [f"sha256:{f['sha256']}" for f in files]
    fields = package["resources"][0]["schema"]["fields"]
    assert [(f["name"], f["type"]) for f in fields] == [
        ("submission_date", "date"), ("country", "string"), ("client_count", "integer"), ("marker", "integer"),
    ]
    assert fields[2]["constraints"] == {"minimum": 5000}

    # Every resource: rows read, typed and checked against the schema and its constraints.
    # frictionless counts bytes (and so checks hashes) only for formats it streams as text.
    report = validate(prefix + "datapackage.json", skip_errors=["byte-count", "hash-count"])
    assert report.valid, report.flatten(["resourcePath", "rowNumber", "fieldName", "type", "note"])
    assert sum(t.stats["rows"] for t in report.tasks) == 3 * 50
    csv_only = dict(package, resources=[r for r in package["resources"] if r["format"] == "csv"])
    full = validate(csv_only)
    assert full.valid, full.flatten(["resourcePath", "type", "note"])
    assert all(t.stats["sha256"] for t in full.tasks)

    # The checks are real: a row below the minimum bucket, or a changed file, is reported.
    csv_key = harness.key(csv_only["resources"][0]["path"])
    tampered = harness.store.read(csv_key).data.replace(b",5001,", b",4999,")
    assert tampered != harness.store.read(csv_key).data
    harness.store.write(csv_key, tampered, content_type="text/csv")
    broken = validate(dict(package, resources=csv_only["resources"][:1]))
    assert {e.type for t in broken.tasks for e in t.errors} >= {"constraint-error", "hash-count"}


def test_jsonld_describes_the_dataset_for_search_engines(served):
    harness, decl, prefix = served
    doc = requests.get(prefix + "dataset.jsonld", timeout=10).json()
    page = requests.get(prefix, timeout=10)  # index.html, as a directory URL resolves

    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    embedded = re.search(r'<script type="application/ld\+json">\n(.*?)\n</script>', page.text, re.S)
    assert embedded and json.loads(embedded.group(1)) == doc
    assert doc["@context"] == "https://schema.org/" and doc["@type"] == "Dataset"
    assert doc["name"] == decl.spec.friendly_name and doc["description"] == decl.spec.description
    assert doc["url"] == prefix + "index.html" and doc["identifier"] == decl.id
    assert doc["temporalCoverage"] == "2026-11-01/2026-11-02"
    assert doc["isBasedOn"] == prefix + "query.sql"
    assert [s["url"] for s in doc["subjectOf"]] == ["https://bugzilla.mozilla.org/show_bug.cgi?id=1414839"]
    assert {v["name"] for v in doc["variableMeasured"]} == {"submission_date", "country", "client_count", "marker"}
    downloads = doc["distribution"]
    assert all(d["@type"] == "DataDownload" and d["contentUrl"] and d["encodingFormat"] for d in downloads)
    for d in downloads:
        body = requests.get(d["contentUrl"], timeout=10)
        assert body.status_code == 200, d["contentUrl"]
        if "sha256" in d:
            assert hashlib.sha256(body.content).hexdigest() == d["sha256"]
    assert decl.spec.friendly_name in page.text
    assert prefix + "query.sql" in page.text


def test_dataset_page_lists_every_day_in_public_words(served):
    """The header counts two days, and both days' files are there to download; the policy and the
    types are said as a reader understands them."""
    harness, decl, prefix = served
    page = requests.get(prefix + "index.html", timeout=10).text
    meta = requests.get(prefix + "metadata.json", timeout=10).json()
    assert "2 day(s), 2026-11-01 to 2026-11-02" in page
    listed = re.findall(r'<td>(\d{4}-\d{2}-\d{2})</td><td><a href="([^"]+)">', page)
    assert sorted({day for day, _ in listed}) == sorted(meta["partitions"]) == ["2026-11-01", "2026-11-02"]
    assert {url for _, url in listed} == {f["url"] for p in meta["partitions"].values() for f in p["files"]}
    for _, url in listed:
        assert requests.get(url, timeout=10).status_code == 200, url
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<script\b.*?</script>", " ", page, flags=re.S))
    assert not PUBLIC_JARGON.search(text), PUBLIC_JARGON.search(text)
    assert "Every row stands for at least 5,000 different clients" in text
    assert re.search(r"<code>client_count</code></td><td>integer</td><td>a JSON number, whole</td>", page)


def test_script_end_tags_in_text_cannot_break_out_of_the_jsonld(tmp_path):
    from pubdata.publishing.metadata import landing_page

    harness = Harness(tmp_path, LocalStore(tmp_path / "public"))
    decl = harness.declare("ds.tricky_v1")
    harness.publish(decl, marker=1, n=2)
    meta = harness.read_json(f"{decl.dataset_id.public_prefix}/metadata.json")
    meta["description"] = 'Evil </script><script>alert(1)</script> & "quotes"'
    html = landing_page(meta, {"@type": "Dataset", "description": meta["description"]}, meta["links"])
    assert html.count("</script>") == 1
    assert "<script>alert(1)" not in html


@pytest.mark.parametrize("warehouse, sql_type, expected", [
    (BigQueryWarehouse, "INT64", "integer"), (DuckDBWarehouse, "BIGINT", "integer"), (DuckDBWarehouse, "HUGEINT", "integer"),
    (BigQueryWarehouse, "FLOAT64", "number"), (DuckDBWarehouse, "DECIMAL(18,3)", "number"),
    (BigQueryWarehouse, "NUMERIC", "number"), (BigQueryWarehouse, "BOOL", "boolean"), (DuckDBWarehouse, "DATE", "date"),
    (BigQueryWarehouse, "TIMESTAMP", "datetime"), (DuckDBWarehouse, "TIMESTAMP WITH TIME ZONE", "datetime"),
    (DuckDBWarehouse, "VARCHAR", "string"), (BigQueryWarehouse, "STRING", "string"),
    (BigQueryWarehouse, "ARRAY<STRING>", "array"), (DuckDBWarehouse, "VARCHAR[]", "array"),
    (BigQueryWarehouse, "STRUCT<a INT64>", "object"), (DuckDBWarehouse, "STRUCT(a INTEGER)", "object"),
    (BigQueryWarehouse, "GEOGRAPHY", "any"),
])
def test_warehouse_types_map_to_table_schema_types(warehouse, sql_type, expected):
    assert FIELD_TYPES.get(warehouse.type_family(sql_type), "any") == expected
