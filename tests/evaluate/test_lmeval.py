"""lm-evaluation-harness as the reference: xinstruct's prompt words, prompts and few-shot draws against
lm-eval's own task configs, and (slow) the accuracy of the embedded model on the packaged XCOPA-format
set by both."""

from __future__ import annotations

import ast
import json
import time
from importlib import resources
from pathlib import Path

import pytest

from xinstruct.evaluate import lmeval
from xinstruct.evaluate import multiple_choice as mc

DOCS = {
    "xcopa": [{"premise": "Premise one.", "choice1": "First choice.", "choice2": "Second choice.", "question": q,
               "label": 1} for q in ("cause", "effect")],
    "xnli": [{"premise": "The cat sat", "hypothesis": "a cat is sitting.", "label": 0}],
    "xstorycloze": [{f"input_sentence_{i}": f"S{i}." for i in range(1, 5)} | {
        "sentence_quiz1": "E1.", "sentence_quiz2": "E2.", "answer_right_ending": 2}],
    "pawsx": [{"sentence1": 'He said , " it is n\'t ( so ) " .', "sentence2": "It wasn't.", "label": 1}],
}


def _lm_eval_prompt(cfg: dict, doc: dict) -> tuple[str, list[str], object]:
    from lm_eval.utils import apply_template

    def field(spec: object) -> object:
        return spec(doc) if callable(spec) else apply_template(spec, doc) if "{{" in str(spec) else doc.get(spec, spec)

    choices = field(cfg["doc_to_choice"])
    return field(cfg["doc_to_text"]), ast.literal_eval(choices) if isinstance(choices, str) else choices, \
        cfg.get("target_delimiter", " ")


@pytest.mark.parametrize("task", mc.TASKS)
def test_prompts_equal_lm_evals_own_configs(task):
    """Every language lm-eval has a config for: same context, choices and delimiter from its YAML files,
    jinja templates and utils functions as from xinstruct's word table."""
    pytest.importorskip("lm_eval")
    from lm_eval.tasks._yaml_loader import load_yaml

    pattern = Path(lmeval.TASK_CONFIGS[task]).name.format(lang="*")
    configs = sorted((lmeval.lm_eval_tasks_dir() / Path(lmeval.TASK_CONFIGS[task]).parent).glob(pattern))
    assert configs
    for path in configs:
        lang = path.stem.rsplit("_", 1)[-1]
        cfg = load_yaml(path)
        for doc in DOCS[task]:
            theirs = dict(doc)
            if cfg.get("process_docs"):
                import datasets

                theirs = cfg["process_docs"](datasets.Dataset.from_list([doc]))[0]
            item = mc.make_item(task, dict(doc), "t:1", lang, "t:1")
            assert isinstance(item, mc.Item)
            assert (item.context, item.choices, item.delimiter) == _lm_eval_prompt(cfg, theirs), (task, lang)
            assert not mc.words_for(task, lang)[1]


def test_fewshot_draws_equal_lm_evals_sampler():
    pytest.importorskip("lm_eval")
    from lm_eval.api.samplers import ContextSampler

    items, _ = mc.load_items("xcopa", str(resources.files("xinstruct.data.benchmarks") / "xcopa_mini.jsonl"))
    sw = [it for it in items if it.lang == "sw"]
    ours = mc.fewshot_examples(sw, sw, 3, seed=1234, same_source=True)
    sampler = ContextSampler([it.doc for it in sw], rnd=1234)
    theirs = [[d["id"] for d in sampler.sample(3, eval_doc=it.doc)] for it in sw]
    assert [[x.id for x in ex] for ex in ours] == theirs
    other = mc.fewshot_examples(sw[:4], sw, 2, seed=5, same_source=False)
    sampler = ContextSampler([it.doc for it in sw], rnd=5)
    assert [[x.id for x in ex] for ex in other] == [[d["id"] for d in sampler.sample(2)] for _ in range(4)]


