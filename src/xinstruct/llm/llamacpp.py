"""llama.cpp through `llama-cpp-python`: GGUF models on CPU (the embedded default) or GPU.

The chat template comes from the GGUF metadata. Structured output uses llama.cpp's
JSON-schema grammar, so a schema-constrained answer always parses.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xinstruct.llm.artifacts import file_fingerprint
from xinstruct.llm.backends import BackendSpec
from xinstruct.llm.base import LLM, ChatRequest, Generation, LLMError, ScoringUnsupported
from xinstruct.llm.hf import encode_pair, model_window


def default_threads() -> int:
    """Decode threads: one core is left free on small machines (prompt evaluation uses all).

    Measured on 2 cores (`benchmarks/generate.py --thread-sweep 1,2`): 1 decode thread ran the
    generation stage at 0.14 docs/s against 0.13 with 2 (decode 56 vs 69 tok/s, but prompt
    evaluation 209 vs 192 tok/s), and 2 decode threads collapse when another process holds a core.
    """
    n = cores()
    return 1 if n <= 2 else min(n - 1, 16)


def batch_threads(threads: int) -> int:
    """Prompt-evaluation threads for a decode thread count: every core (up to 16)."""
    return max(threads, min(cores(), 16))


def cores() -> int:
    """The cores this process may use: `OMP_NUM_THREADS` where it is set (Ray sets it to an actor's CPUs, so
    actors sharing a node do not each take all its cores), else the machine's."""
    with contextlib.suppress(ValueError):
        n = int(os.environ.get("OMP_NUM_THREADS", ""))
        if n >= 1:
            return n
    return os.cpu_count() or 1


def shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` have in common."""
    return next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


_PARAMS_LOCK = threading.Lock()


@contextlib.contextmanager
def model_params(**fields: object) -> Iterator[None]:
    """Set fields of llama.cpp's model params that `Llama()` does not expose, while it is built."""
    import llama_cpp.llama as high

    low = high.llama_cpp
    with _PARAMS_LOCK:
        orig = low.llama_model_default_params

        def params():  # type: ignore[no-untyped-def]
            p = orig()
            for k, v in fields.items():
                setattr(p, k, v)
            return p

        low.llama_model_default_params = params
        try:
            yield
        finally:
            low.llama_model_default_params = orig


class LlamaCppLLM(LLM):
    backend = "llama.cpp"
    supports_json_schema = True

    def __init__(
        self,
        model_path: str | Path,
        *,
        n_ctx: int = 8192,  # SmolLM2 was trained for 8192; Tamil or Thai text costs many tokens
        n_threads: int | None = None,
        n_batch: int = 512,
        n_gpu_layers: int = 0,
        chat_format: str | None = None,
        extra_buffers: bool = False,
        logits_all: bool = False,
        score_threads: int | None = None,
        verbose: bool = False,
        vocab_only: bool = False,
    ):
        """`extra_buffers` enables llama.cpp's extra CPU buffer types (weight repacking, Intel AMX). Off by
        default: on a CPU with AMX (Sapphire Rapids and later) a build made with GGML_NATIVE segfaults in
        `ggml_backend_amx_mul_mat` on the embedded Q4_1 model, seen here with llama-cpp-python 0.3.36.

        `logits_all` keeps the logits of every position, which `loglikelihood` needs. Off by default:
        llama-cpp-python then reserves n_ctx x vocabulary floats (1.6 GB for SmolLM2 at n_ctx 8192; the
        pages are only touched as far as the longest sequence scored).

        `vocab_only` loads the tokenizer and the metadata without the weights (a tenth of a second): what a run
        whose calls are all in the request cache needs (`BackendSpec.load_tokenizer`)."""
        try:
            from llama_cpp import Llama
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ImportError(
                "the llama.cpp backend needs llama-cpp-python: pip install 'xinstruct[llamacpp]'"
            ) from e
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF model file not found: {path}")
        self.path = path
        self.model_id = file_fingerprint(path)
        self.n_threads = n_threads or default_threads()
        # Threads that evaluate scored sequences: the decode count by default (see `loglikelihood_details`), or
        # every core with 0, for a process that has the machine to itself (the relevance gate: 1.43 s a pair
        # with 2 threads against 2.31 s with 1 on 2 idle EPYC cores).
        self.score_threads = batch_threads(self.n_threads) if score_threads == 0 else (score_threads or self.n_threads)
        with model_params(use_extra_bufts=extra_buffers):
            self._llm = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=batch_threads(self.n_threads),
                n_batch=n_batch,
                n_gpu_layers=n_gpu_layers,
                chat_format=chat_format,
                logits_all=logits_all,
                verbose=verbose,
                vocab_only=vocab_only,
            )
        self.context_window = n_ctx
        self.logits_all = logits_all

    def count_tokens(self, text: str) -> int:
        return len(self._plain_tokens(text))

    def _plain_tokens(self, text: str) -> list[int]:
        return self._llm.tokenize(text.encode(), add_bos=False, special=False)

    def first_tokens(self, text: str, n: int) -> str | None:
        ids = self._plain_tokens(text)
        if len(ids) <= n:
            return text
        return self._llm.detokenize(ids[:n]).decode("utf-8", errors="ignore")

    def count_prompt_tokens(self, messages):  # type: ignore[no-untyped-def]
        # The content tokens plus a few per message for the chat template's role markers.
        return sum(self.count_tokens(m["content"]) + 6 for m in messages) + 4

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        # llama-cpp-python's high-level API decodes one sequence at a time and reuses the KV cache of the
        # longest prefix a prompt shares with the previous one: requests run sorted by their messages, so
        # those that share a system prompt and few-shot examples follow each other; answers come back in order.
        order = sorted(range(len(requests)), key=lambda i: [(m["role"], m["content"]) for m in requests[i].messages])
        out: list[Generation | None] = [None] * len(requests)
        for i in order:
            out[i] = self._one(requests[i])
        return [g for g in out if g is not None]

    def _kwargs(self, req: ChatRequest) -> dict[str, Any]:
        p = req.params
        kwargs: dict[str, Any] = dict(
            messages=list(req.messages),
            max_tokens=p.max_tokens,
            temperature=p.temperature,
            top_p=p.top_p,
            seed=p.seed,
            stop=list(p.stop) or None,
        )
        if p.json_schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": p.json_schema}
        return kwargs

    def _one(self, req: ChatRequest) -> Generation:
        try:
            out = self._llm.create_chat_completion(**self._kwargs(req))
        except ValueError as e:  # e.g. prompt longer than the context window
            return Generation(text="", finish_reason="error", error=f"llama.cpp: {e}")
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Generation(
            text=choice["message"]["content"] or "",
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
        )

    def stream(self, request: ChatRequest) -> Generator[str, None, Generation]:
        """Token by token from llama.cpp's streaming chat completion (the same decoding as `generate`:
        greedy answers are identical). `completion_tokens` is the answer re-tokenised (the stream carries no
        usage); `prompt_tokens` stays 0, unknown."""
        pieces: list[str] = []
        finish = None
        try:
            for chunk in self._llm.create_chat_completion(**self._kwargs(request), stream=True):
                choice = chunk["choices"][0]
                piece = choice["delta"].get("content") or ""
                finish = choice.get("finish_reason") or finish
                if piece:
                    pieces.append(piece)
                    yield piece
        except ValueError as e:
            # A prompt longer than the context window fails inside llama-cpp-python's streaming path with a
            # numpy broadcast error; say what happened instead.
            est = self.count_prompt_tokens(request.messages)
            if self.context_window and est + 1 >= self.context_window:
                raise LLMError(f"llama.cpp: the prompt (about {est} tokens) does not fit the context window of "
                               f"{self.context_window} tokens; start a new conversation or raise n_ctx") from e
            raise LLMError(f"llama.cpp: {e}") from e
        text = "".join(pieces)
        return Generation(text=text, finish_reason=finish, completion_tokens=self.count_tokens(text) if text else 0)

    def _encode(self, text: str, add_special: bool) -> list[int]:
        # special=True parses special-token text as the HF tokenizer does; add_bos follows the GGUF's
        # tokenizer.ggml.add_bos_token. tests/llm/test_loglikelihood.py checks both against SmolLM2's HF tokenizer.
        return self._llm.tokenize(text.encode(), add_bos=add_special, special=True)

    def encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        bos = self._llm.token_bos()
        prefix = bos if bos >= 0 else self._llm.token_eos()
        bos_text = self._llm.detokenize([bos], special=True).decode(errors="replace") if bos >= 0 else None
        return encode_pair(self._encode, prefix, bos_text, context, continuation)

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        return [ll for ll, _ in self.loglikelihood_details(pairs)]

    def loglikelihood_details(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(sum of the continuation's token log-probabilities, whether greedy decoding yields it) per
        (context, continuation), tokenised as lm-eval's HF model does. One sequence at a time; a pair
        reuses the KV cache of the tokens it shares with the previous one (the choices of one question
        share their context). Needs `logits_all=True` (ModelConfig options {"logits_all": true}).

        Sequences are evaluated with the decode thread count, not every core: on 2 cores with another
        process busy, 12 XCOPA pairs took 40-78 s with 2 threads and 2.4 s with 1 (idle: 1.6 s with 2, 2.7 s
        with 1); on more cores the decode count is all cores but one."""
        return [(float(lp.sum()), greedy) for lp, greedy in self._scored(pairs)]

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        return [lp.tolist() for lp, _ in self._scored(pairs)]

    def _scored(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[Any, bool]]:
        if not self.logits_all:
            raise ScoringUnsupported("llama.cpp scoring needs per-position logits: load the model with "
                                     "logits_all=True (ModelConfig options {'logits_all': True})")
        ctx = self._llm._ctx
        ctx.set_n_threads(self.score_threads, self.score_threads)
        try:
            return [self._score(context, continuation) for context, continuation in pairs]
        finally:
            ctx.set_n_threads(self.n_threads, batch_threads(self.n_threads))

    def _score(self, context: str, continuation: str) -> tuple[Any, bool]:
        """(the continuation's token log-probabilities, whether greedy decoding yields it)."""
        import numpy as np

        llm = self._llm
        enc = self.encode_pair(context, continuation)
        cont = enc[1]
        if not cont:
            return np.zeros(0), True
        ids = model_window(enc, self.context_window)
        keep = shared_prefix(llm.input_ids[: llm.n_tokens].tolist(), ids)
        llm.n_tokens = min(keep, len(ids) - 1)  # at least one token is evaluated
        llm.eval(ids[llm.n_tokens :])
        # float32 logits, float64 sums: materialising the rows in float64 cost as much as the evaluation itself
        # with a 262k vocabulary (Gemma-3: 1.1 s against 1.3 s for 160 tokens).
        rows = llm.scores[len(ids) - len(cont) : len(ids)]
        top = rows.max(-1)
        lse = top.astype(np.float64) + np.log(np.exp(rows - top[:, None]).sum(-1, dtype=np.float64))
        target = np.asarray(cont)
        picked = rows[np.arange(len(cont)), target].astype(np.float64)
        return picked - lse, bool((rows.argmax(-1) == target).all())

    def chat_prompt(self, messages):  # type: ignore[no-untyped-def]
        """The GGUF's own chat template (tokenizer.chat_template) rendered with the generation prompt."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self._llm.metadata.get("tokenizer.chat_template")
        if not template:
            raise NotImplementedError(f"{self.path.name} has no chat template in its metadata; use the plain layout")
        detok = self._llm.detokenize

        def text(tok: int) -> str:
            return detok([tok], special=True).decode(errors="replace") if tok >= 0 else ""

        fmt = Jinja2ChatFormatter(template, eos_token=text(self._llm.token_eos()),
                                  bos_token=text(self._llm.token_bos()),
                                  add_generation_prompt=True)
        return fmt(messages=list(messages)).prompt

    def close(self) -> None:
        llm, self._llm = getattr(self, "_llm", None), None
        if llm is not None:
            llm.close()


def run_server(argv: list[str] | None = None) -> None:
    """`llama_cpp.server` with the same model params as `LlamaCppLLM` (extra buffer types off):
    `python -m xinstruct.llm.llamacpp --model FILE.gguf --port 8000` takes the server's flags."""
    import runpy
    import sys

    sys.argv = ["llama_cpp.server", *(sys.argv[1:] if argv is None else argv)]
    with model_params(use_extra_bufts=False):
        runpy.run_module("llama_cpp.server", run_name="__main__")


if __name__ == "__main__":
    run_server()


SPEC = BackendSpec(
    "llama.cpp", load=lambda model, cfg: LlamaCppLLM(model, **cfg.options), shard_size=32, judge_batch=1,
    load_tokenizer=lambda model, cfg: LlamaCppLLM(model, **{**cfg.options, "vocab_only": True}),
    # every position's logits, a short context (the logits buffer is n_ctx x vocabulary: an instruction and a cut
    # response fit), and every core: the gate's scoring is most of a run's time
    gate_options=MappingProxyType({"logits_all": True, "n_ctx": 1024, "score_threads": 0}),
    exact_scoring_options=MappingProxyType({"logits_all": True}), runs_gguf=True)
