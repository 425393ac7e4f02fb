"""vLLM in-process (GPU): continuous batching over the whole request list.

vLLM is an optional extra (`pip install 'xinstruct[vllm]'`): it is imported only when
this backend is chosen. Structured output uses vLLM's structured-outputs params
(`StructuredOutputsParams`, vLLM >= 0.10) or guided decoding on older versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xinstruct.llm.backends import BackendSpec
from xinstruct.llm.base import LLM, ChatRequest, Generation, GenerationParams


def _structured(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:  # vLLM < 0.10
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


class VLLMLLM(LLM):
    backend = "vllm"
    supports_json_schema = True
    max_batch = 4096  # stages hand it whole shards: continuous batching wants hundreds of sequences in flight

    def __init__(self, model: str | Path, *, tokenizer: str | None = None, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.85, max_model_len: int | None = 8192,
                 tensor_parallel_size: int = 1, **engine_kwargs: Any):
        try:
            import vllm
        except ImportError as e:
            raise ImportError("the vllm backend needs vLLM on a GPU machine: pip install 'xinstruct[vllm]'") from e
        self._vllm = vllm
        from xinstruct.llm.artifacts import weights_fingerprint

        self.model_id = f"{Path(model).name}:{weights_fingerprint(Path(model))}:{dtype}"
        # Prefix caching: generation prompts share their system prompt and few-shot examples (rotated shot
        # sets), and judge prompts their rubric, so most prompt tokens are computed once per set.
        engine_kwargs.setdefault("enable_prefix_caching", True)
        self._llm = vllm.LLM(model=str(model), tokenizer=tokenizer, dtype=dtype,
                             gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                             tensor_parallel_size=tensor_parallel_size, **engine_kwargs)

    def _sampling(self, p: GenerationParams) -> Any:
        kw: dict[str, Any] = dict(max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                                  seed=p.seed, stop=list(p.stop) or None)
        if p.json_schema is not None:
            kw.update(_structured(p.json_schema))
        return self._vllm.SamplingParams(**kw)

    def chat_prompt(self, messages):  # type: ignore[no-untyped-def]
        return self._llm.get_tokenizer().apply_chat_template(list(messages), tokenize=False,
                                                              add_generation_prompt=True)

    def token_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        """Per-token log-probabilities of each continuation from vLLM's `prompt_logprobs` (one generated
        token per prompt), with the continuation's tokens taken as lm-eval takes them (`encode_pair`)."""
        from xinstruct.llm.hf import encode_pair

        tok = self._llm.get_tokenizer()
        prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

        def encode(text: str, add_special: bool) -> list[int]:
            return tok.encode(text, add_special_tokens=add_special)

        encs = [encode_pair(encode, prefix, tok.bos_token, c, x) for c, x in pairs]
        todo = [i for i, (_, cont) in enumerate(encs) if cont]
        out: list[list[float]] = [[] for _ in pairs]
        if not todo:
            return out
        params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        prompts = [{"prompt_token_ids": encs[i][0] + encs[i][1]} for i in todo]
        for i, o in zip(todo, self._llm.generate(prompts, params, use_tqdm=False), strict=True):
            ctx, cont = encs[i]
            rows = o.prompt_logprobs[len(ctx) :]  # position k holds {token id: Logprob} for prompt token k
            out[i] = [float(row[t].logprob) for row, t in zip(rows, cont, strict=True)]
        return out

    def generate(self, requests: Sequence[ChatRequest]) -> list[Generation]:
        if not requests:
            return []
        outs = self._llm.chat([list(r.messages) for r in requests],
                              [self._sampling(r.params) for r in requests], use_tqdm=False)
        gens = []
        for o in outs:
            c = o.outputs[0]
            gens.append(Generation(text=c.text, finish_reason=c.finish_reason,
                                   prompt_tokens=len(o.prompt_token_ids or []),
                                   completion_tokens=len(c.token_ids)))
        return gens


SPEC = BackendSpec("vllm", load=lambda model, cfg: VLLMLLM(model, **cfg.options), shard_size=4096,
                   max_batch=lambda options: VLLMLLM.max_batch, gpu=True)
