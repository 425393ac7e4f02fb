"""The transformers backend on a GPU: batched generation against a per-example loop on the same device.

For the generation prompts of the sample corpus (rotated shot sets, as the curate job builds them; --copies
repeats the corpus under new ids so a GPU gets enough rows), greedy, bf16:
  (a) xinstruct   `TransformersLLM.generate` on all prompts at once (prefix-sharing batches of --batch-size,
                  sorted by length);
  (b) loop        one `model.generate` call per prompt, as X-Instruction's inference.py runs it.
Prints prompt tokens, generated tokens/s and documents/s for each, and ends with `ratio_vs_loop=X`
((b)'s seconds over (a)'s). (b) runs on --loop-docs prompts spread over the prompt lengths, scaled per document.
Runs on CUDA when there is one (else on the CPU, to check the script).

    python benchmarks/gpu_generate.py --copies 20 --batch-size 128
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from curate import per_example, records_of  # benchmarks/curate.py, beside this script
from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.data import sample_corpus
from xinstruct.llm import ChatRequest
from xinstruct.llm.embedded import smollm2_gguf
from xinstruct.llm.hf import TransformersLLM
from xinstruct.records import Record


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(smollm2_gguf()), help="a checkpoint folder or .gguf (default: embedded)")
    ap.add_argument("--input", type=Path, default=sample_corpus())
    ap.add_argument("--copies", type=int, default=10, help="the corpus this many times, under new ids")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--loop-docs", type=int, default=40)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    args = ap.parse_args()

    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    base = records_of(args.input, None)
    recs = [Record(id=f"{r.id}#{k}", doc_id=f"{r.doc_id}#{k}", lang=r.lang, text=r.text, response=r.response)
            for k in range(args.copies) for r in base]
    gen = InstructionGenerator(GenerateConfig(), llm=None)
    requests: list[ChatRequest] = [gen.request(r) for r in gen.rotation(recs)]
    print(f"device {device} ({torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}), torch "
          f"{torch.__version__}; {len(requests)} prompts, batch size {args.batch_size}, {args.dtype}", flush=True)

    t = time.perf_counter()
    llm = TransformersLLM(args.model, dtype=args.dtype, device=device, batch_size=args.batch_size)
    print(f"load {time.perf_counter() - t:.1f} s", flush=True)
    llm.generate(requests[:2])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    d = llm.decoder
    before_eval, before_total = d.prompt_tokens_evaluated, d.prompt_tokens_total
    t = time.perf_counter()
    outs = llm.generate(requests)
    if device == "cuda":
        torch.cuda.synchronize()
    a_s = time.perf_counter() - t
    gen_tokens = sum(g.completion_tokens for g in outs)
    evaluated, total = d.prompt_tokens_evaluated - before_eval, d.prompt_tokens_total - before_total
    print(f"(a) xinstruct: {a_s:.1f} s, {len(requests) / a_s:.2f} docs/s, {gen_tokens / a_s:.0f} generated tok/s, "
          f"{total / a_s:.0f} prompt tok/s ({evaluated / total:.0%} of the prompt tokens evaluated)", flush=True)

    # the loop's documents spread over the prompt lengths, so its per-document time stands for all of them
    by_len = sorted(range(len(requests)), key=lambda i: sum(len(m["content"]) for m in requests[i].messages))
    k = min(args.loop_docs, len(requests))
    loop = [requests[by_len[round(j * (len(requests) - 1) / max(1, k - 1))]] for j in range(k)]
    b_s, _ = per_example(llm.model, llm.tokenizer, loop)
    per_doc = b_s / len(loop)
    print(f"(b) per-example loop: {b_s:.1f} s for {len(loop)} docs, {1 / per_doc:.2f} docs/s", flush=True)
    print(f"ratio_vs_loop={per_doc * len(requests) / a_s:.2f}")


if __name__ == "__main__":
    sys.exit(main())
