"""Public file formats: split one exported file into parts of at most `max_file_bytes`.

Parts are named like BigQuery's wildcard exports, which Mozilla's public-data API kept:
000000000000.json, 000000000001.json, ... Splitting only cuts between rows, never reorders
them, and writes nothing that depends on time or machine, so identical input gives identical
parts, byte for byte:

- json: every part is a JSON array of row objects, one row per line (`[`, rows joined by `,\\n`,
  `]`); each row keeps the exact bytes the warehouse wrote.
- csv: every part repeats the header; rows keep their bytes (quoted newlines stay inside a row).
- parquet: parts are rewritten with pyarrow (zstd) in row slices sized from the first try.

JSON and CSV parts never exceed the limit unless a single row does (that row gets a part of its
own); Parquet parts are compressed, so their size is known only after writing: a part that came
out too large is rewritten with fewer rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
# Text formats are stored with gzip content-encoding on GCS (decompressed for clients that
# do not accept gzip); Parquet is compressed inside the file already.
COMPRESSED = {"json": True, "csv": True, "parquet": False}
_READ_CHUNK = 1024 * 1024


class FormatError(ValueError):
    """An exported file is not what its format promises (a warehouse bug, not a data problem)."""


@dataclass(frozen=True)
class Part:
    name: str   # 000000000000.json
    path: Path
    rows: int
    bytes: int


def part_name(index: int, fmt: str) -> str:
    return f"{index:012d}.{fmt}"


def split(source: Path, fmt: str, max_bytes: int, out_dir: Path) -> list[Part]:
    """Split `source` (one whole export in `fmt`) into numbered parts under out_dir.

    An empty export still gives one part (`[]`, a header-only CSV, an empty Parquet file), so
    every published partition has at least one file to list.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    out_dir.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        return _split_text(_json_rows(source), b"[\n", b",\n", b"\n]\n", b"[]\n", max_bytes, out_dir, fmt)
    if fmt == "csv":
        rows = _csv_records(source)
        header = next(rows, None)
        if header is None:
            raise FormatError(f"{source}: empty CSV export, expected at least a header row")
        head = header + b"\n"
        return _split_text(rows, head, b"\n", b"\n", head, max_bytes, out_dir, fmt)
    if fmt == "parquet":
        return _split_parquet(source, max_bytes, out_dir)
    raise ValueError(f"unknown format {fmt!r}: use json, csv or parquet")


def _split_text(rows: Iterator[bytes], head: bytes, sep: bytes, tail: bytes, empty: bytes,
                max_bytes: int, out_dir: Path, fmt: str) -> list[Part]:
    parts: list[Part] = []
    fh = None
    size = count = 0

    def close() -> None:
        nonlocal fh
        if fh is not None:
            fh.write(tail)
            fh.close()
            parts.append(Part(part_name(len(parts), fmt), out_dir / part_name(len(parts), fmt), count, size + len(tail)))
            fh = None

    for row in rows:
        if fh is not None and size + len(sep) + len(row) + len(tail) > max_bytes:
            close()
        if fh is None:
            fh = open(out_dir / part_name(len(parts), fmt), "wb")
            fh.write(head)
            size, count = len(head), 0
        else:
            fh.write(sep)
            size += len(sep)
        fh.write(row)
        size += len(row)
        count += 1
    close()
    if not parts:
        path = out_dir / part_name(0, fmt)
        path.write_bytes(empty)
        parts.append(Part(path.name, path, 0, len(empty)))
    return parts


def _json_rows(source: Path) -> Iterator[bytes]:
    """The exact bytes of each element of a top-level JSON array, streamed.

    The warehouses write one row object per line (DuckDB indents it with a tab): those files are
    cut at line ends, several times faster than decoding every row. Any other layout goes
    through the JSON decoder.
    """
    with open(source, "rb") as fh:
        first, second = fh.readline(), fh.readline()
    if first == b"[\n" and (second in (b"]\n", b"]") or _row_line(second) is not None):
        return _json_lines(source)
    return _json_decoded(source)


