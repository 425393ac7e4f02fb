"""Decontamination: n-gram overlap with eval sets in any script, the rejects it writes, and bad eval input."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from xinstruct.curate.decontaminate import DecontaminateConfig, Decontaminator, Overlap, normalize, tokenize
from xinstruct.records import Record, Reject

EN_QUESTION = ("Which of the following best describes the main reason that the early settlers chose to build "
               "their village beside the river rather than on the hill?")
EN_PASSAGE = ("The settlers arrived in spring, cleared the forest along the valley floor and planted barley in "
              "long narrow fields that they shared between every family of the new village.")
SW_PASSAGE = ("Serikali imetangaza mpango mpya wa kuwasaidia wakulima wadogo katika mikoa yote ya nchi, "
              "hasa wale wanaolima mahindi na maharagwe.")
TH_EVAL = "แม่น้ำเจ้าพระยาไหลผ่านกรุงเทพมหานครและเป็นเส้นทางคมนาคมที่สำคัญมาตั้งแต่สมัยโบราณ"
SW_PREMISE = "Mwanamume aliwasha bomba la maji jikoni asubuhi na mapema."  # 9 tokens: an XCOPA-style premise


def _jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _rec(i: int, *, instruction: str | None = None, response: str | None = None, text: str = "maandishi",
         lang: str = "sw") -> Record:
    return Record(id=f"r{i}", doc_id=f"d{i}", lang=lang, text=text, instruction=instruction, response=response,
                  source=f"corpus.jsonl:{i}")


def _decon(*eval_sets: Path, **kw: object) -> Decontaminator:
    return Decontaminator(DecontaminateConfig(eval_sets=tuple(str(p) for p in eval_sets), **kw))  # type: ignore[arg-type]


def test_tokens_are_words_or_characters_by_script() -> None:
    assert normalize("  Don't STOP—the  «Quick»\n brown_fox!! ") == "dont stop the quick brown fox"
    # Devanagari vowel signs are combining marks: they stay inside their word.
    assert tokenize("किताब पढ़ना अच्छा है।") == ["किताब", "पढ़ना", "अच्छा", "है"]
    # Thai and Japanese: one token per character (a Thai vowel or tone mark stays with its consonant);
    # Latin words and numbers among them stay words.
    assert tokenize("ปีนี้ COVID-19") == ["ปี", "นี้", "covid", "19"]
    assert tokenize("東京は首都です。") == ["東", "京", "は", "首", "都", "で", "す"]
    assert tokenize("İSTANBUL ırak") == tokenize("istanbul IRAK") == ["istanbul", "irak"]


def test_english_instruction_with_a_13gram_of_an_eval_question_is_rejected(tmp_path: Path) -> None:
    ev = _jsonl(tmp_path / "belebele_en.jsonl", [
        {"question": "What did the settlers plant in the valley during their first spring there?"},
        {"question": EN_QUESTION},
    ])
    dec = _decon(ev)
    hit = _rec(1, instruction="Explain in Swahili the main reason that the early settlers chose to build their "
                              "village beside the river, according to the text.", response="Walichagua mto.")
    near = _rec(2, instruction="Describe the main reason that the early settlers chose to build their village "
                               "near water.", response="Walichagua mto.")  # shares only 12 tokens
    out = list(dec([hit, near]))

    assert isinstance(out[0], Reject) and out[1] is near
    rej = out[0]
    assert (rej.stage, rej.reason, rej.unit, rej.id, rej.source) == (
        "decontaminate", "overlaps_eval", "chunk", "r1", "corpus.jsonl:1")
    assert f"{ev}:2" in rej.detail and "r1" in rej.detail and "corpus.jsonl:1" in rej.detail
    assert rej.record is not None
    assert rej.record["meta"]["overlaps"] == [{
        "eval_file": str(ev), "eval_line": 2, "eval_text": EN_QUESTION,
        "ngram": "the main reason that the early settlers chose to build their village beside"}]
    assert dec.overlaps(near) == []


def test_swahili_response_with_other_case_punctuation_and_spacing_is_caught(tmp_path: Path) -> None:
    ev = _jsonl(tmp_path / "sw.jsonl", [{"passage": EN_PASSAGE}, {"passage": SW_PASSAGE}])
    dec = _decon(ev)
    copied = ("Jibu: SERIKALI imetangaza  mpango-mpya, wa kuwasaidia «wakulima»\nwadogo katika MIKOA yote "
              "ya nchi: hasa wale wanaolima mahindi!")
    rec = _rec(1, instruction="Summarise the announcement.", response=copied)
    found = dec.overlaps(rec)
    assert [(o.eval_file, o.eval_line) for o in found] == [(str(ev), 2)]
    assert found[0].ngram == "serikali imetangaza mpango mpya wa kuwasaidia wakulima wadogo katika mikoa yote ya nchi"
    # No response yet: the native text is checked instead.
    assert [o.eval_line for o in dec.overlaps(_rec(2, instruction="Summarise.", text=copied))] == [2]
    other = _rec(3, instruction="Summarise.", response="Daktari alimshauri mgonjwa apumzike na anywe dawa kwa "
                                                        "wakati kila siku ili apone haraka.")
    assert dec.overlaps(other) == []


def test_thai_long_shared_substring_is_caught_but_a_few_shared_characters_are_not(tmp_path: Path) -> None:
    ev = _jsonl(tmp_path / "th.jsonl", [{"text": TH_EVAL}])
    dec = _decon(ev)
    # A long run of the eval item, with spaces where the eval item has none.
    copied = _rec(1, instruction="Translate.", lang="th",
                  response="ข้อความนี้บอกว่า ไหลผ่านกรุงเทพมหานคร และเป็นเส้นทางคมนาคมที่สำคัญ ของประเทศ")
    # Shares only the river's name (12 characters) and a few short words.
    few = _rec(2, instruction="Translate.", lang="th",
               response="ฉันชอบนั่งเรือชมแม่น้ำเจ้าพระยาตอนเย็นกับครอบครัวและเพื่อนสนิท")
    out = list(dec([copied, few]))

    assert isinstance(out[0], Reject) and out[0].reason == "overlaps_eval" and f"{ev}:1" in out[0].detail
    ngram = out[0].record["meta"]["overlaps"][0]["ngram"]  # type: ignore[index]
    assert " " not in ngram and len(tokenize(ngram)) == 13 and ngram in TH_EVAL
    assert out[1] is few and dec.overlaps(few) == []
    shared = "แม่น้ำเจ้าพระยา"  # what `few` shares: one character short of an n-gram
    assert shared in TH_EVAL and shared in (few.response or "") and len(tokenize(shared)) == 12


def test_short_eval_premise_is_matched_whole(tmp_path: Path) -> None:
    ev = _jsonl(tmp_path / "xcopa_sw.jsonl", [
        {"premise": SW_PREMISE, "choice1": "Choo kilijaa maji.", "choice2": "Maji yalitoka bombani."},
    ])
    dec = _decon(ev)
    whole = _rec(1, instruction="Tell a short story.",
                 response="Hadithi: mwanamume aliwasha bomba la maji jikoni asubuhi na mapema, kisha akapika chai.")
    part = _rec(2, instruction="Tell a short story.",
                response="Mwanamume aliwasha bomba la maji jikoni asubuhi na jioni, kisha akapika chai.")
    assert [(o.eval_line, o.ngram) for o in dec.overlaps(whole)] == [
        (1, "mwanamume aliwasha bomba la maji jikoni asubuhi na mapema")]
    assert dec.overlaps(part) == []  # 8 of the premise's 9 tokens


def test_eval_text_below_min_tokens_never_matches(tmp_path: Path) -> None:
    short = "Choo kilijaa maji haraka sana leo."  # 6 tokens
    ev = _jsonl(tmp_path / "xcopa_sw.jsonl", [{"premise": SW_PREMISE, "choice1": short}])
    rec = _rec(1, instruction="Story.", response=f"Asubuhi hii {short} Tulishangaa wote.")
    assert _decon(ev).overlaps(rec) == []
    assert [o.eval_line for o in _decon(ev, min_tokens=6).overlaps(rec)] == [1]  # the threshold is what decides


def test_clean_records_pass_through_unchanged_and_in_order(tmp_path: Path) -> None:
    ev = _jsonl(tmp_path / "sw.jsonl", [{"passage": SW_PASSAGE}])
    recs = [
        _rec(1, instruction="Write about farming.", response="Wakulima wanapanda mahindi mwezi Machi."),
        _rec(2, instruction="Summarise.", response=SW_PASSAGE),
        _rec(3, instruction="Write about health.", response="Daktari alimshauri mgonjwa apumzike."),
        _rec(4, instruction="Write about school.", response=None, text="Watoto walikwenda shuleni mapema."),
    ]
    before = [copy.deepcopy(r.to_dict()) for r in recs]
    out = list(_decon(ev)(recs))
    assert len(out) == 4
    assert out[0] is recs[0] and out[2] is recs[2] and out[3] is recs[3]
    assert isinstance(out[1], Reject) and out[1].id == "r2"
    for i in (0, 2, 3):
        assert recs[i].to_dict() == before[i] and "overlaps" not in recs[i].meta


def test_field_selection_reads_only_the_named_fields(tmp_path: Path) -> None:
    ev = _jsonl(tmp_path / "qa.jsonl", [
        {"question": EN_QUESTION, "passage": EN_PASSAGE},
        {"data": {"qas": [{"question": "Why did every family share the long narrow fields of barley in the "
                                       "valley after the first harvest?"}]}},
    ])
    quotes_passage = _rec(1, instruction=f"Summarise: {EN_PASSAGE}", response="Muhtasari.")
    quotes_question = _rec(2, instruction=EN_QUESTION, response="Jibu.")
    quotes_nested = _rec(3, instruction="Why did every family share the long narrow fields of barley in the "
                                        "valley after the first harvest?", response="Jibu.")

    only_q = _decon(ev, fields=("question",))
    assert only_q.overlaps(quotes_passage) == []
    assert [o.eval_line for o in only_q.overlaps(quotes_question)] == [1]
    assert [o.eval_line for o in only_q.overlaps(quotes_nested)] == [2]  # nested keys are found too
    assert [o.eval_line for o in _decon(ev).overlaps(quotes_passage)] == [1]  # every field by default


def test_folder_of_eval_files_in_every_format_names_file_and_row(tmp_path: Path) -> None:
    folder = tmp_path / "evals"
    folder.mkdir()
    (folder / "flores.tsv").write_text(f"id\tsentence\n1\t{EN_PASSAGE}\n2\t{EN_QUESTION}\n", encoding="utf-8")
    pq.write_table(pa.table({"sentence": ["Maji yalitoka bombani.", SW_PASSAGE]}), folder / "dev.parquet")
    (folder / "test.json").write_text(json.dumps([{"sentence": "x"}, {"sentence": SW_PREMISE}]), encoding="utf-8")
    (folder / "th.txt").write_text(f"สวัสดี\n\n{TH_EVAL}\n", encoding="utf-8")
    (folder / ".hidden.jsonl").write_text('{"sentence": "broken\n', encoding="utf-8")  # hidden: not read
    dec = _decon(folder, fields=("sentence",))

    def where(text: str) -> list[tuple[str, int]]:
        return [(Path(o.eval_file).name, o.eval_line) for o in dec.overlaps(_rec(0, instruction="Q", response=text))]

    assert where(EN_QUESTION) == [("flores.tsv", 3)]  # the header is line 1
    assert where(SW_PASSAGE) == [("dev.parquet", 1)]  # Parquet rows count from 0, lines from 1
    assert where(SW_PREMISE) == [("test.json", 1)]
    assert where(TH_EVAL) == [("th.txt", 3)]
    assert where(f"{EN_PASSAGE} {SW_PASSAGE}") == [("flores.tsv", 2), ("dev.parquet", 1)]  # every hit, in order


def test_missing_eval_file_raises_naming_it(tmp_path: Path) -> None:
    ok = _jsonl(tmp_path / "ok.jsonl", [{"q": EN_QUESTION}])
    missing = tmp_path / "flores_devtest.jsonl"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        _decon(ok, missing)


def test_malformed_jsonl_line_raises_naming_file_and_line(tmp_path: Path) -> None:
    ev = tmp_path / "bad.jsonl"
    ev.write_text(json.dumps({"q": EN_QUESTION}) + "\n\n" + json.dumps({"q": EN_PASSAGE}) + "\n"
                  + '{"q": "unterminated\n', encoding="utf-8")
    with pytest.raises(ValueError, match=re.escape(f"{ev}:4")):
        _decon(ev)


def test_fingerprint_changes_when_an_eval_file_changes(tmp_path: Path) -> None:
    ev = _jsonl(tmp_path / "ev.jsonl", [{"q": EN_QUESTION}])
    fp = _decon(ev).fingerprint()
    assert _decon(ev).fingerprint() == fp  # stable across loads
    assert _decon(ev, ngram=8).fingerprint() != fp  # and part of the config

    _jsonl(ev, [{"q": EN_QUESTION}, {"q": EN_PASSAGE}])  # grows
    fp_grown = _decon(ev).fingerprint()
    assert fp_grown != fp

    st = ev.stat()
    ev.write_text(ev.read_text(encoding="utf-8").replace("Which", "Whose"), encoding="utf-8")  # same size
    os.utime(ev, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert ev.stat().st_size == st.st_size
    assert _decon(ev).fingerprint() != fp_grown


def test_overlap_excerpt_is_capped(tmp_path: Path) -> None:
    long_text = " ".join([EN_PASSAGE] * 4)
    ev = _jsonl(tmp_path / "long.jsonl", [{"passage": long_text}])
    [o] = _decon(ev).overlaps(_rec(1, instruction=EN_PASSAGE))
    assert isinstance(o, Overlap) and len(o.eval_text) <= 200 and long_text.startswith(o.eval_text[:150])
