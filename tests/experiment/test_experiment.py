"""`xinstruct experiment` end to end on the tiny random Llama the suite builds (real trl/peft training, real
transformers inference, judging and log-likelihood scoring): every file written, arms trained alike, the
cross-lingual answers, a rerun that does nothing, and a SIGKILLed run that resumes without retraining a finished
arm and ends with the uninterrupted run's results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xinstruct.io import read_jsonl

pytest.importorskip("trl")
pytest.importorskip("peft")

SW = ["Mvua ya masika huanza mwezi Machi na huleta maji mengi kwa wakulima wa mahindi na maharagwe.",
      "Ugali hupikwa kwa unga wa mahindi na maji yanayochemka, kisha hukorogwa hadi uwe mzito.",
      "Mlima Kilimanjaro ndio mlima mrefu zaidi barani Afrika na una theluji juu ya kilele chake.",
      "Soko la Kariakoo jijini Dar es Salaam huuza vyakula, nguo na vifaa vya nyumbani kila siku."]
INSTR = ["When do the long rains start in Tanzania?", "How is ugali cooked?", "Tell me about Mount Kilimanjaro.",
         "What is sold at Kariakoo market?"]
MODELS = ("base", "seeds", "curated")


def curated_run(folder: Path) -> Path:
    """A curate run folder as `xinstruct curate` leaves it: samples, manifest and dataset card."""
    folder.mkdir(parents=True)
    with open(folder / "samples.jsonl", "w", encoding="utf-8") as f:
        for i, (ins, resp) in enumerate(zip(INSTR, SW, strict=True)):
            f.write(json.dumps({"id": f"sw-{i}", "lang": "sw", "instruction": ins, "response": resp}) + "\n")
    (folder / "manifest.json").write_text(json.dumps({"kind": "curate"}))
    (folder / "README.md").write_text("# dataset card\n")
    return folder


def recipe(tmp: Path, model: Path) -> Path:
    alias = tmp / "alias.yaml"
    alias.write_text(yaml.safe_dump({"curated-data": {"path": str(curated_run(tmp / "demo-run"))}}))
    data = {
        "name": "tiny", "base": str(model), "arms": {"seeds": "seeds", "curated": {"data": "curated-data"}},
        "alias": str(alias),
        "train": {"max_steps": 2, "batch_size": 2, "max_length": 256, "save_steps": 1, "threads": 1},
        "eval": {"lang": "sw", "answer_lang": "sw,tr", "limit": 2, "max_tokens": 6, "judge": {"model": str(model)},
                 "judge_max_tokens": 6, "benchmarks": {"xcopa": {"task": "xcopa", "data": "packaged", "limit": 2}}},
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "xinstruct", "experiment", *args, "--no-progress"]


@pytest.fixture(scope="module")
def finished(tiny_model, tmp_path_factory):
    """An uninterrupted experiment: its recipe and folder."""
    tmp = tmp_path_factory.mktemp("experiment")
    path = recipe(tmp, tiny_model)
    r = subprocess.run(cli(str(path), "--out", str(tmp / "out")), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    return path, tmp / "out", r.stdout


def test_every_file_is_written_and_the_arms_train_alike(finished):
    _, out, stdout = finished
    for name in MODELS:
        for sub in ("answers/answers.jsonl", "answers-xl/answers.jsonl", "fidelity/result.json",
                    "fidelity-xl/result.json", "mc-xcopa/result.json"):
            assert (out / name / sub).is_file(), f"{name}/{sub}"
    for arm in ("seeds", "curated"):
        for sub in ("train/train.json", "train/merged/config.json", "judge/result.json", "judge-xl/result.json"):
            assert (out / arm / sub).is_file(), f"{arm}/{sub}"
    assert not (out / "base" / "judge").exists()
    for f in ("results.md", "results.json", "results.png", "experiment.json"):
        assert (out / f).stat().st_size > 0, f

    trained = {a: json.loads((out / a / "train" / "train.json").read_text()) for a in ("seeds", "curated")}
    cfgs = {a: {k: v for k, v in t["config"].items() if k not in ("data", "out")} for a, t in trained.items()}
    assert cfgs["seeds"] == cfgs["curated"] and cfgs["seeds"]["max_steps"] == 2
    assert trained["seeds"]["global_step"] == trained["curated"]["global_step"] == 2
    assert trained["curated"]["examples"] == 4 and trained["seeds"]["examples"] > 4
    assert trained["seeds"]["data"]["seeds"]["used"] == 100  # the packaged seed pairs, ten languages

    steps = json.loads((out / "experiment.json").read_text())["steps"]
    assert set(steps) >= {"seeds/train", "curated/train", "base/answers", "curated/judge-xl", "base/mc-xcopa"}
    assert "results.md" in stdout and "| curated |" in stdout


def test_the_cross_lingual_answers_ask_english_questions_for_each_answer_language(finished):
    _, out, _ = finished
    native = list(read_jsonl(out / "base" / "answers" / "answers.jsonl"))
    assert {r["lang"] for r in native} == {"sw"} and len(native) == 2
    xl = list(read_jsonl(out / "curated" / "answers-xl" / "answers.jsonl"))
    assert sorted((r["lang"], r["question_lang"]) for r in xl) == [("sw", "en")] * 2 + [("tr", "en")] * 2
    for r in xl:
        lang = {"sw": "Swahili", "tr": "Turkish"}[r["lang"]]
        assert r["messages"][-1]["content"].endswith(f"\n\nAnswer in {lang}.")
    fid = json.loads((out / "curated" / "fidelity-xl" / "result.json").read_text())
    assert set(fid["metrics"]) == {"sw", "tr"} and fid["overall"]["n"] == 4
    judged = list(read_jsonl(out / "curated" / "judge-xl" / "judgments.jsonl"))
    assert sorted(j["lang"] for j in judged) == ["sw", "sw", "tr", "tr"]


def test_the_results_table_has_a_row_per_model_and_links_the_curated_data_card(finished):
    _, out, _ = finished
    res = json.loads((out / "results.json").read_text())
    assert [r["model"] for r in res["rows"]] == list(MODELS)
    assert res["rows"][0]["win_rate"] is None and res["rows"][0]["win_rate_xl"] is None  # the reference itself
    for r in res["rows"][1:]:
        judged = json.loads((out / r["model"] / "judge-xl" / "result.json").read_text())["overall"]
        assert (r["win_rate_xl"] or {}).get("value") == judged["win_rate"]
    for r in res["rows"]:
        fid = json.loads((out / r["model"] / "fidelity" / "result.json").read_text())["overall"]
        assert r["fidelity"]["n"] == fid["n"] == 2 and r["fidelity"]["value"] == fid["fidelity"]
        assert r["fidelity"]["low"] <= r["fidelity"]["value"] <= r["fidelity"]["high"]
        acc = json.loads((out / r["model"] / "mc-xcopa" / "result.json").read_text())["overall"]
        assert r["benchmarks"]["xcopa"]["value"] == round(acc["acc"], 2) and r["benchmarks"]["xcopa"]["n"] == 6
        loops = [v["repetitive"] for sub in ("fidelity", "fidelity-xl")
                 for v in read_jsonl(out / r["model"] / sub / "fidelity.jsonl")]
        assert r["repetitive"]["n"] == len(loops) == 6 and r["repetitive"]["value"] == round(100 * sum(loops) / 6, 2)
    md = (out / "results.md").read_text()
    assert "[curated-data](../demo-run/README.md)" in md
    assert "seeds (packaged seed pairs)" in md
    assert sum(line.startswith(("| base |", "| seeds |", "| curated |")) for line in md.splitlines()) == 3


def test_a_rerun_of_a_finished_experiment_runs_no_step(finished):
    path, out, _ = finished
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json*") if "results" not in p.name
              and p.name != "experiment.json"}
    r = subprocess.run(cli(str(path), "--out", str(out)), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    n = len(json.loads((out / "experiment.json").read_text())["steps"])
    assert f"{n} steps, {n} already done" in r.stdout and "] seeds/train" not in r.stdout
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # --report-only rewrites the table from the finished steps and runs nothing
    results = (out / "results.json").read_text()
    for f in ("results.md", "results.json", "results.png"):
        (out / f).unlink()
    r = subprocess.run(cli(str(path), "--out", str(out), "--report-only"), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "results.json").read_text() == results and (out / "results.png").is_file()
    assert {p: p.stat().st_mtime_ns for p in before} == before


@pytest.mark.timeout(1200)
def test_a_sigkilled_experiment_resumes_without_retraining_a_finished_arm(finished, tmp_path):
    path, done, _ = finished
    out = tmp_path / "out"
    proc = subprocess.Popen(cli(str(path), "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    ledger = out / "experiment.json"
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if ledger.is_file() and "seeds/train" in json.loads(ledger.read_text() or "{}").get("steps", {}):
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the experiment ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    train = out / "seeds" / "train" / "train.json"
    first = train.read_bytes(), train.stat().st_mtime_ns
    r = subprocess.run(cli(str(path), "--out", str(out)), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-4000:]
    assert "] seeds/train" not in r.stdout  # not trained again
    assert (train.read_bytes(), train.stat().st_mtime_ns) == first
    # the resumed experiment ends where the uninterrupted one did
    for name in MODELS:
        for sub in ("answers", "answers-xl"):
            a = [(x["lang"], x["question_id"], x["answer"]) for x in read_jsonl(out / name / sub / "answers.jsonl")]
            b = [(x["lang"], x["question_id"], x["answer"]) for x in read_jsonl(done / name / sub / "answers.jsonl")]
            assert a == b, f"{name}/{sub}"
    ra, rb = (json.loads((d / "results.json").read_text())["rows"] for d in (out, done))
    strip = ("folder", "sources")
    assert [{k: v for k, v in r.items() if k not in strip} for r in ra] == \
        [{k: v for k, v in r.items() if k not in strip} for r in rb]


def test_recipe_errors_name_the_setting(tmp_path):
    from xinstruct.experiment.recipe import load_recipe

    def bad(data, match):
        p = tmp_path / "r.yaml"
        p.write_text(yaml.safe_dump(data))
        with pytest.raises((ValueError, FileNotFoundError), match=match):
            load_recipe(str(p))

    bad({"arms": {}}, "no arms")
    bad({"arms": {"base": "seeds"}}, "'base' names the base model")
    bad({"arms": {"a b": "seeds"}}, "not a usable folder name")
    bad({"arms": {"x": {"dta": "seeds"}}}, "arms.x.dta")
    bad({"arms": {"x": "seeds"}, "train": {"data": "seeds"}}, "train.data is set by the experiment")
    bad({"arms": {"x": "seeds"}, "train": {"max_steps": -1}}, "train.max_steps")
    bad({"arms": {"x": "seeds"}, "eval": {"answer_lang": "sw,zz"}}, "unknown language code")
    bad({"arms": {"x": "seeds"}, "eval": {"benchmarks": {"b": {"task": "mmlu"}}}}, "eval.benchmarks.b.task")
    bad({"arms": {"x": "seeds"}, "eval": {"benchmarks": {"b": {"task": "xnli"}}}}, "eval.benchmarks.b.data")
    bad({"arms": {"x": "seeds"}, "train": {"merge": False}}, "train.merge")
    with pytest.raises(FileNotFoundError, match="packaged recipe"):
        load_recipe("no-such-recipe")


def test_an_arm_whose_data_is_missing_fails_first_naming_the_arm(tmp_path):
    from xinstruct.experiment.recipe import load_recipe
    from xinstruct.experiment.run import Experiment

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"arms": {"ok": "seeds", "broken": str(tmp_path / "nowhere")},
                                 "out": str(tmp_path / "o")}))
    with pytest.raises(ValueError, match=r"arms\.broken: data source .*nowhere"):
        Experiment(load_recipe(str(p)))
    assert not (tmp_path / "o").exists()


def test_the_packaged_demo_recipe_loads(monkeypatch):
    from xinstruct.experiment.recipe import load_recipe

    cfg = load_recipe("demo")
    assert list(cfg.arm_configs()) == ["seeds", "curated"] and cfg.train.max_steps > 0
    assert cfg.eval.answer_languages() == ["id", "sw", "tr"] and "xcopa" in cfg.benchmark_configs()


def test_an_arms_answer_languages_narrow_its_cross_lingual_steps_and_the_base_answers_them_all(tmp_path):
    from xinstruct.experiment.recipe import load_recipe
    from xinstruct.experiment.run import Experiment

    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump({"out": str(tmp_path / "o"), "arms": {"all": "seeds", "sw": {
        "data": "seeds", "answer_lang": "sw"}}, "eval": {"lang": "tr", "answer_lang": "ta,tr"}}))
    steps = {s.name: s for s in Experiment(load_recipe(str(p))).steps}
    assert steps["all/answers-xl"].settings["answer_lang"] == "ta,tr"
    assert steps["sw/answers-xl"].settings["answer_lang"] == "sw"
    assert steps["base/answers-xl"].settings["answer_lang"] == "sw,ta,tr"
    assert steps["sw/judge-xl"].settings["lang"] == "sw"  # judged against the base on its own languages
    # an arm's answers hang on its training: same settings, different keys
    assert steps["all/answers"].settings == steps["sw/answers"].settings
    assert steps["all/answers"].key != steps["sw/answers"].key
