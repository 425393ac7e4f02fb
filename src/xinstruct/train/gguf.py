"""Write a trained model back to GGUF, so the llama.cpp backend runs it too.

For a base that came from a GGUF file (the embedded SmolLM2 among them), the base file
already holds everything but the weights: architecture settings, tokenizer and chat
template. We copy that metadata and write the trained weights under the base's tensor
names, undoing the query/key row permutation that transformers applies when it reads
llama-family GGUF files. Weights are written as F16 (1-D tensors as F32, as llama.cpp
expects). For other bases, llama.cpp's `convert_hf_to_gguf.py` converts the merged folder.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

PERMUTED_ARCHS = ("llama",)  # archs whose q/k rows transformers un-permutes on GGUF load


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's row order for rotary q/k projections (the inverse of transformers' reverse_permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _field_value(field: Any) -> Any:
    import gguf

    if hasattr(field, "contents"):
        return field.contents()
    kind = field.types[0]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    if kind == gguf.GGUFValueType.ARRAY:
        sub = field.types[-1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    return field.parts[field.data[0]].tolist()[0]


def export_gguf(model: Any, base_gguf: str | Path, out: str | Path, *, chat_template: str | None = None) -> Path:
    """Write `model`'s weights into a copy of `base_gguf`'s metadata; returns the path written."""
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field_value(reader.fields["general.architecture"])
    n_blocks = int(_field_value(reader.fields[f"{arch}.block_count"]))
    n_head = int(_field_value(reader.fields[f"{arch}.attention.head_count"]))
    kv_key = f"{arch}.attention.head_count_kv"
    n_head_kv = int(_field_value(reader.fields[kv_key])) if kv_key in reader.fields else n_head
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], n_blocks)
    wanted = {t.name for t in reader.tensors}

    state = {k: v.detach().float().cpu().numpy() for k, v in model.state_dict().items()}
    tensors: dict[str, np.ndarray] = {}
    for hf_name, w in state.items():
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None or name not in wanted:
            continue  # e.g. a tied lm_head that the base file does not store
        if arch in PERMUTED_ARCHS and hf_name.endswith("q_proj.weight"):
            w = _permute(w, n_head)
        elif arch in PERMUTED_ARCHS and hf_name.endswith("k_proj.weight"):
            w = _permute(w, n_head_kv)
        tensors[name] = w.astype(np.float32 if w.ndim == 1 else np.float16)
    missing = wanted - set(tensors)
    if missing:
        raise ValueError(f"cannot write GGUF: no trained weights for {sorted(missing)[:5]} "
                         f"(convert the merged folder with llama.cpp's convert_hf_to_gguf.py instead)")

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(out), arch)
    # First in the header, so the llama.cpp backend's fingerprint (the file's first 4 MiB) tells two trained
    # models apart even when their first tensors (e.g. embeddings LoRA left alone) are the same.
    digest = hashlib.sha256()
    for t in reader.tensors:
        digest.update(tensors[t.name].tobytes())
    writer.add_string("xinstruct.weights_sha256", digest.hexdigest())
    for name, f in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", "general.file_type"):
            continue
        if name == "tokenizer.chat_template" and chat_template:
            continue
        kind = f.types[0]
        sub = f.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(name, _field_value(f), kind, sub_type=sub)
    if chat_template:
        writer.add_chat_template(chat_template)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for t in reader.tensors:  # the base file's tensor order
        writer.add_tensor(t.name, tensors[t.name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
