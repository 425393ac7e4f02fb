"""The backward model (X-Instruction, step 1): native text -> the English instruction it answers.

    xinstruct train backward --out runs/backward                  # on the packaged seed pairs
    xinstruct generate --model runs/backward/merged --backend transformers ...

Training examples are built with the generation stage's own prompt, with no shots, so the
trained model sees at generation time exactly the prompt it learned from. The saved model
is marked as a backward model, and the generation stage then prompts it zero-shot by
default (instead of few-shot prompting an instruct model).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.records import Record, Reject, stable_hash
from xinstruct.rows import read_pairs
from xinstruct.train.data import Mix
from xinstruct.train.formats import Example
from xinstruct.train.sft import TrainConfig, train_sft


def backward_examples(seeds: str | None = None, records: str | None = None, template: str = "generate_instruction",
                      text_max_chars: int = 500) -> tuple[list[Example], list[Reject]]:
    """One example per seed pair (and per curated record, if given): prompt = the zero-shot generation
    prompt over the native text, completion = the English instruction.

    Texts are cut to `text_max_chars` (as few-shot prompts cut seed texts): Tamil, Thai and Bengali
    seeds run to 1,000+ tokens whole, which CPU training cannot afford.
    """
    gen = InstructionGenerator(GenerateConfig(template=template, seeds=seeds, num_shots=0,
                                              text_max_chars=text_max_chars))
    examples: list[Example] = []
    rejects: list[Reject] = []
    items: list[tuple[str, str, str, str]] = [(s.instruction, s.response, s.lang, f"seed:{i}")
                                              for i, s in enumerate(gen.seeds)]
    if records:
        recs, rejs, _ = read_pairs(Path(records))
        rejects += rejs
        items += [(r.instruction or "", r.response or r.text, r.lang, r.source or r.id) for r in recs]
    for instruction, text, lang, origin in items:
        if lang == "*":
            rejects.append(Reject(stage="train-data", reason="no_language", unit="row", source=origin,
                                  detail=f"{origin}: a seed without a language cannot teach a language's prompt",
                                  record={"instruction": instruction, "response": text}))
            continue
        rec = Record(id=stable_hash(origin), doc_id=origin, lang=lang, text=text)
        prompt = gen.messages(rec, [])
        examples.append(Example(prompt, [{"role": "assistant", "content": instruction}], rec.id, lang,
                                source="backward", origin=origin))
    return examples, rejects


def train_backward(cfg: TrainConfig, *, seeds: str | None = None, records: str | None = None,
                   overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    import random

    examples, rejects = backward_examples(seeds, records)
    if not examples:
        raise ValueError("no backward training examples (no seeds or records with a language)")
    random.Random(cfg.seed).shuffle(examples)
    cfg.task, cfg.format = "backward", "chat"
    cfg.data = cfg.data or f"seeds:{seeds or 'packaged'}" + (f"+records:{records}" if records else "")
    mix = Mix.of("backward", examples, rejects, seeds=seeds or "packaged", records=records)
    return train_sft(cfg, overwrite=overwrite, mix=mix, progress=progress)

