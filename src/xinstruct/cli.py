"""The `xinstruct` command. Each subcommand maps its flags onto the same config objects a
YAML recipe fills, so `--config recipe.yaml` and flags combine (flags win)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from xinstruct import __version__
from xinstruct.cliargs import (
    executor_flags,
    executor_settings,
    model_flags,
    model_settings,
    setting_flag,
    settings_given,
)

EPILOG_CURATE = """\
examples:
  xinstruct curate --out runs/demo                      # sample corpus, all languages, embedded models
  xinstruct curate --input corpus.jsonl --lang sw --per-lang 5000 --out runs/sw
  xinstruct curate --input corpus.jsonl --lang sw --model ~/models/Qwen2.5-7B-Instruct --backend vllm
  xinstruct curate --input corpus.jsonl --lang sw --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b
  xinstruct curate --config recipe.yaml --set refine.iterations=2 --decontaminate xcopa_sw.jsonl

A killed run resumes when the same command runs again: finished shards are skipped and
finished LLM calls are answered from OUT/cache/llm.sqlite.
"""

EPILOG_STAGE = """\
examples:
  xinstruct generate --input corpus.jsonl --lang sw --out runs/sw-gen      # prepare + generate only
  xinstruct refine --input runs/sw-gen --out runs/sw-ref                  # label/refine its samples.jsonl
  xinstruct diversify --input runs/sw-ref --per-lang 1000 --out runs/sw   # cluster and sample
