"""`xinstruct infer`: answer a question set with any model, resumably, with provenance; and
`xinstruct eval translate-questions`: carry a question set into other languages with any model.

    OUT/answers.jsonl   one row per question: question_id, lang, category, question, answer, the model
                        (label, backend, model_id), the messages sent, generation parameters, token counts
    OUT/rejects.jsonl   unusable question rows and failed calls, each with its reason
    OUT/manifest.json   the config, counts and call statistics
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.evaluate.questions import PACKAGED, Question, read_questions
from xinstruct.evaluate.runner import PromptItem, answer_prompts, dump_config
from xinstruct.execution.executors import ExecutorConfig
from xinstruct.io import atomic_write, write_jsonl
from xinstruct.languages import NAMES, language_name
from xinstruct.llm import LLM, GenerationParams, ModelConfig
from xinstruct.llm.identity import default_label


def parse_langs(value: str | None) -> set[str] | None:
    if not value or value == "all":
        return None
    return {x.strip().lower() for x in value.split(",") if x.strip()}


@dataclass
class InferConfig:
    questions: str = PACKAGED  # a question.jsonl file, a folder of them, or "packaged"
    out: str = "runs/infer"
    lang: str | None = None  # only these languages (comma-separated); default: all in the set
    question_lang: str | None = None  # the language of a file whose rows and name do not say it
    model: ModelConfig = field(default_factory=ModelConfig)
    label: str | None = None  # the model's name in reports (default: from its path)
    # The user message; {question} and {language} (the question's language name) are filled in. The default
    # asks the question as it is; "{question}\n\nAnswer in {language}." is the cross-lingual setting.
    prompt: str = "{question}"
    # The cross-lingual setting: each question is asked once per answer language (comma-separated codes), with
    # `answer_prompt`; each answer row's `lang` is its answer language, which fidelity and the judge check.
    answer_lang: str | None = None
    answer_prompt: str = "{question}\n\nAnswer in {language}."
    system: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int = 0
    limit: int | None = None  # the first N questions of each language
    shard_size: int = 32
    batch_size: int = 8
    cache: str | None = None
    progress: bool = True
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # local, or Ray Data actors


def answer_langs(value: str | None) -> list[str]:
    """The answer languages of `--answer-lang` (comma-separated codes), each a language xinstruct knows."""
    langs = sorted(parse_langs(value) or [])
    unknown = [x for x in langs if x not in NAMES]
    if unknown:
        raise ValueError(f"--answer-lang: unknown language code(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(NAMES))}")
    return langs


def question_items(questions: list[Question], prompt: str, system: str | None, answer_in: Sequence[str] = (),
                   answer_prompt: str = InferConfig.answer_prompt) -> list[PromptItem]:
    """One prompt per question; with `answer_in`, one per question and answer language, asked with `answer_prompt`
    (the row's `lang` is then the answer language, its `question` the message sent, `question_lang` the question's)."""
    items = []
    for q in questions:
        for target in answer_in or [None]:
            template = answer_prompt if target else prompt
            user = template.format(question=q.text, language=language_name(target or q.lang))
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user",
                                                                                      "content": user}]
            fields = {"question_id": q.question_id, "category": q.category, "question": user if target else q.text}
            if target:
                fields["question_lang"] = q.lang
            items.append(PromptItem(q.question_id, target or q.lang, messages, fields, q.source))
    return items


def _limit(questions: list[Question], n: int | None) -> list[Question]:
    if n is None:
        return questions
    seen: Counter[str] = Counter()
    out = []
    for q in questions:
        seen[q.lang] += 1
        if seen[q.lang] <= n:
            out.append(q)
    return out


def _manifest(out: Path, data: dict[str, Any]) -> None:
    with atomic_write(out / "manifest.json") as f:
        json.dump(data, f, indent=2, ensure_ascii=False, default=str)


def run_infer(cfg: InferConfig, llm: LLM | None = None) -> dict[str, Any]:
    """Answer every question; returns the manifest. A rerun skips finished shards and cached calls."""
    out = Path(cfg.out)
    questions, rejects = read_questions(cfg.questions, lang=cfg.question_lang, langs=parse_langs(cfg.lang))
    questions = _limit(questions, cfg.limit)
    if not questions:
        raise ValueError(f"no questions to answer in {cfg.questions}" + (f" for languages {cfg.lang}" if cfg.lang
                                                                          else ""))
    t0 = time.perf_counter()
    params = GenerationParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed)
    label = cfg.label or default_label(cfg.model)
    items = question_items(questions, cfg.prompt, cfg.system, answer_langs(cfg.answer_lang), cfg.answer_prompt)
    ans = answer_prompts("infer", items, cfg.model, params, out,
                         label=label, cfg=cfg, cache=cfg.cache, batch_size=cfg.batch_size, llm=llm,
                         executor=cfg.executor)
    rows = [{"question_id": r.pop("id"), **r} for r in ans.rows]
    write_jsonl(out / "answers.jsonl", rows)
    write_jsonl(out / "rejects.jsonl", rejects + ans.rejects)
    manifest = {"kind": "answers", "model": ans.model, "questions": len(questions), "prompts": len(items),
                "answers": len(rows),
                "rejected": len(rejects) + len(ans.rejects),
                "answers_by_lang": dict(sorted(Counter(r["lang"] for r in rows).items())),
                "stopped_by_length": sum(r["finish_reason"] == "length" for r in rows),
                "seconds": round(time.perf_counter() - t0, 2), "calls": ans.calls, "config": dump_config(cfg)}
    _manifest(out, manifest)
    return manifest


# ---- translating a question set ----------------------------------------------------------------

TRANSLATE_PROMPT_VERSION = "translate_question@1"
TRANSLATE_SYSTEM = "You are a professional translator."
TRANSLATE_USER = ("Translate this {source} question into {target}. Keep its meaning, names and numbers; do not "
                  "answer it. Reply with only the {target} translation.\n\n{question}")


@dataclass
class TranslateQuestionsConfig:
    questions: str = PACKAGED
    source_lang: str = "en"  # which language of the set to translate from
    to: str = ""  # target languages, comma-separated
    out: str = "runs/questions"
    model: ModelConfig = field(default_factory=ModelConfig)
    max_tokens: int = 512
    min_prob: float = 0.5  # language-ID probability a translation needs to count as the target language
    shard_size: int = 32
    batch_size: int = 8
    cache: str | None = None
    progress: bool = True


def clean_translation(text: str) -> str:
    t = re.sub(r"^\s*(?:here is |here's )?(?:the )?translation\s*:\s*", "", text.strip(), flags=re.IGNORECASE)
    return t.strip().strip("\"“”«»").strip()


def translate_questions(cfg: TranslateQuestionsConfig, llm: LLM | None = None) -> dict[str, Any]:
    """Write OUT/LANG.jsonl (the same question_ids and categories) for each target language, and
    OUT/rejects.jsonl: failed calls, truncated answers and answers language-ID does not read as the target."""
    from xinstruct.langid import default_identifier

    targets = sorted(parse_langs(cfg.to) or [])
    if not targets:
        raise ValueError("no target languages: pass --to sw,ta,...")
    src_q, rejects = read_questions(cfg.questions, langs={cfg.source_lang})
    if not src_q:
        raise ValueError(f"{cfg.questions} has no {cfg.source_lang} questions to translate")
    items = []
    for tgt in targets:
        for q in src_q:
            user = TRANSLATE_USER.format(source=language_name(cfg.source_lang), target=language_name(tgt),
                                         question=q.text)
            items.append(PromptItem(q.question_id, tgt, [{"role": "system", "content": TRANSLATE_SYSTEM},
                                                         {"role": "user", "content": user}],
                                    {"category": q.category, "source_text": q.text}, q.source))
    out = Path(cfg.out)
    params = GenerationParams(max_tokens=cfg.max_tokens)
    ans = answer_prompts("translate-questions", items, cfg.model, params, out, label=default_label(cfg.model),
                         cfg=cfg, cache=cfg.cache, batch_size=cfg.batch_size, llm=llm)
    ident = default_identifier()
    by_lang: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    rejects += ans.rejects
    for r in ans.rows:
        text = clean_translation(r["answer"])
        why = None
        if r["finish_reason"] == "length":
            why = ("truncated", "the translation hit the token limit")
        elif not text:
            why = ("empty", "the model returned no translation")
        elif ident.supports(r["lang"]):
            ok, detected, p = ident.is_language(text, r["lang"], cfg.min_prob)
            if not ok:
                why = ("wrong_language", f"detected {detected}, p({r['lang']})={p:.2f}")
        if why:
            rejects.append({"stage": "translate-questions", "reason": why[0], "unit": "question", "id": r["id"],
                            "detail": f"question {r['id']} -> {r['lang']}: {why[1]}: {text[:120]!r}", "record": r,
                            "source": r["source"]})
            continue
        by_lang[r["lang"]].append({"question_id": r["id"], "text": text, "category": r["category"], "lang": r["lang"],
                                   "meta": {"source_lang": cfg.source_lang, "source_text": r["source_text"],
                                            "translated_by": r["model"], "prompt": TRANSLATE_PROMPT_VERSION}})
    for lang, rows in by_lang.items():
        write_jsonl(out / f"{lang}.jsonl", rows)
    write_jsonl(out / "rejects.jsonl", rejects)
    manifest = {"kind": "questions", "source_lang": cfg.source_lang, "targets": targets,
                "translated": {k: len(v) for k, v in by_lang.items()}, "rejected": len(rejects),
                "rejects_by_reason": dict(Counter(r["reason"] for r in rejects)), "model": ans.model,
                "calls": ans.calls, "config": dump_config(cfg)}
    _manifest(out, manifest)
    return manifest
