"""Generation metrics that work for every script: EM/F1 (QA), ROUGE (summaries), BLEU/chrF (translation).

Every score is a percentage (0-100), per item and per corpus, because that is how papers report
EM, F1, ROUGE, BLEU and chrF.

Why not the usual normalisers: SQuAD's `re.sub(r"[^\\w\\s]", "", s)` deletes every character that
is not `\\w`, and Python's `\\w` does not match combining marks (Unicode Mn/Mc), so Devanagari,
Bengali and Tamil vowel signs and viramas vanish ("काम" and "कम" both become "कम"). rouge_score's
default tokenizer keeps only [a-z0-9], so a Tamil or Thai summary has no tokens at all. Here
punctuation is removed by Unicode category, marks are never touched, and scripts written without
spaces (Thai, Lao, Khmer, Burmese, Tibetan, Chinese, Japanese) are split into characters, since no
word segmenter is available offline; character-level F1 is the usual fallback (MLQA does the same
for Chinese).
"""

from __future__ import annotations

import string
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any, Literal

# Languages written without spaces between words: their tokens are characters (see `tokenize`).
UNSPACED_LANGS = frozenset({"th", "lo", "km", "my", "ja", "zh", "bo"})
# ISO 15924 script subtags (as in Flores codes like "tha_Thai") of the same scripts.
UNSPACED_SCRIPTS = frozenset({"Thai", "Laoo", "Khmr", "Mymr", "Tibt", "Hans", "Hant", "Hani", "Jpan"})
# Unicode character-name prefixes of those scripts: only these characters are split one by one,
# so digits and Latin words inside Thai text stay whole tokens (MLQA's "mixed segmentation").
_UNSPACED_NAME_PREFIXES = ("THAI ", "LAO ", "KHMER ", "MYANMAR ", "TIBETAN ", "CJK ", "HIRAGANA ", "KATAKANA",
                           "BOPOMOFO ")

# Articles dropped from QA answers: SQuAD's English list and MLQA's lists (es, de, vi; MLQA drops
# the Arabic article "ال" too, handled in `_drop_articles`). Other languages keep every token.
ARTICLES: dict[str, frozenset[str]] = {
    lang: frozenset(unicodedata.normalize("NFKC", w) for w in words.split())
    for lang, words in {
        "en": "a an the",
        "es": "un una unos unas el la los las",
        "de": "ein eine einen einem eines einer der die das den dem des",
        "vi": "của là cái chiếc những",
    }.items()
}
_ARABIC_ARTICLE = "ال"

# BLEU tokenizers that fetch a SentencePiece model on first use: never chosen, and refused.
DOWNLOADING_TOKENIZERS = frozenset({"flores101", "flores200", "spm", "spBLEU-1K"})
# Languages written in the Latin script, scored with sacrebleu's default "13a" tokenizer.
LATIN_SCRIPT_LANGS = frozenset({
    "en", "fi", "id", "tr", "vi", "sw", "af", "az", "bs", "ca", "cs", "cy", "da", "de", "eo", "es", "et", "eu", "fr",
    "ga", "gl", "ha", "hr", "ht", "hu", "ig", "is", "it", "jv", "la", "lt", "lv", "mg", "ms", "mt", "nb", "nl", "no",
    "pl", "pt", "qu", "ro", "rw", "sk", "sl", "so", "sq", "sv", "tl", "uz", "xh", "yo", "zu"
})

_ASCII_PUNCT = frozenset(string.punctuation)
_ZERO_WIDTH_SPACE = "\u200b"


def _base_lang(lang: str) -> tuple[str, str]:
    """("sw", "") for "sw", "sw-KE" or "SW"; ("tha", "Thai") for the Flores code "tha_Thai"."""
    code, _, script = lang.replace("-", "_").partition("_")
    return code.lower(), script if len(script) == 4 else ""


def is_unspaced(lang: str) -> bool:
    """Whether `lang` is written without spaces between words (by code, or by the script of a Flores code)."""
    code, script = _base_lang(lang)
    return code in UNSPACED_LANGS or script in UNSPACED_SCRIPTS


