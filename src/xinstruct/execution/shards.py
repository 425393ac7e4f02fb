"""The shard runner: a step applied to a stream of items in resumable shards, written atomically.

Every stage family runs its model work through `run_sharded` (curation's stages, evaluation's answers and
verdicts, DPO's preference pairs): a shard file that exists is never redone, so a killed run resumes at the
first unfinished shard, and `Stream.of_shards` reads a stage's output back without holding it in memory.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xinstruct.io import atomic_write, dumps
from xinstruct.records import Record, Reject


def shard_size_for(backend: str) -> int:
    """Records per resumable shard where a run does not set it: the spec of the backend that does the work."""
    from xinstruct.llm.backends import spec

    return spec(backend).shard_size


@dataclass
class StageStats:
    seconds: float = 0.0
    resumed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    llm: dict[str, Any] = field(default_factory=dict)  # the stage's call counts, where its executor knows them


class Counting:
    """Counts the items of an iterator as they pass."""

    def __init__(self, it: Iterable[Any]):
        self.it, self.n = iter(it), 0

    def __iter__(self) -> Iterator[Any]:
        for x in self.it:
            self.n += 1
            yield x


def shards(records: Iterable[Any], size: int) -> Iterator[list[Any]]:
    shard: list[Any] = []
    for r in records:
        shard.append(r)
        if len(shard) == size:
            yield shard
            shard = []
    if shard:
        yield shard


# A step maps a batch of input items (records, or any other unit) to output records (or JSON rows) and rejects.
StepFn = Callable[[Sequence[Any]], tuple[list[Any], list[Reject]]]


def run_sharded(name: str, key: str, records: Iterable[Any], n_records: int, step: StepFn, batch_size: int | None,
                cfg: Any, work: Path, shard_size: int | None = None) -> tuple[Path, StageStats]:
    """Apply `step` to `records` in shards of `shard_size` (default `cfg.shard_size`), `batch_size` items per
    call (None: the whole shard), each shard written atomically once finished (`cfg` is any config with
    `shard_size` and `progress`).

    A shard file that exists is never redone, so a killed run resumes at the first unfinished shard.
    """
    folder = work / f"{name}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_shards = resumed = 0
    shard_size = shard_size or cfg.shard_size
    with tqdm(total=n_records, desc=name, unit="rec", disable=not cfg.progress) as bar:
        for i, shard in enumerate(shards(records, shard_size)):
            n_shards += 1
            path = shard_path(folder, i)
            if path.is_file():
                resumed += 1
                bar.update(len(shard))
                continue
            run_shard(step, shard, batch_size, path, bar.update)
    stats = StageStats(seconds=time.perf_counter() - t0, resumed=resumed > 0,
                       extra={"shards": n_shards, "shards_resumed": resumed})
    return folder, stats


def shard_path(folder: Path, i: int) -> Path:
    return folder / f"shard-{i:05d}.jsonl"


def run_shard(step: StepFn, shard: Sequence[Any], batch_size: int | None, path: Path,
              progress: Callable[[int], Any] | None = None) -> tuple[int, int]:
    """Apply `step` to one shard, `batch_size` items per call (None: all), and write its output file atomically:
    the file is the shard's completion marker. Returns (kept, rejected); `progress(n)` after each call."""
    lines: list[str] = []
    kept_n = rejected_n = 0
    size = batch_size or len(shard) or 1
    for b in range(0, len(shard), size):
        kept, rejects = step(shard[b : b + size])
        lines += [dumps({"record": r if isinstance(r, dict) else r.to_dict()}) for r in kept]
        lines += [dumps({"reject": r.to_dict()}) for r in rejects]
        kept_n, rejected_n = kept_n + len(kept), rejected_n + len(rejects)
        if progress is not None:
            progress(len(shard[b : b + size]))
    with atomic_write(path) as f:
        f.write("".join(line + "\n" for line in lines))
    return kept_n, rejected_n


def shard_files(folder: Path) -> list[Path]:
    """A stage folder's finished shard outputs in shard order (not the request caches an executor keeps beside
    them: shard-NNNNN.cache.jsonl)."""
    found = [p for p in folder.glob("shard-*.jsonl") if p.name.count(".") == 1 and p.stem[6:].isdigit()]
    return sorted(found, key=lambda p: int(p.stem[6:]))


def shard_lines(folder: Path, kind: str = "") -> Iterator[str]:
    """The lines of a sharded stage's files in order, unparsed, only those of `kind` ("record" or "reject") where
    given: run_sharded writes each line as `{"record": ...}` or `{"reject": ...}`."""
    start = '{"' + kind + '"' if kind else ""
    for path in shard_files(folder):
        with open(path, encoding="utf-8") as f:
            yield from (line for line in f if line.startswith(start))


def read_shards(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, rejects) of a sharded stage's folder, in order, as JSON objects: for outputs that are rows, not
    records (answers, verdicts, preference pairs), and small enough to hold."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for line in shard_lines(folder):
        item = json.loads(line)
        (rows.append(item["record"]) if "record" in item else rejects.append(item["reject"]))
    return rows, rejects


class Stream:
    """A stage's records, read again from its files each time they are iterated, so a stage never holds
    the corpus in memory: `len` is their number."""

    def __init__(self, source: Callable[[], Iterable[Record]], n: int):
        self.source, self.n = source, n

    def __iter__(self) -> Iterator[Record]:
        return iter(self.source())

    def __len__(self) -> int:
        return self.n

    @classmethod
    def of_shards(cls, folder: Path) -> tuple[Stream, Callable[[], Iterator[Reject]], int]:
        """(the kept records, a source of the rejects, their number) of a sharded stage's folder. Each reads only
        its own kind of line, so neither parses the other's."""

        def records() -> Iterator[Record]:
            return (Record.from_dict(json.loads(line)["record"]) for line in shard_lines(folder, "record"))

        def rejects() -> Iterator[Reject]:
            return (Reject(**json.loads(line)["reject"]) for line in shard_lines(folder, "reject"))

        kept = rejected = 0
        for line in shard_lines(folder):
            kept += line.startswith('{"record"')
            rejected += line.startswith('{"reject"')
        return cls(records, kept), rejects, rejected
