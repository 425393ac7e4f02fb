"""Translation, QA and summarisation runs with a scripted model: predictions, per-language metrics, rejects,
resume. (The metrics themselves are checked by hand in test_metrics.py.)"""

from pathlib import Path

import pytest

from xinstruct.evaluate import metrics
from xinstruct.evaluate.tasks import TaskConfig, run_task
from xinstruct.io import read_jsonl
from xinstruct.llm import LLM, Generation

FIX = Path(__file__).parent / "fixtures"


class Oracle(LLM):
    """Answers each prompt with `answers[key]` where `key` is found in the prompt, else "sijui"."""

    backend = "scripted"
    model_id = "oracle"

    def __init__(self, answers):
        self.answers, self.calls = answers, 0

    def generate(self, requests):
        self.calls += len(requests)
        out = []
        for r in requests:
            user = r.messages[-1]["content"]
            out.append(Generation(next((v for k, v in self.answers.items() if k in user), "sijui"), "stop"))
        return out


def test_translation_scores_per_target_language(tmp_path):
    data = FIX / "gen_flores_eng_Latn-swh_Latn.jsonl"
    llm = Oracle({"The market opens early on Saturday mornings.": "Soko hufunguliwa mapema Jumamosi asubuhi."})
    res = run_task(TaskConfig(kind="translation", data=str(data), out=str(tmp_path / "t"), progress=False), llm=llm)
    rows = list(read_jsonl(tmp_path / "t" / "predictions.jsonl"))
    preds = [r["prediction"] for r in rows]
    refs = [r["references"][0] for r in rows]
    assert set(res["metrics"]) == {"sw"} and res["metrics"]["sw"]["n"] == len(rows)
    assert res["metrics"]["sw"]["bleu"] == pytest.approx(metrics.bleu(preds, refs, "sw")["bleu"], abs=0.01)
    assert res["metrics"]["sw"]["chrf"] == pytest.approx(metrics.chrf(preds, refs)["chrf"], abs=0.01)
    assert 0 < res["overall"]["bleu"] < 100  # one sentence right, the other "sijui"
    assert {r["reason"] for r in read_jsonl(tmp_path / "t" / "rejects.jsonl")} >= {"malformed_json", "duplicate_id"}
    assert "tok:13a" in res["config"]["signatures"]["sw"]["bleu"]  # Swahili: Latin script
    assert res["kind"] == "translation" and res["task"] == data.name


def test_two_file_flores_pair_is_scored_under_the_target_language(tmp_path):
    src, ref = FIX / "gen_eng_Latn.devtest", FIX / "gen_hin_Deva.devtest"
    refs = ref.read_text(encoding="utf-8").splitlines()
    srcs = src.read_text(encoding="utf-8").splitlines()
    llm = Oracle(dict(zip(srcs, refs, strict=True)))  # a perfect translator
    res = run_task(TaskConfig(kind="translation", data=str(src), reference=str(ref), out=str(tmp_path / "t"),
                              progress=False), llm=llm)
    assert res["metrics"]["hi"]["bleu"] == 100.0 and res["metrics"]["hi"]["chrf"] == 100.0
    assert "tok:intl" in res["config"]["signatures"]["hi"]["bleu"]


def test_qa_reads_the_answer_line_and_scores_em_f1_per_language(tmp_path):
    llm = Oracle({"বাংলাদেশের রাজধানী কোনটি?": "Answer: ঢাকা।\nBecause the passage says so.",
                  "தமிழ்நாட்டின் தலைநகரம் எது?": "சென்னை நகரம்"})
    res = run_task(TaskConfig(kind="qa", data=str(FIX / "gen_qa_flat.jsonl"), out=str(tmp_path / "q"), progress=False),
                   llm=llm)
    rows = {r["id"]: r for r in read_jsonl(tmp_path / "q" / "predictions.jsonl")}
    assert rows["bn-1"]["prediction"] == "ঢাকা।" and rows["bn-1"]["exact_match"] == 100.0  # danda is punctuation
    # Tamil: prediction tokens [சென்னை, நகரம்], gold [சென்னை]: P 1/2, R 1, F1 2/3
    assert rows["ta-1"]["exact_match"] == 0.0 and rows["ta-1"]["f1"] == pytest.approx(66.67)
    rejects = list(read_jsonl(tmp_path / "q" / "rejects.jsonl"))
    assert any(r["reason"] == "missing_field" and r["source"].endswith(":3") for r in rejects)  # bn-2 has no question
    assert res["metrics"]["ta"]["f1"] == pytest.approx(66.67, abs=0.01)


def test_summarization_rouge_and_resume(tmp_path):
    data = FIX / "gen_xlsum_tamil_test.jsonl"
    cfg = TaskConfig(kind="summarization", data=str(data), out=str(tmp_path / "s"), progress=False)
    first = Oracle({"வானிலை மையம்": "நாளை சென்னையில் கனமழை பெய்யும் என்று வானிலை மையம் அறிவித்துள்ளது."})
    res = run_task(cfg, llm=first)
    rows = list(read_jsonl(tmp_path / "s" / "predictions.jsonl"))
    assert rows[0]["rougeL"] == 100.0 and res["metrics"]["ta"]["n"] == len(rows)
    assert any(r["reason"] == "bad_encoding" for r in read_jsonl(tmp_path / "s" / "rejects.jsonl"))
    again = Oracle({})
    assert run_task(cfg, llm=again)["overall"] == res["overall"] and again.calls == 0


def test_unknown_kind_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="unknown task kind"):
        run_task(TaskConfig(kind="poetry", data="x", out=str(tmp_path)))