@lru_cache(maxsize=8192)
def _char_class(ch: str) -> str:
    """"p" punctuation, "f" invisible format character, "s" zero-width space, "m" combining mark,
    "u" a letter of an unspaced script, "o" anything else.

    Punctuation is Unicode category P* plus ASCII `string.punctuation` (exactly MLQA's set: SQuAD's
    ASCII symbols $+<=>^`|~ go too). Other symbols (S*: ₹ ৳ ° ©, emoji) are kept: they carry meaning.
    """
    cat = unicodedata.category(ch)
    if ch in _ASCII_PUNCT or cat.startswith("P"):
        return "p"
    if ch == _ZERO_WIDTH_SPACE:
        return "s"
    if cat == "Cf":  # ZWJ/ZWNJ, soft hyphen, bidi marks: invisible, spelled with or without
        return "f"
    if cat.startswith("M"):
        return "m"
    if unicodedata.name(ch, "").startswith(_UNSPACED_NAME_PREFIXES):
        return "u"
    return "o"


def _fold(text: str, lang: str) -> str:
    """NFKC, case-folded (Turkish and Azerbaijani dotted/dotless i kept apart), NFKC again."""
    text = unicodedata.normalize("NFKC", text)
    if _base_lang(lang)[0] in ("tr", "az"):
        text = text.replace("I", "ı").replace("İ", "i")
    return unicodedata.normalize("NFKC", text.casefold())


def _drop_articles(tokens: list[str], lang: str) -> list[str]:
    code = _base_lang(lang)[0]
    if code == "ar":
        return [t[len(_ARABIC_ARTICLE):] if t.startswith(_ARABIC_ARTICLE) else t for t in tokens
                if t != _ARABIC_ARTICLE]
    articles = ARTICLES.get(code)
    return [t for t in tokens if t not in articles] if articles else tokens


def _normalize(text: str, lang: str, punct: str, articles: bool) -> str:
    out = []
    for ch in _fold(text, lang):
        cls = _char_class(ch)
        out.append(punct if cls == "p" else " " if cls == "s" else "" if cls == "f" else ch)
    tokens = "".join(out).split()
    return " ".join(_drop_articles(tokens, lang) if articles else tokens)


def normalize_answer(text: str, lang: str) -> str:
    """A QA answer as SQuAD/MLQA compare it, for any script.

    NFKC and case folding; punctuation deleted (as SQuAD does: "1,000" -> "1000"); invisible format
    characters (ZWJ, ZWNJ, soft hyphen, bidi marks) deleted; combining marks (vowel signs, viramas,
    Thai tone marks) always kept; articles dropped for the languages in `ARTICLES` (and Arabic "ال");
    whitespace collapsed to single spaces.
    """
    return _normalize(text, lang, "", articles=True)


def normalize_text(text: str, lang: str) -> str:
    """Running text as ROUGE compares it: like `normalize_answer`, but punctuation becomes a space
    (so "well-known" is two words, as rouge_score splits it) and articles are kept."""
    return _normalize(text, lang, " ", articles=False)


def _clusters(chunk: str) -> list[str]:
    """Base characters with their combining marks ("กิ", not "ก" + "ิ"): a vowel sign or tone mark
    alone is not a character a reader would count."""
    out: list[str] = []
    for ch in chunk:
        if out and _char_class(ch) == "m":
            out[-1] += ch
        else:
            out.append(ch)
    return out


def _segment(normalized: str, lang: str) -> list[str]:
    if not is_unspaced(lang):
        return normalized.split()
    tokens: list[str] = []
    for chunk in normalized.split():
        run = ""
        for cl in _clusters(chunk):
            if _char_class(cl[0]) == "u":
                if run:
                    tokens.append(run)
                    run = ""
                tokens.append(cl)
            else:
                run += cl
        if run:
            tokens.append(run)
    return tokens


def tokenize(text: str, lang: str, *, style: Literal["answer", "text"] = "answer") -> list[str]:
    """Tokens for overlap metrics: whitespace tokens of the normalised text (`normalize_answer` for
    style "answer", `normalize_text` for "text"); for unspaced languages (`UNSPACED_LANGS`) every
    character of those scripts, with its combining marks, is a token, spaces are ignored, and runs of
    other characters (digits, Latin words) stay whole."""
    norm = normalize_answer(text, lang) if style == "answer" else normalize_text(text, lang)
    return _segment(norm, lang)


