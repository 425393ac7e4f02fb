"""Mixing specs resolve through an alias file, sample by ratio reproducibly, and keep every bad row."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from xinstruct.languages import PAPER_LANGUAGES, language_name
from xinstruct.train.data import build_mix, parse_spec
from xinstruct.train.translation import TEMPLATES, translation_rows


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture
def sources(tmp_path):
    _jsonl(tmp_path / "xi_sw.jsonl", [{"id": f"s{i}", "instruction": f"Question {i}?", "response": f"Jibu {i}.",
                                      "lang": "sw"} for i in range(10)])
    _jsonl(tmp_path / "alpaca_en.jsonl", [{"instruction": f"Task {i}", "input": "", "output": f"Answer {i}"}
                                          for i in range(20)] + ['{"broken json', {"instruction": "no output"}])
    (tmp_path / "en-sw.tsv").write_text("en\tsw\nHello\tHabari\nThank you\tAsante\nonly one column\n\tempty\n",
                                        encoding="utf-8")
    (tmp_path / "alias.yaml").write_text(
        "xinstruct_sw: xi_sw.jsonl\n"
        "alpaca_en: {path: alpaca_en.jsonl, ratio: 0.5}\n"
        "translation_en-sw: {parallel: en-sw.tsv, src: en, tgt: sw}\n", encoding="utf-8")
    return tmp_path


def test_spec_mixes_sources_by_ratio_and_keeps_rejects(sources):
    mix = build_mix("xinstruct_sw+alpaca_en+translation_en-sw", aliases=sources / "alias.yaml", seed=1)
    by_source = Counter(e.source for e in mix.examples)
    assert by_source == {"xinstruct_sw": 10, "alpaca_en": 10, "translation_en-sw": 4}  # 20 * 0.5; 2 pairs x 2 ways
    assert mix.sources["alpaca_en"] == {"rows": 22, "rejected": 2, "examples": 20, "used": 10, "ratio": 0.5,
                                        "n": None, "from": str(sources / "alpaca_en.jsonl")}
    reasons = sorted((r.reason, r.source.rsplit("/", 1)[-1]) for r in mix.rejects)
    assert reasons == [("bad_parallel_line", "en-sw.tsv:4"), ("bad_parallel_line", "en-sw.tsv:5"),
                       ("malformed_json", "alpaca_en.jsonl:21"), ("unknown_shape", "alpaca_en.jsonl:22")]
    # every row is accounted for: used, rejected, or left out by the ratio (translation: 2 pairs x 2 ways + 2 bad)
    assert sum(s["rows"] for s in mix.sources.values()) == 10 + 22 + 6
    assert len(mix.unsampled) == 10 and {e.source for e in mix.unsampled} == {"alpaca_en"}
    assert {e.origin for e in mix.unsampled}.isdisjoint(e.origin for e in mix.examples)


def test_same_seed_same_order_other_seed_other_order(sources):
    a = build_mix("xinstruct_sw+alpaca_en", aliases=sources / "alias.yaml", seed=3)
    b = build_mix("xinstruct_sw+alpaca_en", aliases=sources / "alias.yaml", seed=3)
    c = build_mix("xinstruct_sw+alpaca_en", aliases=sources / "alias.yaml", seed=4)
    ids = [e.origin for e in a.examples]
    assert ids == [e.origin for e in b.examples]
    assert ids != [e.origin for e in c.examples]
    assert set(e.source for e in a.examples[:8]) == {"xinstruct_sw", "alpaca_en"}  # shuffled, not concatenated


def test_inline_ratio_above_one_repeats_a_source(sources):
    mix = build_mix("xinstruct_sw*2.5", aliases=sources / "alias.yaml")
    counts = Counter(e.origin for e in mix.examples)
    assert len(mix.examples) == 25 and sorted(set(counts.values())) == [2, 3]


def test_paths_work_without_an_alias_and_unknown_names_are_errors(sources):
    mix = build_mix(str(sources / "xi_sw.jsonl"))
    assert len(mix.examples) == 10
    with pytest.raises(ValueError, match="neither an alias nor a path"):
        parse_spec("nope+xinstruct_sw", {})
    with pytest.raises(ValueError, match="bad ratio"):
        build_mix("xinstruct_sw*lots", aliases=sources / "alias.yaml")


def test_translation_rows_both_directions_with_several_templates(tmp_path):
    pairs = [(f"Sentence number {i}.", f"Sentensi namba {i}.") for i in range(40)]
    _jsonl(tmp_path / "p.jsonl", [{"en": a, "sw": b} for a, b in pairs] + [{"en": "x"}])
    rows, rejects = translation_rows(tmp_path / "p.jsonl", "en", "sw")
    assert len(rows) == 80 and [r.reason for r in rejects] == ["bad_parallel_line"]
    en_sw = [r for r in rows if r["task"] == "translation_en-sw"]
    sw_en = [r for r in rows if r["task"] == "translation_sw-en"]
    assert (en_sw[0]["input"], en_sw[0]["output"], en_sw[0]["lang"]) == (pairs[0][0], pairs[0][1], "sw")
    assert (sw_en[0]["input"], sw_en[0]["output"], sw_en[0]["lang"]) == (pairs[0][1], pairs[0][0], "en")
    used = {r["instruction"] for r in rows}
    assert len(used) >= 4 and all("Swahili" in u and "English" in u for u in used)
    assert used <= {t.format(src=s, tgt=t2) for t in TEMPLATES for s, t2 in
                    (("English", "Swahili"), ("Swahili", "English"))}
    one_way, _ = translation_rows(tmp_path / "p.jsonl", "en", "sw", directions="sw-en")
    assert {r["task"] for r in one_way} == {"translation_sw-en"}
    assert rows == translation_rows(tmp_path / "p.jsonl", "en", "sw")[0]  # reproducible


def test_seeds_names_the_packaged_seed_pairs_and_a_files_language_code_fills_a_rows_missing_lang(tmp_path):
    mix = build_mix("seeds", fmt="answer_in")
    assert len(mix.examples) == 100 and not mix.rejects
    by_lang = {}
    for e in mix.examples:
        by_lang[e.lang] = by_lang.get(e.lang, 0) + 1
        assert e.prompt[-1]["content"].endswith(f"Answer in {language_name(e.lang)}.")
    assert by_lang == dict.fromkeys(PAPER_LANGUAGES, 10)
    folder = tmp_path / "pairs"
    folder.mkdir()
    (folder / "sw.jsonl").write_text('{"instruction": "Say hello.", "response": "Habari!"}\n')
    (folder / "notes.jsonl").write_text('{"instruction": "Say hello.", "response": "Hello!"}\n')
    mix = build_mix(str(folder), fmt="answer_in")
    assert [e.lang for e in mix.examples] == ["sw"] and [r.reason for r in mix.rejects] == ["no_language"]