def _row_line(line: bytes) -> bytes | None:
    """The row object on one line of a one-row-per-line array, or None if the line is not one."""
    row = line.rstrip(b"\n").lstrip(b"\t")
    if row.endswith(b","):
        row = row[:-1]
    # A raw newline cannot occur inside a JSON string, so an object that opens and closes on
    # one line is one whole row.
    return row if row.startswith(b"{") and row.endswith(b"}") else None


def _json_lines(source: Path) -> Iterator[bytes]:
    with open(source, "rb") as fh:
        fh.readline()  # "["
        for number, line in enumerate(fh, start=2):
            row = _row_line(line)
            if row is not None:
                yield row
            elif line.rstrip(b"\n") == b"]":
                if fh.read(1).strip():
                    raise FormatError(f"{source}: JSON export goes on after its closing ']' (line {number})")
                return
            else:
                raise FormatError(f"{source}: line {number} of the JSON export is not one row object")
    raise FormatError(f"{source}: JSON export ends before its closing ']'")


def _json_decoded(source: Path) -> Iterator[bytes]:
    decoder = json.JSONDecoder()
    with open(source, encoding="utf-8") as fh:
        buf, pos, eof, started = "", 0, False, False
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos >= len(buf) or (not eof and len(buf) - pos < 2):
                if eof:
                    raise FormatError(f"{source}: JSON export ends before its closing ']'")
                more = fh.read(_READ_CHUNK)
                eof = more == ""
                buf, pos = buf[pos:] + more, 0
                continue
            char = buf[pos]
            if not started:
                if char != "[":
                    raise FormatError(f"{source}: JSON export is not an array (starts with {char!r})")
                started, pos = True, pos + 1
                continue
            if char == "]":
                return
            if char == ",":
                pos += 1
                continue
            try:
                _value, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if eof:
                    raise FormatError(f"{source}: invalid JSON near character {pos} of the last chunk") from None
                more = fh.read(_READ_CHUNK)
                eof = more == ""
                buf, pos = buf[pos:] + more, 0
                continue
            if not eof and len(buf) - end < 64:  # a number may go on (1.5|e300) in the next chunk
                more = fh.read(_READ_CHUNK)
                eof = more == ""
                buf, pos = buf[pos:] + more, 0
                continue
            yield buf[pos:end].encode("utf-8")
            pos = end


def _csv_records(source: Path) -> Iterator[bytes]:
    """CSV records without their line ending; a quoted field may span lines (RFC 4180)."""
    with open(source, "rb") as fh:
        record = b""
        for line in fh:
            record += line
            if record.count(b'"') % 2 == 0:  # doubled quotes keep the parity
                yield record.rstrip(b"\r\n")
                record = b""
        if record:
            raise FormatError(f"{source}: CSV export ends inside a quoted field")


def _split_parquet(source: Path, max_bytes: int, out_dir: Path) -> list[Part]:
    import pyarrow.parquet as pq

    table = pq.read_table(source)
    total = source.stat().st_size
    if total <= max_bytes or table.num_rows <= 1:
        dest = out_dir / part_name(0, "parquet")
        _write_parquet(table, dest)
        return [Part(dest.name, dest, table.num_rows, dest.stat().st_size)]
    parts: list[Part] = []
    per_part = max(1, int(table.num_rows * max_bytes / total))
    start = 0
    while start < table.num_rows:
        rows = min(per_part, table.num_rows - start)
        dest = out_dir / part_name(len(parts), "parquet")
        while True:
            _write_parquet(table.slice(start, rows), dest)
            size = dest.stat().st_size
            if size <= max_bytes or rows == 1:
                break
            rows = max(1, int(rows * max_bytes / size * 0.9))
        parts.append(Part(dest.name, dest, rows, size))
        start += rows
    return parts


def _write_parquet(table, dest: Path) -> None:
    import pyarrow.parquet as pq

    pq.write_table(table, dest, compression="zstd")
