"""Multiple-choice evaluation with a scripted model: prompts against literal strings, metrics worked out
by hand, readers and rejects, few-shot joining, resuming."""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import pytest

from xinstruct.evaluate import multiple_choice as mc
from xinstruct.evaluate.multiple_choice import (
    Item,
    MCConfig,
    build_context,
    fewshot_examples,
    load_items,
    predict,
    requests_for,
    run_multiple_choice,
    score_requests,
    summarize,
)
from xinstruct.llm import LLM

FIXTURES = Path(__file__).parent / "fixtures"


class ScriptedLLM(LLM):
    """loglikelihood from a table keyed by the continuation without its delimiter (default -1.0)."""

    backend = "scripted"
    model_id = "scripted"

    def __init__(self, table: dict[str, float] | None = None, fail_on: str | None = None):
        self.table = table or {}
        self.fail_on = fail_on
        self.calls: list[list[tuple[str, str]]] = []

    def generate(self, requests):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        self.calls.append(list(pairs))
        if self.fail_on is not None and any(self.fail_on in c for c, _ in pairs):
            raise ValueError("continuation exceeds the context window")
        return [self.table.get(x.strip(), -1.0) for _, x in pairs]


def _item(**doc: object) -> Item:
    lang = str(doc.pop("lang", "sw"))
    task = str(doc.pop("task"))
    got = mc.make_item(task, doc, "test:1", lang, "test:1")
    assert isinstance(got, Item), got
    return got


# ------------------------------------------------------------------ prompts, against literal strings

def test_xcopa_prompt_uses_language_connector_and_lowercases_choices():
    it = _item(task="xcopa", premise="Mtoto alilia sana.", choice1="Alikuwa na njaa.", choice2="Alicheza mpira.",
               question="cause", label=1)
    assert it.context == "Mtoto alilia sana kwa sababu"
    assert requests_for(it, it.context) == [("Mtoto alilia sana kwa sababu", " alikuwa na njaa."),
                                            ("Mtoto alilia sana kwa sababu", " alicheza mpira.")]
    assert it.gold == 1
    effect = _item(task="xcopa", lang="tr", premise="Buz eridi.", choice1="A.", choice2="B.", question="effect",
                   label=0)
    assert effect.context == "Buz eridi bu yüzden"


def test_xcopa_falls_back_to_english_words():
    it = _item(task="xcopa", lang="fi", premise="Lapsi itki.", choice1="Hän kaatui.", choice2="Hän nauroi.",
               question="cause", label=0)
    assert it.context == "Lapsi itki because"
    assert mc.words_for("xcopa", "fi") == ({"cause": "because", "effect": "therefore"}, True)
    assert mc.words_for("xcopa", "sw")[1] is False


def test_xnli_prompt_puts_everything_in_the_choices():
    it = _item(task="xnli", lang="en", premise="The cat sat.", hypothesis="A cat is sitting.", label=2)
    assert it.context == ""
    assert it.choices == ["The cat sat., right? Yes, A cat is sitting.", "The cat sat., right? Also, A cat is sitting.",
                          "The cat sat., right? No, A cat is sitting."]
    assert requests_for(it, "")[0] == ("", " The cat sat., right? Yes, A cat is sitting.")
    assert it.gold == 2
    sw = _item(task="xnli", lang="sw", premise="P", hypothesis="H", label="neutral")
    assert sw.choices[1] == "P, sahihi? Hivyo, H" and sw.gold == 1


def test_xstorycloze_prompt_joins_the_story():
    it = _item(task="xstorycloze", input_sentence_1="A.", input_sentence_2="B.", input_sentence_3="C.",
               input_sentence_4="D.", sentence_quiz1="E1.", sentence_quiz2="E2.", answer_right_ending=2)
    assert (it.context, it.choices, it.gold) == ("A. B. C. D.", ["E1.", "E2."], 1)


def test_pawsx_prompt_detokenizes_and_has_no_delimiter():
    it = _item(task="pawsx", lang="de", sentence1="Er kam ( spät ) an .", sentence2="Er war spät.", label=1)
    assert it.choices == ["Er kam (spät) an, richtig? Nein, er war spät.",
                          "Er kam (spät) an, richtig? Ja, er war spät."]
    assert requests_for(it, it.context) == [("", c) for c in it.choices]
    assert it.gold == 1


