"""Clean, filter by language, deduplicate and chunk documents into `Record`s.

X-Instruction uses native web text as *responses*, so a chunk should read like one answer:
a few paragraphs (the paper's responses average ~1,000-1,250 characters), in the target
language, not seen before. `prepare` is a streaming generator; only the dedup index grows
with the corpus.

Accounting: every document yields either one document-level Reject, or all of its
`n_chunks` chunks, each as a Record or a chunk-level Reject carrying the document's id.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from xinstruct.curate.readers import Document
from xinstruct.langid import UNDETERMINED, LanguageIdentifier
from xinstruct.records import Record, Reject

STAGE = "prepare"


@dataclass
class PrepareConfig:
    min_chars: int = 80  # chunks shorter than this are rejected (too little to answer anything)
    max_doc_chars: int = 500_000  # longer documents are rejected whole (dumps, logs, books)
    chunk_chars: int = 1500  # target chunk size; paragraphs are packed up to it
    max_chunk_chars: int = 2500  # hard ceiling: longer paragraphs are split at sentences, then spaces
    max_chunks_per_doc: int = 32  # later chunks are rejected (chunk_limit) so one document cannot dominate
    langid_backend: str = "py3langid"  # "py3langid" (fast) or "lingua" (more accurate, slower to load)
    langid_min_prob: float = 0.5  # probability the chunk is in the expected language (or its close group)
    dedup: bool = True  # drop exact and near duplicate chunks (first occurrence wins)
    near_dup_threshold: float = 0.8  # shingle-set Jaccard similarity from which chunks are near duplicates
    num_perm: int = 128  # MinHash permutations (more: better Jaccard estimates, more memory)
    shingle: int = 5  # n-gram size for near-dup shingles
    shingle_unit: str = "char"  # "char" (works for unspaced scripts such as Thai) or "word"


# --- normalisation ---------------------------------------------------------------------------

_NEWLINES = re.compile(r"\r\n|[\r\u2028\u2029\x0b\x0c\x85]")
_CONTROLS = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f\ufeff]")  # Cc but \t \n, and the BOM
_SURROGATES = re.compile(r"[\ud800-\udfff]")  # lone surrogates (from JSON escapes) cannot be written as UTF-8
_TRAILING = re.compile(r"[^\S\n]+$", re.MULTILINE)
_BLANKS = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, newlines unified, control characters dropped, trailing spaces and extra blank lines removed.

    Only control characters (Cc), BOMs and lone surrogates go: format characters such as
    ZWJ/ZWNJ (U+200D/U+200C) and combining marks carry meaning in Indic and Arabic
    scripts and are kept.
    """
    text = _SURROGATES.sub("\ufffd", text)
    text = unicodedata.normalize("NFC", text)
    text = _NEWLINES.sub("\n", text)
    text = _CONTROLS.sub("", text)
    text = _TRAILING.sub("", text)
    text = _BLANKS.sub("\n\n", text)
    return text.strip()


# --- chunking --------------------------------------------------------------------------------

# Split points, coarsest first: each match ends a piece (the separator stays with it).
_LEVELS = (
    re.compile(r"\n[^\S\n]*\n\s*"),  # blank line: paragraph
    re.compile(r"\n\s*"),  # line
    # sentence: Latin .!? and ellipsis before a space; Devanagari/Bengali danda, Urdu full stop,
    # Arabic question mark, Ethiopic and Myanmar full stops, CJK full stops with or without a space
    re.compile(r"[.!?\u2026]+[\"'\u201d\u2019\u00bb)\]]*\s+|[\u0964\u0965\u06d4\u061f\u1362\u104b"
               r"\u3002\uff01\uff1f]+[\"'\u201d\u2019\u00bb)\]]*\s*"),
    re.compile(r"\s+"),  # word (Thai has no sentence punctuation: spaces separate its phrases)
)


