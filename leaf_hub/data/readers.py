"""Local data files read through ``datasets``, in batches, with one-line errors that name the fix.

``datasets`` (already a dependency) parses every format leaf-hub accepts -- JSON lines, JSON, CSV, TSV,
parquet and plain text, gzipped or not -- and streams them, so a file of any size is read in bounded
memory. What this module adds is the part a user sees: which column holds the text and which the kind
(:class:`Columns`), and, when a file is broken, an error that says where and what to do. ``datasets``
reports a bad byte or a bad JSON line without its place in the file, so on those (rare) paths the file is
scanned again here to find the line and byte offset.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import json
import logging
import sys
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from leaf_hub.data.encoding import utf8_error
from leaf_hub.data.specs import KIND_ALIASES, Kind, Source
from leaf_hub.errors import LeafHubError

# Rows per batch handed to the ingest: large enough that per-batch work is negligible, small enough that a
# batch of 512-token documents stays a few MB.
BATCH_ROWS = 2048

Batch = tuple[list[Any], list[Kind]]  # texts (str or None) and their kinds


class Columns:
    """Which column holds the text and which (if any) the kind, checked against a file's columns."""

    def __init__(self, source: Source, where: str | None = None):
        opts = source.options
        self.where = where or f"data file {source.target}"
        self.column = opts.get("column", "text")
        self.explicit_type = "type_column" in opts
        self.type_column = opts.get("type_column", "type")
        self.forced_kind: Kind | None = opts.get("kind")  # type: ignore[assignment]
        self.use_type = False

    def check(self, columns: Iterable[str], where: str | None = None) -> None:
        columns = list(columns)
        where = where or self.where
        if self.column not in columns:
            shown = ", ".join(repr(c) for c in columns[:30]) or "none"
            raise LeafHubError(
                f"{where} has no column {self.column!r} (its columns: {shown}); name the text column with "
                "'::column=NAME'"
            )
        if self.forced_kind and not self.explicit_type:
            self.use_type = False  # kind= alone sets every row, whatever a `type` column says
        elif self.type_column in columns:
            self.use_type = True
        elif self.explicit_type:
            raise LeafHubError(
                f"{where} has no type column {self.type_column!r} (its columns: {', '.join(columns)}); fix "
                "type_column= or set every row's kind with '::kind=query'"
            )

    def kind(self, value: Any, where: Callable[[], str]) -> Kind:
        if not self.use_type:
            return self.forced_kind or "document"
        if value is None or (isinstance(value, str) and not value.strip()):
            return self.forced_kind or "document"
        kind = KIND_ALIASES.get(str(value).strip().lower())
        if kind is None:
            raise LeafHubError(
                f"{where()}: unknown type {value!r} in column {self.type_column!r}; allowed values are query "
                "and document (or passage); fix the column, or set every row's kind with '::kind=query'"
            )
        return kind

    def text(self, value: Any, where: Callable[[], str]) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise LeafHubError(
            f"{where()}: column {self.column!r} holds {type(value).__name__} values, not text; pick a text "
            "column with '::column=NAME'"
        )

    def rows(self, batch: dict[str, list], first_row: int, where: Callable[[int], str]) -> Batch:
        """(texts, kinds) of one batch of columns; ``where(row_number)`` names a row in an error."""
        values = batch[self.column]
        types = batch.get(self.type_column) if self.use_type else None
        texts = [self.text(v, lambda i=i: where(first_row + i)) for i, v in enumerate(values)]
        if types is None:
            return texts, [self.forced_kind or "document"] * len(texts)
        kinds = [self.kind(t, lambda i=i: where(first_row + i)) for i, t in enumerate(types)]
        return texts, kinds


@contextlib.contextmanager
def quiet_datasets() -> Iterator[None]:
    """``datasets`` logs "Failed to read file ..." before raising; the error leaf-hub raises says it better."""
    logger = logging.getLogger("datasets")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def open_binary(path: Path, compressed: bool):
    return gzip.open(path, "rb") if compressed else open(path, "rb")


def _gzip_error(path: Path, exc: BaseException) -> LeafHubError:
    return LeafHubError(f"data file {path} is not a complete gzip file ({exc}); re-create or re-download it")