"""

CURATE_COMMANDS = {
    "curate": ("build the final cross-lingual instruction dataset from a native-language corpus",
               "Prepare a corpus (clean, language-ID, dedup, chunk), generate the English instruction each native "
               "text answers, label and refine the pairs with a judge, drop pairs overlapping evaluation sets, and "
               "sample across instruction clusters. Writes OUT/samples.jsonl, rejects.jsonl, unsampled.jsonl, "
               "manifest.json, the report (report.md, plots/) and the dataset card (README.md).",
               ("generate", "refine", "diversify")),
    "generate": ("prepare a corpus and generate candidate pairs (stage 1 only)",
                 "Prepare a corpus and write the candidate pairs (English instruction, native text) to OUT.",
                 ("generate",)),
    "refine": ("label and refine the pairs of a records file or run folder (stage 2 only)",
               "Label each pair with a judge (score and reason), refine pairs in the middle band and label them "
               "again, for up to --iterations rounds. Input: a records file or a run folder.", ("refine",)),
    "diversify": ("embed, cluster and sample the pairs of a records file or run folder (stage 3 only)",
                  "Embed the English instructions, cluster them with k-means and sample each language's pairs "
                  "across clusters. Input: a records file or a run folder.", ("diversify",)),
}


def _curate_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from xinstruct.curate.config import CurateConfig
    from xinstruct.curate.generate import BACKWARD_CANDIDATES

    defaults = CurateConfig()

    short, desc, commands = CURATE_COMMANDS[name]
    p = sub.add_parser(name, help=short, description=desc, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog=EPILOG_CURATE if name == "curate" else EPILOG_STAGE)
    p.add_argument("--config", help="YAML recipe; flags below override it")
    p.add_argument("--input", help="generate/curate: JSONL/Parquet file, folder of .txt/.jsonl/.parquet files, or a "
                                   "`datasets` folder (default: the packaged sample corpus). refine/diversify: a "
                                   "records file or a run folder")
    setting_flag(p, "--out", "out", defaults, "output folder")
    p.add_argument("--cache", help="request-cache file (default: OUT/cache/llm.sqlite)")
    if "generate" in commands:
        p.add_argument("--lang", help="target language code(s), comma-separated, or 'all' (default: all)")
        p.add_argument("--seeds", help="seed pairs: JSONL with instruction/response[/lang], or a folder of LANG.jsonl")
        p.add_argument("--num-shots", type=int, help="few-shot seed pairs per prompt: prompt --model with seed pairs "
                       "instead of training a backward model on them (the default for the embedded model)")
        p.add_argument("--candidates", type=int, help="instructions proposed per text; the relevance gate keeps the "
                       f"one the text gains most from (default {BACKWARD_CANDIDATES} for a backward model, 1 with "
                       "--num-shots)")
        p.add_argument("--limit", type=int, help="read only the first N documents")
    if "generate" in commands or "refine" in commands:
        model_flags(p, what="the model of all LLM stages",
                    threads="llama.cpp decode threads (default: 1 on <= 2 cores)",
                    model_help="'embedded' (SmolLM2-135M-Instruct GGUF), a .gguf file, a local checkpoint folder, or "
                    "the served model name with --base-url (all LLM stages)")
    if "generate" in commands or "refine" in commands:
        executor_flags(p)
    if "refine" in commands:
        model_flags(p, "judge-", "the judge/rewriter", model_help="the judge/rewriter model, if not --model",
                    threads=False)
        setting_flag(p, "--iterations", "refine.iterations", defaults, "refinement rounds", type=int)
        setting_flag(p, "--mode", "refine.mode", defaults, "what a refinement rewrites",
                     choices=["instruction", "response", "both"])
        setting_flag(p, "--relevance-threshold", "relevance.threshold", defaults, "reject pairs whose response gains "
                     "less than this (nats/token) from its instruction, or 'auto': set from the self-check")
        model_flags(p, "relevance-", "the relevance gate's scorer (a server needs /v1/completions with echo and "
                    "logprobs)", threads=False, model_help="the relevance gate's scorer (default 'embedded-scorer': "
                    "Gemma-3-270M base); any model that gives token log-probabilities")
        p.add_argument("--no-relevance", action="store_true", help="switch the relevance gate off")
        setting_flag(p, "--decide", "decide", defaults, "which selectors make the final keep (auto: those that pass "
                     "the self-check)", choices=["auto", "judge", "relevance", "both"])
        setting_flag(p, "--selfcheck-size", "selfcheck.size", defaults, "planted pairs of the self-check", type=int)
        p.add_argument("--no-selfcheck", action="store_true", help="skip the self-check of the selectors")
        p.add_argument("--decontaminate", action="append", default=[], metavar="EVAL_FILE",
                       help="drop pairs sharing an n-gram with this evaluation file or folder (repeatable)")
    if "diversify" in commands:
        p.add_argument("--per-lang", type=int, help="pairs to sample per language (default: all)")
        p.add_argument("--clusters", type=int, help="k-means clusters (default: about sqrt(n/2))")
        setting_flag(p, "--strategy", "diversify.strategy", defaults, "how each language's pairs are sampled across "
                     "clusters", choices=["round_robin", "proportional"])
        setting_flag(p, "--embedder", "diversify.embedder", defaults, "'embedded' (all-MiniLM-L6-v2) or a local "
                     "sentence-transformers folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting by its dotted path, e.g. refine.keep_at=5 (repeatable)")
    p.add_argument("--no-report", action="store_true", help="skip the report, plots and dataset card")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run, commands=commands)


def cmd_run(args: argparse.Namespace) -> int:
    from xinstruct.curate.config import load_recipe
    from xinstruct.curate.job import run_pipeline

    a = vars(args)
    flags: dict[str, object] = {"input": a.get("input"), "lang": a.get("lang"), "limit": a.get("limit"),
                                "cache": a.get("cache"), "generate.seeds": a.get("seeds"),
                                "generate.num_shots": a.get("num_shots"), "generate.candidates": a.get("candidates"),
                                "diversify.per_lang": a.get("per_lang"), "diversify.n_clusters": a.get("clusters")}
    flags.update(settings_given(args))
    flags.update(model_settings(args, "generate.model"))
    flags.update(executor_settings(args))
    flags.update(model_settings(args, "refine.model", "judge_", fallback=""))  # --judge-* flags win for the judge
    if a.get("decontaminate"):
        flags["decontaminate.eval_sets"] = a["decontaminate"]
    threshold = a.get("relevance_threshold")
    if threshold is not None and threshold != "auto":
        try:
            flags["relevance.threshold"] = float(threshold)
        except ValueError:
            raise ValueError(f"--relevance-threshold must be a number or 'auto', not {threshold!r}") from None
    flags.update(model_settings(args, "relevance.model", "relevance_"))
    if a.get("no_relevance"):
        flags["relevance.enabled"] = False
    if a.get("no_selfcheck"):
        flags["selfcheck.enabled"] = False
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + args.set
    if args.no_progress:
        overrides.append("progress=false")
    if args.no_report:
        overrides.append("report=false")
    cfg = load_recipe(args.config, overrides)
    if "generate" in args.commands:
        from xinstruct.train.backward import backward_summary, use_backward_model

        if cfg.input and not Path(cfg.input).exists():  # before minutes of training, not after
            raise FileNotFoundError(f"input not found: {cfg.input}")
        generator = use_backward_model(cfg.generate, progress=cfg.progress)
        if generator is not None:
            print(backward_summary(generator), file=sys.stderr)
    m = run_pipeline(cfg, args.commands)
    c = m["counts"]
    start = (f"read {c['documents_read']} documents ({c['documents_rejected']} rejected) -> {c['chunks']} chunks"
             if "documents_read" in c else f"read {c['records_read']} records")
    calls = [st["llm"] for st in m["stages"].values() if "llm" in st]
    print(f"{start} -> {c['candidates']} candidate pairs -> {c['samples']} samples "
          f"({c['unsampled']} not sampled); rejects: {sum(m['rejects_by_reason'].values())}; "
          f"LLM calls: {sum(x['generated'] for x in calls)} new, {sum(x['cache_hits'] for x in calls)} cached")
    if m.get("selection"):
        from xinstruct.curate.report import selection_line

        print(selection_line(m["selection"]))
    out = Path(cfg.out)
    print(f"wrote {out / 'samples.jsonl'}, rejects.jsonl, unsampled.jsonl, manifest.json"
          + (", report.md, plots/ and README.md (dataset card)" if cfg.report else ""))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from xinstruct.curate.report import write_report

    rep = write_report(args.dir)
    print(f"wrote {Path(args.dir) / 'report.md'}, report.json, README.md and {len(rep['plots'])} plots")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from xinstruct.io import export, read_records

    n = export(read_records(args.records), args.out, args.format)
    print(f"wrote {n} records to {args.out} ({args.format})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from xinstruct.curate.seeds import packaged_seed_languages
    from xinstruct.data import sample_corpus
    from xinstruct.execution.provenance import versions
    from xinstruct.llm.embedded import minilm_dir, smollm2_gguf

    info: dict[str, object] = {"versions": versions(), "seed_languages": packaged_seed_languages(),
                               "sample_corpus": str(sample_corpus())}
    for name, fn in (("embedded_llm", smollm2_gguf), ("embedded_embedder", minilm_dir)):
        try:
            info[name] = str(fn())
        except FileNotFoundError as e:
            info[name] = f"missing: {e}"
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="xinstruct", description="Cross-lingual instruction data for "
                                     "low-resource languages: curate, train, serve, evaluate.")
    parser.add_argument("--version", action="version", version=f"xinstruct {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in CURATE_COMMANDS:
        _curate_parser(sub, name)
    r = sub.add_parser("report", help="write the report, plots and dataset card of a run folder",
                       description="Write DIR/report.md, report.json, plots/*.png and README.md (the dataset card) "
                                   "from what a run wrote.")
    r.add_argument("dir", help="a run folder (with manifest.json)")
    r.set_defaults(func=cmd_report)
    e = sub.add_parser("export", help="convert records to the Alpaca or chat `messages` format",
                       description="Write records (e.g. OUT/samples.jsonl) as Alpaca (instruction/input/output) "
                                   "or chat `messages` rows that `datasets` and trl load directly; .jsonl or "
                                   ".parquet by the output's suffix.")
    e.add_argument("records", help="records file (.jsonl or .parquet)")
    e.add_argument("--format", choices=["alpaca", "messages", "records"], default="messages")
    e.add_argument("--out", required=True, help="output file (.jsonl or .parquet)")
    e.set_defaults(func=cmd_export)
    from xinstruct.train.cli import add_parsers

    add_parsers(sub)
    from xinstruct.evaluate.cli import add_parsers as add_eval_parsers

    add_eval_parsers(sub)
    from xinstruct.serve.cli import add_parsers as add_serve_parsers

    add_serve_parsers(sub)
    from xinstruct.experiment.cli import add_parsers as add_experiment_parsers

    add_experiment_parsers(sub)
    i = sub.add_parser("info", help="show versions, packaged seeds and where the embedded models are",
                       description="Print versions, the languages with packaged seeds, and the embedded models.")
    i.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, ImportError) as e:
        print(f"xinstruct: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("xinstruct: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    except Exception as e:
        from xinstruct.llm import LLMError

        if isinstance(e, LLMError):
            print(f"xinstruct: the model backend failed: {e}\nrun the same command again to resume",
                  file=sys.stderr)
            return 3
        raise


if __name__ == "__main__":
    sys.exit(main())
