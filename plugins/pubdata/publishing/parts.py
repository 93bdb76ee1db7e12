"""Public file formats: numbered parts of at most `max_file_bytes`, written as the rows stream in.

Parts are named like BigQuery's wildcard exports (000000000000.json, ...); rows are cut between
rows, never reordered, and nothing written depends on time, machine or batch boundaries, so
identical rows give identical parts. The writers hold at most one batch (one row group for
Parquet) and hash each part as they write it. A Parquet part's size is known only once written:
one that comes out too large is rewritten without its last row group, which starts the next.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pubdata.errors import InfrastructureError

CONTENT_TYPES = {
    "json": "application/json",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
# Text formats are stored with gzip content-encoding on GCS (decompressed for clients that
# do not accept gzip); Parquet is compressed inside the file already.
COMPRESSED = {"json": True, "csv": True, "parquet": False}
# What ends each row handed to TextParts: the separator to the next row of the part.
ROW_END = {"json": b",\n", "csv": b"\n"}
PARQUET_ROW_GROUP_ROWS = 65_536
_READ_CHUNK = 1024 * 1024


class FormatError(InfrastructureError):
    """Rows handed to a part writer are not what its format promises (a bug, not a data problem)."""


@dataclass(frozen=True)
class Part:
    name: str   # 000000000000.json
    path: Path
    rows: int
    bytes: int
    sha256: str  # of the part's bytes


def part_name(index: int, fmt: str) -> str:
    return f"{index:012d}.{fmt}"


def csv_field(text: str) -> str:
    """One CSV field as DuckDB's CSV writer quotes it (the header goes through this too)."""
    if text == "" or any(c in text for c in ',"\r\n#'):
        return '"' + text.replace('"', '""') + '"'
    return text