def read_file(source: Source, batch_rows: int | None = None) -> Iterator[Batch]:
    """(texts, kinds) batches of a local file, in file order; raises one-line LeafHubErrors on bad input."""
    path = Path(source.target)
    if not path.is_file():
        raise LeafHubError(f"data file {str(path)!r} does not exist; check the path")
    batch_rows = batch_rows or BATCH_ROWS
    if source.fmt == "txt":
        yield from _read_text(path, source, batch_rows)
    elif source.fmt in ("jsonl", "json"):
        yield from _read_json(path, source, batch_rows)
    elif source.fmt in ("csv", "tsv"):
        yield from _read_csv(path, source, batch_rows)
    elif source.fmt == "parquet":
        yield from _read_parquet(path, source, batch_rows)
    else:  # pragma: no cover - parse_spec only makes the formats above
        raise LeafHubError(f"unsupported data file format {source.fmt!r}")


def _stream(
    builder: str, path: Path, source: Source, batch_rows: int, **config: Any
) -> Iterator[dict[str, list]]:
    """Column batches of one file through ``datasets``; decoding and gzip failures become LeafHubErrors."""
    import datasets

    def translate(exc: BaseException) -> LeafHubError:
        if isinstance(exc, UnicodeDecodeError):
            return utf8_error(path, source.compressed)
        if isinstance(exc, (EOFError, gzip.BadGzipFile, zlib.error)):
            return _gzip_error(path, exc)
        if builder == "json" and "JSON" in str(exc):
            return _json_error(path, source)
        detail = (str(exc).strip().splitlines() or [""])[0][:300]
        return LeafHubError(
            f"could not read data file {path} ({type(exc).__name__}: {detail}); check its format"
        )

    try:
        with quiet_datasets():
            ds = datasets.load_dataset(builder, data_files=str(path), split="train", streaming=True, **config)
            batches = ds.iter(batch_size=batch_rows)
    except (StopIteration, datasets.exceptions.DataFilesNotFoundError):
        return  # an empty file
    except LeafHubError:
        raise
    except Exception as exc:
        raise translate(exc) from None
    yield from quiet_batches(batches, translate)


def quiet_batches(batches: Iterator[Any], translate) -> Iterator[Any]:
    """``datasets``' batches one at a time, its logging quieted, its errors turned into ``translate(exc)``."""
    while True:
        try:
            with quiet_datasets():
                batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise translate(exc) from None
        yield batch


def _read_text(path: Path, source: Source, batch_rows: int) -> Iterator[Batch]:
    kind = source.kind
    for batch in _stream("text", path, source, batch_rows, encoding="utf-8-sig"):
        texts = batch["text"]
        yield texts, [kind] * len(texts)


def read_lines(path: Path, compressed: bool) -> list[str]:
    """Every line of a text file (a word list), through the same reader as ``.txt`` data files."""
    source = Source(str(path), str(path), "file", target=str(path), fmt="txt", compressed=compressed)
    if not path.is_file():
        raise LeafHubError(f"data file {str(path)!r} does not exist; check the path")
    return [t for texts, _ in _read_text(path, source, BATCH_ROWS) for t in texts]


def _first_char(path: Path, compressed: bool) -> bytes:
    try:
        with open_binary(path, compressed) as f:
            head = f.read(4096).lstrip(codecs.BOM_UTF8).lstrip()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _gzip_error(path, exc) from None
    return head[:1]


def _read_json(path: Path, source: Source, batch_rows: int) -> Iterator[Batch]:
    cols = Columns(source)
    first = _first_char(path, source.compressed)
    if not first:
        return
    line_of = _line_finder(path, source.compressed)
    if source.fmt == "jsonl":

        def where(row: int) -> str:
            return f"line {line_of(row)} of data file {path}"
    else:

        def where(row: int) -> str:
            return f"item {row + 1} of data file {path}"

    row = 0
    checked = False
    for batch in _stream("json", path, source, batch_rows):
        if first == b"{" and row == 0 and source.fmt == "json":
            batch = _whole_object(batch, path)
        if not checked:
            cols.check(batch.keys(), where(0) if source.fmt == "jsonl" else None)
            checked = True
        texts, kinds = cols.rows(batch, row, where)
        row += len(texts)
        yield texts, kinds


def _whole_object(batch: dict[str, list], path: Path) -> dict[str, list]:
    """A ``.json`` file holding one object: columns (``{"text": [...]}``) or one list (``{"data": [...]}``)."""
    if len(next(iter(batch.values()), [])) != 1:
        return batch  # JSON lines under a .json name
    obj = {k: v[0] for k, v in batch.items()}
    lists = {k: v for k, v in obj.items() if isinstance(v, list)}
    if lists and len(lists) == len(obj) and len({len(v) for v in lists.values()}) == 1:
        return lists  # columnar: {"text": [...], "type": [...]}
    if len(obj) == 1 and lists and all(isinstance(r, (dict, str)) for r in next(iter(lists.values()))):
        rows = next(iter(lists.values()))  # {"data": [{...}, ...]}
        if all(isinstance(r, str) for r in rows):
            return {"text": rows}
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return {k: [r.get(k) for r in rows] for k in keys}
    if not lists:
        return batch  # a single object is a single row
    raise LeafHubError(
        f"data file {path} is a JSON object this loader cannot read; give an array of objects "
        '([{"text": ...}, ...]), a column object ({"text": [...]}) or JSON lines'
    )


