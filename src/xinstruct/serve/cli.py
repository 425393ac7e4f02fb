"""`xinstruct chat`: the chat page for one model, or two side by side (`--compare`)."""

from __future__ import annotations

import argparse
import logging
import sys

from xinstruct.cliargs import model_flags, model_settings, overrides, setting_flag

EPILOG = """\
examples:
  xinstruct chat                                                   # the embedded model, http://127.0.0.1:7860
  xinstruct chat --model runs/demo-sft/merged/model.gguf --compare embedded --lang sw
  xinstruct chat --model Qwen/Qwen2.5-7B-Instruct --base-url http://127.0.0.1:8000/v1 \\
      --compare runs/sft/merged --compare-backend vllm
  xinstruct chat --host 0.0.0.0 --port 8080                          # reachable from other machines

Saved conversations (button "Save conversation", or --autosave) go to runs/chat/conversations.jsonl: one
line per conversation and model, in the chat `messages` format that `xinstruct train sft --data` reads.
"""

CHAT_FLAGS = {"label": "label", "compare_label": "compare_label", "system": "system", "lang": "lang",
              "languages": "languages", "language_prompt": "language_prompt", "max_tokens": "max_tokens",
              "temperature": "temperature", "save": "save", "host": "host", "port": "port"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("chat", help="a chat web page for a model, or two side by side (--compare)",
                       description="Serve a Gradio chat page: streamed answers, a system prompt, a target-language "
                                   "selector, and with --compare a second model answering the same messages.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    from xinstruct.serve.chat import ChatConfig

    defaults = ChatConfig()
    model_flags(c)
    c.add_argument("--compare", metavar="MODEL", help="a second model answering the same messages beside the first "
                                                     "(e.g. the base model): any form --model takes")
    model_flags(c, "compare-", "the second model", model=False)
    c.add_argument("--label", help="the model's name on the page and in saved conversations")
    c.add_argument("--compare-label", help="the second model's name")
    c.add_argument("--system", help="the system prompt the page starts with")
    c.add_argument("--lang", help="the answer language the selector starts on (a code: sw, ta, ...)")
    c.add_argument("--languages", help="the selector's language codes, comma-separated (default: en + the paper's ten)")
    setting_flag(c, "--language-prompt", "language_prompt", defaults, "what a chosen language adds to the system "
                 "prompt")
    setting_flag(c, "--max-tokens", "max_tokens", defaults, "the most tokens an answer may take", type=int)
    setting_flag(c, "--temperature", "temperature", defaults, "sampling temperature", type=float)
    setting_flag(c, "--save", "save", defaults, "conversation log")
    c.add_argument("--autosave", action="store_true", help="save every finished turn")
    setting_flag(c, "--host", "host", defaults, "address to bind (127.0.0.1: this machine only; 0.0.0.0 exposes "
                 "the page)")
    setting_flag(c, "--port", "port", defaults, "port", type=int)
    c.add_argument("--config", help="YAML file of settings; flags override it")
    c.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="any setting by dotted path")
    c.set_defaults(func=cmd_chat)


def chat_overrides(args: argparse.Namespace) -> list[str]:
    a = vars(args)
    flags = {key: a.get(flag) for flag, key in CHAT_FLAGS.items()}
    flags.update(model_settings(args, "model"))
    flags.update(model_settings(args, "compare", "compare_", model_dest="compare"))
    extra = [f for f in ("compare_backend", "compare_base_url", "compare_threads") if a.get(f) is not None]
    if extra and a.get("compare") is None:
        raise SystemExit(f"--{extra[0].replace('_', '-')} needs --compare MODEL (the second model)")
    if a.get("autosave"):
        flags["autosave"] = True
    return overrides(flags) + list(a.get("set") or [])


def cmd_chat(args: argparse.Namespace) -> int:
    from xinstruct.config import load_config
    from xinstruct.serve.chat import ChatConfig, load_models

    cfg = load_config(ChatConfig, args.config, chat_overrides(args))
    serve_log = logging.getLogger("xinstruct.serve")
    if serve_log.getEffectiveLevel() > logging.INFO:  # a line per answer (tokens, time, Stop); -v keeps debug
        serve_log.setLevel(logging.INFO)
    models = load_models(cfg)
    from xinstruct.serve.app import ChatPage

    try:
        app, _url = ChatPage(cfg, models).launch(host=cfg.host, port=cfg.port)
        print(f"xinstruct chat: {' vs '.join(m.label for m in models)} ready on http://{cfg.host}:{cfg.port}/ "
              f"(saving to {cfg.save}; Ctrl-C stops)", flush=True)
        app.block_thread()
    except KeyboardInterrupt:
        pass
    finally:
        for m in models:
            m.close()
    print("xinstruct chat: stopped", file=sys.stderr)
    return 0
