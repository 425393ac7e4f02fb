"""lm-evaluation-harness as a second engine for the multiple-choice benchmarks (`engine="lm-eval"`).

lm-eval runs its own task configs, included by absolute path from the installed package, so its prompt
functions and words score the rows, not xinstruct's copies; only the data source is replaced by the rows
xinstruct read (one JSONL file per language, `dataset_path: json`). It runs `lm_eval.simple_evaluate`
with its "hf" model on a local transformers folder (a GGUF is dequantised first, as xinstruct's
transformers backend does) in a subprocess with HF_HUB_OFFLINE=1 and HF_DATASETS_OFFLINE=1, so nothing
is downloaded and lm-eval's logging stays out of this process. lm-eval's request cache (`use_cache`)
under the work folder makes a killed run resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xinstruct.io import atomic_write, write_jsonl
from xinstruct.llm import ModelConfig
from xinstruct.records import stable_hash

TASK_CONFIGS = {  # lm-eval's per-language task files, under lm_eval/tasks
    "xcopa": "xcopa/default_{lang}.yaml",
    "xnli": "xnli/xnli_{lang}.yaml",
    "xstorycloze": "xstorycloze/default_{lang}.yaml",
    "pawsx": "paws-x/paws_{lang}.yaml",
}


@dataclass
class LmEvalOutput:
    scores: dict[str, list[float]]  # item id -> log-likelihood of each choice
    arguments: dict[str, list[list[str]]]  # item id -> the (context, continuation) pairs lm-eval scored
    acc: dict[str, float]  # language -> lm-eval's own accuracy, in percent
    version: str


def lm_eval_tasks_dir() -> Path:
    try:
        import lm_eval
    except ImportError as e:
        raise ImportError("engine 'lm-eval' needs lm-evaluation-harness: pip install -c constraints-cpu.txt "
                          "lm-eval") from e
    return Path(lm_eval.__file__).parent / "tasks"


def task_config(task: str, lang: str) -> Path:
    """lm-eval's config for `task` in `lang`. XStoryCloze's prompt has no words, so any language runs
    with the English config; the others need lm-eval's words for the language."""
    root = lm_eval_tasks_dir()
    path = root / TASK_CONFIGS[task].format(lang=lang)
    if not path.is_file() and task == "xstorycloze":
        path = root / TASK_CONFIGS[task].format(lang="en")
    if not path.is_file():
        pattern = Path(TASK_CONFIGS[task]).name.format(lang="*")
        have = sorted(p.stem.rsplit("_", 1)[-1] for p in path.parent.glob(pattern))
        raise ValueError(f"lm-eval has no {task} task for {lang!r} (it has {', '.join(have)}); use engine 'xinstruct', "
                         "which falls back to English prompt words")
    return path


def task_yaml(task: str, lang: str, name: str, data: Path, fewshot: Path | None, cache_dir: Path) -> dict[str, Any]:
    """A task config that includes lm-eval's own and reads `data` (and `fewshot`) instead of the Hub."""
    files = {"test": str(data), **({"fewshot": str(fewshot)} if fewshot else {})}
    return {"include": str(task_config(task, lang)), "task": name, "dataset_path": "json", "dataset_name": None,
            "dataset_kwargs": {"data_files": files, "cache_dir": str(cache_dir)}, "training_split": None,
            "validation_split": None, "test_split": "test", "fewshot_split": "fewshot" if fewshot else "test"}


def hf_folder(model: ModelConfig) -> Path:
    """The transformers folder lm-eval loads: the model's, or a GGUF's dequantised copy."""
    from xinstruct.llm import spec
    from xinstruct.llm.embedded import EMBEDDED_LLM, smollm2_gguf
    from xinstruct.llm.hf import dequantized_gguf

    if model.base_url or not spec(model.resolved_backend()).runs_gguf:
        raise ValueError("engine 'lm-eval' runs a local model with transformers: give a checkpoint folder or a .gguf")
    path = smollm2_gguf() if model.model == EMBEDDED_LLM else Path(model.model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    return dequantized_gguf(path) if path.suffix == ".gguf" else path


Docs = dict[str, list[dict[str, Any]]]  # language -> rows


def run_lmeval(task: str, docs: Docs, *, fewshot_docs: Docs | None, pretrained: Path, dtype: str = "float32",
               shots: int = 0, seed: int = 1234, limit: int | None = None, batch_size: int = 16,
               workdir: Path) -> LmEvalOutput:
    """Score `docs` (per language; each with an "id") with lm-eval; `limit` takes the first N per language."""
    workdir.mkdir(parents=True, exist_ok=True)
    tasks = {}
    for lang, rows in docs.items():
        name = f"xinstruct_{task}_{lang}"
        data = workdir / "data" / f"{lang}.jsonl"
        write_jsonl(data, rows)
        fewshot = None
        if fewshot_docs is not None:
            fewshot = workdir / "data" / f"{lang}.fewshot.jsonl"
            write_jsonl(fewshot, fewshot_docs.get(lang, []))
        with atomic_write(workdir / "tasks" / f"{name}.yaml") as f:
            json.dump(task_yaml(task, lang, name, data, fewshot, workdir / "hf-cache"), f, ensure_ascii=False)
        tasks[name] = lang
    spec = {"tasks": tasks, "tasks_dir": str(workdir / "tasks"), "output": str(workdir / "output.json"),
            "model_args": f"pretrained={pretrained},dtype={dtype}", "shots": shots, "seed": seed, "limit": limit,
            "batch_size": batch_size, "use_cache": str(workdir / f"requests-{stable_hash(str(pretrained), dtype)}")}
    with atomic_write(workdir / "spec.json") as f:
        json.dump(spec, f)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    subprocess.run([sys.executable, "-m", "xinstruct.evaluate.lmeval", str(workdir / "spec.json")], env=env, check=True)
    got = json.loads((workdir / "output.json").read_text(encoding="utf-8"))
    return LmEvalOutput(**got)


def _evaluate(spec_path: str) -> None:
    """In the subprocess: run lm-eval and write what `run_lmeval` returns."""
    from importlib import metadata

    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    results = lm_eval.simple_evaluate(
        model="hf", model_args=spec["model_args"], tasks=list(spec["tasks"]),
        task_manager=TaskManager(include_path=spec["tasks_dir"], include_defaults=False),
        num_fewshot=spec["shots"], fewshot_random_seed=spec["seed"], limit=spec["limit"],
        batch_size=spec["batch_size"], device="cuda" if torch.cuda.is_available() else "cpu",
        use_cache=spec["use_cache"], log_samples=True)
    out: dict[str, Any] = {"scores": {}, "arguments": {}, "acc": {}, "version": metadata.version("lm_eval")}
    for name, lang in spec["tasks"].items():
        out["acc"][lang] = 100.0 * results["results"][name]["acc,none"]
        for sample in results["samples"][name]:
            item_id = sample["doc"]["id"]
            out["scores"][item_id] = [float(r[0]) for r in sample["filtered_resps"]]
            out["arguments"][item_id] = [list(a) for a in sample["arguments"]]
    with atomic_write(spec["output"]) as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    _evaluate(sys.argv[1])
