"""Public file formats: parts of at most export.max_file_bytes with 12-digit names, deterministic order
and bytes, gzip content-encoding of JSON and CSV on GCS (fake-gcs-server)."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from pubdata.publishing import parts as formats
from pubdata.publishing.parts import FormatError
from pubdata.stores.local import LocalStore
from tests.support.harness import DAY, Harness, expected_rows

ROWS = [{"day": "2026-11-01", "country": f"C{i:03d}", "n": 5000 + i * 7, "note": None if i % 5 else "a, \"b\"\nc"}
        for i in range(300)]


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rows_with_ends(rows: list[dict], fmt: str) -> list[bytes]:
    return [json.dumps(r, separators=(",", ":")).encode() + formats.ROW_END[fmt] for r in rows]


def json_parts(rows: list, max_bytes: int, out) -> list[formats.Part]:
    writer = formats.TextParts("json", max_bytes, out)
    if rows:
        writer.add(pa.array(_rows_with_ends(rows, "json"), pa.binary()))
    return writer.finish()


def csv_parts(header: list[str], records: list[list[str]], max_bytes: int, out) -> list[formats.Part]:
    writer = formats.TextParts("csv", max_bytes, out, header=",".join(map(formats.csv_field, header)).encode())
    lines = [(",".join(formats.csv_field(v) for v in r) + "\n").encode() for r in records]
    if lines:
        writer.add(pa.array(lines, pa.binary()))
    return writer.finish()


def parquet_parts(table: pa.Table, max_bytes: int, out, chunk: int = 4096) -> list[formats.Part]:
    writer = formats.ParquetParts(table.schema, max_bytes, out)
    for batch in table.to_batches(max_chunksize=chunk):
        writer.add(batch)
    return writer.finish()


def test_json_parts_are_arrays_under_the_limit_in_order(tmp_path):
    parts = json_parts(ROWS, 2048, tmp_path / "out")

    assert len(parts) > 5
    assert [p.name for p in parts] == [f"{i:012d}.json" for i in range(len(parts))]
    rows = []
    for part in parts:
        data = part.path.read_bytes()
        assert len(data) == part.bytes <= 2048
        assert data.startswith(b"[\n") and data.endswith(b"\n]\n")
        chunk = json.loads(data)
        assert len(chunk) == part.rows
        rows += chunk
    assert rows == ROWS


def test_a_row_larger_than_the_limit_gets_a_part_of_its_own(tmp_path):
    rows = [{"i": 1}, {"i": 2, "pad": "x" * 500}, {"i": 3}]

    parts = json_parts(rows, 100, tmp_path / "out")

    assert [json.loads(p.path.read_bytes()) for p in parts] == [[rows[0]], [rows[1]], [rows[2]]]


def test_empty_exports_still_give_one_file(tmp_path):
    json_parts_ = json_parts([], 1024, tmp_path / "j")
    csv_parts_ = csv_parts(["a", "b"], [], 1024, tmp_path / "c")
    parquet_parts_ = parquet_parts(pa.table({"a": pa.array([], pa.int64())}), 1024, tmp_path / "p")

    assert [(p.name, p.rows, p.path.read_bytes()) for p in json_parts_] == [("000000000000.json", 0, b"[]\n")]
    assert [(p.name, p.rows, p.path.read_bytes()) for p in csv_parts_] == [("000000000000.csv", 0, b"a,b\n")]
    assert [(p.name, p.rows) for p in parquet_parts_] == [("000000000000.parquet", 0)]
    assert pq.read_table(parquet_parts_[0].path).column_names == ["a"]


def test_csv_parts_repeat_the_header_and_keep_quoted_newlines(tmp_path):
    records = [["" if v is None else str(v) for v in r.values()] for r in ROWS]

    parts = csv_parts(list(ROWS[0]), records, 1500, tmp_path / "out")

    assert len(parts) > 3
    rows = []
    for part in parts:
        data = part.path.read_bytes()
        assert len(data) == part.bytes <= 1500
        parsed = list(csv.reader(io.StringIO(data.decode())))
        assert parsed[0] == list(ROWS[0])
        assert len(parsed) - 1 == part.rows
        rows += parsed[1:]
    assert rows == records
    assert any("\n" in cell for row in rows for cell in row)


def test_parquet_parts_stay_under_the_limit_in_order(tmp_path):
    table = pa.table({"i": list(range(20_000)), "s": [f"row-{i}-" + "x" * (i % 37) for i in range(20_000)]})

    parts = parquet_parts(table, 40_000, tmp_path / "out")

    assert len(parts) > 2
    assert all(p.path.stat().st_size == p.bytes <= 40_000 for p in parts)
    assert pa.concat_tables([pq.read_table(p.path) for p in parts]).equals(table)
    assert sum(p.rows for p in parts) == 20_000
    again = parquet_parts(table, 40_000, tmp_path / "again")
    assert [_sha(p.path) for p in again] == [_sha(p.path) for p in parts]


def test_published_formats_are_split_ordered_and_byte_identical_on_rerun(tmp_path):
    store = LocalStore(tmp_path / "public")
    harness = Harness(tmp_path, store)
    decl = harness.declare("ds.all_formats_v1", formats=("json", "csv", "parquet"), max_file_bytes=1024)

    first = harness.publish(decl, marker=1, n=60)
    by_format = {fmt: [f for f in first["files"] if f["format"] == fmt] for fmt in ("json", "csv", "parquet")}
    assert len(by_format["json"]) > 2 and len(by_format["csv"]) > 1 and len(by_format["parquet"]) >= 1
    for fmt, files in by_format.items():
        assert [f["name"] for f in files] == [f"{i:012d}.{fmt}" for i in range(len(files))]
        for f in files:
            data = store.read(harness.key(f["url"])).data
            assert len(data) == f["bytes"] and hashlib.sha256(data).hexdigest() == f["sha256"]
            assert f["bytes"] <= 1024 or fmt == "parquet"

    rows = [r for f in by_format["json"] for r in json.loads(store.read(harness.key(f["url"])).data)]
    assert rows == expected_rows(1, 60)
    csv_rows = [r for f in by_format["csv"] for r in list(csv.DictReader(io.StringIO(store.read(harness.key(f["url"])).data.decode())))]
    assert [r["country"] for r in csv_rows] == [r["country"] for r in rows]
    parquet = pa.concat_tables([pq.read_table(io.BytesIO(store.read(harness.key(f["url"])).data)) for f in by_format["parquet"]])
    assert parquet.column("country").to_pylist() == [r["country"] for r in rows]

    listing = harness.listing(decl)
    assert listing == {DAY.isoformat(): [f["url"] for f in by_format["json"]]}  # Mozilla's {date: [urls]}

    second = harness.publish(decl, marker=1, n=60, run_key="another-run")
    assert second["files"] == first["files"]  # same bytes, same checksums, same URLs
    assert harness.listing(decl) == listing


@pytest.mark.gcs
def test_on_gcs_json_and_csv_are_gzip_encoded_and_parquet_is_not(tmp_path, gcs_store, gcs_endpoint):
    harness = Harness(tmp_path, gcs_store, base_url=f"{gcs_endpoint}/{gcs_store.bucket_name}/")
    decl = harness.declare("ds.gcs_formats_v1", formats=("json", "csv", "parquet"), max_file_bytes=2048)

    result = harness.publish(decl, marker=3, n=40)

    rows = []
    for f in result["files"]:
        key = harness.key(f["url"])
        blob = gcs_store._bucket().get_blob(key)
        assert blob.content_encoding == ("gzip" if f["format"] in ("json", "csv") else None), key
        assert blob.content_type == formats.CONTENT_TYPES[f["format"]]
        response = requests.get(f["url"], timeout=10, stream=True)  # the public, path-style URL
        assert response.status_code == 200
        raw = response.raw.read(decode_content=False)
        body = gzip.decompress(raw) if f["format"] != "parquet" else raw
        assert hashlib.sha256(body).hexdigest() == f["sha256"] and len(body) == f["bytes"]
        if f["format"] == "json":
            rows += json.loads(body)
    assert rows == expected_rows(3, 40)


# -- the streaming writers ------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 7, 64, 10_000])
def test_text_parts_do_not_depend_on_how_rows_arrive_in_batches(tmp_path, batch):
    """Arrow batches of any size give the parts one batch gives for the same rows, checksums included."""
    rows = _rows_with_ends(ROWS, "json")
    expected = json_parts(ROWS, 2048, tmp_path / "whole")

    writer = formats.TextParts("json", 2048, tmp_path / "stream")
    for i in range(0, len(rows), batch):
        writer.add(pa.array([b"junk,\n"] + rows[i:i + batch], pa.binary()).slice(1))  # a batch at an offset
    parts = writer.finish()

    assert [(p.name, p.rows, p.bytes, p.sha256) for p in parts] == [(p.name, p.rows, p.bytes, p.sha256) for p in expected]
    assert [p.path.read_bytes() for p in parts] == [p.path.read_bytes() for p in expected]
    assert all(p.sha256 == _sha(p.path) and p.bytes == p.path.stat().st_size for p in parts)


def test_text_parts_take_sliced_and_string_arrays(tmp_path):
    rows = [r.decode() for r in _rows_with_ends(ROWS[:40], "json")]
    array = pa.array(["junk,\n"] * 3 + rows, pa.string()).slice(3)
    writer = formats.TextParts("json", 10_000, tmp_path / "out")
    writer.add(array)
    (part,) = writer.finish()
    assert json.loads(part.path.read_bytes()) == ROWS[:40]


def test_a_row_without_its_separator_is_refused(tmp_path):
    writer = formats.TextParts("json", 10_000, tmp_path / "out")
    with pytest.raises(FormatError, match="does not end with"):
        writer.add(pa.array([b'{"a":1}'], pa.binary()))
    with pytest.raises(FormatError, match="null row"):
        writer.add(pa.array([None], pa.binary()))


def test_csv_fields_are_quoted_as_duckdb_quotes_them():
    assert [formats.csv_field(v) for v in ["plain", "", "a,b", 'say "hi"', "x\ny", "cr\rx", "#c", "a#b", " lead", "\t"]] == [
        "plain", '""', '"a,b"', '"say ""hi"""', '"x\ny"', '"cr\rx"', '"#c"', '"a#b"', " lead", "\t"]


