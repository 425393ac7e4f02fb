"""Reading and writing records: JSONL and Parquet, atomic writes, and export formats.

Every file a run writes goes through `atomic_write`, so a run killed mid-write leaves
either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from xinstruct.records import Record, Reject

# Parquet stores nested fields as JSON strings: lossless round trips, any key set.
_JSON_COLUMNS = ("provenance", "scores", "history", "cluster", "meta")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[Any]:
    """Write to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=False)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any] | Record | Reject]) -> int:
    n = 0
    with atomic_write(path) as f:
        for row in rows:
            f.write(dumps(row if isinstance(row, dict) else row.to_dict()) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{i}: not valid JSON ({e})") from e


def read_records(path: str | Path) -> Iterator[Record]:
    """Records from a `.jsonl` or `.parquet` file written by xinstruct."""
    path = Path(path)
    rows = _read_parquet(path) if path.suffix == ".parquet" else read_jsonl(path)
    for i, row in enumerate(rows, 1):
        try:
            yield Record.from_dict(row)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: record {i} is not an xinstruct record: {e}") from e


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    path = Path(path)
    if path.suffix == ".parquet":
        return _write_parquet(path, [r.to_dict() for r in records])
    return write_jsonl(path, records)


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    flat = [{k: (dumps(v) if k in _JSON_COLUMNS else v) for k, v in r.items()} for r in rows]
    with atomic_write(path, "wb") as f:
        pq.write_table(pa.Table.from_pylist(flat), f)
    return len(rows)


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    for row in pq.read_table(path).to_pylist():
        yield {k: (json.loads(v) if k in _JSON_COLUMNS and isinstance(v, str) else v) for k, v in row.items()}


def to_alpaca(rec: Record) -> dict[str, Any]:
    """Alpaca / x-LLM format: `instruction`, `input`, `output` (plus id and language)."""
    return {"id": rec.id, "lang": rec.lang, "instruction": rec.instruction, "input": "", "output": rec.response}


def to_messages(rec: Record) -> dict[str, Any]:
    """Chat format that `datasets` and `trl`'s SFTTrainer load directly."""
    return {
        "id": rec.id,
        "lang": rec.lang,
        "messages": [
            {"role": "user", "content": rec.instruction},
            {"role": "assistant", "content": rec.response},
        ],
    }


EXPORTERS = {"alpaca": to_alpaca, "messages": to_messages, "records": Record.to_dict}


def export(records: Iterable[Record], path: str | Path, fmt: str) -> int:
    """Write `records` in `fmt` (alpaca | messages | records) to `.jsonl` or `.parquet`."""
    if fmt not in EXPORTERS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {sorted(EXPORTERS)}")
    rows = [EXPORTERS[fmt](r) for r in records]
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        if fmt == "records":
            return _write_parquet(path, rows)
        with atomic_write(path, "wb") as f:
            pq.write_table(pa.Table.from_pylist(rows), f)
        return len(rows)
    return write_jsonl(path, rows)
