"""Drop curated pairs that overlap an evaluation set, and list the eval items each one hit.

Why: a pair whose instruction or response quotes a benchmark item (a FLORES sentence, a
Belebele passage, an XCOPA premise) leaks the test set into training and inflates every
score later measured on it. The test is GPT-3's: a pair is contaminated when it shares any
n-gram (13 tokens by default) with an eval text, after normalisation (NFKC, casefold,
punctuation dropped, whitespace collapsed), so a copy with other case, punctuation or
spacing is still found.

Tokens are words, except in scripts written without spaces (Thai, Lao, Khmer, Myanmar,
Chinese, Japanese and a few more), where each character (with its combining marks) is a
token, so a Thai passage gives character n-grams. The script is read from the letters
themselves, run by run, so a Thai passage quoted inside an English text is tokenised the
same way as on its own. Note that 13 Thai or Chinese characters are only a few words: a
long shared phrase (a full place name and its verb) is enough to match.

Eval texts of at least `min_tokens` but fewer than `ngram` tokens (XCOPA premises, short
questions) are matched as their whole token sequence; shorter ones are ignored as too
generic. The index is a sorted array of 64-bit n-gram hashes, each with the first eval
text that has it: about 12 bytes an n-gram, one binary search per record n-gram.
"""

from __future__ import annotations

import functools
import gzip
import logging
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from xinstruct.records import Record, Reject, stable_hash
from xinstruct.rows import file_rows, has_suffix

log = logging.getLogger(__name__)

STAGE = "decontaminate"
REASON = "overlaps_eval"
EVAL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson", ".json", ".json.gz", ".parquet", ".txt", ".tsv")
EXCERPT_CHARS = 200
_TOKENIZER_VERSION = 1  # bump when tokenisation changes: fingerprints (resume keys) change with it

# Scripts written without spaces between words: a token there is one character (plus its marks).
_NO_SPACE_RANGES = (
    (0x0E00, 0x0E7F),  # Thai
    (0x0E80, 0x0EFF),  # Lao
    (0x1000, 0x109F),  # Myanmar
    (0xA9E0, 0xA9FF),  # Myanmar Extended-B
    (0xAA60, 0xAA7F),  # Myanmar Extended-A
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer Symbols
    (0x1950, 0x19DF),  # Tai Le, New Tai Lue
    (0x1A20, 0x1AAF),  # Tai Tham
    (0x1B00, 0x1B7F),  # Balinese
    (0xA980, 0xA9DF),  # Javanese
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana Phonetic Extensions
    (0x3400, 0x4DBF),  # CJK Extension A
    (0x4E00, 0x9FFF),  # CJK Unified Ideographs
    (0xF900, 0xFAFF),  # CJK Compatibility Ideographs
    (0xFF66, 0xFF9F),  # halfwidth Katakana (NFKC maps most to fullwidth)
    (0x20000, 0x323AF),  # CJK Extensions B-H
)
# Dropped, not turned into a space: apostrophes join a word ("don't", Swahili "ng'ombe"), and format
# characters (soft hyphen, ZWSP, ZWNJ, ZWJ, word joiner, BOM) vary between copies of one text.
_DROP = re.compile("['`\u00b4\u02bc\u2018\u2019\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier of the polynomial n-gram hash (mod 2**64)


def _char_class(ranges: Iterable[tuple[int, int]]) -> str:
    def esc(c: int) -> str:
        return f"\\U{c:08x}"

    return "".join(esc(a) if a == b else f"{esc(a)}-{esc(b)}" for a, b in ranges)


@functools.lru_cache(maxsize=1)
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str], re.Pattern[str]]:
    """(what to blank out, any no-space character, a token); built on first use (~0.15 s scan of Unicode)."""
    marks: list[tuple[int, int]] = []
    for c in range(0x110000):
        if unicodedata.category(chr(c))[0] == "M":
            if marks and marks[-1][1] == c - 1:
                marks[-1] = (marks[-1][0], c)
            else:
                marks.append((c, c))
    bmp = _char_class(r for r in marks if r[1] < 0x10000)
    astral = _char_class(r for r in marks if r[0] >= 0x10000)
    # Python's \w leaves out combining marks (Devanagari vowel signs are Mc), hence the explicit class. The
    # astral marks sit behind one range test: re checks them one range at a time, for every character.
    mark = rf"(?:[{bmp}]|(?=[\U00010000-\U0010ffff])[{astral}])"
    ns = _char_class(_NO_SPACE_RANGES)
    non_word = re.compile(rf"[^\w\s](?<![{bmp}{astral}])|_")  # the look-behind runs on punctuation only
    token = re.compile(rf"[{ns}]{mark}*|(?:[^\W_{ns}]|{mark})+")
    return non_word, re.compile(f"[{ns}]"), token