class TextParts:
    """JSON or CSV parts written from batches of rows; every row ends with ROW_END[fmt].

    `add` takes a pyarrow string or binary array without nulls; the rows' bytes go to disk as
    they are, a slice of the batch's buffer at a time.
    """

    def __init__(self, fmt: str, max_bytes: int, out_dir: Path, header: bytes = b""):
        if fmt not in ROW_END:
            raise ValueError(f"TextParts writes json or csv, not {fmt!r}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.fmt, self.max_bytes, self.out_dir = fmt, max_bytes, Path(out_dir)
        self.end = ROW_END[fmt]
        if fmt == "json":
            self.head, self.final, self.empty = b"[\n", b"\n]\n", b"[]\n"
        else:
            self.head, self.final, self.empty = header + b"\n", self.end, header + b"\n"
        self.parts: list[Part] = []
        self._fh: Any = None
        self._hash: Any = None
        self._size = self._rows = 0
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, rows: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if rows.null_count:
            raise FormatError(f"{self.fmt} export: the warehouse returned {rows.null_count} null row(s)")
        if pa.types.is_string(rows.type) or pa.types.is_large_string(rows.type):
            rows = rows.view(pa.large_binary() if pa.types.is_large_string(rows.type) else pa.binary())
        wide = pa.types.is_large_binary(rows.type)
        _, offsets_buf, data_buf = rows.buffers()[:3]
        fmt = "<q" if wide else "<i"
        width = 8 if wide else 4

        def offset(i: int) -> int:
            return struct.unpack_from(fmt, offsets_buf, (rows.offset + i) * width)[0]

        offsets = pa.Array.from_buffers(pa.int64() if wide else pa.int32(), len(rows) + 1, [None, offsets_buf],
                                        offset=rows.offset)
        data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
        i, n = 0, len(rows)
        while i < n:
            if self._fh is None:
                self._open()
            pending = len(self.end) if self._rows else 0
            budget = self.max_bytes - self._size - pending + len(self.end) - len(self.final)
            start = offset(i)
            fit = pc.sum(pc.less_equal(offsets.slice(i + 1, n - i), start + budget)).as_py() or 0
            if fit == 0:
                if self._rows:
                    self._close()
                    continue
                fit = 1  # a row larger than the limit gets a part of its own
            stop = offset(i + fit)
            if stop - start < len(self.end) or bytes(data[stop - len(self.end):stop]) != self.end:
                raise FormatError(f"{self.fmt} export: a row does not end with {self.end!r}")
            if pending:
                self._write(self.end)
            self._write(data[start:stop - len(self.end)])
            self._rows += fit
            i += fit
            if i < n:
                self._close()  # the next row did not fit

    def finish(self) -> list[Part]:
        if self._fh is not None:
            self._close()
        if not self.parts:
            path = self.out_dir / part_name(0, self.fmt)
            path.write_bytes(self.empty)
            self.parts.append(Part(path.name, path, 0, len(self.empty), hashlib.sha256(self.empty).hexdigest()))
        return self.parts

    def _open(self) -> None:
        self._fh = open(self.out_dir / part_name(len(self.parts), self.fmt), "wb")
        self._hash = hashlib.sha256()
        self._size = self._rows = 0
        self._write(self.head)

    def _write(self, data: Any) -> None:
        self._fh.write(data)
        self._hash.update(data)
        self._size += len(data)

    def _close(self) -> None:
        self._write(self.final)
        self._fh.close()
        name = part_name(len(self.parts), self.fmt)
        self.parts.append(Part(name, self.out_dir / name, self._rows, self._size, self._hash.hexdigest()))
        self._fh = None


class ParquetParts:
    """Parquet parts (zstd) written from Arrow batches, in row groups of at most PARQUET_ROW_GROUP_ROWS."""

    def __init__(self, schema: Any, max_bytes: int, out_dir: Path, row_group_rows: int = PARQUET_ROW_GROUP_ROWS):
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.schema, self.max_bytes, self.out_dir = schema, max_bytes, Path(out_dir)
        self.row_group_rows = row_group_rows
        self.parts: list[Part] = []
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._writer: Any = None
        self._sink: Any = None
        self._groups: list[int] = []
        self._bytes_per_row: float | None = None
        self._footer_per_group = 128.0 * len(schema)  # learnt from each closed part
        self.out_dir.mkdir(parents=True, exist_ok=True)

    def add(self, batch: Any) -> None:
        """A pyarrow RecordBatch or Table with this writer's schema."""
        if batch.num_rows == 0:
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        while self._pending_rows >= self.row_group_rows:
            group = self._take(self.row_group_rows)
            self._write_group(group)

    def finish(self) -> list[Part]:
        if self._pending_rows:
            self._write_group(self._take(self._pending_rows))
        while self._writer is not None:  # closing a part too large reopens the next with its last rows
            self._close()
        if not self.parts:
            self._open()
            self._close()
        return self.parts

    def _take(self, rows: int) -> Any:
        import pyarrow as pa

        table = pa.Table.from_batches([b for piece in self._pending for b in _batches(piece)], self.schema)
        group, rest = table.slice(0, rows), table.slice(rows)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows
        return group.combine_chunks()

    def _write_group(self, table: Any) -> None:
        while table.num_rows:
            if self._writer is None:
                self._open()
            per_row = self._bytes_per_row or table.nbytes / table.num_rows
            footer = 1024 + self._footer_per_group * (len(self._groups) + 1)
            budget = self.max_bytes - self._sink.tell() - footer
            fit = int(budget // per_row) if per_row > 0 else table.num_rows
            if fit < 1 and self._groups:
                self._close()
                continue
            take = min(table.num_rows, max(1, fit))
            before = self._sink.tell()
            self._writer.write_table(table.slice(0, take), row_group_size=take)
            self._bytes_per_row = max((self._sink.tell() - before) / take, 1e-3)
            self._groups.append(take)
            table = table.slice(take)
            if table.num_rows:
                self._close()

    def _open(self) -> None:
        import pyarrow.parquet as pq

        self._sink = open(self.out_dir / part_name(len(self.parts), "parquet"), "wb")
        self._writer = pq.ParquetWriter(self._sink, self.schema, compression="zstd")
        self._groups = []

    def _close(self) -> None:
        import pyarrow.parquet as pq

        written = self._sink.tell()
        self._writer.close()
        self._sink.close()
        path = self.out_dir / part_name(len(self.parts), "parquet")
        self._writer = self._sink = None
        groups, self._groups = self._groups, []
        size = path.stat().st_size
        if groups:
            self._footer_per_group = max(self._footer_per_group, (size - written) / len(groups))
        carry: list[Any] = []
        # Too large after all: the last row group moves on to start the next part, until the
        # part fits (a part of one row group is redone at a size per row learnt from this one).
        while size > self.max_bytes and sum(groups) > 1:
            with pq.ParquetFile(path) as source:
                carry.insert(0, source.read_row_group(len(groups) - 1))
                groups.pop()
                if not groups:
                    self._bytes_per_row = size / carry[0].num_rows * 1.1
                    break
                rewritten = path.with_suffix(".rewrite")
                with pq.ParquetWriter(rewritten, self.schema, compression="zstd") as writer:
                    for g, rows in enumerate(groups):
                        writer.write_table(source.read_row_group(g), row_group_size=rows)
            rewritten.replace(path)
            size = path.stat().st_size
        if groups or not carry:  # an empty export still gets its one (empty) part
            self.parts.append(Part(path.name, path, sum(groups), size, sha256_file(path)))
        else:
            path.unlink()
        for table in carry:
            self._write_group(table)


def _batches(piece: Any) -> list[Any]:
    return piece.to_batches() if hasattr(piece, "to_batches") else [piece]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_READ_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
