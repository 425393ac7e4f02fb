"""Question sets, batch inference and question translation with a scripted model."""

import json

import pytest

from xinstruct.evaluate.infer import InferConfig, TranslateQuestionsConfig, run_infer, translate_questions
from xinstruct.evaluate.questions import lang_from_name, read_questions
from xinstruct.io import read_jsonl
from xinstruct.languages import PAPER_LANGUAGES
from xinstruct.llm import LLM, Generation

SW = "Weka bajeti ya kila mwezi na uhifadhi sehemu ya mapato yako kila wiki ili uweze kuweka akiba."


class Echo(LLM):
    """Answers "<answer to: last user message>" (or `answer(messages)`); fails on messages containing FAIL."""

    backend = "scripted"
    model_id = "echo"

    def __init__(self, answer=None):
        self.answer, self.calls = answer, 0

    def generate(self, requests):
        out = []
        for r in requests:
            self.calls += 1
            user = r.messages[-1]["content"]
            if "FAIL" in user:
                out.append(Generation("", "error", error="boom"))
            else:
                out.append(Generation(self.answer(r.messages) if self.answer else f"<answer to: {user}>", "stop", 3, 5))
        return out


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows))
    return path


def test_packaged_questions_cover_english_and_the_paper_languages():
    qs, rejects = read_questions()
    assert not rejects
    assert {q.lang for q in qs} == {"en", *PAPER_LANGUAGES}
    by_lang = {}
    for q in qs:
        by_lang.setdefault(q.lang, []).append((q.question_id, q.category))
    assert all(v == by_lang["en"] for v in by_lang.values()) and len(by_lang["en"]) == 8


@pytest.mark.parametrize("name,lang", [("question.sw.jsonl", "sw"), ("sw.jsonl", "sw"), ("questions_ta.jsonl", "ta"),
                                       ("question.jsonl", None)])
def test_language_from_the_file_name(tmp_path, name, lang):
    from pathlib import Path

    assert lang_from_name(Path(name)) == lang


def test_bad_question_rows_become_rejects_naming_file_and_line(tmp_path):
    f = write(tmp_path / "question.sw.jsonl", [
        {"question_id": 1, "text": "Habari?", "category": "generic"},
        "{not json",
        {"question_id": 2},
        {"text": "Bila nambari?"},
        {"question_id": 1, "text": "Tena?"},
        {"question_id": 3, "category": "writing", "turns": ["Andika shairi.", "Sasa lifupishe."]},
    ])
    qs, rejects = read_questions(f)
    assert [(q.question_id, q.lang) for q in qs] == [("1", "sw"), ("3", "sw")]
    assert qs[1].text == "Andika shairi." and qs[1].meta == {"later_turns_ignored": 1}
    assert [(r["reason"], r["source"].rsplit(":", 1)[1]) for r in rejects] == [
        ("malformed_json", "2"), ("missing_field", "3"), ("missing_field", "4"), ("duplicate_id", "5")]


def test_a_file_without_a_language_is_rejected_row_by_row_unless_given(tmp_path):
    f = write(tmp_path / "question.jsonl", [{"question_id": 1, "text": "Habari?"}])
    assert read_questions(f)[1][0]["reason"] == "no_language"
    assert read_questions(f, lang="sw")[0][0].lang == "sw"


def test_infer_writes_answers_with_provenance_and_rejects_failed_calls(tmp_path):
    qf = write(tmp_path / "q.sw.jsonl", [{"question_id": 1, "text": "Habari?"}, {"question_id": 2, "text": "FAIL"}])
    cfg = InferConfig(questions=str(qf), out=str(tmp_path / "out"), label="echo-model", progress=False,
                      prompt="{question}\n\nAnswer in {language}.", system="Be brief.")
    m = run_infer(cfg, llm=Echo())
    rows = list(read_jsonl(tmp_path / "out" / "answers.jsonl"))
    assert len(rows) == 1 and m["answers"] == 1 and m["rejected"] == 1
    r = rows[0]
    assert r["question_id"] == "1" and r["lang"] == "sw" and r["question"] == "Habari?"
    assert r["answer"] == "<answer to: Habari?\n\nAnswer in Swahili.>"
    assert r["messages"][0] == {"role": "system", "content": "Be brief."}
    assert r["model"] == {"label": "echo-model", "backend": "scripted", "model_id": "echo"}
    assert r["params"]["max_tokens"] == 512 and r["source"].endswith("q.sw.jsonl:1")
    rej = list(read_jsonl(tmp_path / "out" / "rejects.jsonl"))
    assert rej[0]["reason"] == "llm_error" and rej[0]["source"].endswith(":2")


def test_infer_resumes_and_retries_only_failures(tmp_path):
    qf = write(tmp_path / "q.sw.jsonl", [{"question_id": i, "text": f"Swali {i}"} for i in range(5)])
    cfg = InferConfig(questions=str(qf), out=str(tmp_path / "out"), progress=False, shard_size=2)
    first = Echo()
    run_infer(cfg, llm=first)
    (tmp_path / "out" / "work").rename(tmp_path / "out" / "work-old")  # lose the shards: the cache still answers
    again = Echo()
    run_infer(cfg, llm=again)
    assert first.calls == 5 and again.calls == 0
    third = Echo()
    run_infer(cfg, llm=third)  # shards are back: nothing to do
    assert third.calls == 0
    assert len(list(read_jsonl(tmp_path / "out" / "answers.jsonl"))) == 5


