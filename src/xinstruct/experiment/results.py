"""An experiment's one table and one picture: OUT/results.json, results.md and results.png.

Rows are the base and the arms; columns are language fidelity (native questions; English questions answered in
the language), the share of answers that end in a loop, the win rate against the base (judged in both orders,
with its bootstrap interval and the length-controlled rate), and each benchmark's accuracy. Shares and accuracies
come with 95% Wilson intervals: on a few dozen questions they are wide, and the table should say so.
"""

from __future__ import annotations

import dataclasses
import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xinstruct.curate.seeds import SEED_PACKAGE
from xinstruct.evaluate.results import RESULT_FILE
from xinstruct.evaluate.stats import wilson_ci
from xinstruct.experiment.recipe import BASE
from xinstruct.io import atomic_write
from xinstruct.markdown import table as md_table
from xinstruct.train.data import load_aliases, parse_spec

if TYPE_CHECKING:
    from xinstruct.experiment.run import Experiment


def _read(path: Path) -> dict[str, Any] | None:
    f = path / RESULT_FILE
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def _share(res: dict[str, Any] | None, key: str, count: str | None) -> dict[str, Any] | None:
    """{value, low, high, n} of a percentage with its Wilson interval (count: the successes' key, else value*n)."""
    if not res or res["overall"].get(key) is None:
        return None
    o = res["overall"]
    n = int(o["n"])
    k = int(o[count]) if count else round(o[key] * n / 100)
    lo, hi = wilson_ci(k, n)
    return {"value": round(float(o[key]), 2), "low": lo, "high": hi, "n": n}


def _repetitive(*results: dict[str, Any] | None) -> dict[str, Any] | None:
    """The share of answers that end in a loop, over the given fidelity results (all their answers)."""
    found = [r["overall"] for r in results if r and "repetitive" in r["overall"]]
    n = sum(o["n"] + o.get("unsupported", 0) for o in found)
    if not n:
        return None
    k = sum(o["repetitive"] for o in found)
    lo, hi = wilson_ci(k, n)
    return {"value": round(100 * k / n, 2), "low": lo, "high": hi, "n": n}


def _win(res: dict[str, Any] | None) -> dict[str, Any] | None:
    """The win rate with its interval, or value None where the judge gave no verdict it could parse."""
    if not res:
        return None
    o = res["overall"]
    return {"value": o["win_rate"], "low": o["ci_low"], "high": o["ci_high"], "n": o["n"] - o["unparsed"],
            "lc": o["lc_win_rate"], "win": o["win"], "tie": o["tie"], "loss": o["loss"], "unparsed": o["unparsed"]}


def data_sources(exp: Experiment, name: str) -> list[dict[str, Any]]:
    """Where an arm's data came from: each source of its spec, with the dataset card of a curate run folder."""
    arm = exp.arms[name]
    out = []
    for src in parse_spec(arm.data, load_aliases(arm.alias or exp.cfg.alias)):
        path = Path(src.path) if src.path else None
        card = path / "README.md" if path and path.is_dir() and (path / "manifest.json").is_file() else None
        out.append({"name": src.name, "path": str(path or src.parallel), "ratio": src.ratio,
                    "card": str(card) if card and card.is_file() else None,
                    "packaged_seeds": path is not None and path == Path(str(resources.files(SEED_PACKAGE))),
                    })
    return out


def collect(exp: Experiment) -> dict[str, Any]:
    rows = []
    for name in (BASE, *exp.arms):
        f = exp.folder(name)
        row: dict[str, Any] = {"model": name, "folder": str(f)}
        if name == BASE:
            row["base"] = exp.cfg.base
        else:
            train = exp.folder(name) / "train" / "train.json"
            t = json.loads(train.read_text(encoding="utf-8")) if train.is_file() else {}
            row.update(data=exp.arms[name].data, sources=data_sources(exp, name), examples=t.get("examples"),
                       steps=t.get("global_step"), train_loss=t.get("train_loss"))
        native, xl = _read(f / "fidelity"), _read(f / "fidelity-xl")
        row["fidelity"] = _share(native, "fidelity", "in_language")
        row["fidelity_xl"] = _share(xl, "fidelity", "in_language")
        row["repetitive"] = _repetitive(native, xl)
        row["win_rate"] = None if name == BASE else _win(_read(f / "judge"))
        row["win_rate_xl"] = None if name == BASE else _win(_read(f / "judge-xl"))
        row["benchmarks"] = {b: _share(_read(f / f"mc-{b}"), "acc", None) for b in exp.benchmarks}
        rows.append(row)
    e = exp.cfg.eval
    return {"name": exp.cfg.name, "base": exp.cfg.base, "rows": rows, "languages": e.lang,
            "answer_languages": exp.answer_langs, "source_lang": e.source_lang, "judge": e.judge.model,
            "judge_orders": e.orders,
            "train": {**{k: v for k, v in dataclasses.asdict(exp.cfg.train).items()
                         if k not in ("data", "out", "model", "alias")},
                      "learning_rate": exp.cfg.train.learning_rate()}}


