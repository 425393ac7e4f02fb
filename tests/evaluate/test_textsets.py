"""Task-file readers: every format parses, every bad record becomes a reject naming file:line, and
languages come from arguments, fields or file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xinstruct.evaluate.metrics import qa_scores
from xinstruct.evaluate.textsets import (
    QAItem,
    SummaryItem,
    TranslationItem,
    lang_code,
    langs_in_name,
    qa_answer,
    qa_prompt,
    read_qa,
    read_summaries,
    read_translation_files,
    read_translation_table,
    summary_prompt,
    translation_prompt,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _reasons(rejects: list[dict[str, str]]) -> dict[str, str]:
    """{"file:line" (file's base name): reason}."""
    return {r["source"].replace(str(FIXTURES) + "/", ""): r["reason"] for r in rejects}


# --- languages ----------------------------------------------------------------------------------------------


def test_lang_codes_and_file_names() -> None:
    assert [lang_code(c) for c in ("swh_Latn", "tam_Taml", "eng_Latn", "hin", "zul_Latn", "sw")] == [
        "sw", "ta", "en", "hi", "zul_Latn", "sw"]
    assert langs_in_name("xquad.th.json") == ["th"]
    assert langs_in_name("eng_Latn.devtest") == ["en"]
    assert langs_in_name("gen_flores_eng_Latn-swh_Latn.jsonl") == ["en", "sw"]
    assert langs_in_name("test-context-hi-question-en.json") == ["hi"]  # MLQA: the context's language
    assert langs_in_name("tamil_test.jsonl") == ["ta"]  # XL-Sum names files by English language names
    assert langs_in_name("zul_Latn.devtest") == ["zul_Latn"]  # unknown Flores codes kept as they are
    assert langs_in_name("predictions.jsonl") == []


# --- translation --------------------------------------------------------------------------------------------


def test_flores_files_line_aligned_with_rejects() -> None:
    items, rejects = read_translation_files(FIXTURES / "gen_eng_Latn.devtest", FIXTURES / "gen_hin_Deva.devtest")
    assert [(i.id, i.src_lang, i.lang) for i in items] == [("1", "en", "hi"), ("3", "en", "hi")]
    assert items[0].src_text == "The market opens early on Saturday mornings."
    assert items[0].reference == "शनिवार की सुबह बाज़ार जल्दी खुलता है।"
    assert items[0].source.endswith("gen_eng_Latn.devtest:1")
    assert _reasons(rejects) == {"gen_hin_Deva.devtest:2": "empty_reference"}


def test_flores_files_of_different_lengths_raise() -> None:
    with pytest.raises(ValueError) as e:
        read_translation_files(FIXTURES / "gen_eng_Latn.devtest", FIXTURES / "gen_tam_Taml_short.devtest")
    msg = str(e.value)
    assert "gen_eng_Latn.devtest has 3 lines" in msg and "gen_tam_Taml_short.devtest has 2" in msg


def test_flores_language_from_arguments_or_a_clear_error(tmp_path: Path) -> None:
    src, tgt = tmp_path / "source.txt", tmp_path / "target.txt"
    src.write_text("Hello\n", encoding="utf-8")
    tgt.write_text("สวัสดี\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot tell the language of .*source.txt.*src_lang"):
        read_translation_files(src, tgt)
    items, _ = read_translation_files(src, tgt, src_lang="eng_Latn", tgt_lang="th")
    assert (items[0].src_lang, items[0].lang, items[0].reference) == ("en", "th", "สวัสดี")


def test_flores_hf_jsonl_with_sentence_columns() -> None:
    path = FIXTURES / "gen_flores_eng_Latn-swh_Latn.jsonl"
    items, rejects = read_translation_table(path)  # direction from the file name: eng_Latn -> swh_Latn
    assert [(i.id, i.src_lang, i.lang) for i in items] == [("1", "en", "sw"), ("2", "en", "sw")]
    assert items[1].reference == "Mvua inatarajiwa milimani kesho."
    assert _reasons(rejects) == {
        f"{path.name}:3": "malformed_json",
        f"{path.name}:4": "missing_field",  # no sentence_swh_Latn
        f"{path.name}:5": "empty_reference",
        f"{path.name}:6": "duplicate_id",  # id 1 again
    }
    reverse, _ = read_translation_table(path, src_lang="swh_Latn", tgt_lang="eng_Latn")
    assert (reverse[0].src_lang, reverse[0].lang, reverse[0].reference) == (
        "sw", "en", "The market opens early on Saturday mornings.")


def test_translation_tsv() -> None:
    items, rejects = read_translation_table(FIXTURES / "gen_pairs_en-ta.tsv")
    assert [(i.id, i.src_lang, i.lang, i.reference) for i in items] == [
        ("t1", "en", "ta", "காலை வணக்கம்."), ("t3", "en", "ta", "நூலகம் எங்கே இருக்கிறது?")]
    assert items[1].source.endswith("gen_pairs_en-ta.tsv:4")  # line 1 is the header
    assert _reasons(rejects) == {"gen_pairs_en-ta.tsv:3": "wrong_columns"}


def test_translation_jsonl_with_language_fields(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join([
        json.dumps({"src": "Good night", "tgt": "শুভ রাত্রি", "src_lang": "en", "lang": "bn"}),
        json.dumps({"source": "Thank you", "target": "धन्यवाद", "src_lang": "en", "tgt_lang": "hin_Deva"}),
        json.dumps({"source": "Water", "target": "Maji"}),  # no languages anywhere
        json.dumps({"source": "Fire", "target": 7, "src_lang": "en", "lang": "sw"}),
    ]) + "\n", encoding="utf-8")
    items, rejects = read_translation_table(path)
    assert [(i.id, i.src_lang, i.lang) for i in items] == [("1", "en", "bn"), ("2", "en", "hi")]
    assert [r["reason"] for r in rejects] == ["unknown_lang", "wrong_type"]
    assert rejects[0]["source"] == f"{path}:3"
    # with no language anywhere in the file, that is the caller's error, not a bad record
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_text(json.dumps({"source": "Water", "target": "Maji"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot tell the language"):
        read_translation_table(unlabelled)
    items, _ = read_translation_table(unlabelled, src_lang="en", tgt_lang="sw")
    assert (items[0].lang, items[0].reference) == ("sw", "Maji")


# --- QA -----------------------------------------------------------------------------------------------------


def test_xquad_squad_json_thai() -> None:
    path = FIXTURES / "gen_xquad.th.json"
    items, rejects = read_qa(path)
    assert [(i.id, i.lang) for i in items] == [("th-1", "th"), ("th-2", "th"), ("th-4", "th")]
    assert items[0].answers == ("ภาคเหนือ",)
    assert items[2].answers == ("กรุงเทพมหานคร", "กรุงเทพ")
    assert items[2].context == "แม่น้ำเจ้าพระยาไหลผ่านกรุงเทพมหานคร"
    # one JSON document: the source is a JSON path instead of a line
    assert _reasons(rejects) == {
        f"{path.name}:data[0].paragraphs[0].qas[2]": "empty_reference",
        f"{path.name}:data[0].paragraphs[1].qas[1]": "not_an_object",
        f"{path.name}:data[0].paragraphs[2]": "missing_field",
        f"{path.name}:data[1]": "missing_field",
    }


def test_mlqa_file_name_gives_the_context_language() -> None:
    items, rejects = read_qa(FIXTURES / "gen_mlqa_test-context-hi-question-hi.json")
    assert [(i.id, i.lang, i.answers) for i in items] == [("hi-1", "hi", ("आगरा",))] and rejects == []


def test_squad_json_without_a_language_raises(tmp_path: Path) -> None:
    path = tmp_path / "dev.json"
    path.write_text(json.dumps({"data": []}), encoding="utf-8")
    with pytest.raises(ValueError, match="cannot tell the language of .*dev.json"):
        read_qa(path)
    assert read_qa(path, lang="th") == ([], [])


def test_flat_qa_jsonl_every_bad_line_a_reject() -> None:
    path = FIXTURES / "gen_qa_flat.jsonl"
    items, rejects = read_qa(path)
    assert [(i.id, i.lang, i.answers) for i in items] == [
        ("bn-1", "bn", ("ঢাকা",)),  # HF {"text": [...]} answers
        ("ta-1", "ta", ("சென்னை",)),  # list of strings
        ("hi-1", "hi", ("हिमालय",)),  # SQuAD-style list of {"text", "answer_start"}
    ]
    assert _reasons(rejects) == {
        f"{path.name}:3": "missing_field",  # no question
        f"{path.name}:4": "malformed_json",
        f"{path.name}:5": "empty_reference",
        f"{path.name}:6": "duplicate_id",
        f"{path.name}:7": "unknown_lang",
        f"{path.name}:8": "not_an_object",
        f"{path.name}:10": "wrong_type",  # context is a number
    }
    assert all(r["detail"] for r in rejects)


def test_json_lines_named_json_are_read_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "xquad_hi.json"  # as datasets' to_json writes it
    path.write_text(json.dumps({"id": "q", "context": "गंगा नदी", "question": "कौन?", "answers": ["गंगा"]}) + "\n"
                    + json.dumps({"id": "r", "context": "यमुना", "question": "कौन?", "answers": ["यमुना"]}) + "\n",
                    encoding="utf-8")
    items, rejects = read_qa(path)
    assert [(i.id, i.lang) for i in items] == [("q", "hi"), ("r", "hi")] and rejects == []


def test_read_then_score_qa() -> None:
    items, _ = read_qa(FIXTURES / "gen_xquad.th.json")
    predictions = {"th-1": "ภาคเหนือ", "th-2": "วัด", "th-4": "กรุงเทพ"}
    scores = qa_scores((predictions[i.id], i.answers, i.lang) for i in items)
    # th-1 exact (EM 100, F1 100); th-2 "วัด" -> [วั, ด] (the mark ั stays on ว) vs gold
    # "วัดเก่าแก่" -> [วั, ด, เ, ก่, า, แ, ก่] (7): common 2, P = 1, R = 2/7, F1 = 2 * (2/7) / (9/7) = 4/9;
    # th-4 "กรุงเทพ" equals the second gold (100/100). EM = 200/3, F1 = (100 + 400/9 + 100) / 3
    assert scores["th"] == pytest.approx({"n": 3, "exact_match": 200 / 3, "f1": (200 + 400 / 9) / 3})


# --- summarisation ------------------------------------------------------------------------------------------


def test_xlsum_jsonl() -> None:
    path = FIXTURES / "gen_xlsum_tamil_test.jsonl"
    items, rejects = read_summaries(path)
    assert [(i.id, i.lang, i.title) for i in items] == [("ta-news-1", "ta", "மழை எச்சரிக்கை"),
                                                         ("ta-news-2", "ta", "புதிய நூலகம்")]
    assert items[1].summary == "மதுரையில் புதிய பொது நூலகம் திறக்கப்பட்டது."
    assert items[0].url == "https://example.org/ta/1"
    assert _reasons(rejects) == {f"{path.name}:3": "missing_field", f"{path.name}:4": "empty_input",
                                 f"{path.name}:5": "bad_encoding"}
    overridden, _ = read_summaries(path, lang="tam_Taml")
    assert {i.lang for i in overridden} == {"ta"}


def test_summary_lang_field_beats_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "bengali_test.jsonl"
    path.write_text(json.dumps({"summary": "ছোট সারাংশ", "text": "লম্বা লেখা", "lang": "hi"}) + "\n"
                    + json.dumps({"summary": "ছোট", "text": "লেখা"}) + "\n", encoding="utf-8")
    items, _ = read_summaries(path)
    assert [(i.id, i.lang) for i in items] == [("1", "hi"), ("2", "bn")]


# --- prompts ------------------------------------------------------------------------------------------------


def test_prompts_name_the_languages() -> None:
    p = translation_prompt("Habari ya asubuhi", "sw", "en")
    assert "Swahili" in p and "English" in p and p.endswith("Habari ya asubuhi")
    p = qa_prompt("เชียงใหม่อยู่ภาคเหนือ", "เชียงใหม่อยู่ภาคไหน", "th")
    assert "Thai" in p and "เชียงใหม่อยู่ภาคเหนือ" in p and "เชียงใหม่อยู่ภาคไหน" in p
    assert "Tamil" in summary_prompt("உரை", "ta")
    item = TranslationItem("1", "hi", "en", "Hello", "नमस्ते", "x:1")
    assert item.prompt() == translation_prompt("Hello", "en", "hi") and item.references == ["नमस्ते"]
    assert QAItem("1", "bn", "c", "q", ("a", "b"), "x:1").references == ["a", "b"]
    assert SummaryItem("1", "ta", "t", "s", "", "", "x:1").prompt() == summary_prompt("t", "ta")


def test_qa_answer_post_processing() -> None:
    assert qa_answer("  Answer: ঢাকা\nBecause the passage says so.") == "ঢাকা"
    assert qa_answer("\n\n  चेन्नई  \nmore") == "चेन्नई"
    assert qa_answer("") == ""
