"""Multiple-choice benchmarks scored by log-likelihood: XCOPA, XNLI, XStoryCloze and PAWS-X formats.

Each row becomes (context, choices, gold) exactly as lm-evaluation-harness v0.4 builds its xcopa, xnli,
xstorycloze and paws-x tasks, with its per-language words (`data/benchmarks/lmeval_prompt_words.yaml`;
English ones for other languages), so that the two agree item by item; `engine="lm-eval"` runs lm-eval
itself on the same rows (`lmeval.py`). A choice scores log p(target delimiter + choice | context); the
prediction is the highest score (acc), the highest per character of the choice (acc_norm, as lm-eval
computes it) or per UTF-8 byte (acc_bytes, lm-eval's name). Few-shot examples are drawn as lm-eval's
default sampler draws them (one `Random(seed)` per language, in item order) and joined as it joins them.

OUT gets result.json (`results.py`; accuracies in percent per language and over all items),
predictions.jsonl (id, lang, gold, pred, pred_norm, pred_bytes, loglikelihoods: reruns compare line by
line), rejects.jsonl (rows that could not be read or scored, by file:line; nothing is dropped silently)
and cache/llm.sqlite, the request cache (log-likelihoods keyed by model and prompt), which a rerun resumes from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from random import Random
from typing import Any

from xinstruct.io import write_jsonl
from xinstruct.languages import NAMES
from xinstruct.llm import LLM, ModelConfig
from xinstruct.records import stable_hash
from xinstruct.rows import Row, dataset_rows, is_saved_dataset
from xinstruct.rows import read_rows as read_file_rows

TASKS = ("xcopa", "xnli", "xstorycloze", "pawsx")
ENGINES = ("xinstruct", "lm-eval")
FEWSHOT_DELIMITER = "\n\n"  # lm-eval's default: example = context + target delimiter + answer + this
WORDS_FILE = "lmeval_prompt_words.yaml"
FALLBACK_LANG = "en"


def packaged_fixture() -> Path:
    """The XCOPA-format fixture that ships with xinstruct: 42 items (14 each in sw, id, tr), written by the
    developers (not XCOPA's text), for trying the command and comparing engines, not for publishing."""
    return Path(str(resources.files("xinstruct.data.benchmarks") / "xcopa_mini.jsonl"))


@dataclass
class MCConfig:
    """One multiple-choice evaluation. `data`: a .jsonl/.json/.parquet/.tsv/.csv file, a folder saved by
    `datasets`, or hf:NAME[:CONFIG[:SPLIT]] from the local `datasets` cache (never downloaded)."""

    task: str
    data: str
    out: str
    lang: str | None = None  # else each row's lang/language field, else the file name (xcopa_sw.jsonl)
    split: str | None = None  # of a DatasetDict: default test, else validation, else the only one
    fewshot_data: str | None = None  # where examples come from; default: the same rows, minus the item
    shots: int = 0
    seed: int = 1234  # lm-eval's default few-shot seed
    limit: int | None = None  # the first N items of each language, as lm-eval's limit
    model: ModelConfig = field(default_factory=ModelConfig)
    engine: str = "xinstruct"
    batch_size: int = 16  # lm-eval's batch size ((context, choice) pairs per forward pass)
    # xinstruct: pairs handed to the backend at once, so that it can batch them by length and run each
    # item's context once for all its choices; a resume checkpoint after each call
    pairs_per_call: int = 512
    label: str | None = None  # the model's name in reports


@dataclass
class Item:
    id: str
    lang: str
    source: str  # file:line
    context: str  # lm-eval's doc_to_text, without examples
    choices: list[str]  # lm-eval's doc_to_choice, without the target delimiter
    gold: int
    delimiter: str  # lm-eval's target_delimiter
    doc: dict[str, Any]  # the row under the canonical field names: what lm-eval is given


# ---------------------------------------------------------------- formats (lm-eval's prompts, v0.4.13)

def _lower_first(s: str) -> str:
    return s[0].lower() + s[1:]


def xcopa_prompt(doc: dict[str, Any], words: dict[str, str]) -> tuple[str, list[str]]:
    """lm_eval/tasks/xcopa/utils.py: the premise minus its last character (the period, whatever it is)
    and the connector for the question; the choices with a lower-case first letter."""
    context = doc["premise"].strip()[:-1] + f" {words[doc['question']]}"
    return context, [_lower_first(doc["choice1"]), _lower_first(doc["choice2"])]


def xnli_prompt(doc: dict[str, Any], words: dict[str, str]) -> tuple[str, list[str]]:
    """lm_eval/tasks/xnli: no context; each choice is "<premise>, <question>? <answer>, <hypothesis>"."""
    return "", [f"{doc['premise']}, {words['question']}? {words[k]}, {doc['hypothesis']}"
                for k in ("entailment", "neutral", "contradiction")]


def xstorycloze_prompt(doc: dict[str, Any], words: dict[str, str]) -> tuple[str, list[str]]:
    """lm_eval/tasks/xstorycloze: the four sentences joined by spaces; the two endings."""
    return " ".join(doc[f"input_sentence_{i}"] for i in range(1, 5)), [doc["sentence_quiz1"], doc["sentence_quiz2"]]


def _detokenize(s: str) -> str:
    """lm_eval/tasks/paws-x/utils.py general_detokenize."""
    s = s.replace(" n't", "n't").replace(" )", ")").replace("( ", "(").replace('" ', '"').replace(' "', '"')
    return re.sub(r" (['.,])", r"\1", s)


def pawsx_prompt(doc: dict[str, Any], words: dict[str, Any]) -> tuple[str, list[str]]:
    """lm_eval/tasks/paws-x (paws_<lang>.yaml, with process_docs_paraphrases but for ja, ko and zh): no
    context; each choice is "<sentence1 minus final .,;>, <question>? <No|Yes>, <sentence2 with a
    lower-case first letter>"."""
    s1, s2 = doc["sentence1"], doc["sentence2"]
    if words.get("clean", True):
        s1, s2 = _detokenize(s1).strip(), _lower_first(_detokenize(s2).strip())
        s1 = s1[:-1] if s1.endswith((".", ",", ";")) else s1
    return "", [f"{s1}, {words['question']}? {words[k]}, {s2}" for k in ("no", "yes")]


@dataclass(frozen=True)
class Format:
    fields: tuple[str, ...]  # required non-empty strings
    label: str
    labels: tuple[int, ...]  # the label values, in choice order
    delimiter: str  # lm-eval's target_delimiter
    prompt: Callable[[dict[str, Any], dict[str, Any]], tuple[str, list[str]]]
    aliases: dict[str, str] = field(default_factory=dict)  # the original releases' field names -> ours


_STORY = {f"InputSentence{i}": f"input_sentence_{i}" for i in range(1, 5)}
FORMATS = {
    "xcopa": Format(("premise", "choice1", "choice2", "question"), "label", (0, 1), " ", xcopa_prompt),
    "xnli": Format(("premise", "hypothesis"), "label", (0, 1, 2), " ", xnli_prompt,
                   {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"}),
    "xstorycloze": Format((*_STORY.values(), "sentence_quiz1", "sentence_quiz2"), "answer_right_ending", (1, 2),
                          " ", xstorycloze_prompt,
                          {**_STORY, "RandomFifthSentenceQuiz1": "sentence_quiz1",
                           "RandomFifthSentenceQuiz2": "sentence_quiz2", "AnswerRightEnding": "answer_right_ending",
                           "InputStoryid": "id"}),
    "pawsx": Format(("sentence1", "sentence2"), "label", (0, 1), "", pawsx_prompt),
}
LABEL_NAMES = {"entailment": 0, "neutral": 1, "contradiction": 2}  # XNLI's text labels


@functools.cache
def prompt_words() -> dict[str, dict[str, dict[str, Any]]]:
    import yaml

    text = resources.files("xinstruct.data.benchmarks").joinpath(WORDS_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def words_for(task: str, lang: str) -> tuple[dict[str, Any], bool]:
    """The task's prompt words for `lang`, and whether they are the English fallback."""
    if task not in prompt_words():
        return {}, False
    table = prompt_words()[task]
    return (table[lang], False) if lang in table else (table[FALLBACK_LANG], True)


# ---------------------------------------------------------------- reading rows

def read_rows(spec: str, split: str | None = None) -> Iterator[Row]:
    """Rows of a local file or folder (`xinstruct.rows`) or of a cached hf: dataset, with their sources. A
    DatasetDict gives its `split`, else its test (or validation) split, else its only one."""
    if spec.startswith("hf:"):
        loaded = _load_hf(spec, split)
        yield from dataset_rows(spec, loaded, _pick_split(spec, loaded, split))
        return
    path = Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"benchmark data not found: {path}")
    if path.is_dir() and is_saved_dataset(path):
        import datasets

        loaded = datasets.load_from_disk(str(path))
        yield from dataset_rows(str(path), loaded, _pick_split(spec, loaded, split))
        return
    yield from read_file_rows(path, objects=False)  # make_item names a row that is not an object


def _pick_split(where: str, loaded: Any, split: str | None) -> str | None:
    if not hasattr(loaded, "keys"):  # a Dataset: no splits
        return None
    names = list(loaded.keys())
    pick = split or next((s for s in ("test", "validation") if s in names), names[0] if len(names) == 1 else None)
    if pick not in names:
        raise ValueError(f"{where}: choose a split (split=...) among {', '.join(names)}")
    return pick


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    """Hub access off while loading: xinstruct never downloads data (the flags are read when the modules
    are imported, so setting the environment here would be too late)."""
    import datasets
    import huggingface_hub.constants as hub

    flags = [(m, a) for m in (hub, datasets.config) for a in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if hasattr(m, a)]
    saved = [getattr(m, a) for m, a in flags]
    for m, a in flags:
        setattr(m, a, True)
    try:
        yield
    finally:
        for (m, a), value in zip(flags, saved, strict=True):
            setattr(m, a, value)


def _load_hf(spec: str, split: str | None) -> Any:
    import datasets

    name, config, split_ = ([*spec[3:].split(":"), None, None])[:3]
    try:
        with _offline():
            return datasets.load_dataset(name, config or None, split=split_ or None)
    except Exception as e:
        raise FileNotFoundError(f"{spec}: not in the local datasets cache ({type(e).__name__}: {e}); xinstruct "
                                f"reads datasets offline: download it once with datasets.load_dataset, or "
                                f"give a local file") from e


def lang_from_name(spec: str) -> str | None:
    """A language code among the name's words (xcopa_sw.jsonl, xnli.tr.test.tsv, hf:xcopa:sw)."""
    words = re.split(r"[^a-z]+", (spec[3:] if spec.startswith("hf:") else Path(spec).name).lower())
    return next((w for w in reversed(words) if w in NAMES), None)


# ---------------------------------------------------------------- rows -> items

def _reject(source: str, reason: str, detail: str, item_id: str | None = None, stage: str = "read") -> dict[str, Any]:
    return {"source": source, "reason": reason, "detail": detail, "id": item_id, "stage": stage}


def _gold(value: Any, fmt: Format) -> int:
    """The choice index of a label (an int, a numeric string or an XNLI label name)."""
    if isinstance(value, str):
        value = LABEL_NAMES.get(value.strip().lower(), value.strip())
    numeric = not isinstance(value, bool) and re.fullmatch(r"-?\d+(\.0*)?", str(value))
    if not numeric or int(float(value)) not in fmt.labels:
        raise ValueError(f"label {value!r} is not one of {list(fmt.labels)}")
    return fmt.labels.index(int(float(value)))


def make_item(task: str, row: Any, source: str, lang: str | None, default_id: str) -> Item | dict[str, Any]:
    """An Item, or a reject saying what is wrong with the row."""
    fmt = FORMATS[task]
    if not isinstance(row, dict):
        return _reject(source, "not_an_object", f"expected an object, got {type(row).__name__}")
    row = dict(row)
    for old, new in fmt.aliases.items():
        if old in row and new not in row:
            row[new] = row.pop(old)
    item_id = str(row["id"]) if row.get("id") not in (None, "") else default_id
    for name in fmt.fields:
        if not isinstance(row.get(name), str) or not row[name].strip():
            return _reject(source, "missing_field", f"{name!r} must be a non-empty string, got {row.get(name)!r}",
                           item_id)
    if task == "xcopa" and row["question"] not in ("cause", "effect"):
        return _reject(source, "bad_question", f"question must be cause or effect, got {row['question']!r}", item_id)
    try:
        gold = _gold(row.get(fmt.label), fmt)
    except ValueError as e:
        return _reject(source, "bad_label", str(e), item_id)
    if not isinstance(lang, str) or not lang.strip():
        return _reject(source, "no_language", "no language: pass lang=, add a 'lang' field or name the file "
                       "after it (xcopa_sw.jsonl)", item_id)
    doc = {"id": item_id, **{f: row[f] for f in fmt.fields}, fmt.label: fmt.labels[gold]}
    context, choices = fmt.prompt(doc, words_for(task, lang.strip())[0])
    return Item(item_id, lang.strip(), source, context, choices, gold, fmt.delimiter, doc)


def load_items(task: str, spec: str, *, lang: str | None = None,
               split: str | None = None) -> tuple[list[Item], list[dict[str, Any]]]:
    """Items and rejects, in file order; repeated ids get #2, #3... A source with no usable row raises.
    The language is `lang`, else the row's lang (or language) field, else one named in the file name."""
    if task not in FORMATS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    hint = lang_from_name(spec)
    items: list[Item] = []
    rejects: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source, row, bad in read_rows(spec, split):
        if bad is not None:
            rejects.append(_reject(source, bad.reason, bad.detail))
            continue
        field_lang = (row.get("lang") or row.get("language")) if isinstance(row, dict) else None
        got = make_item(task, row, source, lang or field_lang or hint, source.rsplit("/", 1)[-1])
        if isinstance(got, dict):
            rejects.append(got)
            continue
        base, k = got.id, 1
        while got.id in seen:
            k += 1
            got.id = got.doc["id"] = f"{base}#{k}"
        seen.add(got.id)
        items.append(got)
    if not items:
        reasons = sorted({r["reason"] for r in rejects})
        raise ValueError(f"no {task} item could be read from {spec} ({len(rejects)} rejected: {', '.join(reasons)})")
    return items, rejects


# ---------------------------------------------------------------- prompts

def fewshot_examples(items: list[Item], pool: list[Item], shots: int, seed: int, same_source: bool) -> list[list[Item]]:
    """The examples of each item, drawn as lm-eval's ContextSampler draws them for one task (language):
    `Random(seed)`, items in order, `sample(pool, shots + 1)` minus the item itself when the examples come
    from the evaluated rows, `sample(pool, shots)` from a separate few-shot source."""
    if shots <= 0:
        return [[] for _ in items]
    need = shots + 1 if same_source else shots
    if len(pool) < need:
        raise ValueError(f"{shots}-shot needs {need} few-shot rows in {items[0].lang!r}, found {len(pool)}")
    rnd = Random(seed)
    out = []
    for item in items:
        if same_source:
            out.append([x for x in rnd.sample(pool, shots + 1) if x is not item][:shots])
        else:
            out.append(rnd.sample(pool, shots))
    return out


def build_context(item: Item, examples: list[Item]) -> str:
    """lm-eval's plain-text prompt: each example's context, delimiter, right answer and a blank line."""
    shots = "".join(x.context + x.delimiter + x.choices[x.gold] + FEWSHOT_DELIMITER for x in examples)
    return shots + item.context


def requests_for(item: Item, context: str) -> list[tuple[str, str]]:
    return [(context, item.delimiter + c) for c in item.choices]


# ---------------------------------------------------------------- scoring and metrics

def score_requests(llm: LLM, requests: dict[str, list[tuple[str, str]]],
                   batch_size: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Log-likelihoods per key and the keys that could not be scored (the backend raised ValueError for that
    item, e.g. a choice longer than the context window), with why. `llm` is behind the request cache
    (`CachedLLM`), so a rerun scores only what a killed run had not finished.
    Items go to the backend in order, whole, up to `batch_size` pairs per call: a backend that batches by length
    (transformers) sorts each call itself, so calls should be large."""
    from tqdm import tqdm

    todo = list(requests)
    failed: dict[str, str] = {}
    scores: dict[str, list[float]] = {}
    with tqdm(total=len(requests), desc="multiple choice", unit="item") as bar:
        start = 0
        while start < len(todo):
            end, n = start + 1, len(requests[todo[start]])
            while end < len(todo) and n + len(requests[todo[end]]) <= batch_size:
                n += len(requests[todo[end]])
                end += 1
            scores.update(_score_part(llm, todo[start:end], requests, failed))
            bar.update(end - start)
            start = end
    return {k: scores[k] for k in requests if k in scores}, failed


def _score_part(llm: LLM, keys: list[str], requests: dict[str, list[tuple[str, str]]],
                failed: dict[str, str]) -> dict[str, list[float]]:
    try:
        lls = llm.loglikelihood([p for k in keys for p in requests[k]])
    except ValueError as e:
        if len(keys) == 1:
            failed[keys[0]] = f"{type(e).__name__}: {e}"
            return {}
        half = len(keys) // 2  # find the items that fail by halves; keep the others
        return {**_score_part(llm, keys[:half], requests, failed), **_score_part(llm, keys[half:], requests, failed)}
    out, i = {}, 0
    for k in keys:
        out[k], i = [float(x) for x in lls[i : i + len(requests[k])]], i + len(requests[k])
    return out


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=values.__getitem__)  # the first of equal maxima, as numpy's


def predict(lls: list[float], choices: list[str]) -> dict[str, int]:
    """lm-eval's predictions: raw, per character of the choice (acc_norm) and per UTF-8 byte (acc_bytes)."""
    return {"pred": _argmax(lls), "pred_norm": _argmax([x / len(c) for x, c in zip(lls, choices, strict=True)]),
            "pred_bytes": _argmax([x / len(c.encode()) for x, c in zip(lls, choices, strict=True)])}


METRICS = {"acc": "pred", "acc_norm": "pred_norm", "acc_bytes": "pred_bytes"}


def accuracy(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """n and the accuracies in percent over prediction rows."""
    n = len(rows)
    return {"n": n, **{m: 100.0 * sum(r[p] == r["gold"] for r in rows) / n if n else None for m, p in METRICS.items()}}


def summarize(rows: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-language accuracies and the overall ones (over items, as lm-eval's groups weight them)."""
    langs = sorted({r["lang"] for r in rows})
    return {lang: accuracy([r for r in rows if r["lang"] == lang]) for lang in langs}, accuracy(rows)


# ---------------------------------------------------------------- the run

def scoring_config(cfg: ModelConfig) -> ModelConfig:
    """The model config with its backend's options for exact scoring (its spec's `exact_scoring_options`: every
    position's logits on llama.cpp, float32 on transformers), under the user's."""
    from xinstruct.llm.backends import spec

    return dataclasses.replace(cfg, options={**spec(cfg.resolved_backend()).exact_scoring_options, **cfg.options})


def _by_lang(items: list[Item]) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for it in items:
        out.setdefault(it.lang, []).append(it)
    return out


def run_multiple_choice(cfg: MCConfig, llm: LLM | None = None) -> dict[str, Any]:
    """Evaluate, write OUT/result.json, predictions.jsonl and rejects.jsonl; returns the result. `llm` replaces
    loading the model (tests)."""
    from xinstruct.evaluate.results import make_result, write_result

    if cfg.engine not in ENGINES:
        raise ValueError(f"unknown engine {cfg.engine!r}; choose one of {', '.join(ENGINES)}")
    out = Path(cfg.out)
    items, rejects = load_items(cfg.task, cfg.data, lang=cfg.lang, split=cfg.split)
    langs = _by_lang(items)
    separate = bool(cfg.fewshot_data and cfg.shots)
    pools = _by_lang(load_items(cfg.task, cfg.fewshot_data, lang=cfg.lang)[0]) if separate else langs
    evaluated = {lang: its[: cfg.limit] if cfg.limit else its for lang, its in langs.items()}
    requests: dict[str, list[tuple[str, str]]] = {}
    for lang, its in evaluated.items():
        if cfg.shots and lang not in pools:
            raise ValueError(f"{cfg.fewshot_data} has no {cfg.task} rows in {lang!r} for few-shot examples")
        examples = fewshot_examples(its, pools.get(lang, []), cfg.shots, cfg.seed, not separate)
        requests.update({it.id: requests_for(it, build_context(it, ex)) for it, ex in zip(its, examples, strict=True)})
    if cfg.engine == "xinstruct":
        lls, failed, model, model_cfg, extra = _run_xinstruct(cfg, requests, out, llm)
    else:
        lls, failed, model, model_cfg, extra = _run_lmeval(cfg, langs, pools if separate else None, requests, out)
    rows = []
    for lang, its in evaluated.items():
        for it in its:
            if it.id not in lls:
                why = failed.get(it.id, "no score came back")
                rejects.append(_reject(it.source, "unscored", why, it.id, stage="score"))
                continue
            rows.append({"id": it.id, "lang": lang, "gold": it.gold, **predict(lls[it.id], it.choices),
                         "loglikelihoods": lls[it.id], "source": it.source})
    metrics, overall = summarize(rows)
    fallback = sorted(lang for lang in langs if words_for(cfg.task, lang)[1])
    notes = [f"no lm-eval {cfg.task} words for {', '.join(fallback)}: English ones used"] if fallback else []
    config = {**dataclasses.asdict(cfg), "model": dataclasses.asdict(model_cfg)}
    result = make_result("multiple_choice", cfg.task, model, metrics, overall, config,
                         extra_versions=("lm_eval",) if cfg.engine == "lm-eval" else (), engine=cfg.engine,
                         counts={"items": sum(map(len, evaluated.values())), "scored": len(rows),
                                 "rejected": len(rejects)}, english_fallback=fallback, notes=notes, **extra)
    write_jsonl(out / "predictions.jsonl", rows)
    write_jsonl(out / "rejects.jsonl", rejects)
    write_result(out, result)
    return result


def _run_xinstruct(cfg: MCConfig, requests: dict[str, list[tuple[str, str]]], out: Path,
                   given: LLM | None = None) -> tuple[Any, ...]:
    from xinstruct.execution.pool import ModelPool

    model_cfg = scoring_config(cfg.model)
    # the request cache of every command, OUT/cache/llm.sqlite; the weights load on the first uncached pair
    with ModelPool.open(None, out, given) as pool:
        llm = pool.get(model_cfg)
        keyed = {i: stable_hash(llm.fingerprint, reqs, n=24) for i, reqs in requests.items()}
        lls, failed = score_requests(llm, {keyed[i]: r for i, r in requests.items()}, cfg.pairs_per_call)
        model = {"label": cfg.label or Path(cfg.model.model).name, "backend": llm.backend, "model_id": llm.model_id}
    return ({i: lls[k] for i, k in keyed.items() if k in lls}, {i: failed[k] for i, k in keyed.items() if k in failed},
            model, model_cfg, {})


def _run_lmeval(cfg: MCConfig, langs: dict[str, list[Item]], pools: dict[str, list[Item]] | None,
                requests: dict[str, list[tuple[str, str]]], out: Path) -> tuple[Any, ...]:
    from xinstruct.evaluate.lmeval import hf_folder, run_lmeval

    folder = hf_folder(cfg.model)
    dtype = str(cfg.model.options.get("dtype", "float32"))
    res = run_lmeval(cfg.task, {lang: [it.doc for it in its] for lang, its in langs.items()},
                     fewshot_docs={lang: [it.doc for it in its] for lang, its in pools.items()} if pools else None,
                     pretrained=folder, dtype=dtype, shots=cfg.shots, seed=cfg.seed, limit=cfg.limit,
                     batch_size=cfg.batch_size, workdir=out / "lm-eval")
    mismatched = sorted(i for i, args in res.arguments.items() if [tuple(a) for a in args] != requests.get(i))
    model = {"label": cfg.label or Path(cfg.model.model).name, "backend": "lm-eval hf",
             "model_id": f"{folder.name}:{dtype}"}
    extra = {"lm_eval": {"version": res.version, "acc": res.acc, "prompt_mismatches": mismatched}}
    model_cfg = dataclasses.replace(cfg.model, options={**cfg.model.options, "dtype": dtype})
    return res.scores, {}, model, model_cfg, extra
