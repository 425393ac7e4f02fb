"""Pairwise LLM judging: the candidate model's answer against a reference model's, question by question.

Each question is judged in both orders (candidate as A, then as B), so a judge that prefers a position
cancels out: both orders for the candidate is a win, both against is a loss, anything else a tie. A verdict
the parser cannot read (after `retries` corrected re-asks) makes the question `unparsed`: counted apart and
left out of the win rate, never guessed. Win rate counts ties as half; the report gives a bootstrap
confidence interval and a length-controlled win rate (see `stats.py`).

`off_language="lose"` applies x-LLM's rule before the judge: an answer not in the question's language
loses to one that is (no judge call); when both or neither are, the judge decides.

    OUT/judgments.jsonl  per question: both answers, each order's verdict, reason and raw answer(s)
    OUT/rejects.jsonl    questions without a partner answer, unusable rows
    OUT/result.json      win/tie/loss, win rate, CI and length-controlled win rate per language
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xinstruct.evaluate.fidelity import answer_text, answers_file
from xinstruct.evaluate.infer import parse_langs
from xinstruct.evaluate.runner import dump_config
from xinstruct.evaluate.stats import SCORE, bootstrap_ci, length_controlled_win_rate, win_rate
from xinstruct.io import read_jsonl, write_jsonl
from xinstruct.languages import language_name
from xinstruct.llm import LLM, ChatRequest, Generation, GenerationParams, ModelConfig
from xinstruct.llm.identity import default_label, model_identity
from xinstruct.parsers import PairwiseVerdict, ParseError, load_template_with_parser
from xinstruct.records import Reject, stable_hash

JUDGE_FORMAT = "1"
OFF_LANGUAGE = ("judge", "lose")


@dataclass
class JudgeConfig:
    candidate: str = ""  # answers of the model under test: an answers.jsonl or the folder holding one
    reference: str = ""  # answers of the reference model, same questions
    out: str = "runs/judge"
    task: str = "questions"  # the question set's name in reports
    judge: ModelConfig = field(default_factory=ModelConfig)
    template: str = "judge_pairwise"  # or judge_scores (X-Instruction's 0-10 scores), or a YAML path
    orders: int = 2  # 2: both orders (position bias cancels); 1: candidate first only, as X-Instruction ran
    off_language: str = "judge"
    min_prob: float = 0.5  # language-ID probability for off_language="lose"
    lang: str | None = None
    answer_max_chars: int = 4000  # longer answers are cut for the judge (the length feature uses full length)
    max_tokens: int = 256
    retries: int = 1
    bootstrap: int = 1000
    seed: int = 0
    shard_size: int = 16
    batch_size: int = 8
    cache: str | None = None
    progress: bool = True

    def validate(self) -> None:
        if self.orders not in (1, 2):
            raise ValueError(f"orders must be 1 or 2, not {self.orders}")
        if self.off_language not in OFF_LANGUAGE:
            raise ValueError(f"off_language must be one of {OFF_LANGUAGE}, not {self.off_language!r}")
        if not self.candidate or not self.reference:
            raise ValueError("pass both --candidate and --reference answers")


def verdict_schema(parser: str) -> dict[str, Any]:
    if parser.startswith("pairwise_scores"):
        props: dict[str, Any] = {"reason": {"type": "string", "maxLength": 300},
                                 "score_a": {"type": "integer", "minimum": 0, "maximum": 10},
                                 "score_b": {"type": "integer", "minimum": 0, "maximum": 10}}
    else:
        props = {"reason": {"type": "string", "maxLength": 300}, "winner": {"type": "string",
                                                                            "enum": ["A", "B", "tie"]}}
    return {"type": "object", "properties": props, "required": list(props)}


def _index(path: Path, side: str, langs: set[str] | None, rejects: list[dict[str, Any]]
           ) -> tuple[dict[tuple[str, str], dict[str, Any]], dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    model: dict[str, Any] = {}
    for n, row in enumerate(read_jsonl(path), 1):
        src = f"{path}:{n}"
        qid, lang, text = row.get("question_id", row.get("id")), row.get("lang"), answer_text(row)
        if qid is None or not lang or text is None:
            missing = [k for k, v in (("question_id", qid), ("lang", lang), ("answer", text)) if v is None or v == ""]
            rejects.append({"stage": "judge", "reason": "missing_field", "unit": "answer", "source": src,
                            "detail": f"{src}: the {side} row has no {', '.join(missing)}", "record": row})
            continue
        if langs and lang not in langs:
            continue
        model = model or (row.get("model") if isinstance(row.get("model"), dict) else {"label": path.parent.name})
        rows[(str(lang), str(qid))] = {**row, "answer": text, "source": src}
    return rows, model


def pair_answers(cfg: JudgeConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any],
                                             dict[str, Any]]:
    """The questions both sides answered, as judging units; a reject for each answer without a partner."""
    rejects: list[dict[str, Any]] = []
    langs = parse_langs(cfg.lang)
    cand, cand_model = _index(answers_file(cfg.candidate), "candidate", langs, rejects)
    ref, ref_model = _index(answers_file(cfg.reference), "reference", langs, rejects)
    units = []
    for key in sorted(cand.keys() | ref.keys()):
        if key not in ref or key not in cand:
            side, row = ("reference", cand[key]) if key not in ref else ("candidate", ref[key])
            rejects.append({"stage": "judge", "reason": f"no_{side}", "unit": "answer", "source": row["source"],
                            "detail": f"{row['source']}: question {key[1]} ({key[0]}) has no {side} answer",
                            "record": row})
            continue
        c, r = cand[key], ref[key]
        question = c.get("question") or r.get("question") or c.get("instruction") or r.get("instruction")
        if not question:
            rejects.append({"stage": "judge", "reason": "missing_field", "unit": "answer", "source": c["source"],
                            "detail": f"{c['source']}: question {key[1]} ({key[0]}): neither side carries the "
                                      "question text", "record": c})
            continue
        units.append({"lang": key[0], "question_id": key[1], "category": c.get("category", r.get("category")),
                      "question": question, "candidate": c["answer"], "reference": r["answer"]})
    return units, rejects, cand_model, ref_model


class PairwiseJudge:
    """Judges (question, candidate, reference) units in one or both orders."""

    def __init__(self, cfg: JudgeConfig, llm: LLM):
        self.cfg, self.llm = cfg, llm
        self.template, self.parse = load_template_with_parser(cfg.template)
        self.params = GenerationParams(max_tokens=cfg.max_tokens, json_schema=verdict_schema(self.template.parser))
        self._ident: Any = None

    def messages(self, lang: str, question: str, a: str, b: str) -> list[dict[str, str]]:
        n = self.cfg.answer_max_chars
        user = self.template.user.format(language=language_name(lang), question=question, answer_a=a[:n],
                                         answer_b=b[:n])
        return [{"role": "system", "content": self.template.system}, {"role": "user", "content": user}]

    def _in_language(self, text: str, lang: str) -> bool | None:
        from xinstruct.langid import default_identifier

        self._ident = self._ident or default_identifier()
        if not self._ident.supports(lang):
            return None
        return self._ident.is_language(text, lang, self.cfg.min_prob)[0] if text.strip() else False

    def _read(self, gen: Generation) -> PairwiseVerdict | ParseError:
        if gen.error is not None:
            return ParseError("llm_error", gen.error)
        return self.parse(gen.text)

    def _ask(self, reqs: list[ChatRequest]) -> list[tuple[PairwiseVerdict | ParseError, list[str]]]:
        """Verdicts for the requests, re-asking (with the model's answer and what was wrong) on parse errors."""
        gens = self.llm.generate(reqs)
        results = [self._read(g) for g in gens]
        raws = [[g.text] for g in gens]
        for _ in range(self.cfg.retries):
            todo = [i for i, r in enumerate(results) if isinstance(r, ParseError) and r.reason != "llm_error"]
            if not todo:
                break
            retry = [ChatRequest(tuple([*reqs[i].messages, {"role": "assistant", "content": raws[i][-1]},
                                        {"role": "user", "content": self._correction(results[i])}]), self.params)
                     for i in todo]
            for i, g in zip(todo, self.llm.generate(retry), strict=True):
                raws[i].append(g.text)
                results[i] = self._read(g)
        return list(zip(results, raws, strict=True))

    def _correction(self, err: Any) -> str:
        shape = ('{"reason": "<one short sentence>", "score_a": <0-10>, "score_b": <0-10>}'
                 if self.template.parser.startswith("pairwise_scores")
                 else '{"reason": "<one short sentence>", "winner": "A" | "B" | "tie"}')
        return f"Your answer could not be read ({err.detail[:200]}). Reply again with only a JSON object: {shape}"

    def __call__(self, units: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Reject]]:
        rows: list[dict[str, Any]] = []
        asks: list[tuple[int, str, ChatRequest]] = []
        for k, u in enumerate(units):
            row = {**u, "len_candidate": len(u["candidate"]), "len_reference": len(u["reference"]), "orders": []}
            rows.append(row)
            if self.cfg.off_language == "lose":
                c_ok = self._in_language(u["candidate"], u["lang"])
                r_ok = self._in_language(u["reference"], u["lang"])
                row["candidate_in_language"], row["reference_in_language"] = c_ok, r_ok
                if c_ok is not None and r_ok is not None and c_ok != r_ok:
                    row["verdict"] = "win" if c_ok else "loss"
                    row["decided_by"] = "off_language"
                    continue
            asks.append((k, "candidate_first", ChatRequest(tuple(self.messages(u["lang"], u["question"],
                                                                               u["candidate"], u["reference"])),
                                                           self.params)))
            if self.cfg.orders == 2:
                asks.append((k, "reference_first", ChatRequest(tuple(self.messages(u["lang"], u["question"],
                                                                                   u["reference"], u["candidate"])),
                                                               self.params)))
        answers = self._ask([a[2] for a in asks]) if asks else []
        for (k, order, _req), (res, raw) in zip(asks, answers, strict=True):
            o: dict[str, Any] = {"order": order, "raw": raw}
            if isinstance(res, ParseError):
                o.update(outcome="unparsed", error=f"{res.reason}: {res.detail}")
            else:
                cand_is = "A" if order == "candidate_first" else "B"
                outcome = "tie" if res.winner == "tie" else ("win" if res.winner == cand_is else "loss")
                o.update(outcome=outcome, winner=res.winner, reason=res.reason, score_a=res.score_a,
                         score_b=res.score_b)
            rows[k]["orders"].append(o)
        for row in rows:  # after the calls: a lazily loaded model knows its id only then
            row["judge"] = {"model_id": self.llm.model_id, "backend": self.llm.backend, "prompt": self.template.id}
            if "verdict" not in row:
                row["verdict"], row["consistent"] = combine([o["outcome"] for o in row["orders"]])
                row["decided_by"] = "judge"
        return rows, []


