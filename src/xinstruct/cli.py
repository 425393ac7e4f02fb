"""The `xinstruct` command. Each subcommand maps its flags onto the same config objects a
YAML recipe fills, so `--config recipe.yaml` and flags combine (flags win)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from xinstruct import __version__

EPILOG_CURATE = """\
examples:
  xinstruct curate --out runs/demo                      # sample corpus, all languages, embedded model
  xinstruct curate --input corpus.jsonl --lang sw --out runs/sw
  xinstruct curate --input corpus.jsonl --lang sw --model ~/models/Qwen2.5-7B-Instruct --backend vllm
  xinstruct curate --input corpus.jsonl --lang sw --base-url http://127.0.0.1:8000/v1 --model qwen2.5-7b
  xinstruct curate --config recipe.yaml --set generate.num_shots=4

A killed run resumes when the same command runs again: finished shards are skipped and
finished LLM calls are answered from OUT/cache/llm.sqlite.
"""


def _curate_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("curate", help="build cross-lingual instruction pairs from a native-language corpus",
                       description="Prepare a corpus (clean, language-ID, dedup, chunk) and generate the English "
                                   "instruction each native text answers (instruction back-translation). Writes "
                                   "OUT/samples.jsonl, OUT/rejects.jsonl and OUT/manifest.json.",
                       epilog=EPILOG_CURATE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML recipe; flags below override it")
    p.add_argument("--input", help="JSONL/Parquet file, folder of .txt/.jsonl/.parquet files, or a `datasets` "
                                   "folder saved with save_to_disk (default: the packaged sample corpus)")
    p.add_argument("--lang", help="target language code(s), comma-separated, or 'all' (default: all)")
    p.add_argument("--out", help="output folder (default: runs/curate)")
    p.add_argument("--model", help="'embedded' (SmolLM2-135M-Instruct GGUF), a .gguf file, a local checkpoint "
                                   "folder, or the served model name with --base-url")
    p.add_argument("--backend", choices=["auto", "llama.cpp", "transformers", "vllm", "openai"])
    p.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--threads", type=int, help="llama.cpp decode threads (default: 1 on <= 2 cores)")
    p.add_argument("--seeds", help="seed pairs: JSONL with instruction/response[/lang], or a folder of LANG.jsonl")
    p.add_argument("--num-shots", type=int, help="few-shot seed pairs per prompt")
    p.add_argument("--limit", type=int, help="read only the first N documents")
    p.add_argument("--cache", help="request-cache file (default: OUT/cache/llm.sqlite)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any setting by its dotted path, e.g. generate.temperature=0.7 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_curate)


def cmd_curate(args: argparse.Namespace) -> int:
    from xinstruct.config import load_recipe
    from xinstruct.pipeline import run_curate

    flags = {"input": args.input, "lang": args.lang, "out": args.out, "limit": args.limit, "cache": args.cache,
             "generate.model.model": args.model, "generate.model.backend": args.backend,
             "generate.model.base_url": args.base_url, "generate.model.options.n_threads": args.threads,
             "generate.seeds": args.seeds, "generate.num_shots": args.num_shots}
    overrides = [f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None] + args.set
    if args.no_progress:
        overrides.append("progress=false")
    cfg = load_recipe(args.config, overrides)
    m = run_curate(cfg)
    c = m["counts"]
    print(f"read {c['documents_read']} documents ({c['documents_rejected']} rejected) -> {c['chunks']} chunks -> "
          f"{c['samples']} samples; rejects: {sum(m['rejects_by_reason'].values())}; "
          f"LLM calls: {m['stages']['generate']['llm']['generated']} new, "
          f"{m['stages']['generate']['llm']['cache_hits']} cached")
    print(f"wrote {Path(cfg.out) / 'samples.jsonl'}, rejects.jsonl and manifest.json")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from xinstruct.io import export, read_records

    n = export(read_records(args.records), args.out, args.format)
    print(f"wrote {n} records to {args.out} ({args.format})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from xinstruct.curate.seeds import packaged_seed_languages
    from xinstruct.llm.embedded import minilm_dir, smollm2_gguf
    from xinstruct.pipeline import sample_corpus, versions

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
    _curate_parser(sub)
    e = sub.add_parser("export", help="convert records to the Alpaca or chat `messages` format",
                       description="Write records (e.g. OUT/samples.jsonl) as Alpaca (instruction/input/output) "
                                   "or chat `messages` rows that `datasets` and trl load directly; .jsonl or "
                                   ".parquet by the output's suffix.")
    e.add_argument("records", help="records file (.jsonl or .parquet)")
    e.add_argument("--format", choices=["alpaca", "messages", "records"], default="messages")
    e.add_argument("--out", required=True, help="output file (.jsonl or .parquet)")
    e.set_defaults(func=cmd_export)
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
