"""Public file formats: splitting at export.max_file_bytes with 12-digit names, deterministic order
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

from pubdata import formats
from pubdata.formats import FormatError, split
from pubdata.stores.local import LocalStore
from tests.gcs_emulator import gcs_endpoint, gcs_store  # noqa: F401
from tests.publishing import DAY, Harness, expected_rows

ROWS = [{"day": "2026-11-01", "country": f"C{i:03d}", "n": 5000 + i * 7, "note": None if i % 5 else "a, \"b\"\nc"}
        for i in range(300)]


def _json_array_duckdb_style(rows) -> str:
    # DuckDB's COPY ... (FORMAT json, ARRAY true): tab-indented rows.
    return "[\n" + ",\n".join("\t" + json.dumps(r, separators=(",", ":")) for r in rows) + "\n]\n"


def _json_array_bigquery_style(rows) -> str:
    # The BigQuery warehouse's streaming writer: one row per line, no indentation.
    return "[" + "".join(("\n" if i == 0 else ",\n") + json.dumps(r) for i, r in enumerate(rows)) + "\n]\n"


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("style", [_json_array_duckdb_style, _json_array_bigquery_style])
def test_json_parts_are_arrays_under_the_limit_in_order(tmp_path, style):
    source = tmp_path / "whole.json"
    source.write_text(style(ROWS), encoding="utf-8")

    parts = split(source, "json", 2048, tmp_path / "out")

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


def test_json_rows_keep_their_bytes_across_read_chunks(tmp_path, monkeypatch):
    """Rows that straddle the reader's chunks (numbers included) come out byte for byte."""
    monkeypatch.setattr(formats, "_READ_CHUNK", 7)
    rows = [{"a": 123456789, "s": "é✓\"\\"}, 1.5e300, -0, "x", [1, [2, {"b": None}]], {"big": 12345678901234567890}]
    source = tmp_path / "whole.json"
    source.write_text("[ " + " ,\n ".join(json.dumps(r, ensure_ascii=False) for r in rows) + " ]", encoding="utf-8")

    parts = split(source, "json", 10_000, tmp_path / "out")

    assert len(parts) == 1
    text = parts[0].path.read_text(encoding="utf-8")
    assert text == "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n]\n"


def test_a_row_larger_than_the_limit_gets_a_part_of_its_own(tmp_path):
    rows = [{"i": 1}, {"i": 2, "pad": "x" * 500}, {"i": 3}]
    source = tmp_path / "whole.json"
    source.write_text(json.dumps(rows))

    parts = split(source, "json", 100, tmp_path / "out")

    assert [json.loads(p.path.read_bytes()) for p in parts] == [[rows[0]], [rows[1]], [rows[2]]]


def test_empty_exports_still_give_one_file(tmp_path):
    (tmp_path / "e.json").write_text("[]\n")
    (tmp_path / "e.csv").write_text("a,b\n")
    pq.write_table(pa.table({"a": pa.array([], pa.int64())}), tmp_path / "e.parquet")

    json_parts = split(tmp_path / "e.json", "json", 1024, tmp_path / "j")
    csv_parts = split(tmp_path / "e.csv", "csv", 1024, tmp_path / "c")
    parquet_parts = split(tmp_path / "e.parquet", "parquet", 1024, tmp_path / "p")

    assert [(p.name, p.rows, p.path.read_bytes()) for p in json_parts] == [("000000000000.json", 0, b"[]\n")]
    assert [(p.name, p.rows, p.path.read_bytes()) for p in csv_parts] == [("000000000000.csv", 0, b"a,b\n")]
    assert [(p.name, p.rows) for p in parquet_parts] == [("000000000000.parquet", 0)]
    assert pq.read_table(parquet_parts[0].path).column_names == ["a"]


def test_broken_exports_are_refused(tmp_path):
    (tmp_path / "obj.json").write_text('{"a": 1}')
    (tmp_path / "cut.json").write_text('[{"a": 1}, {"a": ')
    (tmp_path / "cut.csv").write_text('a,b\n1,"open\n')
    with pytest.raises(FormatError, match="not an array"):
        split(tmp_path / "obj.json", "json", 1024, tmp_path / "o1")
    with pytest.raises(FormatError):
        split(tmp_path / "cut.json", "json", 1024, tmp_path / "o2")
    with pytest.raises(FormatError, match="inside a quoted field"):
        split(tmp_path / "cut.csv", "csv", 1024, tmp_path / "o3")