def normalize(text: str) -> str:
    """NFKC, casefolded, punctuation and symbols removed, whitespace collapsed to single spaces."""
    non_word = _patterns()[0]
    text = unicodedata.normalize("NFKC", text).casefold()
    # Turkish: casefold("İ") is "i" + a combining dot, and "ı" is folded onto "i", so case never matters.
    text = _DROP.sub("", text.replace("i\u0307", "i").replace("\u0131", "i"))
    return " ".join(non_word.sub(" ", text).split())


def tokenize(text: str) -> list[str]:
    """Word tokens of the normalised text; one token per character in scripts written without spaces."""
    _, no_space, token = _patterns()
    text = normalize(text)
    return token.findall(text) if no_space.search(text) else text.split()


def _is_no_space(token: str) -> bool:
    c = ord(token[0])
    return any(a <= c <= b for a, b in _NO_SPACE_RANGES)


def join_tokens(tokens: list[str]) -> str:
    """Tokens back to text: no space between two characters of a script written without spaces."""
    out: list[str] = []
    prev_ns = False
    for t in tokens:
        ns = _is_no_space(t)
        if out and not (ns and prev_ns):
            out.append(" ")
        out.append(t)
        prev_ns = ns
    return "".join(out)


def _token_ids(tokens: list[str]) -> npt.NDArray[np.uint64]:
    # Python's str hash is salted per process: fine, the index lives and dies with the process.
    return np.fromiter(map(hash, tokens), dtype=np.int64, count=len(tokens)).view(np.uint64)


def _ngram_hashes(ids: npt.NDArray[np.uint64], k: int) -> npt.NDArray[np.uint64]:
    """Hash of every k-token window (polynomial, mod 2**64, k folded in so lengths never collide)."""
    m = len(ids) - k + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    h = ids[:m].copy()
    for j in range(1, k):
        h *= _MULT
        h += ids[j:j + m]
    h *= _MULT
    h += np.uint64(k)
    return h


# --- configuration and results ---------------------------------------------------------------


@dataclass
class DecontaminateConfig:
    """Which evaluation sets to check against, and how.

    `fields` names keys of the eval rows whose string values are read, at any depth (so
    ``("question",)`` also finds ``{"qas": [{"question": ...}]}``) and with every string
    nested under them; ``()`` reads every string value. For .tsv files it names header
    columns; .txt files are read line by line and ignore it.
    """

    eval_sets: tuple[str, ...] = ()  # files or folders: .jsonl/.json/.parquet/.txt/.tsv evaluation data
    ngram: int = 13  # n-gram length in tokens (GPT-3 style 13-gram overlap)
    min_tokens: int = 8  # eval texts shorter than this are ignored (too generic to match)
    fields: tuple[str, ...] = ()  # which string fields of eval rows to read; () = every string value (nested too)


@dataclass
class Overlap:
    """One eval item a record shares an n-gram with."""

    eval_file: str  # path
    eval_line: int  # 1-based line / row
    eval_text: str  # excerpt (<= 200 chars) of the overlapping eval text
    ngram: str  # the first shared n-gram, as text


@dataclass
class _EvalText:
    file: str
    line: int
    excerpt: str