def combine(outcomes: list[str]) -> tuple[str, bool | None]:
    """One verdict from the orders' outcomes: the mean score above 0.5 wins, below loses, at 0.5 ties;
    any unreadable order makes the question `unparsed`. Also whether the orders agreed."""
    if not outcomes or "unparsed" in outcomes:
        return "unparsed", None
    s = sum(SCORE[o] for o in outcomes) / len(outcomes)
    verdict = "win" if s > 0.5 else "loss" if s < 0.5 else "tie"
    return verdict, (len(set(outcomes)) == 1) if len(outcomes) > 1 else None


def summarize(rows: list[dict[str, Any]], bootstrap: int = 1000, seed: int = 0) -> dict[str, Any]:
    """win/tie/loss/unparsed counts, win rate (ties half), its bootstrap CI, the length-controlled win rate and
    the share of questions whose two orders agreed."""
    judged = [r for r in rows if r["verdict"] != "unparsed"]
    scores = [SCORE[r["verdict"]] for r in judged]
    lo, hi = bootstrap_ci(scores, bootstrap, seed)
    both = [r for r in judged if r.get("consistent") is not None]
    return {"n": len(rows), "win": sum(r["verdict"] == "win" for r in rows),
            "tie": sum(r["verdict"] == "tie" for r in rows), "loss": sum(r["verdict"] == "loss" for r in rows),
            "unparsed": len(rows) - len(judged), "win_rate": win_rate(scores), "ci_low": lo, "ci_high": hi,
            "lc_win_rate": length_controlled_win_rate(scores, [r["len_candidate"] for r in judged],
                                                      [r["len_reference"] for r in judged]),
            "consistency": round(100 * sum(r["consistent"] for r in both) / len(both), 2) if both else None,
            "decided_by_language": sum(r.get("decided_by") == "off_language" for r in rows)}