def _cell(v: dict[str, Any] | None, lc: bool = False) -> str:
    if v is None:
        return "—"
    if v["value"] is None:
        return f"— ({v['unparsed']} unparsed)"
    s = f"{v['value']:.1f} [{v['low']:.0f}, {v['high']:.0f}]" if v["low"] is not None else f"{v['value']:.1f}"
    if lc and v.get("lc") is not None:
        s += f" (LC {v['lc']:.0f})"
    return s


def table(res: dict[str, Any], out: Path) -> str:
    """The results as a Markdown table, a row per model (links relative to `out`)."""
    bench = list(res["rows"][0]["benchmarks"])
    langs = ", ".join(res["answer_languages"])
    head = ["model", "trained on", "examples", f"fidelity, native ({res['languages']})",
            f"fidelity, {res['source_lang']} asked, answer in {langs}" if langs else "fidelity, cross-lingual",
            "answers ending in a loop", "win rate vs base, native", "win rate vs base, cross-lingual",
            *[f"{b} acc" for b in bench]]
    rows = [[r["model"], _trained_on(r, out), str(r.get("examples") or "—"), _cell(r["fidelity"]),
             _cell(r["fidelity_xl"]), _cell(r["repetitive"]), _cell(r["win_rate"], True),
             _cell(r["win_rate_xl"], True), *[_cell(r["benchmarks"][b]) for b in bench]] for r in res["rows"]]
    return md_table(head, rows)


def markdown(res: dict[str, Any], out: Path) -> str:
    train = res["train"]
    orders = "both orders" if res["judge_orders"] == 2 else "the arm's answer first only"
    text = [f"# Experiment: {res['name']}", "",
            f"Base model: `{res['base']}`. Every arm trained from it with the same settings: {train['method']}, "
            f"{train['max_steps']} steps, batch {train['batch_size']}, learning rate {train['learning_rate']:g}, "
            f"format {train['format']}, seed {train['seed']}.",
            f"Judge: `{res['judge']}`, {orders}; a win rate is the arm's against the base (ties count half), with "
            "its bootstrap 95% interval and the length-controlled rate (LC). Fidelity (answers language ID reads as "
            "the asked language), answers ending in a loop (native and cross-lingual together; in the language and "
            "saying nothing) and accuracy: percent, with 95% Wilson intervals.", "", table(res, out), "",
            "![results](results.png)", ""]
    return "\n".join(text)


def _trained_on(r: dict[str, Any], out: Path) -> str:
    if r["model"] == BASE:
        return "(not tuned)"
    parts = []
    for s in r.get("sources") or []:
        label = f"{s['name']}" + (f" ×{s['ratio']}" if s.get("ratio") is not None else "")
        if s.get("card"):
            label = f"[{label}]({os.path.relpath(s['card'], out)})"
        elif s.get("packaged_seeds"):
            label += " (packaged seed pairs)"
        parts.append(label)
    return " + ".join(parts) or r.get("data", "")


def plot(res: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("fidelity", "fidelity, native (%)"), ("fidelity_xl", "fidelity, answer in the language (%)"),
              ("repetitive", "answers ending in a loop (%)"), ("win_rate", "win rate vs base, native (%)"),
              ("win_rate_xl", "win rate vs base, cross-lingual (%)")]
    panels += [(f"bench:{b}", f"{b} accuracy (%)") for b in res["rows"][0]["benchmarks"]]
    models = [r["model"] for r in res["rows"]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (key, title) in zip(axes[0], panels, strict=True):
        vals = [r["benchmarks"].get(key[6:]) if key.startswith("bench:") else r.get(key) for r in res["rows"]]
        for i, v in enumerate(vals):
            if v is None or v["value"] is None:
                what = "reference" if key.startswith("win_rate") and i == 0 else "n/a"
                ax.text(i, 2, what, ha="center", fontsize=8, color="grey")
                continue
            err = [[v["value"] - v["low"]], [v["high"] - v["value"]]] if v["low"] is not None else None
            ax.bar(i, v["value"], color=colors[i % len(colors)], yerr=err, capsize=4)
        if key.startswith("win_rate"):
            ax.axhline(50, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(models) - 0.4)
        ax.set_ylim(0, 100)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{res['name']}: base vs arms (95% intervals)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_results(exp: Experiment) -> dict[str, Any]:
    res = collect(exp)
    out = exp.out
    with atomic_write(out / "results.json") as f:
        json.dump(res, f, indent=2, ensure_ascii=False)
    plot(res, out / "results.png")
    with atomic_write(out / "results.md") as f:
        f.write(markdown(res, out))
    return res
