"""SFT through trl/peft on a tiny model: the loss covers response tokens only, runs resume from checkpoints,
and the merged model is the trained one."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")
pytest.importorskip("peft")

from xinstruct.train.data import build_mix  # noqa: E402
from xinstruct.train.formats import render  # noqa: E402
from xinstruct.train.sft import TrainConfig, _train, build_sft_trainer, train_sft  # noqa: E402

PAIRS = [("What does Harambee mean?", "Harambee ni neno linalomaanisha kuvuta pamoja.", "sw"),
         ("Describe a sauna evening.", "Saunailta alkaa lämmityksellä ja päättyy uintiin järvessä.", "fi"),
         ("Name a Turkish breakfast food.", "Menemen, domates ve biberle yapılan bir yumurta yemeğidir.", "tr")]


def _cfg(tiny_model, tmp_path, **kw):
    base = dict(data="x", model=str(tiny_model), out=str(tmp_path / "run"), max_length=128, batch_size=2,
                max_steps=4, save_steps=2, logging_steps=1, lr=5e-3, warmup_ratio=0.0, gguf=False)
    base.update(kw)
    return TrainConfig(**base)


def _load(tiny_model):
    from xinstruct.train.model import load_for_training

    return load_for_training(str(tiny_model))[:2]


@pytest.mark.parametrize("fmt", ["chat", "answer_in", "alpaca"])
def test_prompt_tokens_are_masked_out_of_the_loss(tiny_model, tmp_path, fmt):
    model, tok = _load(tiny_model)
    examples = [render(i, r, fmt, lang=lang) for i, r, lang in PAIRS]
    trainer = build_sft_trainer(_cfg(tiny_model, tmp_path, format=fmt), model, tok, examples, tmp_path)
    for ex, row in zip(examples, trainer.train_dataset, strict=True):
        ids, labels = row["input_ids"], row["labels"]
        if fmt == "alpaca":
            prompt_ids = tok(ex.prompt, add_special_tokens=False)["input_ids"]
            answer = ex.completion + tok.eos_token
        else:
            prompt_ids = tok.apply_chat_template(ex.prompt, add_generation_prompt=True, tokenize=True,
                                                 return_dict=True)["input_ids"]
            answer = ex.completion[0]["content"] + "<|im_end|>\n"
        n = len(prompt_ids)
        assert ids[:n] == prompt_ids
        assert labels[:n] == [-100] * n  # every prompt token is out of the loss ...
        assert labels[n:] == ids[n:]  # ... and every response token is in it
        assert tok.decode(labels[n:]) == answer
        if fmt == "answer_in":
            assert "Answer in" in tok.decode(prompt_ids) and "Answer in" not in tok.decode(labels[n:])

    # The collator pads a batch; padding and prompt positions carry no loss, and the model's loss equals a
    # cross-entropy over the response tokens alone.
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(examples))])
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
    logits = out.logits[:, :-1].reshape(-1, out.logits.shape[-1])
    targets = batch["labels"][:, 1:].reshape(-1)
    keep = targets != -100
    manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert keep.sum() == sum(sum(t != -100 for t in r["labels"]) for r in trainer.train_dataset)
    assert torch.allclose(out.loss, manual, atol=1e-5)


def _write(tmp_path, n=12):
    rows = [{"id": f"r{i}", "instruction": f"{PAIRS[i % 3][0]} ({i})", "response": PAIRS[i % 3][1],
             "lang": PAIRS[i % 3][2]} for i in range(n)]
    p = tmp_path / "data.jsonl"
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return p


def _adapter(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter" / "adapter_model.safetensors"))


class Interrupt(Exception):
    pass


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_where_an_uninterrupted_run_does(tiny_model, tmp_path):
    from transformers import TrainerCallback

    data = _write(tmp_path)
    full = train_sft(_cfg(tiny_model, tmp_path, data=str(data), out=str(tmp_path / "full"), merge=False),
                     progress=False)
    assert full["global_step"] == 4 and full["resumed_from"] is None

    class StopAt3(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 3:
                raise Interrupt  # as if killed after checkpoint-2 was written

    def interrupted(cfg, model, tok, examples, out):
        t = build_sft_trainer(cfg, model, tok, examples, out)
        t.add_callback(StopAt3())
        return t

    cfg = _cfg(tiny_model, tmp_path, data=str(data), out=str(tmp_path / "cut"), merge=False)
    with pytest.raises(Interrupt):
        _train(cfg, tmp_path / "cut", build_mix(cfg.data), kind="sft", overwrite=False, progress=False,
               trainer_fn=interrupted)
    assert not (tmp_path / "cut" / "adapter").exists()
    resumed = train_sft(_cfg(tiny_model, tmp_path, data=str(data), out=str(tmp_path / "cut"), merge=False),
                        progress=False)
    assert resumed["resumed_from"].endswith("checkpoint-2") and resumed["global_step"] == 4
    a, b = _adapter(tmp_path / "full"), _adapter(tmp_path / "cut")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
    # LoRA B starts at zero: a trained adapter moved away from it
    assert any(v.abs().sum() > 0 for k, v in a.items() if "lora_B" in k)


def test_merged_model_is_the_trained_model_and_a_finished_run_is_not_trained_again(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    from xinstruct.llm import ChatRequest, GenerationParams
    from xinstruct.llm.artifacts import read_model_meta
    from xinstruct.llm.hf import TransformersLLM

    data = _write(tmp_path)
    cfg = _cfg(tiny_model, tmp_path, data=str(data), format="answer_in")
    m = train_sft(cfg, progress=False)
    out = tmp_path / "run"
    assert (out / "loss.png").is_file() and (out / "data" / "train.jsonl").is_file()
    merged = AutoModelForCausalLM.from_pretrained(out / "merged")
    from peft import PeftModel

    base, tok = _load(tiny_model)
    peft_model = PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    x = tok("Habari ya asubuhi", return_tensors="pt")
    with torch.no_grad():
        want = peft_model(**x).logits
        got = merged(**x).logits
        untrained = _load(tiny_model)[0](**x).logits
    assert torch.allclose(want, got, atol=1e-4)
    assert not torch.allclose(untrained, got, atol=1e-4)
    meta = read_model_meta(out / "merged")
    assert len(meta.pop("weights_sha256")) == 64
    assert meta | {"base": None} == {"task": "sft", "format": "answer_in", "base": None, "method": "lora",
                                     "trained_with": "xinstruct train sft"}
    llm = TransformersLLM(out / "merged", dtype="float32")
    [g] = llm.generate([ChatRequest(({"role": "user", "content": "Hi"},), GenerationParams(max_tokens=5))])
    assert g.completion_tokens > 0

    stamp = (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns
    again = train_sft(_cfg(tiny_model, tmp_path, data=str(data), format="answer_in"), progress=False)
    assert again["global_step"] == m["global_step"]
    assert (out / "adapter" / "adapter_model.safetensors").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="other data or settings"):
        train_sft(_cfg(tiny_model, tmp_path, data=str(data), format="chat"), progress=False)


def test_too_long_prompts_are_rejects_not_silent_drops(tiny_model, tmp_path):
    rows = [{"instruction": "word " * 300, "response": "short", "lang": "sw"},
            {"instruction": "Short question?", "response": "Jibu fupi.", "lang": "sw"}]
    p = tmp_path / "d.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    m = train_sft(_cfg(tiny_model, tmp_path, data=str(p), max_steps=1, merge=False), progress=False)
    rejects = [json.loads(line) for line in (tmp_path / "run" / "data" / "rejects.jsonl").read_text().splitlines()]
    assert m["examples"] == 1 and [r["reason"] for r in rejects] == ["prompt_too_long"]
    assert rejects[0]["source"].endswith("d.jsonl:1")


def test_two_trained_models_in_same_named_folders_never_share_cache_entries(tiny_model, tmp_path):
    from xinstruct.llm.hf import TransformersLLM

    data = _write(tmp_path)
    ids = []
    for lr in (5e-3, 1e-2):
        out = tmp_path / f"lr{lr}"
        train_sft(_cfg(tiny_model, tmp_path, data=str(data), out=str(out), lr=lr, max_steps=1), progress=False)
        ids.append(TransformersLLM(out / "merged", dtype="float32").fingerprint)
    assert ids[0] != ids[1] and all("merged" in i for i in ids)


def test_full_fine_tuning_saves_the_whole_model_and_changes_every_trained_matrix(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM

    data = _write(tmp_path)
    m = train_sft(_cfg(tiny_model, tmp_path, data=str(data), method="full", max_steps=2, lr=1e-3), progress=False)
    assert m["method"] == "full" and not (tmp_path / "run" / "adapter").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "merged").state_dict()
    changed = [k for k in base if not torch.equal(base[k], tuned[k])]
    assert any("embed_tokens" in k for k in changed) and any("mlp.down_proj" in k for k in changed)


def test_two_processes_train_one_model_and_only_the_first_writes_it(tiny_model, tmp_path):
    """The multi-GPU path (`accelerate launch` / torchrun, DDP) exercised with two CPU processes over gloo."""
    import subprocess
    import sys

    data = _write(tmp_path, n=16)
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "xinstruct", "train", "sft", "--data", str(data), "--model", str(tiny_model), "--out", str(out),
           "--max-steps", "2", "--batch-size", "2", "--max-length", "128", "--threads", "1", "--no-progress",
           "--set", "gguf=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("trained lora (sft) on 16 examples") == 1  # one report, from the first process
    m = json.loads((out / "train.json").read_text())
    # each step saw 2 processes x batch 2 = 4 examples
    assert m["global_step"] == 2 and m["epochs"] == 0.5
    assert (out / "merged" / "model.safetensors").is_file()
    assert (out / "adapter" / "adapter_model.safetensors").is_file()


def test_warmup_rounds_down_so_short_runs_start_learning_at_once(tiny_model, tmp_path):
    from xinstruct.train.sft import warmup_steps

    assert warmup_steps(TrainConfig(epochs=3, batch_size=4), 2) == 0  # 3 steps: no step at lr 0
    assert warmup_steps(TrainConfig(epochs=3, batch_size=4), 1000) == 22  # 3% of 750
    assert warmup_steps(TrainConfig(max_steps=100, warmup_ratio=0.1), 5) == 10
    m = train_sft(_cfg(tiny_model, tmp_path, data=str(_write(tmp_path)), max_steps=3, warmup_ratio=0.03,
                       merge=False), progress=False)
    first = next(h for h in m["log_history"] if "learning_rate" in h)
    assert first["step"] == 1 and first["learning_rate"] > 0
