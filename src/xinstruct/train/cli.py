"""`xinstruct train sft|backward|dpo` and `xinstruct data translation|mix|preferences`.

Flags map onto the same config dataclasses a YAML file (`--config`) fills; `--set` reaches
any other setting by its dotted path (e.g. `--set trainer.gradient_checkpointing=true`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from xinstruct.cliargs import MODEL_FORMS, model_flags, model_settings, setting_flag
from xinstruct.cliargs import overrides as model_overrides

EPILOG_TRAIN = """\
examples:
  xinstruct train sft --data runs/demo --out runs/sft                  # LoRA on the embedded SmolLM2
  xinstruct train sft --data xinstruct_sw+alpaca_en*0.5+translation_en-sw --alias alias.yaml \\
      --model ~/models/Qwen2.5-1.5B-Instruct --format answer_in --out runs/sft-sw
  accelerate launch -m xinstruct train sft --data ... --method full    # one or several GPUs
  xinstruct train backward --out runs/backward                         # native text -> instruction
  xinstruct train dpo --data runs/prefs --out runs/dpo                 # after `xinstruct data preferences`

The same command run again resumes from the last checkpoint in OUT/checkpoints.
"""

EPILOG_DATA = """\
examples:
  xinstruct data translation --parallel en-sw.tsv --src en --tgt sw --out translation_en-sw.jsonl
  xinstruct data mix xinstruct_sw+alpaca_en*0.5 --alias alias.yaml --out runs/mix
  xinstruct data preferences --data runs/demo --samples 4 --out runs/prefs
