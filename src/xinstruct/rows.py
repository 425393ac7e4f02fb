"""One row reader for every input file: corpora, training data, benchmarks, question sets, evaluation sets.

    for source, row, bad in read_rows("data/train.parquet"):
        if bad is not None:
            ... a reject: bad.reason, bad.detail, bad.raw (the line as read)
        else:
            ... row is a dict (or any JSON value, with objects=False)

Formats: JSON lines (.jsonl, .ndjson, any other name, gzipped too), a .json file holding one array, Parquet
(streamed a row group at a time), CSV and TSV with a header line (TSV unquoted, as the XNLI, PAWS-X and Flores
releases write it), a folder saved by `datasets` (`save_to_disk`; a DatasetDict's splits one after another, or
the one `split` names), an xinstruct run folder (its samples.jsonl), and a folder of such files (recursively, in
name order, hidden files left out).

Sources: "path:line" (1-based, as editors count) for line files (JSON lines, CSV, TSV) and "path:row" (0-based,
as `dataset[row]` indexes) for elements (a JSON array, Parquet, a saved dataset: "folder/split:row" for a split
of a DatasetDict). A bad row never stops the reading; its reason is one of
    bad_encoding    the line is not UTF-8
    malformed_json  the line (or the whole .json array) is not JSON
    not_an_object   the row is JSON, but not an object (with objects=True, the default)
    wrong_columns   a CSV/TSV line whose cells do not match the header
A path that holds nothing readable raises FileNotFoundError (ValueError for a Parquet file pyarrow cannot
open): the user's error, not a row's.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from xinstruct.io import read_records
from xinstruct.records import Record, Reject, stable_hash

JSON_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".ndjson")
PARQUET_SUFFIXES = (".parquet",)
TABLE_SUFFIXES = (".csv", ".tsv")
DATA_SUFFIXES = JSON_SUFFIXES + PARQUET_SUFFIXES + TABLE_SUFFIXES
BAD_REASONS = ("bad_encoding", "malformed_json", "not_an_object", "wrong_columns")


@dataclass(frozen=True)
class BadRow:
    reason: str  # one of BAD_REASONS
    detail: str
    raw: Any = None  # the line as read (decoded with replacement characters), or the value that is not an object


Row = tuple[str, Any, BadRow | None]  # (source, the row or None, why it could not be read or None)


def has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(s) for s in suffixes)


def is_saved_dataset(folder: Path) -> bool:
    return any((folder / n).is_file() for n in ("dataset_info.json", "state.json", "dataset_dict.json"))


def data_files(folder: Path, suffixes: tuple[str, ...] = DATA_SUFFIXES) -> list[Path]:
    """The data files under `folder`, recursively, in name order, hidden files and folders left out."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and has_suffix(p, suffixes)
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_rows(path: str | Path, *, split: str | None = None, objects: bool = True) -> Iterator[Row]:
    """The rows of a file or folder (see the module's doc), in a fixed order. `objects`: a row that is not a JSON
    object is a `not_an_object` bad row (False: any JSON value is a row)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_dir():
        if (p / "samples.jsonl").is_file():  # an xinstruct run folder
            yield from read_rows(p / "samples.jsonl", objects=objects)
        elif is_saved_dataset(p):
            yield from objects_only(saved_dataset_rows(p, split), objects)
        else:
            files = data_files(p)
            if not files:
                raise FileNotFoundError(f"{p}: no data files ({', '.join(DATA_SUFFIXES)}) and not a saved dataset")
            for f in files:
                yield from read_rows(f, objects=objects)
        return
    yield from objects_only(file_rows(p), objects)


def file_rows(p: Path) -> Iterator[Row]:
    """The rows of one file, every JSON value a row."""
    if has_suffix(p, PARQUET_SUFFIXES):
        yield from parquet_rows(p)
    elif has_suffix(p, TABLE_SUFFIXES):
        yield from table_rows(p)
    elif has_suffix(p, (".json", ".json.gz")) and _starts_array(p):
        yield from json_array_rows(p)
    else:
        yield from json_lines(p)


def objects_only(rows: Iterator[Row], objects: bool = True) -> Iterator[Row]:
    """`rows`, a row that is not a JSON object made a `not_an_object` bad row (unless `objects` is False)."""
    for source, row, bad in rows:
        if bad is None and objects and not isinstance(row, dict):
            yield source, None, BadRow("not_an_object", f"a JSON {type(row).__name__}, not an object", row)
        else:
            yield source, row, bad


def _open(p: Path) -> IO[bytes]:
    return gzip.open(p, "rb") if p.name.lower().endswith(".gz") else open(p, "rb")  # type: ignore[return-value]


def _starts_array(p: Path) -> bool:
    with _open(p) as f:
        return f.read(1024).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"[")


def json_lines(p: Path) -> Iterator[Row]:
    """A row per non-blank line ("path:line"); a byte-order mark is ignored."""
    with _open(p) as f:
        for i, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            source = f"{p}:{i}"
            try:
                text = raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
            except UnicodeDecodeError as e:
                yield source, None, BadRow("bad_encoding", f"not UTF-8 ({e.reason} at byte {e.start})",
                                           raw.decode("utf-8", "replace").rstrip("\r\n"))
                continue
            try:
                yield source, json.loads(text), None
            except json.JSONDecodeError as e:
                yield source, None, BadRow("malformed_json", f"not valid JSON: {e.msg} (line {i}, column {e.colno})",
                                           text)


def json_array_rows(p: Path) -> Iterator[Row]:
    """The elements of a .json file holding one array ("path:row", from 0); a file that is not JSON is one bad
    row with the file as its source."""
    with _open(p) as f:
        raw = f.read()
    try:
        rows = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as e:
        yield str(p), None, BadRow("bad_encoding", f"the file is not UTF-8 ({e.reason} at byte {e.start})",
                                   raw.decode("utf-8", "replace"))
        return
    except json.JSONDecodeError as e:
        yield str(p), None, BadRow("malformed_json", f"the file starts a JSON array but cannot be parsed: {e.msg} "
                                   f"(line {e.lineno}, column {e.colno})", raw.decode("utf-8", "replace"))
        return
    yield from ((f"{p}:{n}", row, None) for n, row in enumerate(rows))


def parquet_rows(p: Path) -> Iterator[Row]:
    """Parquet rows ("path:row", from 0), streamed a row group at a time. A file pyarrow cannot open raises
    ValueError."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(p)
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on a corrupt file
        raise ValueError(f"{p}: cannot read Parquet: {e}") from e
    n = 0
    for batch in pf.iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield f"{p}:{n}", row, None
            n += 1


