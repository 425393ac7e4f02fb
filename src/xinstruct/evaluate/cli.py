"""`xinstruct infer` and `xinstruct eval run|judge|fidelity|mc|translation|qa|summarize|translate-questions|report`.

Flags map onto the config dataclasses, which a YAML file (`--config`) also fills; `--set` reaches any
other setting by its dotted path (e.g. `--set judge.options.n_ctx=4096`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xinstruct.cliargs import (
    MODEL_FORMS,
    executor_flags,
    executor_settings,
    model_flags,
    model_settings,
    overrides,
    setting_flag,
)

EPILOG_INFER = """\
examples:
  xinstruct infer --model embedded --out runs/eval/base/answers                 # packaged questions, 11 languages
  xinstruct infer --model runs/demo-sft/merged --lang sw,ta --out runs/eval/sft/answers
  xinstruct infer --questions question.jsonl --question-lang sw --base-url http://127.0.0.1:8000/v1 \\
      --model gpt-4o-mini --label gpt4o-mini --out runs/eval/ref/answers
  xinstruct infer --questions en.jsonl --answer-lang sw,ta --out runs/eval/xl     # English asked, answer in sw, ta

The same command run again resumes: finished shards are kept and finished calls come from OUT/cache.
"""

EPILOG_EVAL = """\
examples:
  xinstruct eval run --model embedded --out runs/eval/base                  # answers + language fidelity
  xinstruct eval run --model runs/demo-sft/merged --out runs/eval/sft
  xinstruct eval judge --candidate runs/eval/sft/answers --reference runs/eval/base/answers --out runs/eval/judge
  xinstruct eval report runs/eval                                           # report.md, results.csv, plots/
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file of settings; flags override it")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by dotted path")
    p.add_argument("--no-progress", action="store_true")


def _overrides(args: argparse.Namespace, mapping: dict[str, str], model_key: str | None = "model",
               prefix: str = "") -> list[str]:
    a = vars(args)
    flags = {key: a.get(flag) for flag, key in mapping.items()}
    if model_key:
        flags.update(model_settings(args, model_key, prefix))
    flags.update(executor_settings(args))  # None (not set) where the command has no --executor
    return overrides(flags) + (["progress=false"] if a.get("no_progress") else []) + list(a.get("set") or [])


def _infer_flags(p: argparse.ArgumentParser) -> None:
    from xinstruct.evaluate.infer import InferConfig

    defaults = InferConfig()
    p.add_argument("--questions", help="question.jsonl file or folder of LANG.jsonl files (default: packaged set)")
    p.add_argument("--lang", help="only these languages, comma-separated")
    p.add_argument("--question-lang", help="the language of a question file whose rows and name do not say it")
    p.add_argument("--answer-lang", help="the cross-lingual setting: ask every question once per answer language "
                                         "(comma-separated codes) with the answer prompt ('Answer in {language}.'); "
                                         "fidelity and the judge check the answer language")
    p.add_argument("--label", help="the model's name in reports (default: from its path)")
    setting_flag(p, "--prompt", "prompt", defaults, "user message template with {question} and {language}")
    p.add_argument("--system", help="system prompt")
    setting_flag(p, "--max-tokens", "max_tokens", defaults, "the most tokens an answer may take", type=int)
    p.add_argument("--limit", type=int, help="the first N questions per language")


