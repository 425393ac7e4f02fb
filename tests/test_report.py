"""The report and dataset card of a run, and decontamination inside the pipeline (no LLM needed)."""

import json
import subprocess
import sys

import pytest

from xinstruct.curate.config import load_recipe
from xinstruct.curate.job import run_pipeline
from xinstruct.curate.report import language_table, score_distribution
from xinstruct.io import read_jsonl, write_jsonl
from xinstruct.records import Record

pytest.importorskip("sentence_transformers")

EVAL_Q = ("Mvua kubwa ilinyesha usiku kucha na mto ukafurika, hivyo wakazi wa kijiji walihamia shule iliyo juu "
          "ya kilima kusubiri maji yapungue")


def pair(i, lang, instruction, response, scores):
    r = Record(id=f"{lang}-{i}", doc_id=f"{lang}-{i}", lang=lang, text=response, instruction=instruction,
               response=response, source=f"in.jsonl:{i}")
    r.scores = [{"iteration": k, "score": s, "reason": "r"} for k, s in enumerate(scores)]
    return r


def test_language_table_and_score_distribution_by_hand():
    recs = [pair(0, "sw", "abcd", "x" * 10, [3, 4]), pair(1, "sw", "ab", "x" * 20, [5]),
            pair(2, "th", "abc", "ก" * 7, [2, 3, 4])]
    rows = {r["lang"]: r for r in language_table(recs)}
    assert rows["sw"]["samples"] == 2 and rows["sw"]["instruction_chars_mean"] == 3.0
    assert rows["sw"]["instruction_chars_sd"] == pytest.approx(1.4, abs=0.05)  # stdev(4, 2) = 1.414
    assert rows["sw"]["output_chars_mean"] == 15.0 and rows["th"]["output_chars_sd"] == 0.0
    assert score_distribution(recs) == {"before": {2: 1, 3: 1, 5: 1}, "after": {4: 2, 5: 1}}


def test_run_report_card_and_decontamination(tmp_path):
    recs = [pair(0, "sw", "Explain how to cook rice with coconut milk.", "Wali wa nazi hupikwa kwa tui la nazi.",
                 [3, 4]),
            pair(1, "sw", "Describe what happened in the village after the storm.",
                 "Habari za kijiji: " + EVAL_Q + ". Watoto walirudi shuleni baada ya wiki moja.", [4]),
            pair(2, "ta", "Write a short poem about the sea.", "கடல் அலைகள் கரையைத் தொடுகின்றன.", [5])]
    write_jsonl(tmp_path / "in.jsonl", recs)
    (tmp_path / "eval.jsonl").write_text(json.dumps({"question": EVAL_Q.upper() + "!"}, ensure_ascii=False) + "\n")
    cfg = load_recipe(None, [f"input={tmp_path / 'in.jsonl'}", f"out={tmp_path / 'out'}", "progress=false",
                             f"decontaminate.eval_sets=[{tmp_path / 'eval.jsonl'}]"])
    m = run_pipeline(cfg, ["diversify"])
    out = tmp_path / "out"
    assert m["counts"]["samples"] == 2
    [rej] = list(read_jsonl(out / "rejects.jsonl"))
    assert (rej["id"], rej["stage"], rej["reason"]) == ("sw-1", "decontaminate", "overlaps_eval")

    report = (out / "report.md").read_text()
    assert "sw-1" in report and "eval.jsonl:1" in report  # the overlap is listed with its eval item
    assert "| Swahili | sw | 43.0 ± 0.0 | 37.0 ± 0.0 | 1 |" in report
    assert "decontaminate/overlaps_eval | 1" in report
    for png in ("lengths.png", "scores.png", "clusters.png"):
        assert (out / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (out / "README.md").read_text()
    head = card.split("---")[1]
    assert "- en" in head and "- sw" in head and "- ta" in head and "path: samples.jsonl" in head
    assert "n<1K" in head and "load_dataset" in card

    # `xinstruct report DIR` rewrites the same files from the run folder.
    (out / "report.md").unlink()
    r = subprocess.run([sys.executable, "-m", "xinstruct", "report", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (out / "report.md").read_text() == report
    bad = subprocess.run([sys.executable, "-m", "xinstruct", "report", str(tmp_path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "not a run folder" in bad.stderr