"""


def _train_flags(p: argparse.ArgumentParser, *, data_help: str, defaults: Any) -> None:
    p.add_argument("--config", help="YAML file of settings; flags override it")
    p.add_argument("--data", help=data_help)
    p.add_argument("--alias", help="alias file (YAML/JSON) naming the sources in --data")
    p.add_argument("--model", help="base model: 'embedded' (SmolLM2-135M-Instruct), a .gguf file or a local HF folder")
    p.add_argument("--out", help="run folder")
    setting_flag(p, "--method", "method", defaults, "LoRA adapter or full fine-tuning", choices=["lora", "full"])
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int, help="> 0: stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument("--max-length", type=int, help="tokens per example")
    p.add_argument("--lora-r", type=int)
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-merge", action="store_true", help="keep only the adapter; no merged model")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by dotted path")
    p.add_argument("--overwrite", action="store_true", help="replace a run in OUT made with other settings")
    p.add_argument("--no-progress", action="store_true")


def _overrides(a: dict[str, Any], mapping: dict[str, str]) -> list[str]:
    out = [f"{key}={json.dumps(a[flag])}" for flag, key in mapping.items() if a.get(flag) is not None]
    return out + list(a.get("set") or [])


TRAIN_FLAGS = {"data": "data", "alias": "alias", "model": "model", "out": "out", "method": "method",
               "epochs": "epochs", "max_steps": "max_steps", "batch_size": "batch_size", "grad_accum": "grad_accum",
               "lr": "lr", "max_length": "max_length", "lora_r": "lora.r", "threads": "threads",
               "format": "format", "beta": "beta"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="fine-tune a model: sft, backward (instruction generator), dpo",
                       description="Fine-tune a causal LM with trl/peft.", epilog=EPILOG_TRAIN,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ts = t.add_subparsers(dest="train_command", required=True, metavar="KIND")
    sft = ts.add_parser("sft", help="supervised fine-tuning on curated pairs or any chat/Alpaca data",
                        description="Supervised fine-tuning (loss on the response tokens only). Writes OUT/adapter, "
                                    "OUT/merged (standalone model; with model.gguf when the base is a GGUF), "
                                    "OUT/train.json, OUT/loss.png and OUT/data/.", epilog=EPILOG_TRAIN,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    from xinstruct.train.dpo import DPOTrainConfig, PreferenceConfig
    from xinstruct.train.sft import TrainConfig

    _train_flags(sft, data_help="a run folder, a JSONL/Parquet file, or sources joined by '+' (a*0.5 samples half)",
                 defaults=TrainConfig())
    setting_flag(sft, "--format", "format", TrainConfig(), "prompt format: the model's chat template (chat), "
                 "Alpaca (x-LLM), or the chat template with 'Answer in <language>.' appended (X-Instruction)",
                 choices=["chat", "alpaca", "answer_in"])
    sft.set_defaults(func=cmd_train, kind="sft")
    bw = ts.add_parser("backward", help="train the instruction generator (native text -> English instruction)",
                       description="Train the backward model on seed pairs (and curated records), with the "
                                   "generation stage's zero-shot prompt; `xinstruct generate --model OUT/merged` "
                                   "then uses it.")
    _train_flags(bw, data_help="(unused; see --seeds/--records)", defaults=TrainConfig())
    bw.add_argument("--seeds", help="seed pairs: JSONL or folder of LANG.jsonl (default: the packaged seeds)")
    bw.add_argument("--records", help="also learn from these curated pairs (records file or run folder)")
    from xinstruct.curate.generate import BackwardConfig

    bw.add_argument("--text-max-tokens", type=int, default=BackwardConfig.text_max_tokens,
                    help="cut each text to this many tokens of the base's tokenizer (default: %(default)s; "
                         "generation then cuts corpus texts the same way)")
    bw.set_defaults(func=cmd_train, kind="backward")
    dpo = ts.add_parser("dpo", help="DPO on preference pairs from `xinstruct data preferences`",
                        description="Direct preference optimisation (trl, LoRA by default) on prompt/chosen/rejected "
                                    "rows.")
    _train_flags(dpo, data_help="a preferences folder or JSONL with prompt/chosen/rejected", defaults=DPOTrainConfig())
    setting_flag(dpo, "--beta", "beta", DPOTrainConfig(), "DPO beta", type=float)
    dpo.set_defaults(func=cmd_train, kind="dpo")

    d = sub.add_parser("data", help="build training data: translation pairs, mixes, preference pairs",
                       description="Build training data.", epilog=EPILOG_DATA,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    ds = d.add_subparsers(dest="data_command", required=True, metavar="KIND")
    tr = ds.add_parser("translation", help="translation instructions from a parallel corpus (both directions)")
    tr.add_argument("--parallel", required=True, help="TSV (source<TAB>target) or JSONL ({SRC: ..., TGT: ...})")
    tr.add_argument("--src", required=True, help="language code of the first column/field")
    tr.add_argument("--tgt", required=True, help="language code of the second column/field")
    tr.add_argument("--directions", default="both", help="both (default), SRC-TGT or TGT-SRC")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--out", required=True, help="output JSONL (Alpaca rows); rejects beside it")
    tr.set_defaults(func=cmd_translation)
    mx = ds.add_parser("mix", help="resolve a data spec and write the examples training would see")
    mx.add_argument("spec")
    mx.add_argument("--alias")
    mx.add_argument("--format", default="chat", choices=["chat", "alpaca", "answer_in"])
    mx.add_argument("--seed", type=int, default=0)
    mx.add_argument("--out", required=True, help="folder: train.jsonl, rejects.jsonl, mix.json")
    mx.set_defaults(func=cmd_mix)
    pf = ds.add_parser("preferences", help="sample answers, rank them with the judge and language ID, pair them",
                       description="Cross-lingual feedback (xLLMs-100): for each prompt sample answers, score each "
                                   "with the refinement judge, check its language, and write the best and worst as "
                                   "chosen/rejected (OUT/preferences.jsonl).")
    pf.add_argument("--config")
    pf.add_argument("--data", help="prompts: a run folder, a file, or a spec joined by '+'")
    pf.add_argument("--alias")
    pf.add_argument("--out")
    model_flags(pf, what="the policy that samples answers", threads=False)
    model_flags(pf, "judge-", "the judge", threads=False, model_help=f"the judge (default: --model): {MODEL_FORMS}")
    setting_flag(pf, "--samples", "samples", PreferenceConfig(), "answers sampled per prompt", type=int)
    pf.add_argument("--limit", type=int, help="only the first N prompts")
    pf.add_argument("--no-reference", action="store_true", help="do not use the dataset's own response")
    pf.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    pf.add_argument("--no-progress", action="store_true")
    pf.set_defaults(func=cmd_preferences)


def cmd_train(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config

    a = vars(args)
    progress = not args.no_progress
    overrides = _overrides(a, TRAIN_FLAGS) + (["merge=false"] if args.no_merge else [])
    if args.kind == "dpo":
        from xinstruct.train.dpo import DPOTrainConfig, train_dpo

        m = train_dpo(load_config(DPOTrainConfig, args.config, overrides), overwrite=args.overwrite,
                      progress=progress)
    elif args.kind == "backward":
        from xinstruct.train.backward import train_backward
        from xinstruct.train.sft import TrainConfig

        cfg = load_config(TrainConfig, args.config, overrides,
                          defaults={"max_length": args.text_max_tokens + 160, "epochs": 2, "out": "runs/backward"})
        m = train_backward(cfg, seeds=args.seeds, records=args.records, text_max_tokens=args.text_max_tokens,
                           overwrite=args.overwrite, progress=progress)
    else:
        from xinstruct.train.sft import TrainConfig, train_sft

        m = train_sft(load_config(TrainConfig, args.config, overrides), overwrite=args.overwrite, progress=progress)
    from xinstruct.train.sft import is_main_process

    if not is_main_process():  # under torchrun / accelerate launch, the first process reports
        return 0
    out = Path(m["config"]["out"])
    tps = m.get("train_tokens_per_s")
    print(f"trained {m['method']} ({m['kind']}) on {m['examples']} examples ({m['rejected']} rejected): "
          f"{m['global_step']} steps, loss {m['train_loss']:.4f}" + (f", {tps} tokens/s" if tps else "")
          + (f" (resumed from {m['resumed_from']})" if m.get("resumed_from") else ""))
    saved = [str(out / ("adapter" if m["method"] == "lora" else "model"))]
    saved += [p for p in (m.get("merged"), m.get("gguf")) if p]
    print("wrote " + ", ".join(saved) + f", {out / 'train.json'}")
    return 0


def cmd_translation(args: argparse.Namespace) -> int:
    from xinstruct.io import write_jsonl
    from xinstruct.train.translation import translation_rows

    rows, rejects = translation_rows(args.parallel, args.src, args.tgt, directions=args.directions, seed=args.seed)
    out = Path(args.out)
    write_jsonl(out, rows)
    rej = out.with_name(out.stem + ".rejects.jsonl")
    write_jsonl(rej, rejects)
    print(f"wrote {len(rows)} translation instructions to {out}; {len(rejects)} lines rejected ({rej})")
    return 0


def cmd_mix(args: argparse.Namespace) -> int:
    from xinstruct.io import atomic_write, write_jsonl
    from xinstruct.train.data import build_mix

    mix = build_mix(args.spec, aliases=args.alias, fmt=args.format, seed=args.seed)
    out = Path(args.out)
    write_jsonl(out / "train.jsonl", [e.to_row() for e in mix.examples])
    write_jsonl(out / "rejects.jsonl", mix.rejects)
    write_jsonl(out / "unsampled.jsonl", [e.to_row() for e in mix.unsampled])
    with atomic_write(out / "mix.json") as f:
        json.dump(mix.sources, f, indent=2, ensure_ascii=False)
    for name, s in mix.sources.items():
        print(f"{name}: {s['used']} examples used of {s['examples']} ({s['rejected']} rows rejected)")
    print(f"wrote {len(mix.examples)} examples to {out / 'train.jsonl'}")
    return 0


def cmd_preferences(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.train.dpo import PreferenceConfig, build_preferences

    a = vars(args)
    flags = {"data": "data", "alias": "alias", "out": "out", "samples": "samples", "limit": "limit"}
    overrides = [f"{k}={json.dumps(a[f])}" for f, k in flags.items() if a.get(f) is not None]
    overrides += model_overrides({**model_settings(args, "policy"),
                                  **model_settings(args, "judge", "judge_", fallback="")})
    if args.no_reference:
        overrides.append("include_reference=false")
    if args.no_progress:
        overrides.append("progress=false")
    m = build_preferences(load_config(PreferenceConfig, args.config, overrides + args.set))
    out = Path(m["config"]["out"])
    print(f"{m['prompts']} prompts -> {m['pairs']} preference pairs ({m['rejected']} rejected: "
          f"{m['rejects_by_reason']}); chosen = the dataset's response in {m['chosen_reference']}, rejected answer "
          f"in the wrong language in {m['rejected_wrong_language']}")
    print(f"wrote {out / 'preferences.jsonl'}, rejects.jsonl, manifest.json")
    return 0
