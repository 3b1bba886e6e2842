"""JSON Lines and CSV, streamed by pyarrow's own readers.

What an embeddings API dump or a spreadsheet looks like: one record per line, with the vector as
a list field (``{"id": "a", "embedding": [0.1, …]}``), as a text cell holding a list
(``"[0.1, 0.2, …]"``, commas or spaces between the numbers, as a CSV written from a list column
holds it), or as one numeric column per dimension. The layouts and the id column are those of
parquet (:mod:`embaudit.sources.columns`); numbers are read as float64, the value written. A
null or empty vector reads as a row of NaN and a null value as NaN (EA001 reports them).

Opening a file reads it once for its line breaks, never parsing it whole: the start and end of
every record, so that the row count is known, fragments are runs of lines, and ``take`` / ``ids``
parse only the lines they need. A record is one line, as JSON Lines defines it and as pyarrow's
CSV reader assumes (a line break inside a quoted CSV value is an input error).
"""

from __future__ import annotations

import io
import itertools
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from embaudit.array_types import Ints
from embaudit.errors import InputError
from embaudit.sources.base import (
    Chunk,
    EmbeddingSource,
    Fragment,
    RaggedRow,
    as_row_positions,
    check_shape,
    exact_chunks,
    json_safe,
)
from embaudit.sources.columns import Layout, batch_matrix, first_length, id_column_of, layout_of
from embaudit.sources.readers import ReadErrors, first_line

#: Bytes read at a time while finding the line breaks, and the block size of the readers.
SCAN_BYTES = 16 * 2**20
#: Target size of a fragment, in bytes of text.
FRAGMENT_BYTES = 256 * 2**20
#: Records parsed to infer the columns and their types.
SAMPLE_ROWS = 1000
#: Lines this short or shorter are looked at to tell a blank line from a record.
_SHORT_LINE = 16
_WHITESPACE = b" \t\r\x0b\x0c"
#: Bytes of selected lines parsed at once by ``take`` and ``ids``.
_TAKE_BYTES = 64 * 2**20