def test_limit_and_language_filter(tmp_path):
    m = run_infer(InferConfig(out=str(tmp_path / "o"), lang="sw,ta", limit=2, progress=False), llm=Echo())
    assert m["answers_by_lang"] == {"sw": 2, "ta": 2}


def test_translate_questions_keeps_ids_and_rejects_the_wrong_language(tmp_path):
    def answer(messages):
        user = messages[-1]["content"]
        return f"Translation: {SW}" if "into Swahili" in user else "This stays in English, sorry."

    m = translate_questions(TranslateQuestionsConfig(to="sw,ta", out=str(tmp_path / "qs"), progress=False),
                            llm=Echo(answer))
    assert m["translated"] == {"sw": 8, "ta": 0} and m["rejects_by_reason"] == {"wrong_language": 8}
    qs, rejects = read_questions(tmp_path / "qs")  # the folder is a question set (its rejects.jsonl is skipped)
    assert not rejects and {q.lang for q in qs} == {"sw"}
    assert [q.question_id for q in qs] == [str(i) for i in range(1, 9)]
    assert qs[0].text == SW and qs[0].meta["source_lang"] == "en" and qs[0].category == "generic"


def test_a_line_that_is_not_utf8_is_a_reject_not_a_crash(tmp_path):
    f = tmp_path / "question.sw.jsonl"
    f.write_bytes(b'{"question_id": 1, "text": "Habari?"}\n{"question_id": 2, "text": "\xff\xfe"}\n')
    qs, rejects = read_questions(f)
    assert [q.question_id for q in qs] == ["1"]
    assert rejects[0]["reason"] == "bad_encoding" and rejects[0]["source"].endswith(":2")
    assert "question_id" in rejects[0]["record"]["raw"]  # the line is kept


def test_answer_lang_asks_english_questions_for_an_answer_in_swahili_and_fidelity_checks_swahili(tmp_path):
    """`xinstruct infer --questions en.jsonl --answer-lang sw`: the prompt asks for Swahili, each row's `lang` is
    the answer language (the question's is kept), and fidelity scores the answers against Swahili, so an English
    answer fails where a Swahili one passes."""
    from xinstruct.cli import build_parser
    from xinstruct.config import load_config
    from xinstruct.evaluate.cli import INFER_FLAGS, _overrides
    from xinstruct.evaluate.fidelity import FidelityConfig, run_fidelity

    qf = write(tmp_path / "en.jsonl", [{"question_id": 1, "text": "How do I save money every month?"},
                                       {"question_id": 2, "text": "How should I plan a weekly budget?"}])
    args = build_parser().parse_args(["infer", "--questions", str(qf), "--answer-lang", "sw", "--out",
                                      str(tmp_path / "xl"), "--no-progress"])
    cfg = load_config(InferConfig, None, _overrides(args, INFER_FLAGS))
    assert cfg.answer_lang == "sw"

    def answer(messages):  # Swahili for question 1 when asked for Swahili; English otherwise
        user = messages[-1]["content"]
        return SW if "Answer in Swahili." in user and "save money" in user else "Save a part of your income weekly."

    m = run_infer(cfg, llm=Echo(answer))
    rows = {r["question_id"]: r for r in read_jsonl(tmp_path / "xl" / "answers.jsonl")}
    assert m["answers_by_lang"] == {"sw": 2}
    r = rows["1"]
    assert r["lang"] == "sw" and r["question_lang"] == "en"
    assert r["messages"][-1]["content"] == "How do I save money every month?\n\nAnswer in Swahili."
    assert r["question"] == r["messages"][-1]["content"]  # what a judge reads includes the asked language
    res = run_fidelity(FidelityConfig(answers=str(tmp_path / "xl"), out=str(tmp_path / "fid")))
    assert res["metrics"]["sw"]["n"] == 2 and res["metrics"]["sw"]["in_language"] == 1
    verdicts = {v["question_id"]: v["in_language"] for v in read_jsonl(tmp_path / "fid" / "fidelity.jsonl")}
    assert verdicts == {"1": True, "2": False}


def test_answer_lang_asks_each_question_once_per_answer_language_and_rejects_unknown_codes(tmp_path):
    qf = write(tmp_path / "en.jsonl", [{"question_id": 1, "text": "What is rain?"}])
    m = run_infer(InferConfig(questions=str(qf), answer_lang="sw,ta", out=str(tmp_path / "o"), progress=False),
                  llm=Echo())
    assert m["answers_by_lang"] == {"sw": 1, "ta": 1} and m["questions"] == 1 and m["prompts"] == 2
    asked = sorted(r["messages"][-1]["content"] for r in read_jsonl(tmp_path / "o" / "answers.jsonl"))
    assert asked == ["What is rain?\n\nAnswer in Swahili.", "What is rain?\n\nAnswer in Tamil."]
    with pytest.raises(ValueError, match="unknown language code.*xx"):
        run_infer(InferConfig(questions=str(qf), answer_lang="sw,xx", out=str(tmp_path / "bad"), progress=False),
                  llm=Echo())