def split_chunks(text: str, target: int = 1500, max_chars: int = 2500, min_chars: int = 0) -> list[str]:
    """Split `text` into chunks of about `target` characters, none longer than `max_chars`.

    Paragraphs are packed greedily up to `target`; a paragraph longer than `max_chars` is
    split at lines, then sentences, then spaces, and as a last resort cut between grapheme
    clusters. A chunk shorter than `min_chars` is merged into a neighbour when they fit
    in `max_chars` together. Each chunk is a stripped, contiguous slice of `text`, so
    joining them loses nothing but whitespace at the cuts.
    """
    if target <= 0 or max_chars < target:
        raise ValueError(f"need 0 < target <= max_chars, got target={target}, max_chars={max_chars}")
    spans = _merge_short(text, _split(text, 0, len(text), 0, target, max_chars), min_chars, max_chars)
    return [c for c in (text[a:b].strip() for a, b in spans) if c]


def _split(text: str, lo: int, hi: int, level: int, target: int, max_chars: int) -> list[tuple[int, int]]:
    if hi - lo <= target:
        return [(lo, hi)]
    if level == len(_LEVELS):
        return _hard_cut(text, lo, hi, target)
    cuts = [m.end() for m in _LEVELS[level].finditer(text, lo, hi) if lo < m.end() < hi]
    if not cuts:
        return _split(text, lo, hi, level + 1, target, max_chars)
    out: list[tuple[int, int]] = []
    start = cur = lo  # the open chunk is text[start:cur]
    for a, b in zip([lo, *cuts], [*cuts, hi], strict=True):
        if b - a > max_chars:  # piece too long even alone: split it finer
            if cur > start:
                out.append((start, cur))
            out.extend(_split(text, a, b, level + 1, target, max_chars))
            start = cur = b
        elif cur > start and b - start > target:
            out.append((start, cur))
            start, cur = a, b
        else:
            cur = b
    if cur > start:
        out.append((start, cur))
    return out


def _hard_cut(text: str, lo: int, hi: int, size: int) -> list[tuple[int, int]]:
    """Fixed-size pieces, each cut moved back so that it falls between grapheme clusters."""
    out = []
    while hi - lo > size:
        cut = lo + size
        while cut > lo + 1 and not _is_boundary(text, cut):
            cut -= 1
        if cut == lo + 1 and not _is_boundary(text, cut):
            cut = lo + size  # no boundary at all (pathological run of marks): cut anyway
        out.append((lo, cut))
        lo = cut
    out.append((lo, hi))
    return out


def _is_boundary(text: str, i: int) -> bool:
    """False inside a cluster: before a combining mark or joiner, or after a virama or joiner."""
    nxt, prev = text[i], text[i - 1]
    if unicodedata.category(nxt).startswith("M") or nxt in "\u200c\u200d":
        return False
    return not (prev in "\u200c\u200d" or unicodedata.combining(prev) == 9)  # 9: virama


def _merge_short(text: str, spans: list[tuple[int, int]], min_chars: int, max_chars: int,
                 ) -> list[tuple[int, int]]:
    if min_chars <= 0:
        return spans
    out: list[tuple[int, int]] = []
    pending: tuple[int, int] | None = None  # a short span waiting for its right neighbour
    for a, b in spans:
        if pending is not None:
            if b - pending[0] <= max_chars:
                a = pending[0]
            else:
                out.append(pending)
            pending = None
        if len(text[a:b].strip()) >= min_chars:
            out.append((a, b))
        elif out and b - out[-1][0] <= max_chars:
            out[-1] = (out[-1][0], b)
        else:
            pending = (a, b)
    if pending is not None:
        out.append(pending)
    return out


# --- deduplication ---------------------------------------------------------------------------

def _canonical(text: str) -> str:
    return " ".join(text.casefold().split())