class TextSource(EmbeddingSource):
    """A JSON Lines (``.jsonl``, ``.ndjson``) or CSV (``.csv``) file of embeddings."""

    dtype = np.dtype(np.float64)

    def __init__(
        self,
        path: str | Path,
        *,
        format: str,
        column: str | None = None,
        id_column: str | None = None,
    ) -> None:
        assert format in ("jsonl", "csv")
        self.path = self._file = str(path)
        self.format = format
        self._header: list[str] | None = None
        self._sample_values: dict[str, str | None] = {}
        with _reading(self._file, format):
            self._starts, self._ends, header = _index_lines(self._file, csv=format == "csv")
            if format == "csv":
                if header is None:
                    raise InputError(self._file, "empty file (no header line)")
                self._header = _csv_header(self._file, header)
        self.n = len(self._starts)
        if self.n == 0:
            raise InputError(self._file, "no rows")
        sample = self._sample()
        self._layout, self.id_column, self._id_type, self._text_lists = self._columns_of(
            sample.schema, column, id_column
        )
        d = self._layout.d
        if d is None:
            d = self._first_length(sample)
        self.n, self.d = check_shape((self.n, d), self._file, "data")
        self._fragments = self._cut()

    # Opening ------------------------------------------------------------------------------

    def _columns_of(
        self, schema: pa.Schema, column: str | None, id_column: str | None
    ) -> tuple[Layout, str | None, pa.DataType | None, frozenset[str]]:
        """The layout, id column and id type from the sample's inferred schema. Text has no
        float32 or int: every number is float64, and a text cell that holds a list (``[…]``)
        is a list column."""
        id_name = id_column_of(schema.names, self._file, column, id_column)
        fields, text_lists = [], set()
        for field in schema:
            arrow_type = field.type
            if field.name != id_name:
                if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
                    arrow_type = pa.float64()
                elif pa.types.is_null(arrow_type) and field.name != column:
                    arrow_type = pa.float64()  # an empty column in the sample: a dimension
                elif pa.types.is_list(arrow_type) and _numeric_or_null(arrow_type.value_type):
                    arrow_type = pa.list_(pa.float64())
                elif _is_text(arrow_type) and (field.name == column or self._holds_lists(field)):
                    arrow_type = pa.list_(pa.float64())
                    text_lists.add(field.name)
            fields.append(pa.field(field.name, arrow_type))
        layout, id_name = layout_of(pa.schema(fields), self._file, column, id_name)
        id_type = None if id_name is None else schema.field(id_name).type
        return layout, id_name, id_type, frozenset(text_lists & set(layout.columns))

    def _holds_lists(self, field: pa.Field) -> bool:
        """Whether a text column's first value that is not null looks like a list."""
        sample = self._sample_values.get(field.name)
        return sample is not None and sample.lstrip().startswith("[")

    def _sample(self) -> pa.Table:
        """The first records, parsed to infer the columns' types: SAMPLE_ROWS of them, more
        while a column holds only nulls (its type unknown), up to _TAKE_BYTES of text."""
        rows = min(self.n, SAMPLE_ROWS)
        while True:
            sample = self._parse(np.arange(rows), infer=True)
            unknown = any(pa.types.is_null(field.type) for field in sample.schema)
            text_bytes = int(self._ends[rows - 1] - self._starts[0])
            if not unknown or rows == self.n or text_bytes >= _TAKE_BYTES:
                return sample
            rows = min(self.n, 8 * rows)

    def _first_length(self, sample: pa.Table) -> int:
        """The length of the first vector that is not null: in the sample, else further on."""
        name = self._layout.columns[0]
        length = first_length(self._as_lists(sample.column(name), name))
        if length is None:
            for selected, _ in self._batches_of(np.arange(self.n)):
                table = self._parse(selected)
                length = first_length(self._as_lists(table.column(0), name, int(selected[0])))
                if length is not None:
                    break
        if length is None:
            raise InputError(self._file, f"column {name!r}: every vector is null")
        if length == 0:
            raise InputError(self._file, f"column {name!r}: the first vector is empty")
        return length

    def _cut(self) -> list[Fragment]:
        """Fragments: runs of lines of about FRAGMENT_BYTES of text."""
        bounds = [0]
        target = self._starts[0] + FRAGMENT_BYTES
        for row in np.flatnonzero(np.diff(self._starts // FRAGMENT_BYTES)).tolist():
            if self._starts[row + 1] >= target:
                bounds.append(row + 1)
                target = self._starts[row + 1] + FRAGMENT_BYTES
        bounds.append(self.n)
        return [
            Fragment(index, start, stop, self._file)
            for index, (start, stop) in enumerate(itertools.pairwise(bounds))
        ]

    def fragments(self) -> list[Fragment]:
        return list(self._fragments)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["layout"] = self._layout.kind
        if self._layout.kind != "wide":
            info["column"] = self._layout.columns[0]
        return info

    # Reading ------------------------------------------------------------------------------

    def read(self, fragment: Fragment, chunk_rows: int | None = None) -> Iterator[Chunk]:
        step = chunk_rows or self.default_chunk_rows()
        blocks = self._stream(fragment)
        yield from exact_chunks(blocks, fragment.start, step)

    def _stream(self, fragment: Fragment) -> Iterator[npt.NDArray[np.floating[Any]]]:
        """The rows of a fragment as pyarrow's streaming reader parses them, block by block."""
        begin = int(self._starts[fragment.start])
        end = int(self._ends[fragment.stop - 1]) + 1
        row = fragment.start
        with _Window(self._file, begin, end) as window, _reading(self._file, self.format) as guard:
            guard.first_row = row
            for batch in self._reader(window):
                yield self._matrix(batch, row)
                row += batch.num_rows
                guard.first_row = row
        if row != fragment.stop:
            raise InputError(
                self._file,
                f"{fragment.n} lines from row {fragment.start} hold {row - fragment.start} "
                "records: a line break inside a quoted value? (one record per line is read)",
            )

    def _reader(self, window: _Window) -> Any:
        if self.format == "csv":
            return pacsv.open_csv(
                window,
                read_options=self._csv_read_options(),
                convert_options=self._csv_convert_options(),
            )
        if not hasattr(pajson, "open_json"):  # pyarrow < 19: parse block by block
            return _blocks_of(window, self._parse_json_block)
        return pajson.open_json(
            window,
            read_options=pajson.ReadOptions(block_size=SCAN_BYTES),
            parse_options=self._json_parse_options(),
        )

    def _matrix(self, batch: pa.RecordBatch | pa.Table, first_row: int) -> npt.NDArray[Any]:
        for name in self._text_lists:
            batch = _replace(batch, name, self._as_lists(batch.column(name), name, first_row))
        try:
            return batch_matrix(batch, self._layout, self.d, self.dtype)
        except RaggedRow as ragged:
            row = first_row + ragged.row
            raise InputError(
                self._file,
                f"column {self._layout.columns[0]!r}: ragged vectors ({ragged.found} values, "
                f"expected {self.d}) at row {row} (line {self._line_of(row)})",
            ) from None

    def take(self, rows: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        positions = as_row_positions(rows, self.n)
        out = np.empty((len(positions), self.d), dtype=self.dtype)
        for selected, where in self._batches_of(positions):
            table = self._parse(selected)
            out[where] = self._matrix(table, int(selected[0]))
        return out

    def ids(self, rows: npt.ArrayLike) -> list[Any] | None:
        if self.id_column is None:
            return None
        positions = as_row_positions(rows, self.n)
        out: list[Any] = [None] * len(positions)
        for selected, where in self._batches_of(positions):
            values = self._parse(selected, columns=[self.id_column]).column(0).to_pylist()
            for index, value in zip(where.tolist(), values, strict=True):
                out[index] = json_safe(value)
        return out

    def _batches_of(self, positions: Ints) -> Iterator[tuple[Ints, Ints]]:
        """(sorted rows, their indices in ``positions``) in groups of at most _TAKE_BYTES of
        text, so that reading every row holds one group at a time."""
        order = np.argsort(positions, kind="stable")
        ordered = positions[order]
        sizes = self._ends[ordered] - self._starts[ordered] + 1
        group = np.cumsum(sizes) // _TAKE_BYTES
        for value in np.unique(group).tolist():
            members = np.flatnonzero(group == value)
            yield ordered[members], order[members]

    # Parsing ------------------------------------------------------------------------------

    def _parse(
        self, rows: Ints, *, infer: bool = False, columns: list[str] | None = None
    ) -> pa.Table:
        """The records at the given sorted rows (repeats allowed), parsed with the source's
        column types (or inferring them: ``infer``), keeping ``columns`` (default: the vector
        columns, or every column when inferring)."""
        text = self._lines(rows)
        with _reading(self._file, self.format, int(rows[0]) if len(rows) else 0):
            if self.format == "csv":
                assert self._header is not None
                read = pacsv.ReadOptions(column_names=self._header, block_size=SCAN_BYTES)
                convert = pacsv.ConvertOptions() if infer else self._csv_convert_options(columns)
                table = pacsv.read_csv(io.BytesIO(text), read_options=read, convert_options=convert)
            else:
                parse = None if infer else self._json_parse_options(columns)
                table = pajson.read_json(io.BytesIO(text), parse_options=parse)
        if table.num_rows != len(rows):
            raise InputError(
                self._file,
                f"{len(rows)} lines near row {int(rows[0])} hold {table.num_rows} records: a line "
                "break inside a quoted value? (one record per line is read)",
            )
        if infer:
            self._sample_values = {
                name: _first_text(table.column(name)) for name in table.column_names
            }
        return table

    def _lines(self, rows: Ints) -> bytes:
        """The text of the given sorted rows, one per line (a repeated row repeated); runs of
        consecutive rows are read at once."""
        if not len(rows):
            return b""
        unique = np.unique(rows)
        runs = np.split(unique, np.flatnonzero(np.diff(unique) != 1) + 1)
        parts = []
        with Path(self._file).open("rb") as stream:
            for run in runs:
                begin, end = int(self._starts[run[0]]), int(self._ends[run[-1]])
                stream.seek(begin)
                parts.append(stream.read(end - begin))
        if len(unique) == len(rows):
            return b"\n".join(parts) + b"\n"
        lines: dict[int, bytes] = {}
        for run, text in zip(runs, parts, strict=True):
            base = int(self._starts[run[0]])
            for row in run.tolist():
                lines[row] = text[int(self._starts[row]) - base : int(self._ends[row]) - base]
        return b"\n".join(lines[row] for row in rows.tolist()) + b"\n"

    def _json_parse_options(self, columns: list[str] | None = None) -> pajson.ParseOptions:
        return pajson.ParseOptions(
            explicit_schema=pa.schema(self._fields(columns)), unexpected_field_behavior="ignore"
        )

    def _parse_json_block(self, text: bytes) -> pa.Table:
        return pajson.read_json(io.BytesIO(text), parse_options=self._json_parse_options())

    def _csv_read_options(self) -> pacsv.ReadOptions:
        return pacsv.ReadOptions(column_names=self._header, block_size=SCAN_BYTES)

    def _csv_convert_options(self, columns: list[str] | None = None) -> pacsv.ConvertOptions:
        fields = self._fields(columns)
        return pacsv.ConvertOptions(
            column_types={field.name: field.type for field in fields if field.type is not None},
            include_columns=[field.name for field in fields],
        )

    def _fields(self, columns: list[str] | None) -> list[pa.Field]:
        """The fields to parse, with their types: the vector columns as float64 (text lists as
        text, converted after parsing), the id column as inferred."""
        names = list(self._layout.columns) if columns is None else columns
        fields = []
        for name in names:
            if name == self.id_column:
                fields.append(pa.field(name, self._id_type))
            elif name in self._text_lists:
                fields.append(pa.field(name, pa.string()))
            elif self._layout.kind == "wide":
                fields.append(pa.field(name, pa.float64()))
            else:
                fields.append(pa.field(name, pa.list_(pa.float64())))
        return fields

    def _as_lists(
        self, values: pa.Array | pa.ChunkedArray, name: str, first_row: int = 0
    ) -> pa.Array:
        """A column as list<float64>: a text column holding lists is parsed (``[1, 2]``,
        ``1 2``; an empty cell is a null vector); a list column is cast."""
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        if not _is_text(values.type):
            return values.cast(pa.list_(pa.float64()))
        text = pc.utf8_trim_whitespace(pc.utf8_trim(pc.utf8_trim_whitespace(values), "[]"))
        text = pc.if_else(pc.equal(text, ""), pa.scalar(None, text.type), text)
        parts = pc.split_pattern_regex(text, r"[,\s]+")
        lengths = pc.list_value_length(parts).fill_null(0).to_numpy(zero_copy_only=False)
        items = parts.flatten()
        try:
            numbers = pc.cast(items, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = _first_non_number(items)
            row = first_row + int(np.searchsorted(np.cumsum(lengths), bad, side="right"))
            raise InputError(
                self._file,
                f"column {name!r}: {items[bad].as_py()!r} is not a number, at row {row} "
                f"(line {self._line_of(row)})",
            ) from None
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
        return pa.ListArray.from_arrays(pa.array(offsets), numbers, mask=text.is_null())

    def _line_of(self, row: int) -> int:
        """The 1-based line number of a row, for messages."""
        with Path(self._file).open("rb") as stream:
            before = stream.read(int(self._starts[row]))
        return before.count(b"\n") + 1


def _replace(batch: pa.RecordBatch | pa.Table, name: str, column: pa.Array) -> pa.Table:
    table = batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
    return table.set_column(table.schema.get_field_index(name), name, column)


def _numeric_or_null(arrow_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(arrow_type)
        or pa.types.is_floating(arrow_type)
        or pa.types.is_null(arrow_type)
    )


def _is_text(arrow_type: pa.DataType) -> bool:
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _first_text(values: pa.ChunkedArray) -> str | None:
    if not _is_text(values.type):
        return None
    present = values.drop_null()
    return str(present[0].as_py()) if len(present) else None


def _first_non_number(items: pa.Array) -> int:
    """The position of the first text that does not parse as a number."""
    for position, item in enumerate(items.to_pylist()):
        try:
            float(item)
        except (TypeError, ValueError):
            return position
    return 0


def _index_lines(path: str, *, csv: bool) -> tuple[Ints, Ints, tuple[int, int] | None]:
    """The byte range [start, end) of every record (line break excluded), skipping blank lines
    as the readers do (JSON: whitespace only; CSV: empty), and, for CSV, the header's range."""
    breaks: list[npt.NDArray[np.int64]] = []
    size = 0
    with Path(path).open("rb") as stream:
        while block := stream.read(SCAN_BYTES):
            found = np.flatnonzero(np.frombuffer(block, dtype=np.uint8) == 0x0A)
            breaks.append(found.astype(np.int64) + size)
            size += len(block)
    newlines = np.concatenate(breaks) if breaks else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], newlines + 1]).astype(np.int64)
    ends = np.concatenate([newlines, [size]]).astype(np.int64)
    if starts[-1] >= size:  # the file ends with a line break: no last line
        starts, ends = starts[:-1], ends[:-1]
    keep = np.ones(len(starts), dtype=bool)
    short = np.flatnonzero(ends - starts <= _SHORT_LINE)
    if len(short):
        with Path(path).open("rb") as stream:
            for line in short.tolist():
                stream.seek(int(starts[line]))
                text = stream.read(int(ends[line] - starts[line]))
                keep[line] = bool(text.rstrip(b"\r")) if csv else bool(text.strip(_WHITESPACE))
    starts, ends = starts[keep], ends[keep]
    header = None
    if csv and len(starts):
        header = (int(starts[0]), int(ends[0]))
        starts, ends = starts[1:], ends[1:]
    return starts, ends, header


def _csv_header(path: str, header: tuple[int, int]) -> list[str]:
    with Path(path).open("rb") as stream:
        stream.seek(header[0])
        text = stream.read(header[1] - header[0])
    table = pacsv.read_csv(
        io.BytesIO(text + b"\n"), read_options=pacsv.ReadOptions(autogenerate_column_names=True)
    )
    names = [str(value) for value in table.to_pylist()[0].values()] if table.num_rows else []
    if len(set(names)) != len(names):
        repeated = sorted({name for name in names if names.count(name) > 1})
        raise InputError(path, f"the header repeats column names: {', '.join(repeated)}")
    return names


class _Window(io.RawIOBase):
    """The bytes [begin, end) of a file as a stream, for a reader to parse one fragment."""

    def __init__(self, path: str, begin: int, end: int) -> None:
        super().__init__()
        self._descriptor = os.open(path, os.O_RDONLY)
        self._position, self._end = begin, end

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        size = min(len(buffer), self._end - self._position)
        if size <= 0:
            return 0
        data = os.pread(self._descriptor, size, self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def close(self) -> None:
        if not self.closed:
            os.close(self._descriptor)
        super().close()


def _blocks_of(window: _Window, parse: Any) -> Iterator[pa.Table]:
    """Parse a stream in blocks of whole lines (for readers that cannot stream)."""
    rest = b""
    while block := window.read(SCAN_BYTES):
        text = rest + block
        cut = text.rfind(b"\n") + 1
        if cut:
            yield parse(text[:cut])
        rest = text[cut:]
    if rest.strip():
        yield parse(rest)


_ROW_IN_MESSAGE = re.compile(r"\s*in row (\d+)\s*$")


class _reading(ReadErrors):
    """Turn pyarrow's parse errors into input errors that name the file (and the row near
    which the parse failed, where pyarrow says)."""

    def __init__(self, path: str, format: str, first_row: int = 0) -> None:
        self._file, self.format, self.first_row = path, format, first_row

    def problem(self, error: BaseException) -> InputError | None:
        if not isinstance(error, pa.ArrowException | OSError):
            return None
        what = "JSON Lines" if self.format == "jsonl" else "CSV"
        text = re.sub(r"^(JSON|CSV) parse error: ", "", first_line(error))
        found = _ROW_IN_MESSAGE.search(text)
        where = ""
        if found:
            text = text[: found.start()]
            where = f" (near row {self.first_row + int(found.group(1))})"
        return InputError(self._file, f"cannot parse {what}: {text}{where}")
