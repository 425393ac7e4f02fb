"""Generation tasks scored against references: translation (BLEU, chrF), extractive QA (exact match, F1) and
summarisation (ROUGE), each over local files in the benchmarks' own formats (see `textsets.py`), answered by
any model through the same resumable runner as `xinstruct infer`.

    OUT/predictions.jsonl  per item: id, lang, the prediction, the reference(s), the model's raw answer, scores
    OUT/rejects.jsonl      unusable records (file:line, reason) and failed calls
    OUT/result.json        the metrics per target language and overall (unweighted mean over languages)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.evaluate import metrics, textsets
from xinstruct.evaluate.runner import PromptItem, answer_prompts, dump_config
from xinstruct.io import write_jsonl
from xinstruct.llm import LLM, GenerationParams, ModelConfig
from xinstruct.llm.identity import default_label

TASKS = {"translation": "translation", "qa": "qa", "summarization": "summarization"}
MAX_TOKENS = {"translation": 256, "qa": 64, "summarization": 128}


@dataclass
class TaskConfig:
    kind: str = "translation"  # translation | qa | summarization
    data: str = ""  # translation: a source text file (with `reference`) or a JSONL/TSV table; qa: SQuAD JSON or
    #                 JSONL; summarization: XL-Sum JSONL
    reference: str | None = None  # translation: the aligned reference file of a Flores-style pair
    src_lang: str | None = None  # translation: default from the file names or fields
    lang: str | None = None  # the target / document language, where the file does not say it
    name: str | None = None  # the task's name in reports (default: the data file's name)
    out: str = "runs/task"
    model: ModelConfig = field(default_factory=ModelConfig)
    label: str | None = None
    system: str | None = None
    max_tokens: int | None = None  # default per kind: 256 / 64 / 128
    limit: int | None = None  # the first N items
    bleu_tokenize: str | None = None  # default per target language (offline-safe; see metrics.bleu_tokenizer)
    chrf_word_order: int = 0  # 2 = chrF++
    shard_size: int = 32
    batch_size: int = 8
    cache: str | None = None
    progress: bool = True


def read_items(cfg: TaskConfig) -> tuple[list[Any], list[dict[str, Any]]]:
    if cfg.kind not in TASKS:
        raise ValueError(f"unknown task kind {cfg.kind!r}; one of {', '.join(TASKS)}")
    if not cfg.data:
        raise ValueError("no data: pass --data")
    if cfg.kind == "translation":
        if cfg.reference:
            return textsets.read_translation_files(cfg.data, cfg.reference, src_lang=cfg.src_lang, tgt_lang=cfg.lang)
        return textsets.read_translation_table(cfg.data, src_lang=cfg.src_lang, tgt_lang=cfg.lang)
    if cfg.kind == "qa":
        return textsets.read_qa(cfg.data, lang=cfg.lang)
    return textsets.read_summaries(cfg.data, lang=cfg.lang)


def score(kind: str, rows: list[dict[str, Any]], cfg: TaskConfig) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-language metrics (percent) and the sacrebleu signatures, which belong to the config."""
    signatures: dict[str, Any] = {}
    if kind == "translation":
        per = metrics.translation_scores([(r["prediction"], r["references"][0], r["lang"]) for r in rows],
                                         tokenize=cfg.bleu_tokenize, word_order=cfg.chrf_word_order)
        for lang, m in per.items():
            signatures[lang] = {"bleu": m.pop("bleu_signature"), "chrf": m.pop("chrf_signature")}
    elif kind == "qa":
        per = metrics.qa_scores([(r["prediction"], r["references"], r["lang"]) for r in rows])
    else:
        per = metrics.rouge_scores([(r["prediction"], r["references"][0], r["lang"]) for r in rows])
    rounded = {k: {m: round(v, 2) if isinstance(v, float) else v for m, v in d.items()} for k, d in per.items()}
    return rounded, signatures


def _item_scores(kind: str, pred: str, refs: list[str], lang: str) -> dict[str, float]:
    if kind == "qa":
        return {"exact_match": metrics.exact_match(pred, refs, lang), "f1": round(metrics.f1(pred, refs, lang), 2)}
    if kind == "summarization":
        r = metrics.rouge(pred, refs[0], lang)
        return {k: round(r[k], 2) for k in ("rouge1", "rouge2", "rougeL")}
    return {}


def run_task(cfg: TaskConfig, llm: LLM | None = None) -> dict[str, Any]:
    """Answer every item and score the answers; resumable. Returns the result."""
    from xinstruct.evaluate.results import make_result, write_result

    items, rejects = read_items(cfg)
    items = items[: cfg.limit] if cfg.limit else items
    if not items:
        raise ValueError(f"{cfg.data} holds no usable {cfg.kind} items ({len(rejects)} rejected)")
    out = Path(cfg.out)
    t0 = time.perf_counter()
    system = [{"role": "system", "content": cfg.system}] if cfg.system else []
    prompts = [PromptItem(it.id, it.lang, [*system, {"role": "user", "content": it.prompt()}],
                          {"references": it.references}, it.source) for it in items]
    params = GenerationParams(max_tokens=cfg.max_tokens or MAX_TOKENS[cfg.kind])
    label = cfg.label or default_label(cfg.model)
    ans = answer_prompts(cfg.kind, prompts, cfg.model, params, out, label=label, cfg=cfg, cache=cfg.cache,
                         batch_size=cfg.batch_size, llm=llm)
    rows = []
    for r in ans.rows:
        pred = textsets.qa_answer(r["answer"]) if cfg.kind == "qa" else r["answer"].strip()
        rows.append({"id": r["id"], "lang": r["lang"], "prediction": pred, "references": r["references"],
                     "answer": r["answer"], "finish_reason": r["finish_reason"], "source": r["source"],
                     **_item_scores(cfg.kind, pred, r["references"], r["lang"])})
    rejects = [dict(x) for x in rejects] + ans.rejects
    write_jsonl(out / "predictions.jsonl", rows)
    write_jsonl(out / "rejects.jsonl", rejects)
    per_lang, signatures = score(cfg.kind, rows, cfg) if rows else ({}, {})
    overall = {k: round(v, 2) if isinstance(v, float) else v for k, v in metrics.overall(per_lang).items()}
    config = {**dump_config(cfg), "signatures": signatures, "prompt_example": prompts[0].messages}
    name = cfg.name or Path(cfg.data).name
    result = make_result(cfg.kind, name, ans.model, per_lang, overall, config, extra_versions=("sacrebleu",),
                         rejected=len(rejects), seconds=round(time.perf_counter() - t0, 2), calls=ans.calls)
    write_result(out, result)
    return result