def table_rows(p: Path, *, tsv: bool | None = None) -> Iterator[Row]:
    """CSV (quoted) or TSV (unquoted: Flores sentences hold quote marks, never tabs) with a header line: a row
    ({column: cell}) per line ("path:line"). `tsv`: None tells it from the name (.tsv)."""
    tsv = p.name.lower().endswith(".tsv") if tsv is None else tsv
    with open(p, "rb") as fb:
        data = fb.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None:  # find the lines that are not UTF-8, read the others
        yield from _table_lines(p, data, tsv)
        return
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if tsv else ",",
                            quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
    if reader.fieldnames is not None:
        reader.fieldnames = [name.strip() for name in reader.fieldnames]
    for row in reader:
        source = f"{p}:{reader.line_num}"
        if None in row or None in row.values():
            yield source, None, BadRow("wrong_columns", f"{len(_cells(row))} cells, the header has "
                                       f"{len(reader.fieldnames or [])}", row)
        else:
            yield source, dict(row), None


def _cells(row: dict[Any, Any]) -> list[Any]:
    extra = row.get(None) or []
    return [v for k, v in row.items() if k is not None and v is not None] + list(extra)


def _table_lines(p: Path, data: bytes, tsv: bool) -> Iterator[Row]:
    """A table with lines that are not UTF-8: line by line, those lines bad rows (a CSV cell that spans lines is
    not supported in such a file)."""
    header: list[str] | None = None
    for i, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.rstrip(b"\r")
        if not raw.strip():
            continue
        source = f"{p}:{i}"
        try:
            line = raw.decode("utf-8").lstrip("\ufeff")
        except UnicodeDecodeError as e:
            if header is None:
                raise ValueError(f"{source}: the header line is not UTF-8") from None
            yield source, None, BadRow("bad_encoding", f"not UTF-8 ({e.reason} at byte {e.start})",
                                       raw.decode("utf-8", "replace"))
            continue
        cells = line.split("\t") if tsv else next(csv.reader([line]))
        if header is None:
            header = [c.strip() for c in cells]
        elif len(cells) != len(header):
            yield source, None, BadRow("wrong_columns", f"{len(cells)} cells, the header has {len(header)}", line)
        else:
            yield source, dict(zip(header, cells, strict=True)), None


def saved_dataset_rows(folder: Path, split: str | None = None) -> Iterator[Row]:
    """The rows of a folder saved by `datasets` ("folder:row", or "folder/split:row" for a DatasetDict: every
    split in name order, or only `split`)."""
    import datasets

    yield from dataset_rows(str(folder), datasets.load_from_disk(str(folder)), split)


def dataset_rows(where: str, loaded: Any, split: str | None = None) -> Iterator[Row]:
    """The rows of a loaded `datasets.Dataset` or `DatasetDict` (see `saved_dataset_rows`)."""
    if hasattr(loaded, "keys"):  # a DatasetDict
        names = sorted(loaded.keys())
        if split is not None and split not in names:
            raise ValueError(f"{where}: no split {split!r} (splits: {', '.join(names)})")
        for name in [split] if split is not None else names:
            yield from ((f"{where}/{name}:{n}", row, None) for n, row in enumerate(loaded[name]))
        return
    yield from ((f"{where}:{n}", row, None) for n, row in enumerate(loaded))


def input_fingerprint(path: Path) -> list[Any]:
    """Names, sizes and modification times of a file or of a folder's files: a changed input changes it."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [(str(f.relative_to(path) if path.is_dir() else f.name), f.stat().st_size, f.stat().st_mtime_ns)
            for f in files]


def read_pairs(path: Path) -> tuple[list[Record], list[Reject], str]:
    """Records from a file or a run folder (its samples.jsonl) for a stage run alone; pairs without an
    instruction are rejects. Returns records, rejects and a key for the input."""
    src = path / "samples.jsonl" if path.is_dir() else path
    if not src.is_file():
        raise FileNotFoundError(f"no records at {path} (a .jsonl/.parquet records file, or a run folder "
                                f"with samples.jsonl)")
    recs: list[Record] = []
    rejects: list[Reject] = []
    for i, rec in enumerate(read_records(src), 1):
        if not (rec.instruction or "").strip() or not (rec.response or rec.text or "").strip():
            rejects.append(Reject.of(rec, "input", "not_a_pair", f"record {rec.id} ({src}:{i}) has no instruction "
                                     f"or no response"))
        else:
            recs.append(rec)
    return recs, rejects, stable_hash(input_fingerprint(src))