def test_csv_parts_repeat_the_header_and_keep_quoted_newlines(tmp_path):
    source = tmp_path / "whole.csv"
    with open(source, "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(list(ROWS[0]))
        for r in ROWS:
            writer.writerow(["" if v is None else v for v in r.values()])

    parts = split(source, "csv", 1500, tmp_path / "out")

    assert len(parts) > 3
    rows = []
    for part in parts:
        data = part.path.read_bytes()
        assert len(data) == part.bytes <= 1500
        records = list(csv.reader(io.StringIO(data.decode())))
        assert records[0] == list(ROWS[0])
        assert len(records) - 1 == part.rows
        rows += records[1:]
    assert rows == [["" if v is None else str(v) for v in r.values()] for r in ROWS]
    assert any("\n" in cell for row in rows for cell in row)


def test_parquet_parts_stay_under_the_limit_in_order(tmp_path):
    table = pa.table({"i": list(range(20_000)), "s": [f"row-{i}-" + "x" * (i % 37) for i in range(20_000)]})
    source = tmp_path / "whole.parquet"
    pq.write_table(table, source, compression="zstd")

    parts = split(source, "parquet", 40_000, tmp_path / "out")

    assert len(parts) > 2
    assert all(p.path.stat().st_size == p.bytes <= 40_000 for p in parts)
    assert pa.concat_tables([pq.read_table(p.path) for p in parts]).equals(table)
    assert sum(p.rows for p in parts) == 20_000
    again = split(source, "parquet", 40_000, tmp_path / "again")
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


@pytest.mark.parametrize("style", [_json_array_duckdb_style, _json_array_bigquery_style])
def test_row_per_line_exports_split_like_the_decoder_would(tmp_path, style, monkeypatch):
    """The line-cutting path and the decoder give the same parts, byte for byte."""
    source = tmp_path / "whole.json"
    source.write_text(style(ROWS), encoding="utf-8")
    fast = split(source, "json", 4096, tmp_path / "fast")
    monkeypatch.setattr(formats, "_json_lines", formats._json_decoded)
    slow = split(source, "json", 4096, tmp_path / "slow")
    assert [(p.name, p.rows, p.path.read_bytes()) for p in fast] == [(p.name, p.rows, p.path.read_bytes()) for p in slow]


@pytest.mark.parametrize("text, words", [
    ('[\n\t{"a":1},\n\t{"a":2},\n', "ends before its closing"),
    ('[\n\t{"a":1},\n\t{"a":\n2}\n]\n', "line 3"),
    ('[\n\t{"a":1}\n]\n{"b":2}\n', "goes on after"),
])
def test_a_broken_row_per_line_export_is_refused(tmp_path, text, words):
    (tmp_path / "bad.json").write_text(text)
    with pytest.raises(FormatError, match=words):
        split(tmp_path / "bad.json", "json", 1024, tmp_path / "out")


def test_an_empty_row_per_line_export_gives_an_empty_array(tmp_path):
    (tmp_path / "e.json").write_text("[\n]\n")
    parts = split(tmp_path / "e.json", "json", 1024, tmp_path / "out")
    assert [(p.rows, p.path.read_bytes()) for p in parts] == [(0, b"[]\n")]


# -- the streaming writers ------------------------------------------------------------------------


def _rows_with_ends(rows: list[dict], fmt: str) -> list[bytes]:
    return [json.dumps(r, separators=(",", ":")).encode() + formats.ROW_END[fmt] for r in rows]


@pytest.mark.parametrize("batch", [1, 7, 64, 10_000])
def test_text_parts_do_not_depend_on_how_rows_arrive_in_batches(tmp_path, batch):
    """Arrow batches of any size give the parts `split` gives for the same rows, checksums included."""
    rows = _rows_with_ends(ROWS, "json")
    whole = tmp_path / "whole.json"
    whole.write_bytes(b"[\n" + b"".join(rows)[:-2] + b"\n]\n")
    expected = split(whole, "json", 2048, tmp_path / "split")

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