def test_task_yaml_includes_lm_evals_config_and_reads_local_files(tmp_path):
    pytest.importorskip("lm_eval")
    cfg = lmeval.task_yaml("xcopa", "sw", "xinstruct_xcopa_sw", tmp_path / "sw.jsonl", None, tmp_path / "c")
    assert cfg["include"].endswith("lm_eval/tasks/xcopa/default_sw.yaml") and Path(cfg["include"]).is_file()
    assert cfg["dataset_path"] == "json" and cfg["dataset_name"] is None
    assert cfg["dataset_kwargs"]["data_files"] == {"test": str(tmp_path / "sw.jsonl")}
    assert (cfg["test_split"], cfg["fewshot_split"], cfg["validation_split"]) == ("test", "test", None)
    shots = lmeval.task_yaml("pawsx", "de", "t", tmp_path / "a", tmp_path / "b", tmp_path / "c")
    assert shots["fewshot_split"] == "fewshot"
    assert shots["dataset_kwargs"]["data_files"]["fewshot"] == str(tmp_path / "b")
    assert lmeval.task_config("xstorycloze", "fi").name == "default_en.yaml"  # no words: any language
    with pytest.raises(ValueError, match="no xcopa task for 'fi'.*sw"):
        lmeval.task_config("xcopa", "fi")


# ------------------------------------------------------------------ the acceptance check

@pytest.mark.slow
def test_embedded_model_accuracy_equals_lm_evals(embedded_gguf, tmp_path):
    """xinstruct (transformers on the dequantised embedded model) against lm-eval on the same file and
    model: within 0.5 points, and the same prediction for every item. llama.cpp runs the GGUF itself."""
    pytest.importorskip("lm_eval", reason="lm-evaluation-harness is not installed: pip install lm-eval")
    pytest.importorskip("transformers")
    from xinstruct.llm import ModelConfig
    from xinstruct.llm.hf import dequantized_gguf

    data = str(resources.files("xinstruct.data.benchmarks") / "xcopa_mini.jsonl")
    folder = str(dequantized_gguf(embedded_gguf))
    runs = {"transformers": mc.MCConfig("xcopa", data, str(tmp_path / "hf"),
                                        model=ModelConfig(folder, backend="transformers")),
            "llama.cpp": mc.MCConfig("xcopa", data, str(tmp_path / "cpp"),
                                     model=ModelConfig(str(embedded_gguf), options={"n_ctx": 1024})),
            "lm-eval": mc.MCConfig("xcopa", data, str(tmp_path / "lm"), engine="lm-eval",
                                   model=ModelConfig(folder))}
    results, preds = {}, {}
    for name, cfg in runs.items():
        start = time.monotonic()
        results[name] = mc.run_multiple_choice(cfg)
        rows = [json.loads(x) for x in (Path(cfg.out) / "predictions.jsonl").read_text().splitlines()]
        preds[name] = {r["id"]: r for r in rows}
        print(f"{name}: acc {results[name]['overall']['acc']:.2f} acc_norm {results[name]['overall']['acc_norm']:.2f}"
              f" per language {({k: round(v['acc'], 2) for k, v in results[name]['metrics'].items()})}"
              f" in {time.monotonic() - start:.1f} s")
    ours, ref = results["transformers"], results["lm-eval"]
    assert ref["overall"]["n"] == ours["overall"]["n"] == 42
    assert ref["lm_eval"]["prompt_mismatches"] == []
    assert ref["lm_eval"]["acc"] == pytest.approx({k: v["acc"] for k, v in ref["metrics"].items()})
    assert abs(ours["overall"]["acc"] - ref["overall"]["acc"]) <= 0.5
    for item_id, row in preds["lm-eval"].items():
        mine = preds["transformers"][item_id]
        assert (mine["pred"], mine["pred_norm"]) == (row["pred"], row["pred_norm"]), item_id
        assert mine["loglikelihoods"] == pytest.approx(row["loglikelihoods"], abs=1e-3)
    diffs = [abs(a - b) for i, r in preds["llama.cpp"].items()
             for a, b in zip(r["loglikelihoods"], preds["lm-eval"][i]["loglikelihoods"], strict=True)]
    flipped = sorted(i for i, r in preds["llama.cpp"].items() if r["pred"] != preds["lm-eval"][i]["pred"])
    print(f"llama.cpp vs lm-eval: mean |delta ll| {sum(diffs) / len(diffs):.3f}, max {max(diffs):.3f}, "
          f"flipped {flipped}")
    assert sum(diffs) / len(diffs) < 1.0