def _excerpt(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "\u2026"


# --- reading evaluation sets -----------------------------------------------------------------


def _eval_files(paths: Iterable[str]) -> list[Path]:
    """The eval files named, folders expanded (sorted, hidden files skipped), each once."""
    files: list[Path] = []
    for p in paths:
        path = Path(p)
        if not path.exists():
            raise FileNotFoundError(f"evaluation set {str(path)!r} does not exist")
        if path.is_file():
            if not has_suffix(path, EVAL_SUFFIXES):
                raise ValueError(f"unsupported evaluation file {str(path)!r}: expected one of {EVAL_SUFFIXES}")
            files.append(path)
            continue
        found = sorted(q for q in path.rglob("*") if q.is_file() and has_suffix(q, EVAL_SUFFIXES)
                       and not any(part.startswith(".") for part in q.relative_to(path).parts))
        if not found:
            raise ValueError(f"no evaluation files in {str(path)!r}: expected {', '.join(EVAL_SUFFIXES)}")
        files.extend(found)
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def _open(path: Path) -> Any:
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8").lstrip("\ufeff").rstrip("\r\n")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from e


def _rows(path: Path, fields: tuple[str, ...]) -> Iterator[tuple[str, Any]]:
    """(where, row) for every row of one eval file: JSON lines, a JSON array and Parquet through `xinstruct.rows`
    (any JSON value a row), .txt and .tsv lines here. An eval set must be read whole: a bad row raises."""
    name = path.name.lower()
    if name.endswith(".txt") or name.endswith(".tsv"):
        yield from ((f"{path}:{n}", row) for n, row in _text_rows(path, tsv=name.endswith(".tsv"), fields=fields))
        return
    for source, row, bad in file_rows(path):
        if bad is not None:
            raise ValueError(f"{source}: {bad.reason}: {bad.detail}")
        yield source, row


def _text_rows(path: Path, *, tsv: bool, fields: tuple[str, ...]) -> Iterator[tuple[int, Any]]:
    """A .txt line is one text; a .tsv line its cells, keyed by the header when `fields` names columns."""
    header: list[str] | None = None
    with _open(path) as fh:
        for n, raw in enumerate(fh, 1):
            line = _decode(raw, f"{path}:{n}")
            if not line.strip():
                continue
            if not tsv:
                yield n, line
                continue
            cells = line.split("\t")
            if not fields:
                yield n, cells
            elif header is None:
                header = cells
            else:
                yield n, dict(zip(header, cells, strict=False))  # a short row: its missing cells are empty


def _strings(value: Any, fields: tuple[str, ...], selected: bool, out: list[str]) -> None:
    """Appends the strings of `value` that `fields` selects (all of them when `selected`)."""
    if isinstance(value, str):
        if selected:
            out.append(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            _strings(v, fields, selected or k in fields, out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _strings(v, fields, selected, out)


# --- the decontaminator ----------------------------------------------------------------------


class Decontaminator:
    """Rejects records that share an n-gram with an evaluation set; passes the rest on unchanged.

    Loading indexes every eval set at once, so a missing file or a malformed row fails the
    run before the first record, naming the file and line.
    """

    def __init__(self, cfg: DecontaminateConfig):
        if cfg.ngram < 1 or cfg.min_tokens < 1:
            raise ValueError(f"ngram and min_tokens must be >= 1, got ngram={cfg.ngram}, "
                             f"min_tokens={cfg.min_tokens}")
        self.cfg = cfg
        self.files = _eval_files(cfg.eval_sets)
        stats = [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]
        self._fingerprint = stable_hash("decontaminate", _TOKENIZER_VERSION, stats, cfg.ngram, cfg.min_tokens,
                                        list(cfg.fields))
        self._texts: list[_EvalText] = []
        self._keys: npt.NDArray[np.uint64] = np.empty(0, dtype=np.uint64)
        self._owner: npt.NDArray[np.int32] = np.empty(0, dtype=np.int32)
        self._lengths: list[int] = []  # n-gram lengths in the index: ngram, then whole short texts
        self._build()

    def fingerprint(self) -> str:
        """Changes with any eval file (path, size, mtime) and with the matching settings: a resume key."""
        return self._fingerprint

    def _build(self) -> None:
        cfg = self.cfg
        hashes: list[npt.NDArray[np.uint64]] = []
        owners: list[npt.NDArray[np.int32]] = []
        lengths: set[int] = set()
        seen: set[int] = set()
        for path in self.files:
            n_read = 0
            for where, row in _rows(path, cfg.fields):
                line = int(where.rsplit(":", 1)[1])  # the line (from 1), or the row of an array or Parquet (from 0)
                if cfg.fields and not isinstance(row, (dict, str)):
                    raise ValueError(f"{where}: expected a JSON object with fields {list(cfg.fields)}, "
                                     f"got {type(row).__name__}")
                texts: list[str] = []
                _strings(row, cfg.fields, not cfg.fields or isinstance(row, str), texts)
                n_read += len(texts)
                for text in texts:
                    tokens = tokenize(text)
                    if len(tokens) < cfg.min_tokens:
                        continue
                    sig = hash(tuple(tokens))
                    if sig in seen:  # the same passage again (Belebele repeats them): first one kept
                        continue
                    seen.add(sig)
                    k = min(len(tokens), cfg.ngram)
                    lengths.add(k)
                    h = _ngram_hashes(_token_ids(tokens), k)
                    hashes.append(h)
                    owners.append(np.full(len(h), len(self._texts), dtype=np.int32))
                    self._texts.append(_EvalText(str(path), line, _excerpt(text)))
            if cfg.fields and n_read == 0:
                log.warning("%s: no field named %s in any row: nothing read from this file", path, list(cfg.fields))
        if self.files and not self._texts:
            raise ValueError(f"no evaluation text of at least {cfg.min_tokens} tokens in {list(cfg.eval_sets)}"
                             + (f" under fields {list(cfg.fields)}" if cfg.fields else ""))
        if hashes:
            all_hashes = np.concatenate(hashes)
            self._keys, first = np.unique(all_hashes, return_index=True)  # first occurrence: first file:line
            self._owner = np.concatenate(owners)[first]
        self._lengths = sorted(lengths, key=lambda k: (k != cfg.ngram, k))
        log.info("decontaminate: indexed %d eval texts from %d files (%d distinct n-grams)",
                 len(self._texts), len(self.files), len(self._keys))

    def _first_hits(self, tokens: list[str]) -> dict[int, tuple[int, int]]:
        """Eval text index -> (token position, n-gram length) of its first n-gram in `tokens`."""
        hits: dict[int, tuple[int, int]] = {}
        if not len(self._keys):
            return hits
        ids = _token_ids(tokens)
        for k in self._lengths:
            h = _ngram_hashes(ids, k)
            if not len(h):
                continue
            pos = np.searchsorted(self._keys, h)
            pos[pos == len(self._keys)] = 0
            found = np.flatnonzero(self._keys[pos] == h)
            if not len(found):
                continue
            owners, first = np.unique(self._owner[pos[found]], return_index=True)
            for owner, i in zip(owners.tolist(), found[first].tolist(), strict=True):
                if owner not in hits or i < hits[owner][0]:
                    hits[owner] = (i, k)
        return hits

    def overlaps(self, rec: Record) -> list[Overlap]:
        """Every eval item (file and line, once each) that rec's instruction or response shares an n-gram with.

        The response is checked, or the native text when there is no response yet. Overlaps come
        in the order they occur: instruction first, then by position in the text.
        """
        out: dict[tuple[str, int], Overlap] = {}
        for text in (rec.instruction, rec.response if rec.response is not None else rec.text):
            if not text:
                continue
            tokens = tokenize(text)
            hits = self._first_hits(tokens)
            for owner, (i, k) in sorted(hits.items(), key=lambda kv: kv[1][0]):
                ev = self._texts[owner]
                out.setdefault((ev.file, ev.line), Overlap(ev.file, ev.line, ev.excerpt,
                                                          join_tokens(tokens[i:i + k])))
        return list(out.values())

    def __call__(self, records: Iterable[Record]) -> Iterator[Record | Reject]:
        """Records in order: each one clean passes unchanged; each one that overlaps becomes a Reject."""
        for rec in records:
            found = self.overlaps(rec)
            if not found:
                yield rec
                continue
            rec.meta["overlaps"] = [asdict(o) for o in found]
            first = found[0]
            more = f" and {len(found) - 1} more eval item(s)" if len(found) > 1 else ""
            detail = (f"record {rec.id} (source {rec.source}) shares the n-gram {first.ngram[:120]!r} with "
                      f"{first.eval_file}:{first.eval_line}{more}")
            yield Reject.of(rec, STAGE, REASON, detail)
