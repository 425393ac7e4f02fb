"""Generation stage: instruction back-translation (X-Instruction, step 1).

For each native text the model writes the English instruction that the text answers,
taught by few-shot seed pairs in the same language. The generator is a `Step`: built from
its config alone and bound to an engine where it runs, so the local executor and a Ray
Data actor run it unchanged.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace

from xinstruct.config import to_dict
from xinstruct.curate.seeds import Seed, load_seeds
from xinstruct.curate.similarity import (
    FRAME_COPY_SHARE,
    FRAME_MIN_WORDS,
    NEAR_COPY_THRESHOLD,
    InstructionIndex,
    frame_share,
    word_list,
)
from xinstruct.execution.step import Step
from xinstruct.languages import language_name
from xinstruct.llm import LLM, ChatRequest, Generation, GenerationParams, ModelConfig
from xinstruct.llm.artifacts import read_backward_meta
from xinstruct.llm.cache import as_ready
from xinstruct.parsers import ParseError, load_template_with_parser
from xinstruct.prompts import PromptTemplate
from xinstruct.records import Provenance, Record, Reject, stable_hash

STAGE = "generate"
GENERATE_FORMAT = "1"  # bump when the stage's output for the same input and settings changes
SHOT_SELECTIONS = ("rotate", "random", "fixed")
SHOT_POOLS = ("language", "shared")
SHOT_SET = "shot_set"  # the meta key `rotation()` sets on each record before its prompt is built
CANDIDATES = "candidates"  # the meta key of a record's other valid instructions, for the relevance gate to rank


BACKWARD_MODES = ("auto", "on", "off")
BACKWARD_CANDIDATES = 4  # generate.candidates' default for a backward model


@dataclass
class BackwardConfig:
    """The generator as the paper builds it: a backward model (native text -> English instruction) trained on the
    seed pairs, once, then prompted zero-shot. `xinstruct curate` trains it before generating, or takes it from
    the cache (XINSTRUCT_CACHE or ~/.cache/xinstruct, under backward/KEY, the key hashing the base's weights, the
    seeds and these settings), so a second run, or a run on another corpus, reuses it."""

    # auto: train one when the generator is the embedded default and no shots were asked for (few-shot
    # prompting does not work at 135M: SmolLM2 writes its last shot's instruction); on: train one from `base`
    # whatever generate.model names; off: prompt generate.model with few-shot seed pairs.
    train: str = "auto"
    base: str = "embedded"  # 'embedded' (SmolLM2-135M-Instruct), a .gguf file or a local HF folder
    method: str = "full"  # full fine-tuning (the paper's), or lora
    # One pass over the 100 packaged seeds in batches of 4 (25 steps) is about 8 minutes on 2 AVX2 cores (full
    # fine-tuning of SmolLM2-135M in fp32 trained about 40 tokens/s there).
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4
    lr: float = 1e-4
    # Each seed text is cut to this many tokens of the base's tokenizer for training, and each corpus text to as
    # many of the generator's at generation: every seed teaches, Tamil or Thai ones too, and prompts stay short.
    text_max_tokens: int = 96
    seed: int = 0

    def model_settings(self) -> dict[str, object]:
        """The settings the trained model depends on (not `train`, which only says whether to use one)."""
        return {k: v for k, v in vars(self).items() if k != "train"}

    def validate(self) -> None:
        if self.train not in BACKWARD_MODES:
            raise ValueError(f"generate.backward.train must be one of {', '.join(BACKWARD_MODES)}, not {self.train!r}")
        if self.text_max_tokens < 8:
            raise ValueError("generate.backward.text_max_tokens must be >= 8")


@dataclass
class GenerateConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    template: str = "generate_instruction"  # packaged template name or a YAML path
    seeds: str | None = None  # seed JSONL file or folder; None = the packaged seeds
    # Few-shot seed pairs per prompt. None: 2, or 0 for a backward model trained by `xinstruct train backward`
    # (it learned the zero-shot prompt).
    num_shots: int | None = None
    # rotate: `shot_sets` fixed shot sets per language, each used for `rotate_every` consecutive texts of the
    # language in turn, so engines reuse the prompt prefix (system prompt and shots come first, byte-identical;
    # the text last) while the model does not see one set for the whole corpus. random: fresh shots per text
    # (no prefix reuse). fixed: one set per language: small models then copy the last shot's instruction
    # (SmolLM2-135M did for 4 of 4 texts in a language of the sample corpus).
    shot_selection: str = "rotate"
    shot_sets: int = 4
    rotate_every: int = 2
    # Where a rotated or fixed set draws its shots from. language: sets per language from the language's seeds
    # (a language without seeds draws from all seeds). shared: `shot_sets` sets of seeds of any language,
    # rotated over all texts (each shot names its own language; the answer is English whatever the text's), so
    # a corpus of many languages with few texts each shares its prefixes across languages. Measured on the
    # sample corpus with SmolLM2-135M: shared cut the prompt tokens evaluated per document from 1,284 to 806,
    # but kept 1-2 candidates of 40 where language kept 10 (the small model wrote on in the text's language).
    shot_pool: str = "language"
    shot_max_chars: int = 500  # long seed responses are cut, to keep prompts short (and fast on CPU)
    text_max_chars: int = 2500  # the native text shown to the model is cut to this (the response stays whole)
    # ... and then to this many of the model's tokens (None: no cut by tokens; a backward model's default is the
    # cut it learned with). The response stays whole.
    text_max_tokens: int | None = None
    backward: BackwardConfig = field(default_factory=BackwardConfig)
    max_tokens: int = 64
    # Instructions proposed per text: the first decoded as `temperature` says (greedy by default), the others
    # sampled at `candidate_temperature` from the same prompt (the engines share its prefix). Those that pass
    # the checks go on as the record's candidates; the relevance gate keeps the one whose text gains most from it.
    # None: 4 for a backward model, 1 for few-shot prompting. Measured on `make demo` (the backward model on the
    # sample corpus, 2 cores): 4 candidates kept 12 of 40 documents where 1 kept 9, for about 2.5x the time of
    # generation and of the gate before refinement (docs/measurements.md).
    candidates: int | None = None
    candidate_temperature: float = 0.8
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    min_words: int = 3
    max_words: int = 40  # X-Instruction instructions average ~100 characters
    # Records per LLM call. None: the whole shard, which the backend runs at its capacity (all in flight on a
    # server, continuous batching on vLLM, prefix-sharing batches on transformers, in prefix order on llama.cpp).
    batch_size: int | None = None
    # An instruction this similar to a seed instruction (IDF-weighted word Jaccard, see curate/similarity.py)
    # is a copy of the seed, not the text's own instruction: rejected as copies_seed. 1.0: exact copies only.
    near_copy_threshold: float = NEAR_COPY_THRESHOLD
    # An instruction that repeats this share of a seed instruction's words in one run (at least 6 words) is
    # the seed's frame around another name: rejected as copies_seed too. Above 1.0: off.
    frame_copy_share: float = FRAME_COPY_SHARE


def _truncate(text: str, n: int) -> str:
    if len(text) <= n:
        return text
    cut = text[:n]
    space = cut.rfind(" ")
    return (cut[:space] if space > n * 0.8 else cut) + " …"


def shown_text(text: str, max_chars: int, max_tokens: int | None = None,
               first_tokens: Callable[[str, int], str | None] | None = None) -> str:
    """The part of a native text a prompt shows: cut to `max_chars`, then to `max_tokens` tokens where a
    tokenizer is at hand (`first_tokens`); a cut text ends with " …"."""
    text = _truncate(text, max_chars)
    if max_tokens and first_tokens is not None:
        cut = first_tokens(text, max_tokens)
        if cut is not None and cut != text:
            return cut.rstrip() + " …"
    return text


def _norm(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .?!")


class InstructionGenerator(Step):
    """Turns records holding native text into (English instruction, native response) pairs."""

    name = role = STAGE

    def __init__(self, cfg: GenerateConfig, llm: LLM | None = None):
        if cfg.shot_selection not in SHOT_SELECTIONS:
            raise ValueError(f"shot_selection must be one of {', '.join(SHOT_SELECTIONS)}, not {cfg.shot_selection!r}")
        if cfg.shot_pool not in SHOT_POOLS:
            raise ValueError(f"shot_pool must be one of {', '.join(SHOT_POOLS)}, not {cfg.shot_pool!r}")
        if cfg.shot_sets < 1 or cfg.rotate_every < 1:
            raise ValueError("generate.shot_sets and generate.rotate_every must be >= 1")
        if cfg.candidates is not None and cfg.candidates < 1:
            raise ValueError(f"generate.candidates must be >= 1, not {cfg.candidates}")
        cfg.backward.validate()
        backward = read_backward_meta(cfg.model.model, cfg.model.base_url)
        # the settings left to the generator, resolved on a copy (the caller's config stays as it was given)
        cfg = replace(cfg, num_shots=cfg.num_shots if cfg.num_shots is not None else 0 if backward is not None else 2,
                      candidates=cfg.candidates or (BACKWARD_CANDIDATES if backward is not None else 1),
                      text_max_tokens=cfg.text_max_tokens if cfg.text_max_tokens is not None or backward is None
                      else backward.get("text_max_tokens"))
        self.cfg = cfg
        self.template: PromptTemplate
        self.template, self.parse = load_template_with_parser(cfg.template)
        self.seeds = load_seeds(cfg.seeds)
        self._by_lang: dict[str, list[Seed]] = {}
        for s in self.seeds:
            self._by_lang.setdefault(s.lang, []).append(s)
        self._seed_instructions = {_norm(s.instruction) for s in self.seeds}
        self._seed_index = InstructionIndex([s.instruction for s in self.seeds])
        self._seed_words = [word_list(s.instruction) for s in self.seeds]
        self.params = GenerationParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                       seed=cfg.seed)
        super().__init__(llm)

    def model_config(self) -> ModelConfig:
        return self.cfg.model

    def fingerprint(self) -> str:
        return stable_hash(GENERATE_FORMAT, to_dict(self.cfg), self.template.id, self.seeds_fingerprint())

    def arrange(self, items: Iterable[Record]) -> Iterator[Record]:
        return self.rotation(items)

    def batch_size(self) -> int | None:
        return self.cfg.batch_size

    def prompts(self) -> str:
        return self.template.id

    def seeds_fingerprint(self) -> str:
        return stable_hash([(s.instruction, s.response, s.lang) for s in self.seeds])

    def rotation(self, records: Iterable[Record]) -> Iterator[Record]:
        """`records` in order, each marked with its shot set (meta `shot_set`) under `shot_selection=rotate`: the
        n-th text (of its language under `shot_pool=language`; counting from 0, in input order) takes set
        (n // rotate_every) % shot_sets.
        Texts that share a set are next to each other in a batch's sorted order, so their prompts share the prefix.
        The marks depend only on the input order, so a resumed run or a stage run alone marks the same."""
        seen: Counter[str] = Counter()
        for rec in records:
            if self.cfg.shot_selection == "rotate":
                pool = self.pool_name(rec)
                n = seen[pool]
                seen[pool] += 1
                rec.meta[SHOT_SET] = (n // self.cfg.rotate_every) % self.cfg.shot_sets
            yield rec

    def pool_name(self, rec: Record) -> str:
        """Whose shots the record's rotated or fixed set holds: "*" (every seed) or its language's."""
        return "*" if self.cfg.shot_pool == "shared" and self.cfg.shot_selection != "random" else rec.lang

    def shot_key(self, rec: Record) -> str:
        """What picks the record's shots: its pool and set (rotate), its pool (fixed) or its id (random)."""
        c = self.cfg
        if c.shot_selection == "rotate":
            return f"{self.pool_name(rec)}/set{rec.meta.get(SHOT_SET, 0)}"
        return self.pool_name(rec) if c.shot_selection == "fixed" else rec.id

    def shots(self, rec: Record) -> list[Seed]:
        """Seeds from the record's pool: every seed, or those in its language (or any language's, for one with
        no seeds). Random shots come from its language."""
        if self.pool_name(rec) == "*":
            pool = self.seeds
        else:
            pool = self._by_lang.get(rec.lang) or self._by_lang.get("*") or self.seeds
        k = min(self.cfg.num_shots, len(pool))
        return random.Random(stable_hash(self.shot_key(rec), self.cfg.seed)).sample(pool, k)

    def messages(self, rec: Record, shots: Sequence[Seed],
                 first_tokens: Callable[[str, int], str | None] | None = None) -> list[dict[str, str]]:
        """The prompt: system, the shots, then the record's text (cut by characters, and by tokens where
        `first_tokens` tokenizes)."""
        t, c = self.template, self.cfg
        msgs: list[dict[str, str]] = [{"role": "system", "content": t.system}]
        for s in shots:
            msgs.append({"role": "user", "content": t.user.format(
                language=language_name(s.lang if s.lang != "*" else rec.lang),
                text=_truncate(s.response, c.shot_max_chars))})
            msgs.append({"role": "assistant", "content": t.assistant.format(instruction=s.instruction)})
        text = shown_text(rec.text, c.text_max_chars, c.text_max_tokens, first_tokens)
        msgs.append({"role": "user", "content": t.user.format(language=language_name(rec.lang), text=text)})
        return msgs

    def fitted_messages(self, rec: Record) -> list[dict[str, str]]:
        """The prompt with as many shots as fit the model's context window next to the answer.

        Scripts that the tokenizer splits finely (Tamil, Thai, Bengali) can cost 5-10x the
        tokens of English, so a long text leaves room for fewer shots.
        """
        shots = self.shots(rec)
        cut = self.llm.first_tokens if self.cfg.text_max_tokens else None
        msgs = self.messages(rec, shots, cut)
        if not shots:
            return msgs
        window = getattr(self.llm, "context_window", None)
        if not window:
            return msgs
        budget = window - self.cfg.max_tokens
        while shots and (self.llm.count_prompt_tokens(msgs) or 0) > budget:
            shots = shots[:-1]
            msgs = self.messages(rec, shots, cut)
        return msgs

    def request(self, rec: Record) -> ChatRequest:
        return self.requests(rec)[0]

    def requests(self, rec: Record) -> list[ChatRequest]:
        """The record's `candidates` requests: one prompt, the first decoded at `temperature`, the rest sampled."""
        c = self.cfg
        msgs = tuple(self.fitted_messages(rec))

        def seed(i: int) -> int:  # a per-record seed keeps sampled runs reproducible whatever the batching
            return int(stable_hash(rec.id, c.seed, *([i] if i else [])), 16) % 2**31

        first = self.params if c.temperature == 0 else self.params.replace(seed=seed(0))
        return [ChatRequest(messages=msgs, params=first)] + [
            ChatRequest(messages=msgs, params=self.params.replace(temperature=c.candidate_temperature, seed=seed(i)))
            for i in range(1, max(1, c.candidates or 1))]

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], list[Reject]]:
        per = [self.requests(r) for r in batch]
        owner = [j for j, rs in enumerate(per) for _ in rs]
        reqs = [q for rs in per for q in rs]
        c = self.cfg

        def read(rec: Record, req: ChatRequest, gen: Generation) -> tuple[str | ParseError, Provenance]:
            """The instruction in the answer (or why there is none) and its provenance; changes nothing."""
            result = self.parse(gen.text, text=rec.text, lang=rec.lang, finish_reason=gen.finish_reason,
                                min_words=c.min_words, max_words=c.max_words)
            if isinstance(result, str):
                result = self.check_copy(result)
            return result, self.provenance(req, gen.text, rec.meta.get(SHOT_SET))

        # Answers that the backend hands over one by one (a server's) are read as they arrive, while the rest are
        # in flight: by index, with the answer. The records are changed below, once the call is over.
        early: dict[int, tuple[Generation, tuple[str | ParseError, Provenance]]] = {}

        def ready(i: int, gen: Generation) -> None:
            if gen.error is None:
                # A parser that fails must not cut the call short (its answers would not reach the cache): the
                # loop below reads that answer again and fails there.
                with contextlib.suppress(Exception):
                    early[i] = (gen, read(batch[owner[i]], reqs[i], gen))

        with as_ready(reqs, ready):
            gens = self.llm.generate(reqs)
        results: list[list[tuple[str | ParseError, Provenance | None]]] = [[] for _ in batch]
        for i, gen in enumerate(gens):
            if gen.error is None:
                e = early.get(i)
                results[owner[i]].append(e[1] if e is not None and e[0] is gen else read(batch[owner[i]], reqs[i], gen))
            else:
                results[owner[i]].append((ParseError("llm_error", str(gen.error)), None))
        kept: list[Record] = []
        rejects: list[Reject] = []
        for rec, answers in zip(batch, results, strict=True):
            rec.meta.pop(SHOT_SET, None)
            valid: dict[str, tuple[str, Provenance]] = {}
            for result, prov in answers:
                if isinstance(result, str):
                    valid.setdefault(_norm(result), (result, prov))  # type: ignore[arg-type]
            if not valid:
                first, prov = answers[0]
                assert isinstance(first, ParseError)
                if prov is not None:
                    rec.provenance["instruction"] = prov
                detail = first.detail + (f" (and {len(answers) - 1} more candidates, none usable)"
                                         if len(answers) > 1 else "")
                rejects.append(Reject.of(rec, STAGE, first.reason, f"chunk {rec.id} ({rec.source}): {detail}"))
                continue
            (instruction, prov), *others = valid.values()
            rec.instruction = instruction
            rec.response = rec.response or rec.text
            rec.provenance["instruction"] = prov
            if others:
                rec.meta[CANDIDATES] = [instruction] + [o for o, _ in others]
            kept.append(rec)
        return kept, rejects

    def check_copy(self, instruction: str) -> str | ParseError:
        """`instruction`, or a copies_seed error when it is (nearly) a seed's instruction."""
        if _norm(instruction) in self._seed_instructions:
            return ParseError("copies_seed", f"the model copied a seed instruction: {instruction!r}")
        sim, i = self._seed_index.nearest(instruction)
        if i is not None and sim >= self.cfg.near_copy_threshold:
            return ParseError("copies_seed", f"the instruction {instruction!r} is a near copy of the seed instruction "
                              f"{self.seeds[i].instruction!r} (similarity {sim:.2f} >= {self.cfg.near_copy_threshold})")
        own = word_list(instruction)
        for seed, ws in zip(self.seeds, self._seed_words, strict=True):
            share, run = frame_share(own, ws)
            if run >= FRAME_MIN_WORDS and share >= self.cfg.frame_copy_share:
                return ParseError("copies_seed", f"the instruction {instruction!r} repeats {run} of the {len(ws)} "
                                  f"words of the seed instruction {seed.instruction!r} in one run: its frame "
                                  f"(share {share:.2f} >= {self.cfg.frame_copy_share})")
        return instruction

    def provenance(self, req: ChatRequest, raw: str, shot_set: int | None = None) -> Provenance:
        extra = {"shot_set": shot_set} if shot_set is not None else {}
        return Provenance.of_call(self.llm, self.template, req.params, raw, num_shots=self.cfg.num_shots,
                                  shot_selection=self.cfg.shot_selection, **extra)