def run_judge(cfg: JudgeConfig, llm: LLM | None = None) -> dict[str, Any]:
    """Judge every question both sides answered; resumable (sharded, request-cached). Returns the result."""
    from xinstruct.evaluate.results import file_sha256, make_result, write_result
    from xinstruct.execution.pool import ModelPool
    from xinstruct.execution.shards import read_shards, run_sharded

    cfg.validate()
    units, rejects, cand_model, ref_model = pair_answers(cfg)
    if not units:
        raise ValueError(f"no question has both a candidate ({cfg.candidate}) and a reference ({cfg.reference}) "
                         "answer")
    out = Path(cfg.out)
    pool = ModelPool.open(cfg.cache, out, llm)
    stage = pool.stage_llm(cfg.judge)
    judge: PairwiseJudge | None = None
    template = load_template_with_parser(cfg.template)[0]

    def step(batch: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Reject]]:
        nonlocal judge
        judge = judge or PairwiseJudge(cfg, stage)
        return judge(batch)

    settings = {k: v for k, v in dump_config(cfg).items()
                if k not in ("out", "cache", "bootstrap", "seed", "candidate", "reference", "lang", "judge")}
    key = stable_hash(JUDGE_FORMAT, model_identity(cfg.judge), template.id, settings, units)
    with pool:
        folder, stats = run_sharded("judge", key, units, len(units), step, cfg.batch_size, cfg, out / "work")
    rows = read_shards(folder)[0]
    write_jsonl(out / "judgments.jsonl", rows)
    write_jsonl(out / "rejects.jsonl", rejects)
    per_lang = {lang: summarize([r for r in rows if r["lang"] == lang], cfg.bootstrap, cfg.seed)
                for lang in sorted({r["lang"] for r in rows})}
    judge_card = {"label": default_label(cfg.judge), "model": cfg.judge.model, "backend": cfg.judge.resolved_backend(),
                  "model_id": rows[0]["judge"]["model_id"] if rows else None, "prompt": template.id}
    config = {**dump_config(cfg), "candidate_sha256": file_sha256(answers_file(cfg.candidate)),
              "reference_sha256": file_sha256(answers_file(cfg.reference))}
    result = make_result("judge", cfg.task, cand_model, per_lang,
                         summarize(rows, cfg.bootstrap, cfg.seed), config, reference=ref_model, judge=judge_card,
                         calls={**stage.stats(), "seconds": round(stats.seconds, 2),
                                "shards_resumed": stats.extra["shards_resumed"]}, rejected=len(rejects))
    write_result(out, result)
    return result
