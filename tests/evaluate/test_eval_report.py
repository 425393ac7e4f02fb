"""`xinstruct eval report`: tables, the base-vs-tuned change, the tidy CSV and the plots."""

import csv

import pytest

from xinstruct.evaluate.report import build_eval_report
from xinstruct.evaluate.results import find_results, make_result, write_result


def fidelity(label, sw, ta):
    return make_result("fidelity", "questions", {"label": label}, {"sw": {"n": 8, "fidelity": sw},
                                                                 "ta": {"n": 8, "fidelity": ta}},
                       {"n": 16, "fidelity": (sw + ta) / 2}, {"answers": f"runs/{label}/answers"})


@pytest.fixture
def results(tmp_path):
    write_result(tmp_path / "base" / "fidelity", fidelity("base", 25.0, 50.0))
    write_result(tmp_path / "sft" / "fidelity", fidelity("sft", 75.0, 50.0))
    judge = {"n": 4, "win": 2, "tie": 1, "loss": 1, "unparsed": 0, "win_rate": 62.5, "ci_low": 25.0,
             "ci_high": 100.0, "lc_win_rate": 60.1, "consistency": 50.0}
    write_result(tmp_path / "judge", make_result("judge", "questions", {"label": "sft"}, {"sw": judge}, judge,
                                                 {"orders": 2}, reference={"label": "base"},
                                                 judge={"label": "embedded", "prompt": "judge_pairwise@1"}))
    return tmp_path


def test_report_tabulates_the_change_between_two_models(results):
    s = build_eval_report(results)
    assert s["results"] == 3
    md = (results / "report.md").read_text()
    # sw: 75 - 25 = +50; ta: 50 - 50 = 0; all: 62.5 - 37.5 = +25
    assert "| sw | 25.0 | 75.0 | 50.0 |" in md
    assert "| ta | 50.0 | 50.0 | 0.0 |" in md
    assert "| **all** | 37.5 | 62.5 | 25.0 |" in md
    assert "Δ (sft − base)" in md
    assert "| sw | 4 | 2 | 1 | 1 | 0 | 62.5 | 25.0 | 100.0 | 60.1 | 50.0 |" in md
    assert '"orders": 2' in md  # every result's config is in the report


def test_csv_is_tidy_and_points_at_each_result(results):
    build_eval_report(results)
    with open(results / "results.csv") as f:
        rows = list(csv.DictReader(f))
    fid = [r for r in rows if r["metric"] == "fidelity"]
    assert len(fid) == 6  # 2 models x (sw, ta, all)
    assert {r["result"] for r in fid} == {"base/fidelity/result.json", "sft/fidelity/result.json"}
    assert next(r for r in rows if r["kind"] == "judge" and r["metric"] == "win")["reference"] == "base"


def test_plots_are_real_images(results):
    import matplotlib.image as mpimg

    s = build_eval_report(results)
    assert sorted(s["plots"]) == ["fidelity_questions_fidelity.png", "judge_questions_sft_vs_base.png"]
    for name in s["plots"]:
        img = mpimg.imread(results / "plots" / name)
        assert img.shape[0] > 100 and img.shape[1] > 100
        assert img.std() > 0.01  # not a blank canvas


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no result.json"):
        build_eval_report(tmp_path)
    assert find_results(tmp_path) == []