def test_fewshot_prompt_joined_as_lm_eval_joins_it():
    a = _item(task="xcopa", premise="Mvua ilinyesha.", choice1="Barabara zilijaa maji.", choice2="Jua liliwaka.",
              question="effect", label=0)
    b = _item(task="xcopa", premise="Simu ilizima.", choice1="Niliinunua jana.", choice2="Betri iliisha.",
              question="cause", label=1)
    q = _item(task="xcopa", premise="Mtoto alilia.", choice1="Alikuwa na njaa.", choice2="Alicheza.",
              question="cause", label=0)
    assert build_context(q, [a, b]) == ("Mvua ilinyesha kwa hiyo barabara zilijaa maji.\n\n"
                                        "Simu ilizima kwa sababu betri iliisha.\n\n"
                                        "Mtoto alilia kwa sababu")
    p1 = _item(task="pawsx", lang="en", sentence1="One.", sentence2="Two.", label=0)
    p2 = _item(task="pawsx", lang="en", sentence1="Three.", sentence2="Four.", label=1)
    assert build_context(p2, [p1]) == "One, right? No, two.\n\n"


def test_fewshot_examples_are_seeded_and_never_the_item_itself():
    pool = [_item(task="xstorycloze", id=str(i), input_sentence_1=f"{i}.", input_sentence_2="b", input_sentence_3="c",
                  input_sentence_4="d", sentence_quiz1="x", sentence_quiz2="y", answer_right_ending=1)
            for i in range(6)]
    first = fewshot_examples(pool, pool, 3, seed=7, same_source=True)
    assert first == fewshot_examples(pool, pool, 3, seed=7, same_source=True)
    assert first != fewshot_examples(pool, pool, 3, seed=8, same_source=True)
    for it, ex in zip(pool, first, strict=True):
        assert len(ex) == 3 and it not in ex
    assert fewshot_examples(pool, pool, 0, seed=7, same_source=True) == [[]] * 6
    with pytest.raises(ValueError, match="needs 7"):
        fewshot_examples(pool, pool, 6, seed=7, same_source=True)


# ------------------------------------------------------------------ metrics, worked out by hand

def test_metrics_by_hand():
    """A: lls (-9, -10); "நன்றி" is 5 characters but 15 bytes, "thanks" 6 and 6.
         acc: -9 > -10 -> 0 (gold 0, right); per char -1.8 < -1.667 -> 1 (wrong); per byte -0.6 > -1.667 -> 0 (right).
       B: lls (-3, -4) over "a b" (3) and "longer one" (10): acc -> 0 (gold 1, wrong); per char and byte
         -1.0 < -0.4 -> 1 (right).
       C: a tie (-5, -5) over "ndiyo" and "labda" (5 and 5) -> the first, as numpy's argmax: right everywhere."""
    items, rejects = load_items("xstorycloze", str(FIXTURES / "mc_hand_scored.jsonl"))
    assert rejects == []
    lls = {"A": [-9.0, -10.0], "B": [-3.0, -4.0], "C": [-5.0, -5.0]}
    rows = [{"id": it.id, "lang": it.lang, "gold": it.gold, **predict(lls[it.id], it.choices)} for it in items]
    assert [(r["pred"], r["pred_norm"], r["pred_bytes"]) for r in rows] == [(0, 1, 0), (0, 1, 1), (0, 0, 0)]
    metrics, overall = summarize(rows)
    assert metrics["ta"] == {"n": 2, "acc": 50.0, "acc_norm": 50.0, "acc_bytes": 100.0}
    assert metrics["sw"] == {"n": 1, "acc": 100.0, "acc_norm": 100.0, "acc_bytes": 100.0}
    assert overall == {"n": 3, "acc": pytest.approx(200 / 3), "acc_norm": pytest.approx(200 / 3), "acc_bytes": 100.0}


