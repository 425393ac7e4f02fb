"""The flags that choose a model, written once for every command: `--model`, `--backend`, `--base-url` and
`--threads`, under a prefix for a second model (`--judge-model`, `--compare-backend`, ...), and the settings
they override."""

from __future__ import annotations

import argparse
import json
from typing import Any

from xinstruct.llm import BACKENDS

BACKEND_CHOICES = ["auto", *BACKENDS]
MODEL_FORMS = "'embedded', a .gguf file, a local checkpoint folder, or the served model name with --base-url"


def model_flags(p: argparse.ArgumentParser, prefix: str = "", what: str = "the model", *, model: bool = True,
                threads: bool | str = True, model_help: str | None = None) -> None:
    """`--PREFIXmodel` (unless `model` is False: the command names it otherwise), `--PREFIXbackend`,
    `--PREFIXbase-url` and, with `threads` (True, or its help text), `--PREFIXthreads`."""
    if model:
        p.add_argument(f"--{prefix}model", help=model_help or f"{what}: {MODEL_FORMS}")
    p.add_argument(f"--{prefix}backend", choices=BACKEND_CHOICES, help=f"the backend of {what} (default auto)")
    p.add_argument(f"--{prefix}base-url", help=f"OpenAI-compatible server of {what}, e.g. http://127.0.0.1:8000/v1")
    if threads:
        p.add_argument(f"--{prefix}threads", type=int,
                       help=threads if isinstance(threads, str) else f"llama.cpp decode threads of {what}")


def model_settings(args: argparse.Namespace, key: str, prefix: str = "", *, fallback: str | None = None,
                   model_dest: str | None = None) -> dict[str, Any]:
    """The settings under `key` (a ModelConfig: KEY.model, KEY.backend, KEY.base_url, KEY.options.n_threads) that
    the `--PREFIX...` flags set (None: not given). With `fallback` (another prefix, "" for the plain flags), a flag
    not given takes the fallback's value. `model_dest`: the attribute holding the model, if not PREFIXmodel."""
    a = vars(args)

    def get(field: str) -> Any:
        dest = (model_dest or prefix + field) if field == "model" else prefix + field
        v = a.get(dest)
        return a.get(fallback + field) if v is None and fallback is not None else v

    out = {f"{key}.{f}": get(f) for f in ("model", "backend", "base_url")}
    out[f"{key}.options.n_threads"] = get("threads")
    return out


def overrides(settings: dict[str, Any]) -> list[str]:
    """`key=json` for every setting that a flag gave (not None)."""
    return [f"{k}={json.dumps(v)}" for k, v in settings.items() if v is not None]


def executor_flags(p: argparse.ArgumentParser) -> None:
    """`--executor`, `--ray-address`, `--ray-actors`: where a command's LLM stages run."""
    p.add_argument("--executor", choices=["local", "ray"],
                   help="run the LLM stages in this process (local, default) or on Ray Data actors (ray)")
    p.add_argument("--ray-address", help="with --executor ray: a running cluster ('auto', ray://head:10001); "
                                         "default: a local Ray on this machine's cores")
    p.add_argument("--ray-actors", type=int, help="with --executor ray: actors per LLM stage (default: from the "
                                                  "cluster's CPUs/GPUs and the backend)")


def executor_settings(args: argparse.Namespace, key: str = "executor") -> dict[str, Any]:
    a = vars(args)
    return {f"{key}.kind": a.get("executor"), f"{key}.address": a.get("ray_address"),
            f"{key}.actors": a.get("ray_actors")}


def setting_flag(p: argparse.ArgumentParser, flag: str, path: str, config: Any, help: str,
                 **kw: Any) -> argparse.Action:
    """A flag that sets the setting `path` (dotted) of the command's config; its help ends with that setting's
    default, read from `config` (the config as the command builds it with no recipe and no flags), so the two cannot
    disagree. `settings_given` reads every such flag back as {path: value}."""
    value: Any = config
    for part in path.split("."):
        value = getattr(value, part)
    action = p.add_argument(flag, help=f"{help} (default {shown_default(value)})", **kw)
    action.setting = path  # type: ignore[attr-defined]
    p.set_defaults(settings_flags={**(p.get_default("settings_flags") or {}), action.dest: path})
    return action


def shown_default(value: Any) -> str:
    """A default as help shows it: text with spaces quoted, the rest as it is."""
    return repr(value) if isinstance(value, str) and (" " in value or not value) else str(value)


def settings_given(args: argparse.Namespace) -> dict[str, Any]:
    """{setting path: value} of the `setting_flag` flags given on the command line (None: not given)."""
    a = vars(args)
    return {path: a.get(dest) for dest, path in (a.get("settings_flags") or {}).items()}