class Deduplicator:
    """Exact and near-duplicate detection over a stream: the first occurrence wins.

    Exact: SHA-1 of the case-folded, whitespace-collapsed text. Near: MinHash over
    character (or word) n-gram shingles, candidates from MinHashLSH, confirmed by the
    estimated Jaccard similarity. Memory per kept text: a 20-byte digest, its id, a
    signature of `num_perm` uint32 and the LSH band entries. Deterministic for a given order.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, shingle: int = 5, unit: str = "char",
                 near: bool = True):
        if unit not in ("char", "word"):
            raise ValueError(f"shingle unit must be 'char' or 'word', got {unit!r}")
        self.threshold, self.num_perm, self.shingle, self.unit = threshold, num_perm, shingle, unit
        self._exact: dict[bytes, str] = {}
        self._sigs: dict[str, np.ndarray] = {}
        self._lsh = None
        if near:
            from datasketch import MinHashLSH

            self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)

    def _minhash(self, canon: str):  # -> datasketch.MinHash
        from datasketch import MinHash

        n = self.shingle
        if self.unit == "word":
            toks = canon.split()
            grams = {" ".join(toks[i:i + n]) for i in range(max(1, len(toks) - n + 1))}
        else:
            grams = {canon[i:i + n] for i in range(max(1, len(canon) - n + 1))}
        m = MinHash(num_perm=self.num_perm, seed=1, hashfunc=zlib.crc32)  # crc32: C-fast, stable across runs
        m.update_batch([g.encode("utf-8", errors="surrogatepass") for g in grams])
        return m

    def check(self, key: str, text: str) -> tuple[str, str, float] | None:
        """None if `text` is new (it is then remembered as `key`), else (reason, first key, similarity)."""
        canon = _canonical(text)
        digest = hashlib.sha1(canon.encode("utf-8", errors="surrogatepass")).digest()
        if digest in self._exact:
            return "exact_duplicate", self._exact[digest], 1.0
        if self._lsh is not None:
            m = self._minhash(canon)
            sig = m.hashvalues.astype(np.uint32)
            best: tuple[float, str] | None = None
            for other in self._lsh.query(m):
                sim = float(np.mean(self._sigs[other] == sig))
                if sim >= self.threshold and (best is None or (sim, other) > best):
                    best = (sim, other)
            if best is not None:
                return "near_duplicate", best[1], best[0]
            self._lsh.insert(key, m)
            self._sigs[key] = sig
        self._exact[digest] = key
        return None


# --- the step --------------------------------------------------------------------------------

def _norm_code(lang: str) -> str:
    """Case and region dropped: id_ID, ID, sw-KE -> id, id, sw."""
    return re.split(r"[-_]", lang.strip().lower(), maxsplit=1)[0]


def prepare(docs: Iterable[Document | Reject], langs: set[str] | None, cfg: PrepareConfig | None = None,
            *, identifier: LanguageIdentifier | None = None) -> Iterator[Record | Reject]:
    """Records (chunks in their expected language, deduplicated) and Rejects for everything else.

    `langs` are the target languages, or None for all. A document's expected language is
    its declared `lang`, else the single target, else the one detected on the document.
    Raises ValueError now (not at the first document) for a target the identifier lacks.
    """
    cfg = cfg or PrepareConfig()
    ident = identifier or LanguageIdentifier(cfg.langid_backend)
    targets = {_norm_code(x) for x in langs} if langs else None
    if targets:
        missing = sorted(t for t in targets if not ident.supports(t))
        if missing:
            other = "lingua" if ident.backend == "py3langid" else "py3langid"
            raise ValueError(f"language-ID backend {ident.backend} does not support {missing}; "
                             f"try langid_backend={other!r}, or check the ISO 639-1 codes")
    split_chunks("", cfg.chunk_chars, cfg.max_chunk_chars)  # validates the sizes now
    dedup = (Deduplicator(cfg.near_dup_threshold, cfg.num_perm, cfg.shingle, cfg.shingle_unit)
             if cfg.dedup else None)
    return _prepare(docs, targets, cfg, ident, dedup)


def _doc_reject(doc: Document, reason: str, problem: str, text: str | None = None) -> Reject:
    record = {"doc_id": doc.doc_id, "text": doc.text if text is None else text, "lang": doc.lang,
              "source": doc.source, "meta": doc.meta}
    return Reject(stage=STAGE, reason=reason, detail=f"document {doc.doc_id} ({doc.source}): {problem}",
                  unit="document", doc_id=doc.doc_id, id=doc.doc_id, source=doc.source, record=record)


def _expected_lang(doc: Document, text: str, targets: set[str] | None, ident: LanguageIdentifier,
                   ) -> tuple[str | None, str]:
    """(expected language, "") or (None, why the document is not wanted)."""
    if doc.lang:
        lang = _norm_code(doc.lang)
        if targets is not None and lang not in targets:
            return None, f"declared language {doc.lang!r} is not a target ({', '.join(sorted(targets))})"
        if not ident.supports(lang):
            return None, f"declared language {doc.lang!r} is not supported by {ident.backend}"
        return lang, ""
    if targets is not None and len(targets) == 1:
        return next(iter(targets)), ""
    detected, p = ident.detect(text)
    if detected == UNDETERMINED:
        return None, "no language could be detected (no letters)"
    if targets is None:
        return detected, ""
    for t in sorted(targets):
        if detected in ident.group(t):
            return t, ""
    return None, f"detected language {detected} (p={p:.2f}) is not a target ({', '.join(sorted(targets))})"


def _prepare(docs: Iterable[Document | Reject], targets: set[str] | None, cfg: PrepareConfig,
             ident: LanguageIdentifier, dedup: Deduplicator | None) -> Iterator[Record | Reject]:
    doc_hashes: dict[bytes, str] = {}
    for doc in docs:
        if isinstance(doc, Reject):
            yield doc
            continue
        text = normalize_text(doc.text)
        if not text:
            yield _doc_reject(doc, "empty_text", "no text left after normalisation")
            continue
        if len(text) > cfg.max_doc_chars:
            yield _doc_reject(doc, "too_long", f"{len(text):,} characters after normalisation "
                                               f"(max_doc_chars={cfg.max_doc_chars:,})")
            continue
        if len(text) < cfg.min_chars:
            yield _doc_reject(doc, "too_short", f"{len(text)} characters (min_chars={cfg.min_chars})", text)
            continue
        lang, why = _expected_lang(doc, text, targets, ident)
        if lang is None:
            yield _doc_reject(doc, "not_target_language", why, text)
            continue
        if dedup is not None:
            digest = hashlib.sha1(_canonical(text).encode("utf-8")).digest()
            if digest in doc_hashes:
                yield _doc_reject(doc, "exact_duplicate", f"same text as document {doc_hashes[digest]}", text)
                continue
            doc_hashes[digest] = doc.doc_id
        yield from _chunk_records(doc, text, lang, cfg, ident, dedup)


def _chunk_records(doc: Document, text: str, lang: str, cfg: PrepareConfig, ident: LanguageIdentifier,
                   dedup: Deduplicator | None) -> Iterator[Record | Reject]:
    chunks = split_chunks(text, cfg.chunk_chars, cfg.max_chunk_chars, cfg.min_chars)
    n = len(chunks)
    for i, chunk in enumerate(chunks):
        rec = Record(id=f"{doc.doc_id}#{i}" if n > 1 else doc.doc_id, doc_id=doc.doc_id, lang=lang,
                     text=chunk, response=chunk, source=doc.source, chunk=i, n_chunks=n, meta=dict(doc.meta))
        where = f"chunk {rec.id} ({doc.source})"
        if i >= cfg.max_chunks_per_doc:
            yield Reject.of(rec, STAGE, "chunk_limit", f"{where}: chunk {i + 1} of {n} is past "
                                                       f"max_chunks_per_doc={cfg.max_chunks_per_doc}")
            continue
        if len(chunk) < cfg.min_chars:
            yield Reject.of(rec, STAGE, "too_short", f"{where}: {len(chunk)} characters "
                                                     f"(min_chars={cfg.min_chars})")
            continue
        ok, detected, p = ident.is_language(chunk, lang, cfg.langid_min_prob)
        rec.history.append({"stage": STAGE, "langid": {"backend": ident.backend, "detected": detected,
                                                       "prob": round(p, 4)}})
        if not ok:
            yield Reject.of(rec, STAGE, "language_mismatch",
                            f"{where}: expected {lang}, detected {detected} (p({lang})={p:.2f}, "
                            f"min {cfg.langid_min_prob})")
            continue
        if dedup is not None:
            dup = dedup.check(rec.id, chunk)
            if dup is not None:
                reason, first, sim = dup
                yield Reject.of(rec, STAGE, reason, f"{where}: {reason.replace('_', ' ')} of {first} "
                                                    f"(similarity {sim:.2f})")
                continue
        yield rec