def _golds(golds: str | Sequence[str]) -> list[str]:
    golds = [golds] if isinstance(golds, str) else list(golds)
    if not golds:
        raise ValueError("no gold answers to score against")
    return golds


def exact_match(prediction: str, golds: str | Sequence[str], lang: str) -> float:
    """100 if the prediction's tokens equal some gold answer's tokens, else 0 (SQuAD's EM; for
    unspaced languages the spaces inside an answer do not count)."""
    pred = tokenize(prediction, lang)
    return 100.0 if any(pred == tokenize(g, lang) for g in _golds(golds)) else 0.0


def _overlap_f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:  # SQuAD v2: an empty answer is right only against an empty gold
        return 100.0 if pred == gold else 0.0
    same = sum((Counter(pred) & Counter(gold)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 100.0 * 2 * precision * recall / (precision + recall)


def f1(prediction: str, golds: str | Sequence[str], lang: str) -> float:
    """SQuAD token-overlap F1 (multiset intersection), the best over the gold answers."""
    pred = tokenize(prediction, lang)
    return max(_overlap_f1(pred, tokenize(g, lang)) for g in _golds(golds))


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _prf(name: str, overlap: int, n_pred: int, n_ref: int) -> dict[str, float]:
    p = overlap / n_pred if n_pred else 0.0
    r = overlap / n_ref if n_ref else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {name: 100.0 * f, f"{name}_precision": 100.0 * p, f"{name}_recall": 100.0 * r}


def rouge(prediction: str, reference: str, lang: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L (LCS over the whole text, like rouge_score's "rougeL") on
    `tokenize(style="text")` tokens, no stemming.

    Returns {"rouge1": F, "rouge1_precision": P, "rouge1_recall": R, and the same for rouge2 and rougeL}.
    """
    pred, ref = tokenize(prediction, lang, style="text"), tokenize(reference, lang, style="text")
    scores: dict[str, float] = {}
    for n in (1, 2):
        p, r = _ngrams(pred, n), _ngrams(ref, n)
        scores |= _prf(f"rouge{n}", sum((p & r).values()), sum(p.values()), sum(r.values()))
    return scores | _prf("rougeL", _lcs(pred, ref), len(pred), len(ref))


def bleu_tokenizer(lang: str) -> str:
    """sacrebleu's tokenizer for `lang`, chosen offline: "zh" for Chinese, "char" for the other
    unspaced scripts (ja-mecab/ko-mecab need extra packages), "13a" for Latin-script languages
    (sacrebleu's default, so scores compare with papers), "intl" for every other script (13a does
    not split Unicode punctuation such as the Hindi danda "।")."""
    code, script = _base_lang(lang)
    if code == "zh" or script in ("Hans", "Hant", "Hani"):
        return "zh"
    if is_unspaced(lang):
        return "char"
    if script == "Latn" or (not script and code in LATIN_SCRIPT_LANGS):
        return "13a"
    return "intl"


def _check_corpus(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
    if not predictions:
        raise ValueError("no sentences to score")


def bleu(predictions: Sequence[str], references: Sequence[str], lang: str, *,
         tokenize: str | None = None) -> dict[str, Any]:
    """Corpus BLEU (sacrebleu, one reference per sentence) with the tokenizer `bleu_tokenizer(lang)`
    unless `tokenize` names another; the ones in `DOWNLOADING_TOKENIZERS` are refused.

    Returns {"bleu", "precisions" (1- to 4-gram, %), "bp", "sys_len", "ref_len", "tokenize",
    "signature"}: the signature (e.g. "nrefs:1|case:mixed|eff:no|tok:intl|smooth:exp|version:2.6.0")
    is what makes the number reproducible.
    """
    from sacrebleu.metrics import BLEU

    _check_corpus(predictions, references)
    tok = tokenize or bleu_tokenizer(lang)
    if tok in DOWNLOADING_TOKENIZERS:
        raise ValueError(f"BLEU tokenizer {tok!r} downloads a SentencePiece model; xinstruct evaluates offline: "
                         "use 13a, intl, char or zh")
    metric = BLEU(tokenize=tok)
    s = metric.corpus_score(list(predictions), [list(references)])
    return {"bleu": s.score, "precisions": list(s.precisions), "bp": s.bp, "sys_len": s.sys_len,
            "ref_len": s.ref_len, "tokenize": tok, "signature": str(metric.get_signature())}


def chrf(predictions: Sequence[str], references: Sequence[str], *, word_order: int = 0) -> dict[str, Any]:
    """Corpus chrF (sacrebleu defaults: character 6-grams, beta 2, whitespace ignored); word_order=2
    gives chrF++. Character n-grams need no tokenizer, so the score means the same in every script.

    Returns {"chrf", "signature"}.
    """
    from sacrebleu.metrics import CHRF

    _check_corpus(predictions, references)
    metric = CHRF(word_order=word_order)
    s = metric.corpus_score(list(predictions), [list(references)])
    return {"chrf": s.score, "signature": str(metric.get_signature())}


def _by_lang(items: Iterable[tuple[Any, ...]]) -> dict[str, list[tuple[Any, ...]]]:
    groups: dict[str, list[tuple[Any, ...]]] = {}
    for item in items:
        groups.setdefault(item[-1], []).append(item)
    return dict(sorted(groups.items()))


def qa_scores(items: Iterable[tuple[str, str | Sequence[str], str]]) -> dict[str, dict[str, float]]:
    """{lang: {"n", "exact_match", "f1"}} from (prediction, gold answer(s), lang) triples: the mean of
    the per-question scores, as SQuAD, XQuAD and MLQA report them."""
    out: dict[str, dict[str, float]] = {}
    for lang, group in _by_lang(items).items():
        em = [exact_match(p, g, lang) for p, g, _ in group]
        f = [f1(p, g, lang) for p, g, _ in group]
        out[lang] = {"n": len(group), "exact_match": sum(em) / len(em), "f1": sum(f) / len(f)}
    return out


def rouge_scores(items: Iterable[tuple[str, str, str]]) -> dict[str, dict[str, float]]:
    """{lang: {"n", "rouge1", "rouge2", "rougeL"}} from (prediction, reference, lang) triples: the mean
    of the per-summary F-measures, as XL-Sum reports them."""
    out: dict[str, dict[str, float]] = {}
    for lang, group in _by_lang(items).items():
        scores = [rouge(p, r, lang) for p, r, _ in group]
        out[lang] = {"n": len(group)} | {k: sum(s[k] for s in scores) / len(scores)
                                         for k in ("rouge1", "rouge2", "rougeL")}
    return out


def translation_scores(items: Iterable[tuple[str, str, str]], *, tokenize: str | None = None,
                       word_order: int = 0) -> dict[str, dict[str, Any]]:
    """{lang: {"n", "bleu", "chrf", "bleu_signature", "chrf_signature"}} from (prediction, reference,
    target lang) triples: corpus-level BLEU and chrF per target language."""
    out: dict[str, dict[str, Any]] = {}
    for lang, group in _by_lang(items).items():
        preds, refs = [p for p, _, _ in group], [r for _, r, _ in group]
        b, c = bleu(preds, refs, lang, tokenize=tokenize), chrf(preds, refs, word_order=word_order)
        out[lang] = {"n": len(group), "bleu": b["bleu"], "chrf": c["chrf"], "bleu_signature": b["signature"],
                     "chrf_signature": c["signature"]}
    return out


def overall(per_lang: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{"n": total items, metric: unweighted mean over languages} for every numeric metric: the
    cross-lingual average (as XTREME and XL-Sum report), so a big language does not drown small ones."""
    if not per_lang:
        return {"n": 0}
    rows = list(per_lang.values())
    keys = [k for k, v in rows[0].items() if k != "n" and isinstance(v, int | float)]
    return {"n": sum(r["n"] for r in rows)} | {k: sum(r[k] for r in rows) / len(rows) for k in keys}