INFER_FLAGS = {"questions": "questions", "lang": "lang", "question_lang": "question_lang", "answer_lang": "answer_lang",
               "label": "label",
               "prompt": "prompt", "system": "system", "max_tokens": "max_tokens", "limit": "limit", "out": "out",
               "cache": "cache"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    _add_infer(sub)
    e = sub.add_parser("eval", help="evaluate models: judge, benchmarks, metrics, fidelity, report",
                       description="Evaluate models; every command writes OUT/result.json with its config, and "
                                   "`xinstruct eval report DIR` tabulates and plots them.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_EVAL)
    es = e.add_subparsers(dest="eval_command", required=True, metavar="EVAL_COMMAND")
    _add_run(es)
    _add_judge(es)
    _add_fidelity(es)
    _add_translate_questions(es)
    _add_mc(es)
    _add_report(es)


def _add_infer(sub: argparse._SubParsersAction) -> None:
    from xinstruct.evaluate.infer import InferConfig

    i = sub.add_parser("infer", help="answer a question set with any model (resumable, with provenance)",
                       description="Answer every question of a Vicuna-format question set with a model; writes "
                                   "OUT/answers.jsonl, rejects.jsonl and manifest.json.",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG_INFER)
    _common(i)
    model_flags(i)
    _infer_flags(i)
    executor_flags(i)
    setting_flag(i, "--out", "out", InferConfig(), "output folder")
    i.add_argument("--cache", help="request-cache file (default: OUT/cache/llm.sqlite)")
    i.set_defaults(func=cmd_infer)


def _add_run(es: argparse._SubParsersAction) -> None:
    r = es.add_parser("run", help="answer the question set and measure language fidelity (infer + fidelity)",
                      description="Answer a question set (default: the packaged one, 11 languages) with a model, "
                                  "write OUT/answers/ and OUT/fidelity/ (result.json), and, with --reference, judge "
                                  "the answers against that reference's into OUT/judge/.")
    _common(r)
    model_flags(r)
    _infer_flags(r)
    r.add_argument("--out", required=True, help="output folder for this model's evaluation")
    r.add_argument("--reference", help="answers of a reference model (folder or answers.jsonl) to judge against")
    model_flags(r, "judge-", "the judge", model_help=f"the judge (default: the embedded model): {MODEL_FORMS}")
    r.set_defaults(func=cmd_run)


def _add_judge(es: argparse._SubParsersAction) -> None:
    j = es.add_parser("judge", help="pairwise LLM judge: candidate vs reference answers, both orders",
                      description="Judge each question's candidate answer against the reference answer in both "
                                  "orders; win/tie/loss per question, win rate (ties half), bootstrap CI and "
                                  "length-controlled win rate per language. Writes OUT/judgments.jsonl, "
                                  "rejects.jsonl and result.json.")
    from xinstruct.evaluate.judge import JudgeConfig

    defaults = JudgeConfig()
    _common(j)
    j.add_argument("--candidate", help="answers of the model under test (folder or answers.jsonl)")
    j.add_argument("--reference", help="answers of the reference model")
    setting_flag(j, "--out", "out", defaults, "output folder")
    model_flags(j, "judge-", "the judge", model_help=f"the judge (default: the embedded model): {MODEL_FORMS}")
    setting_flag(j, "--template", "template", defaults, "judge_pairwise (A/B/tie), judge_scores (X-Instruction's "
                 "0-10 scores) or a YAML template path")
    setting_flag(j, "--orders", "orders", defaults, "2: both orders; 1: candidate first only", type=int,
                 choices=[1, 2])
    setting_flag(j, "--off-language", "off_language", defaults, "lose: an answer not in the question's language "
                 "loses to one that is (x-LLM's rule)", choices=["judge", "lose"])
    j.add_argument("--lang", help="only these languages")
    setting_flag(j, "--task", "task", defaults, "the question set's name in reports")
    j.add_argument("--cache", help="request-cache file (default: OUT/cache/llm.sqlite)")
    j.set_defaults(func=cmd_judge)


def _add_fidelity(es: argparse._SubParsersAction) -> None:
    f = es.add_parser("fidelity", help="share of answers written in the asked language (language-ID)",
                      description="Language-ID every answer and write the share in the asked language per "
                                  "language to OUT/result.json (default OUT: ANSWERS/fidelity).")
    f.add_argument("answers", help="answers folder or answers.jsonl")
    f.add_argument("--out")
    f.add_argument("--langid", choices=["py3langid", "lingua"])
    f.add_argument("--min-prob", type=float)
    f.add_argument("--label")
    f.set_defaults(func=cmd_fidelity)


def _add_translate_questions(es: argparse._SubParsersAction) -> None:
    t = es.add_parser("translate-questions", help="translate a question set into other languages with any model",
                      description="Translate one language of a question set into others; writes OUT/LANG.jsonl "
                                  "(usable as --questions) and rejects.jsonl (failed, truncated, wrong language).")
    from xinstruct.evaluate.infer import TranslateQuestionsConfig

    defaults = TranslateQuestionsConfig()
    _common(t)
    model_flags(t)
    t.add_argument("--questions", help="question file or folder (default: packaged set)")
    setting_flag(t, "--source-lang", "source_lang", defaults, "the language to translate from")
    t.add_argument("--to", required=True, help="target languages, comma-separated")
    setting_flag(t, "--out", "out", defaults, "output folder")
    t.add_argument("--cache")
    t.set_defaults(func=cmd_translate_questions)


def _add_mc(es: argparse._SubParsersAction) -> None:
    from xinstruct.evaluate.multiple_choice import MCConfig

    mc = es.add_parser("mc", help="multiple-choice benchmarks by log-likelihood (XCOPA, XNLI, XStoryCloze, PAWS-X)",
                       description="Score each choice by its log-likelihood under the model (lm-eval's prompts), "
                                   "zero- or few-shot; accuracy per language. Writes OUT/predictions.jsonl, "
                                   "rejects.jsonl and result.json. --engine lm-eval runs lm-evaluation-harness on "
                                   "the same local file instead (transformers-loadable models).")
    _common(mc)
    model_flags(mc)
    mc.add_argument("--task", required=True, choices=["xcopa", "xnli", "xstorycloze", "pawsx"])
    mc.add_argument("--data", help="a .jsonl/.json/.parquet/.tsv/.csv file, a `datasets` folder, or "
                                   "hf:NAME[:CONFIG[:SPLIT]] from the local cache (default: the packaged XCOPA-format "
                                   "fixture for --task xcopa)")
    mc.add_argument("--lang", help="the language, where rows and the file name do not say it")
    mc.add_argument("--split")
    setting_flag(mc, "--shots", "shots", MCConfig(task="", data="", out=""), "few-shot examples", type=int)
    mc.add_argument("--fewshot-data", help="where few-shot examples come from (default: the same file, minus the item)")
    mc.add_argument("--engine", choices=["xinstruct", "lm-eval"])
    mc.add_argument("--limit", type=int, help="the first N items of each language")
    mc.add_argument("--label", help="the model's name in reports")
    mc.add_argument("--out", required=True)
    mc.set_defaults(func=cmd_mc)

    for kind, short in (("translation", "translation by BLEU and chrF (Flores-style files)"),
                        ("qa", "extractive QA by exact match and F1 (XQuAD/MLQA format)"),
                        ("summarize", "summarisation by ROUGE (XL-Sum format)")):
        g = es.add_parser(kind, help=short, description=f"Score a model on {short}; writes OUT/predictions.jsonl, "
                                                        "rejects.jsonl and result.json.")
        _common(g)
        model_flags(g)
        g.add_argument("--data", required=True, help="the task file" + (" (source side of a Flores pair, or a "
                                                                         "JSONL/TSV with source and target)"
                                                                         if kind == "translation" else ""))
        if kind == "translation":
            g.add_argument("--reference", help="the aligned reference file of a Flores-style pair")
            g.add_argument("--src-lang", help="source language (default: from file names or fields)")
            g.add_argument("--bleu-tokenize", help="sacrebleu tokenizer (default: per target language, offline-safe)")
        g.add_argument("--lang", help="the target/document language where the file does not say it")
        g.add_argument("--name", help="the task's name in reports (default: the file name)")
        g.add_argument("--label", help="the model's name in reports")
        g.add_argument("--limit", type=int)
        g.add_argument("--max-tokens", type=int)
        g.add_argument("--out", required=True)
        g.add_argument("--cache")
        g.set_defaults(func=cmd_task, kind="summarization" if kind == "summarize" else kind)


def _add_report(es: argparse._SubParsersAction) -> None:
    rep = es.add_parser("report", help="tabulate and plot every result.json under DIR",
                        description="Write DIR/report.md, DIR/results.csv and DIR/plots/*.png from every "
                                    "result.json under DIR.")
    rep.add_argument("dir")
    rep.add_argument("--out", help="where to write (default: DIR)")
    rep.set_defaults(func=cmd_report)

def cmd_infer(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.evaluate.infer import InferConfig, run_infer

    m = run_infer(load_config(InferConfig, args.config, _overrides(args, INFER_FLAGS)))
    _print_answers(m)
    return 0


def _print_answers(m: dict[str, Any]) -> None:
    c = m["calls"]
    by_lang = ", ".join(f"{k} {v}" for k, v in m["answers_by_lang"].items())
    print(f"{m['answers']} answers from {m['model']['label']} ({by_lang}); {m['rejected']} rejected; "
          f"{m['stopped_by_length']} hit the token limit; calls: {c['generated']} new, {c['cache_hits']} cached; "
          f"{m['seconds']} s")
    print(f"wrote {Path(m['config']['out']) / 'answers.jsonl'}, rejects.jsonl, manifest.json")


def _fidelity_line(res: dict[str, Any]) -> str:
    per = ", ".join(f"{k} {v['fidelity']:.0f}%" for k, v in res["metrics"].items() if v["fidelity"] is not None)
    return f"language fidelity of {res['model']['label']}: {res['overall']['fidelity']}% overall ({per})"


def cmd_run(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.evaluate.fidelity import FidelityConfig, run_fidelity
    from xinstruct.evaluate.infer import InferConfig, run_infer

    out = Path(args.out)
    flags = {k: v for k, v in INFER_FLAGS.items() if k != "out"}
    cfg = load_config(InferConfig, args.config, _overrides(args, flags) + [f"out={json.dumps(str(out / 'answers'))}"])
    m = run_infer(cfg)
    _print_answers(m)
    res = run_fidelity(FidelityConfig(answers=str(out / "answers"), out=str(out / "fidelity")))
    print(_fidelity_line(res))
    if args.reference:
        from xinstruct.evaluate.judge import JudgeConfig, run_judge

        jcfg = load_config(JudgeConfig, None, _overrides(args, {}, "judge", "judge_") + [
            f"candidate={json.dumps(str(out / 'answers'))}", f"reference={json.dumps(args.reference)}",
            f"out={json.dumps(str(out / 'judge'))}"] + (["progress=false"] if args.no_progress else []))
        _print_judge(run_judge(jcfg))
    return 0


def _print_judge(res: dict[str, Any]) -> None:
    o = res["overall"]
    print(f"{res['model'].get('label')} vs {res['reference'].get('label')}: win {o['win']}, tie {o['tie']}, "
          f"loss {o['loss']}, unparsed {o['unparsed']} -> win rate {o['win_rate']}% "
          f"[{o['ci_low']}, {o['ci_high']}], length-controlled {o['lc_win_rate']}%")


def cmd_judge(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.evaluate.judge import JudgeConfig, run_judge

    mapping = {k: k for k in ("candidate", "reference", "out", "template", "orders", "off_language", "lang", "task",
                              "cache")}
    res = run_judge(load_config(JudgeConfig, args.config, _overrides(args, mapping, "judge", "judge_")))
    _print_judge(res)
    print(f"wrote {Path(res['config']['out']) / 'judgments.jsonl'}, rejects.jsonl, result.json")
    return 0


def cmd_fidelity(args: argparse.Namespace) -> int:
    from xinstruct.evaluate.fidelity import FidelityConfig, run_fidelity

    cfg = FidelityConfig(answers=args.answers, out=args.out, label=args.label)
    if args.langid:
        cfg.langid = args.langid
    if args.min_prob is not None:
        cfg.min_prob = args.min_prob
    print(_fidelity_line(run_fidelity(cfg)))
    return 0


def cmd_translate_questions(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.evaluate.infer import TranslateQuestionsConfig, translate_questions

    mapping = {"questions": "questions", "source_lang": "source_lang", "to": "to", "out": "out", "cache": "cache"}
    m = translate_questions(load_config(TranslateQuestionsConfig, args.config, _overrides(args, mapping)))
    print(f"translated {sum(m['translated'].values())} questions ({m['translated']}); {m['rejected']} rejected "
          f"({m['rejects_by_reason']}); wrote {m['config']['out']}/LANG.jsonl and rejects.jsonl")
    return 0


def cmd_mc(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.evaluate.multiple_choice import (
        MCConfig,
        packaged_fixture,
        run_multiple_choice,
    )

    mapping = {k: k for k in ("task", "data", "lang", "split", "shots", "fewshot_data", "engine", "limit", "label",
                              "out")}
    overrides = [o for o in _overrides(args, mapping) if o != "progress=false"]
    if not args.data and args.task == "xcopa":
        overrides.append(f"data={json.dumps(str(packaged_fixture()))}")
    res = run_multiple_choice(load_config(MCConfig, args.config, overrides))
    per = ", ".join(f"{k} {v['acc']:.1f}" for k, v in res["metrics"].items())
    print(f"{res['task']}: accuracy {res['overall']['acc']:.2f}% over {res['overall']['n']} items ({per}); "
          f"wrote {Path(args.out) / 'result.json'}, predictions.jsonl, rejects.jsonl")
    return 0


def cmd_task(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.evaluate.tasks import TaskConfig, run_task

    mapping = {k: k for k in ("data", "reference", "src_lang", "bleu_tokenize", "lang", "name", "label", "limit",
                              "max_tokens", "out", "cache")}
    res = run_task(load_config(TaskConfig, args.config, _overrides(args, mapping) + [f"kind={args.kind}"]))
    figures = ", ".join(f"{k} {v:.2f}" for k, v in res["overall"].items() if k != "n")
    print(f"{res['kind']} {res['task']}: {res['overall']['n']} items, {figures}; {res['rejected']} rejected; "
          f"wrote {res['config']['out']}/predictions.jsonl, rejects.jsonl, result.json")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from xinstruct.evaluate.report import build_eval_report

    s = build_eval_report(args.dir, args.out)
    print(f"{s['results']} results -> wrote {s['report']}, results.csv and {len(s['plots'])} plots")
    return 0