def test_run_writes_result_predictions_and_rejects(tmp_path):
    llm = ScriptedLLM({"நன்றி": -9.0, "thanks": -10.0, "a b": -3.0, "longer one": -4.0, "ndiyo": -5.0, "labda": -5.0})
    result = run_multiple_choice(MCConfig("xstorycloze", str(FIXTURES / "mc_hand_scored.jsonl"), str(tmp_path)),
                                 llm=llm)
    assert result["kind"] == "multiple_choice" and result["task"] == "xstorycloze"
    assert result["overall"]["acc"] == pytest.approx(200 / 3) and result["metrics"]["ta"]["acc_bytes"] == 100.0
    assert result["model"]["backend"] == "scripted" and result["counts"] == {"items": 3, "scored": 3, "rejected": 0}
    assert json.loads((tmp_path / "result.json").read_text())["overall"] == result["overall"]
    preds = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert [(p["id"], p["lang"], p["gold"], p["pred"], p["loglikelihoods"]) for p in preds] == [
        ("A", "ta", 0, 0, [-9.0, -10.0]), ("B", "ta", 1, 0, [-3.0, -4.0]), ("C", "sw", 0, 0, [-5.0, -5.0])]
    assert (tmp_path / "rejects.jsonl").read_text() == ""
    assert llm.calls[0][0] == ("s1. s2. s3. s4.", " நன்றி")