def _line_finder(path: Path, compressed: bool) -> Callable[[int], int]:
    """row number (0-based, blank lines skipped) -> line number (1-based); scans the file when asked."""

    def line_of(row: int) -> int:
        seen = -1
        with open_binary(path, compressed) as f:
            for number, raw in enumerate(f, start=1):
                if raw.strip():
                    seen += 1
                    if seen == row:
                        return number
        return row + 1

    return line_of


def _json_error(path: Path, source: Source) -> LeafHubError:
    """Find the first line that is not valid JSON (or, for a whole-file .json, the position)."""
    with open_binary(path, source.compressed) as f:
        data = f.read()
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    if source.fmt == "json" and text.lstrip()[:1] in ("[", "{"):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            if exc.msg != "Extra data":
                return LeafHubError(
                    f"data file {path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
                )
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError as exc:
                return LeafHubError(
                    f"line {number} of data file {path} is not valid JSON ({exc.msg} at column {exc.colno}); "
                    f"a .{source.fmt} file holds one JSON object per line"
                    + (" or one array of objects" if source.fmt == "json" else "")
                )
    return LeafHubError(f"data file {path} is not valid JSON; check its format")


def _read_csv(path: Path, source: Source, batch_rows: int) -> Iterator[Batch]:
    delimiter = "," if source.fmt == "csv" else "\t"
    header = _csv_header(path, source.compressed, delimiter)
    if header is None:
        return
    cols = Columns(source)
    cols.check(header, f"data file {path} (header row)")

    def where(row: int) -> str:
        return f"line {_csv_line(path, source.compressed, delimiter, row)} of data file {path}"

    # Every column as the text it is (no number or NA guessing: "007" and "NA" are texts).
    config = {
        "sep": delimiter,
        "names": header,
        "header": 0,
        "converters": dict.fromkeys(header, str),
        "keep_default_na": False,
        "na_filter": False,
        "encoding": "utf-8-sig",
    }
    row = 0
    for batch in _stream("csv", path, source, batch_rows, **config):
        texts, kinds = cols.rows(batch, row, where)
        row += len(texts)
        yield texts, kinds


def _csv_header(path: Path, compressed: bool, delimiter: str) -> list[str] | None:
    try:
        with open_binary(path, compressed) as f:
            raw = f.readline()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _gzip_error(path, exc) from None
    if not raw.strip():
        return None
    try:
        line = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise utf8_error(path, compressed) from None
    return [h.strip() for h in next(csv.reader([line], delimiter=delimiter))]


def _csv_line(path: Path, compressed: bool, delimiter: str, row: int) -> int:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with open_binary(path, compressed) as f:
        lines = (raw.decode("utf-8-sig", errors="replace") for raw in f)
        reader = csv.reader(lines, delimiter=delimiter)
        for i, _ in enumerate(reader):
            if i == row + 1:  # row 0 is the header
                return reader.line_num
    return row + 2


def _read_parquet(path: Path, source: Source, batch_rows: int) -> Iterator[Batch]:
    import pyarrow as pa
    import pyarrow.dataset as pds
    import pyarrow.parquet as pq

    cols = Columns(source)
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise LeafHubError(f"data file {path} is not a readable parquet file ({exc}); re-create it") from None
    cols.check(schema.names)
    text_type = schema.field(cols.column).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type)) and not (
        hasattr(pa.types, "is_string_view") and pa.types.is_string_view(text_type)
    ):
        raise LeafHubError(
            f"column {cols.column!r} of data file {path} holds {text_type}, not text; pick a text column "
            "with '::column=NAME'"
        )
    wanted = [cols.column] + ([cols.type_column] if cols.use_type else [])

    def where(row: int) -> str:
        return f"row {row + 1} of data file {path}"

    row = 0
    # Without pre-buffering: a pre-buffered fragment keeps every row group it has read until the whole file
    # is done (apache/arrow#39808), so streaming one large file would hold all of it in memory.
    scan = pds.ParquetFragmentScanOptions(pre_buffer=False)
    for batch in _stream("parquet", path, source, batch_rows, columns=wanted, fragment_scan_options=scan):
        texts, kinds = cols.rows(batch, row, where)
        row += len(texts)
        yield texts, kinds