def _mixed_table(n: int) -> pa.Table:
    """Compressible rows first, then incompressible ones: the size per row learnt early is wrong later."""
    import random

    rng = random.Random(7)
    text = ["same" * 20 if i < n // 2 else "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(80))
            for i in range(n)]
    return pa.table({"i": pa.array(range(n), pa.int64()), "s": text})


@pytest.mark.parametrize("row_group_rows", [500, 4096])
def test_parquet_parts_stay_under_the_limit_when_compression_changes(tmp_path, row_group_rows):
    table = _mixed_table(12_000)
    writer = formats.ParquetParts(table.schema, 60_000, tmp_path / "out", row_group_rows=row_group_rows)
    for batch in table.to_batches(max_chunksize=1000):
        writer.add(batch)
    parts = writer.finish()

    assert len(parts) > 3
    assert [p.name for p in parts] == [f"{i:012d}.parquet" for i in range(len(parts))]
    assert all(p.path.stat().st_size == p.bytes <= 60_000 and p.sha256 == _sha(p.path) for p in parts)
    assert pa.concat_tables([pq.read_table(p.path) for p in parts]).equals(table)
    assert [p.rows for p in parts] == [pq.ParquetFile(p.path).metadata.num_rows for p in parts]
    assert not list((tmp_path / "out").glob("*.rewrite"))