def test_item_that_cannot_be_scored_is_rejected_not_dropped(tmp_path):
    llm = ScriptedLLM(fail_on="t1.")
    result = run_multiple_choice(MCConfig("xstorycloze", str(FIXTURES / "mc_hand_scored.jsonl"), str(tmp_path),
                                          pairs_per_call=8), llm=llm)
    assert result["counts"] == {"items": 3, "scored": 2, "rejected": 1}
    (reject,) = [json.loads(x) for x in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert reject["id"] == "B" and reject["reason"] == "unscored" and reject["stage"] == "score"
    assert reject["source"].endswith("mc_hand_scored.jsonl:2") and "context window" in reject["detail"]


def test_english_fallback_is_reported(tmp_path):
    result = run_multiple_choice(MCConfig("xcopa", str(FIXTURES / "mc_xcopa_mixed.jsonl"), str(tmp_path)),
                                 llm=ScriptedLLM())
    assert result["english_fallback"] == ["fi"] and "fi" in result["notes"][0]
    assert result["metrics"]["fi"]["n"] == 1 and result["metrics"]["sw"]["n"] == 2


def test_limit_and_fewshot_from_a_separate_file(tmp_path):
    llm = ScriptedLLM()
    shots = tmp_path / "shots.jsonl"
    shots.write_text(json.dumps({"premise": "X y.", "choice1": "Right.", "choice2": "Wrong.", "question": "effect",
                                 "label": 0}) + "\n")
    data = str(resources.files("xinstruct.data.benchmarks") / "xcopa_mini.jsonl")
    result = run_multiple_choice(MCConfig("xcopa", data, str(tmp_path / "out"), lang="sw", limit=2, shots=1,
                                          fewshot_data=str(shots)), llm=llm)
    assert result["overall"]["n"] == 2
    assert llm.calls[0][0] == ("X y kwa hiyo right.\n\nMtoto alilia sana kwa sababu", " alikuwa na njaa.")


# ------------------------------------------------------------------ readers and rejects

def test_jsonl_rows_become_items_or_rejects_with_their_line():
    items, rejects = load_items("xcopa", str(FIXTURES / "mc_xcopa_mixed.jsonl"))
    assert [(it.id, it.lang, it.gold) for it in items] == [("a", "sw", 0), ("b", "fi", 1), ("a#2", "sw", 1)]
    got = [(r["source"].rsplit(":", 1)[1], r["reason"]) for r in rejects]
    assert got == [("3", "malformed_json"), ("4", "not_an_object"), ("5", "missing_field"), ("6", "bad_question"),
                   ("7", "bad_label")]
    assert all(r["source"].startswith(str(FIXTURES)) and r["detail"] for r in rejects)


def test_language_argument_overrides_fields_and_file_name_is_a_fallback(tmp_path):
    items, _ = load_items("xcopa", str(FIXTURES / "mc_xcopa_mixed.jsonl"), lang="id")
    assert {it.lang for it in items} == {"id"} and items[0].context == "Mtoto alilia sana karena"
    items, rejects = load_items("pawsx", str(FIXTURES / "mc_pawsx_de.jsonl"))
    assert [it.lang for it in items] == ["de", "de"] and [r["reason"] for r in rejects] == ["missing_field"]
    # lm-eval's detokenizer joins quotes to both neighbours: 'Sie sagte , " nein " ;' -> 'Sie sagte,"nein";'
    assert items[1].choices[0] == 'Sie sagte,"nein", richtig? Nein, nein, sagte sie.'
    nameless = tmp_path / "rows.jsonl"
    nameless.write_text((FIXTURES / "mc_pawsx_de.jsonl").read_text())
    with pytest.raises(ValueError, match="no_language"):
        load_items("pawsx", str(nameless))


def test_tsv_with_the_original_xnli_columns():
    items, rejects = load_items("xnli", str(FIXTURES / "mc_xnli_sw.tsv"))
    assert [(it.lang, it.gold) for it in items] == [("sw", 0), ("sw", 2)]
    assert items[1].choices[2] == 'Mvua "kubwa" ilinyesha., sahihi? Hapana, Hakuna mvua.'
    assert items[0].doc == {"id": "mc_xnli_sw.tsv:2", "premise": "Paka amelala.", "hypothesis": "Paka yupo.",
                            "label": 0}
    assert [(r["source"].rsplit(":", 1)[1], r["reason"]) for r in rejects] == [("4", "bad_label"),
                                                                               ("5", "wrong_columns")]


def test_json_array_parquet_and_saved_dataset_read_the_same(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [json.loads(x) for x in (FIXTURES / "mc_xnli_en.jsonl").read_text().splitlines()]
    (tmp_path / "x.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "x.parquet")
    want = load_items("xnli", str(FIXTURES / "mc_xnli_en.jsonl"), lang="en")[0]
    for name in ("x.json", "x.parquet"):
        got = load_items("xnli", str(tmp_path / name), lang="en")[0]
        assert [(it.choices, it.gold) for it in got] == [(it.choices, it.gold) for it in want]
        assert got[0].source == f"{tmp_path / name}:0"
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "saved"))
    got = load_items("xnli", str(tmp_path / "saved"), lang="en")[0]
    assert [it.gold for it in got] == [0, 2] and got[1].source.endswith("saved/test:1")


def test_missing_hf_dataset_says_it_is_read_offline():
    pytest.importorskip("datasets")
    with pytest.raises(FileNotFoundError, match="offline"):
        load_items("xcopa", "hf:nobody/no-such-dataset-xinstruct:sw:test")


def test_language_from_file_name():
    assert mc.lang_from_name("data/xcopa_sw.jsonl") == "sw"
    assert mc.lang_from_name("xnli.tr.test.tsv") == "tr"
    assert mc.lang_from_name("hf:cambridgeltl/xcopa:ta:test") == "ta"
    assert mc.lang_from_name("xcopa_mini.jsonl") is None


# ------------------------------------------------------------------ resuming

def test_a_killed_run_resumes_without_recomputing(tmp_path):
    """Scoring goes through the request cache every command uses: a run killed after its first calls, run again,
    scores only the pairs it had not finished."""
    from xinstruct.llm import CachedLLM, RequestCache

    requests = {f"k{i}": [("c", f" {i}a"), ("c", f" {i}b")] for i in range(5)}

    class Dies(ScriptedLLM):
        def loglikelihood(self, pairs):  # type: ignore[no-untyped-def]
            if len(self.calls) == 2:
                raise KeyboardInterrupt
            return super().loglikelihood(pairs)

    cache = RequestCache(tmp_path / "cache" / "llm.sqlite")
    with pytest.raises(KeyboardInterrupt):
        score_requests(CachedLLM(Dies(), cache), requests, batch_size=4)
    cache.close()
    again = ScriptedLLM()
    cache = RequestCache(tmp_path / "cache" / "llm.sqlite")
    scores, failed = score_requests(CachedLLM(again, cache), requests, batch_size=4)
    assert failed == {} and set(scores) == set(requests)
    assert [p for call in again.calls for p in call] == [("c", " 4a"), ("c", " 4b")]
    assert scores == score_requests(ScriptedLLM(), requests, batch_size=4)[0]  # the same values as uncached


def test_a_finished_run_reruns_without_calling_the_model(tmp_path):
    first, second = ScriptedLLM({"thanks": -2.0}), ScriptedLLM({"thanks": -2.0})
    data = str(FIXTURES / "mc_hand_scored.jsonl")
    a = run_multiple_choice(MCConfig("xstorycloze", data, str(tmp_path)), llm=first)
    b = run_multiple_choice(MCConfig("xstorycloze", data, str(tmp_path)), llm=second)
    assert first.calls and second.calls == []
    assert a["metrics"] == b["metrics"]
