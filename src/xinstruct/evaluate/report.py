"""`xinstruct eval report DIR`: every result.json under DIR in one Markdown report, one CSV and PNG plots.

    DIR/report.md        tables per kind (rows: languages; columns: models) and the config of every result
    DIR/results.csv      tidy: one row per (result, language, metric)
    DIR/plots/*.png      win/tie/loss bars per language, accuracy, fidelity and generation metrics per language
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from xinstruct.evaluate.results import find_results
from xinstruct.io import atomic_write
from xinstruct.markdown import table as md_table

# The figure each kind is compared by (first) and the others worth a column.
HEADLINE = {"fidelity": ("fidelity",), "multiple_choice": ("acc", "acc_norm"), "translation": ("chrf", "bleu"),
            "qa": ("f1", "exact_match"), "summarization": ("rougeL", "rouge1", "rouge2"),
            "judge": ("win_rate", "lc_win_rate")}
TITLES = {"fidelity": "Language fidelity (% of answers in the asked language)",
          "multiple_choice": "Multiple-choice accuracy (%)", "translation": "Translation", "qa": "Question answering",
          "summarization": "Summarisation", "judge": "Pairwise judge (candidate vs reference)"}


def _label(res: dict[str, Any]) -> str:
    m = res.get("model") or {}
    return str(m.get("label") or m.get("model") or "model")


def tidy_rows(results: list[tuple[Path, dict[str, Any]]], root: Path) -> list[dict[str, Any]]:
    rows = []
    for path, res in results:
        where = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
        ref = _label({"model": res["reference"]}) if res.get("reference") else ""
        for lang, metrics in [*res.get("metrics", {}).items(), ("all", res.get("overall", {}))]:
            for metric, value in metrics.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    rows.append({"kind": res["kind"], "task": res["task"], "model": _label(res), "reference": ref,
                                 "lang": lang, "metric": metric, "value": value, "result": where})
    return rows


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    return f"{v:.1f}" if isinstance(v, float) else str(v)


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    return md_table(header, [[_fmt(c) for c in r] for r in rows])


def _group(results: list[tuple[Path, dict[str, Any]]]) -> dict[tuple[str, str], list[tuple[Path, dict[str, Any]]]]:
    groups: dict[tuple[str, str], list[tuple[Path, dict[str, Any]]]] = defaultdict(list)
    for path, res in results:
        groups[(res["kind"], res["task"])].append((path, res))
    return dict(sorted(groups.items()))


def _langs(group: list[tuple[Path, dict[str, Any]]]) -> list[str]:
    return sorted({lang for _, r in group for lang in r.get("metrics", {})})


def _comparison_table(group: list[tuple[Path, dict[str, Any]]], metric: str) -> str:
    labels = [_label(r) for _, r in group]
    rows = [[lang, *[r["metrics"].get(lang, {}).get(metric) for _, r in group]] for lang in _langs(group)]
    rows.append(["**all**", *[r.get("overall", {}).get(metric) for _, r in group]])
    if len(group) == 2:  # base vs tuned: the change is what people look for
        for row in rows:
            a, b = row[1], row[2]
            row.append(round(b - a, 2) if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None)
        labels.append(f"Δ ({labels[1]} − {labels[0]})")
    return _md_table(["lang", *labels], rows)


def _judge_table(res: dict[str, Any]) -> str:
    cols = ["n", "win", "tie", "loss", "unparsed", "win_rate", "ci_low", "ci_high", "lc_win_rate", "consistency"]
    items = [*res["metrics"].items(), ("**all**", res["overall"])]
    return _md_table(["lang", *cols], [[lang, *[m.get(c) for c in cols]] for lang, m in items])


def _plots(groups: dict[tuple[str, str], list[tuple[Path, dict[str, Any]]]], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    made = []
    (out / "plots").mkdir(parents=True, exist_ok=True)
    for (kind, task), group in groups.items():
        if kind == "judge":
            for _path, res in group:
                langs = list(res["metrics"])
                m = res["metrics"]
                fig, ax = plt.subplots(figsize=(7, 0.5 * len(langs) + 1.6))
                left = np.zeros(len(langs))
                for name, color in (("win", "#2a9d8f"), ("tie", "#c9c9c9"), ("loss", "#e76f51"),
                                    ("unparsed", "#6d597a")):
                    vals = np.array([m[lg].get(name, 0) / max(m[lg].get("n", 1), 1) * 100 for lg in langs])
                    ax.barh(langs, vals, left=left, color=color, label=name)
                    left += vals
                ref = _label({"model": res.get("reference") or {}})
                ax.set_xlabel("% of questions")
                ax.set_xlim(0, 100)
                ax.set_title(f"{_label(res)} vs {ref} ({task})", pad=24)
                ax.legend(ncol=4, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
                ax.invert_yaxis()
                name = _safe(f"judge_{task}_{_label(res)}_vs_{ref}.png")
                fig.tight_layout()
                fig.savefig(out / "plots" / name, dpi=110)
                plt.close(fig)
                made.append(name)
            continue
        metric = HEADLINE[kind][0]
        langs = _langs(group)
        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(langs) * max(1, len(group) / 2) + 2), 3.6))
        width = 0.8 / len(group)
        x = np.arange(len(langs))
        for i, (_path, res) in enumerate(group):
            vals = [res["metrics"].get(lg, {}).get(metric) for lg in langs]
            ax.bar(x + i * width - 0.4 + width / 2, [v if v is not None else 0 for v in vals], width,
                   label=_label(res))
        ax.set_xticks(x, langs)
        ax.set_ylabel(metric)
        if metric in ("fidelity", "acc", "acc_norm"):
            ax.set_ylim(0, 100)
        ax.set_title(f"{TITLES[kind].split(' (')[0]}: {task}")
        ax.legend(fontsize=8)
        name = _safe(f"{kind}_{task}_{metric}.png")
        fig.tight_layout()
        fig.savefig(out / "plots" / name, dpi=110)
        plt.close(fig)
        made.append(name)
    return made


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def build_eval_report(root: str | Path, out: str | Path | None = None, plots: bool = True) -> dict[str, Any]:
    """Write report.md, results.csv and plots/ for every result under `root`; returns a summary."""
    root = Path(root)
    out = Path(out) if out else root
    results = find_results(root)
    if not results:
        raise FileNotFoundError(f"no result.json under {root} (run `xinstruct infer` + `xinstruct eval ...` first)")
    rows = tidy_rows(results, root)
    with atomic_write(out / "results.csv") as f:
        w = csv.DictWriter(f, fieldnames=["kind", "task", "model", "reference", "lang", "metric", "value", "result"])
        w.writeheader()
        w.writerows(rows)
    groups = _group(results)
    made = _plots(groups, out) if plots else []
    md = [f"# Evaluation report\n\n{len(results)} result(s) under `{root}`.\n"]
    for (kind, task), group in groups.items():
        md.append(f"## {TITLES[kind]} — {task}\n")
        if kind == "judge":
            for _path, res in group:
                ref = _label({"model": res.get("reference") or {}})
                judge = res.get("judge") or {}
                md.append(f"**{_label(res)}** vs **{ref}**, judged by {judge.get('label', '?')} "
                          f"({judge.get('prompt', '?')}); win rate counts ties as half, 95% bootstrap CI, "
                          "LC = length-controlled.\n")
                md.append(_judge_table(res) + "\n")
        else:
            for metric in HEADLINE[kind]:
                if any(metric in r.get("overall", {}) for _, r in group):
                    md.append(f"{metric}:\n\n" + _comparison_table(group, metric) + "\n")
        md += [f"![{p}](plots/{p})\n" for p in made if p.startswith(_safe(f"{kind}_{task}"))]
    md.append("## Configurations\n\nEvery figure above comes from one of these results; each holds what is "
              "needed to run it again.\n")
    for path, res in results:
        where = path.relative_to(root) if path.is_relative_to(root) else path
        md.append(f"<details><summary><code>{where}</code> — {res['kind']} {res['task']}, {_label(res)}, "
                  f"{res.get('created', '')}</summary>\n\n```json\n"
                  + json.dumps({"model": res.get("model"), "config": res.get("config"),
                                "versions": res.get("versions")}, indent=2, ensure_ascii=False)
                  + "\n```\n</details>\n")
    with atomic_write(out / "report.md") as f:
        f.write("\n".join(md))
    return {"results": len(results), "rows": len(rows), "plots": made, "report": str(out / "report.md")}