def test_parquet_parts_do_not_depend_on_how_rows_arrive_in_batches(tmp_path):
    table = _mixed_table(6_000)
    shas = []
    for chunk in (1, 333, 6_000):
        writer = formats.ParquetParts(table.schema, 40_000, tmp_path / f"out{chunk}", row_group_rows=1000)
        for batch in table.to_batches(max_chunksize=chunk):
            writer.add(batch)
        shas.append([p.sha256 for p in writer.finish()])
    assert shas[0] == shas[1] == shas[2] and len(shas[0]) > 1


def test_a_parquet_row_larger_than_the_limit_gets_a_part_of_its_own(tmp_path):
    import random

    rng = random.Random(3)
    big = "".join(rng.choice("0123456789abcdef") for _ in range(20_000))
    table = pa.table({"s": ["a", big, "b"]})
    writer = formats.ParquetParts(table.schema, 4096, tmp_path / "out", row_group_rows=3)
    writer.add(table)
    parts = writer.finish()
    assert [pq.read_table(p.path).column("s").to_pylist() for p in parts] == [["a"], [big], ["b"]]


def test_parquet_parts_fit_when_footers_outweigh_small_row_groups(tmp_path):
    """Forty string columns in ten-row groups: metadata is a third of each part, and parts are
    cut down a row group at a time until they fit."""
    import random

    rng = random.Random(2)
    table = pa.table({f"c{i}": ["".join(rng.choice("abcdef0123") for _ in range(30)) for _ in range(600)] for i in range(40)})
    writer = formats.ParquetParts(table.schema, 150_000, tmp_path / "out", row_group_rows=10)
    for batch in table.to_batches(max_chunksize=64):
        writer.add(batch)
    parts = writer.finish()

    assert len(parts) > 3 and all(p.bytes <= 150_000 for p in parts)
    assert pa.concat_tables([pq.read_table(p.path) for p in parts]).equals(table)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in parts]
