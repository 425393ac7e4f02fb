"""Generation metrics against values worked out by hand, in Hindi, Tamil, Bengali, Thai and English.

Every expected number has its arithmetic beside it: tokens, overlaps, P, R, F (all in percent).
"""

from __future__ import annotations

import importlib.util
import math
import re
import socket
import string

import pytest

from xinstruct.evaluate.metrics import (
    bleu,
    bleu_tokenizer,
    chrf,
    exact_match,
    f1,
    normalize_answer,
    normalize_text,
    overall,
    qa_scores,
    rouge,
    rouge_scores,
    tokenize,
    translation_scores,
)


def _regex_normaliser(s: str) -> str:
    """The common SQuAD-style re-implementation: `\\w` does not match combining marks (Mn/Mc)."""
    return " ".join(re.sub(r"[^\w\s]", "", s.lower()).split())


def _squad_official_normaliser(s: str) -> str:
    """SQuAD v1.1's own punctuation set: ASCII only, so the Hindi danda "।" stays."""
    return " ".join("".join(ch for ch in s.lower() if ch not in set(string.punctuation)).split())


# --- normalisation ------------------------------------------------------------------------------------------


def test_normalize_keeps_combining_marks_and_drops_unicode_punctuation() -> None:
    assert normalize_answer("भारत की राजधानी।", "hi") == "भारत की राजधानी"  # danda (Po) gone, matras kept
    assert normalize_answer("«பாடம்!»", "ta") == "பாடம்"  # Tamil aa-sign (Mc) and virama (Mn) kept
    assert normalize_answer("বাংলাদেশের, রাজধানী।", "bn") == "বাংলাদেশের রাজধানী"
    assert normalize_answer("ที่นี่!", "th") == "ที่นี่"  # Thai vowel and tone marks (Mn) kept


def test_naive_normalisers_fail_on_indic_text_where_ours_does_not() -> None:
    # The regex normaliser erases vowel signs: "काम" (work) and "कम" (less) both become "कम";
    # "पाठम्"-like Tamil "பாடம்" (lesson) and "படம்" (picture) both become "படம".
    assert _regex_normaliser("काम") == _regex_normaliser("कम") == "कम"
    assert _regex_normaliser("பாடம்") == _regex_normaliser("படம்") == "படம"
    assert _regex_normaliser("राजधानी") == "रजधन"
    assert normalize_answer("काम", "hi") != normalize_answer("कम", "hi")
    assert exact_match("काम", "कम", "hi") == 0.0 and f1("काम", "कम", "hi") == 0.0
    assert exact_match("பாடம்", "படம்", "ta") == 0.0
    # SQuAD's official ASCII set keeps the danda, so the same answer with and without it differs.
    assert _squad_official_normaliser("नई दिल्ली।") != _squad_official_normaliser("नई दिल्ली")


def test_identical_hindi_answers_up_to_punctuation_score_100() -> None:
    # tokens on both sides: [नई, दिल्ली, भारत] once "," and "।" are removed.
    assert exact_match("नई दिल्ली, भारत", "नई दिल्ली भारत।", "hi") == 100.0
    assert f1("नई दिल्ली, भारत", "नई दिल्ली भारत।", "hi") == 100.0


def test_unicode_folding() -> None:
    assert normalize_answer("ＡＢＣ１２３", "en") == "abc123"  # NFKC full-width forms
    assert normalize_answer("क़िला", "hi") == normalize_answer("क\u093cिला", "hi")  # precomposed nukta = decomposed
    assert normalize_answer("İSTANBUL IŞIK", "tr") == "istanbul ışık"  # Turkish dotted/dotless i
    assert normalize_answer("র\u200d্যাব", "bn") == "র্যাব"  # ZWJ (format character) dropped
    assert normalize_answer("abc\u200bdef", "en") == "abc def"  # zero-width space separates
    assert normalize_answer("₹500 $5", "hi") == "₹500 5"  # non-ASCII symbols kept, ASCII ones go (as MLQA)


def test_articles_only_for_languages_that_have_them() -> None:
    assert normalize_answer("The Eiffel Tower!", "en") == "eiffel tower"
    assert normalize_answer("cái bàn", "vi") == "bàn"  # MLQA's Vietnamese list
    assert normalize_answer("la casa", "es") == "casa"
    assert normalize_answer("the a la", "sw") == "the a la"  # Swahili: no article list, every token kept
    assert normalize_answer("الكتاب", "ar") == "كتاب"  # the Arabic article prefix
    assert normalize_text("The cat", "en") == "the cat"  # running text (ROUGE) keeps articles


def test_thai_is_split_into_characters_with_their_marks() -> None:
    # "กรุงเทพมหานคร": SARA U (U+0E38, a mark) stays on its base: 12 characters, not 13 code points.
    assert tokenize("กรุงเทพมหานคร", "th") == ["ก", "รุ", "ง", "เ", "ท", "พ", "ม", "ห", "า", "น", "ค", "ร"]
    # digits and Latin words inside Thai stay whole tokens (mixed segmentation), spaces are ignored.
    assert tokenize("ปี 2024 iPhone", "th") == ["ปี", "2024", "iphone"]
    assert tokenize("ปลา 3 ตัว", "tha_Thai") == ["ป", "ล", "า", "3", "ตั", "ว"]  # a Flores code works too
    assert tokenize("नई दिल्ली", "hi") == ["नई", "दिल्ली"]


# --- exact match and F1 -------------------------------------------------------------------------------------


def test_f1_hindi_partial() -> None:
    # gold "भारत की राजधानी नई दिल्ली है।" -> [भारत, की, राजधानी, नई, दिल्ली, है] (6 tokens)
    # pred "नई दिल्ली।" -> [नई, दिल्ली] (2); common 2; P = 2/2 = 1, R = 2/6 = 1/3
    # F1 = 2 * 1 * 1/3 / (1 + 1/3) = (2/3) / (4/3) = 1/2 -> 50.0
    assert f1("नई दिल्ली।", "भारत की राजधानी नई दिल्ली है।", "hi") == pytest.approx(50.0)
    assert exact_match("नई दिल्ली।", "भारत की राजधानी नई दिल्ली है।", "hi") == 0.0


def test_f1_tamil_partial() -> None:
    # gold "சென்னை தமிழ்நாட்டின் தலைநகரம்" -> 3 tokens; pred "தலைநகரம் சென்னை" -> 2 tokens, both in gold
    # P = 2/2 = 1, R = 2/3; F1 = 2 * (2/3) / (5/3) = 4/5 -> 80.0 (order does not matter)
    assert f1("தலைநகரம் சென்னை", "சென்னை தமிழ்நாட்டின் தலைநகரம்", "ta") == pytest.approx(80.0)


def test_f1_bengali_partial_and_best_of_golds() -> None:
    # pred [ঢাকা, শহর], gold [ঢাকা, বাংলাদেশের, রাজধানী]; common 1 (ঢাকা)
    # P = 1/2, R = 1/3; F1 = 2 * (1/6) / (5/6) = 2/5 -> 40.0
    assert f1("ঢাকা শহর", "ঢাকা বাংলাদেশের রাজধানী", "bn") == pytest.approx(40.0)
    # against two golds the best counts: "ঢাকা শহর" equals the second -> EM 100, F1 100
    golds = ["ঢাকা বাংলাদেশের রাজধানী", "ঢাকা শহর।"]
    assert exact_match("ঢাকা শহর", golds, "bn") == 100.0
    assert f1("ঢাকা শহর", golds, "bn") == 100.0


def test_f1_thai_character_level_partial() -> None:
    # pred "กรุงเทพ" -> [ก, รุ, ง, เ, ท, พ] (6); gold "กรุงเทพมหานคร" -> 12 characters (see above)
    # all 6 in gold: P = 6/6 = 1, R = 6/12 = 1/2; F1 = 2 * 1/2 / (3/2) = 2/3 -> 66.67
    assert f1("กรุงเทพ", "กรุงเทพมหานคร", "th") == pytest.approx(200 / 3)
    # split on whitespace instead, each side is one token and they differ: F1 would be 0
    assert f1("กรุงเทพ", "กรุงเทพมหานคร", "en") == 0.0
    # multiset overlap: pred "นาน" -> [น, า, น], gold "นา" -> [น, า]; common min(2,1) + min(1,1) = 2
    # P = 2/3, R = 2/2 = 1; F1 = 2 * (2/3) / (5/3) = 4/5 -> 80.0
    assert f1("นาน", "นา", "th") == pytest.approx(80.0)
    # spaces inside a Thai answer do not matter
    assert exact_match("กิน ข้าว", "กินข้าว", "th") == 100.0


def test_f1_english_as_squad() -> None:
    # pred [eiffel, tower] ("the" dropped), gold [eiffel, tower, in, paris]; P = 1, R = 1/2 -> F1 2/3
    assert f1("the Eiffel Tower", "Eiffel Tower in Paris", "en") == pytest.approx(200 / 3)
    assert exact_match("The Eiffel Tower.", "eiffel tower", "en") == 100.0


def test_empty_answers() -> None:
    assert f1("", "ভাত", "bn") == 0.0 and exact_match("", "ভাত", "bn") == 0.0
    assert f1("!!", "।", "hi") == 100.0  # both empty after normalisation: right, as SQuAD v2
    with pytest.raises(ValueError, match="no gold"):
        f1("x", [], "en")


def test_qa_scores_per_language_and_overall() -> None:
    items = [
        ("नई दिल्ली।", "भारत की राजधानी नई दिल्ली है।", "hi"),  # EM 0, F1 50 (above)
        ("दिल्ली", ["दिल्ली"], "hi"),  # EM 100, F1 100
        ("กรุงเทพ", "กรุงเทพมหานคร", "th"),  # EM 0, F1 200/3 (above)
    ]
    scores = qa_scores(items)
    # hi: EM (0 + 100) / 2 = 50, F1 (50 + 100) / 2 = 75; th: EM 0, F1 66.67
    assert scores["hi"] == pytest.approx({"n": 2, "exact_match": 50.0, "f1": 75.0})
    assert scores["th"] == pytest.approx({"n": 1, "exact_match": 0.0, "f1": 200 / 3})
    # overall: mean over languages, n summed: EM (50 + 0) / 2 = 25; F1 (75 + 66.67) / 2 = 70.83
    assert overall(scores) == pytest.approx({"n": 3, "exact_match": 25.0, "f1": (75 + 200 / 3) / 2})


# --- ROUGE --------------------------------------------------------------------------------------------------


def test_rouge_tamil_by_hand() -> None:
    ref = "நான் இன்று பள்ளிக்கு சென்றேன்."  # [நான், இன்று, பள்ளிக்கு, சென்றேன்] (4)
    pred = "நான் பள்ளிக்கு சென்றேன்"  # [நான், பள்ளிக்கு, சென்றேன்] (3)
    s = rouge(pred, ref, "ta")
    # ROUGE-1: overlap 3; P = 3/3 = 100, R = 3/4 = 75, F = 2 * 1 * 0.75 / 1.75 = 85.714
    assert (s["rouge1_precision"], s["rouge1_recall"]) == pytest.approx((100.0, 75.0))
    assert s["rouge1"] == pytest.approx(600 / 7)
    # ROUGE-2: pred bigrams (நான் பள்ளிக்கு), (பள்ளிக்கு சென்றேன்); ref bigrams (நான் இன்று),
    # (இன்று பள்ளிக்கு), (பள்ளிக்கு சென்றேன்); overlap 1; P = 1/2, R = 1/3, F = 2 * (1/6) / (5/6) = 40
    assert (s["rouge2_precision"], s["rouge2_recall"], s["rouge2"]) == pytest.approx((50.0, 100 / 3, 40.0))
    # ROUGE-L: LCS = நான் பள்ளிக்கு சென்றேன் = 3; same P, R, F as ROUGE-1
    assert (s["rougeL_precision"], s["rougeL_recall"], s["rougeL"]) == pytest.approx((100.0, 75.0, 600 / 7))


def test_rouge_thai_by_hand() -> None:
    ref = "แมวกินปลา"  # [แ, ม, ว, กิ, น, ป, ล, า] (8)
    pred = "แมวกินนม"  # [แ, ม, ว, กิ, น, น, ม] (7)
    s = rouge(pred, ref, "th")
    # ROUGE-1: pred counts แ1 ม2 ว1 กิ1 น2; ref แ1 ม1 ว1 กิ1 น1 ป1 ล1 า1; overlap 1+1+1+1+1 = 5
    # P = 5/7, R = 5/8, F = 2 * (25/56) / (75/56) = 2/3
    assert (s["rouge1_precision"], s["rouge1_recall"], s["rouge1"]) == pytest.approx((500 / 7, 62.5, 200 / 3))
    # ROUGE-2: pred bigrams แม มว วกิ กิน นน นม (6); ref แม มว วกิ กิน นป ปล ลา (7); overlap 4
    # P = 4/6, R = 4/7, F = 2 * (16/42) / (52/42) = 32/52 = 8/13
    assert (s["rouge2_precision"], s["rouge2_recall"], s["rouge2"]) == pytest.approx((200 / 3, 400 / 7, 800 / 13))
    # ROUGE-L: LCS = แ ม ว กิ น = 5, as ROUGE-1
    assert s["rougeL"] == pytest.approx(200 / 3)


def test_rouge_score_default_tokenizer_would_erase_tamil() -> None:
    # rouge_score's tokenizer: lowercase, every char outside [a-z0-9] becomes a space
    assert re.sub(r"[^a-z0-9]+", " ", "நான் பள்ளிக்கு சென்றேன்".lower()).split() == []
    assert tokenize("நான் பள்ளிக்கு சென்றேன்", "ta", style="text") == ["நான்", "பள்ளிக்கு", "சென்றேன்"]


@pytest.mark.skipif(importlib.util.find_spec("rouge_score") is None, reason="rouge_score not installed")
def test_rouge_matches_rouge_score_on_english() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    pairs = [("The well-known cat sat on the mat.", "A cat sat on the mat today, well known!"),
             ("police arrested two men in the city", "two men were arrested by city police")]
    for pred, ref in pairs:
        theirs = scorer.score(ref, pred)
        ours = rouge(pred, ref, "en")
        for key in ("rouge1", "rouge2", "rougeL"):
            assert ours[key] == pytest.approx(100 * theirs[key].fmeasure)


def test_rouge_scores_average_per_language() -> None:
    items = [("நான் பள்ளிக்கு சென்றேன்", "நான் இன்று பள்ளிக்கு சென்றேன்.", "ta"),  # R1 85.71, R2 40, RL 85.71
             ("நான் இன்று பள்ளிக்கு சென்றேன்", "நான் இன்று பள்ளிக்கு சென்றேன்", "ta"),  # all 100
             ("แมวกินนม", "แมวกินปลา", "th")]  # R1 66.67, R2 61.54, RL 66.67
    scores = rouge_scores(items)
    assert scores["ta"] == pytest.approx({"n": 2, "rouge1": (600 / 7 + 100) / 2, "rouge2": 70.0,
                                          "rougeL": (600 / 7 + 100) / 2})
    assert scores["th"] == pytest.approx({"n": 1, "rouge1": 200 / 3, "rouge2": 800 / 13, "rougeL": 200 / 3})


# --- BLEU and chrF ------------------------------------------------------------------------------------------


def test_bleu_tokenizer_per_language() -> None:
    assert [bleu_tokenizer(x) for x in ("th", "hi", "sw", "ta", "bn", "ur", "fi", "en", "zh", "ja", "my")] == [
        "char", "intl", "13a", "intl", "intl", "intl", "13a", "13a", "zh", "char", "char"]
    assert [bleu_tokenizer(x) for x in ("tha_Thai", "swh_Latn", "hin_Deva", "zho_Hans", "xx")] == [
        "char", "13a", "intl", "zh", "intl"]


def test_bleu_identical_corpus_is_100() -> None:
    corpus = {"sw": ["Soko hufunguliwa mapema Jumamosi asubuhi.", "Mvua inatarajiwa milimani kesho."],
              "hi": ["शनिवार की सुबह बाज़ार जल्दी खुलता है।"], "th": ["ตลาดเปิดเช้าวันเสาร์"]}
    for lang, sents in corpus.items():
        assert bleu(sents, sents, lang)["bleu"] == pytest.approx(100.0)
        assert chrf(sents, sents)["chrf"] == pytest.approx(100.0)


def test_bleu_by_hand_13a() -> None:
    # hyp "the cat sat on the mat" (6 tokens), ref "the cat sat on a mat today" (7 tokens)
    # 1-grams: the(2, clipped to 1) cat sat on mat -> 5/6
    # 2-grams: the cat, cat sat, sat on | on the, the mat -> 3/5
    # 3-grams: the cat sat, cat sat on | sat on the, on the mat -> 2/4
    # 4-grams: the cat sat on | cat sat on the, sat on the mat -> 1/3
    # geometric mean = (5/6 * 3/5 * 2/4 * 1/3) ** (1/4) = (1/12) ** 0.25 = 0.537285
    # BP = exp(1 - 7/6) = 0.846482 (hyp shorter than ref); BLEU = 0.846482 * 0.537285 = 45.48
    s = bleu(["the cat sat on the mat"], ["the cat sat on a mat today"], "sw")
    assert s["bleu"] == pytest.approx(100 * math.exp(1 - 7 / 6) * (1 / 12) ** 0.25)
    assert s["bleu"] == pytest.approx(45.48, abs=0.005)
    assert s["precisions"] == pytest.approx([500 / 6, 60.0, 50.0, 100 / 3])
    assert (s["sys_len"], s["ref_len"], s["tokenize"]) == (6, 7, "13a")
    assert "tok:13a" in s["signature"]


def test_bleu_by_hand_thai_characters() -> None:
    # char tokenizer: hyp "มานา" -> ม า น า (4), ref "มานาน" -> ม า น า น (5)
    # every hyp n-gram is in the ref (1-4: 4/4, 3/3, 2/2, 1/1), so only the brevity penalty is left:
    # BLEU = 100 * exp(1 - 5/4) = 77.88
    s = bleu(["มานา"], ["มานาน"], "th")
    assert s["bleu"] == pytest.approx(100 * math.exp(-0.25))
    assert "tok:char" in s["signature"]


def test_bleu_hindi_needs_intl_to_split_the_danda() -> None:
    hyp, ref = ["राम घर गया।"], ["राम घर गया ।"]
    s = bleu(hyp, ref, "hi")
    assert s["bleu"] == pytest.approx(100.0) and "tok:intl" in s["signature"]
    # 13a keeps "गया।" as one token: hyp [राम, घर, गया।] vs ref [राम, घर, गया, ।]; 2 of 3 unigrams match
    s13a = bleu(hyp, ref, "hi", tokenize="13a")
    assert s13a["precisions"][0] == pytest.approx(200 / 3)
    assert s13a["bleu"] < 100.0 and "tok:13a" in s13a["signature"]


def test_chrf_by_hand() -> None:
    # hyp "कम" = क म, ref "कमल" = क म ल (no combining marks: 2 and 3 characters)
    # 1-grams: match 2, P = 2/2, R = 2/3; 2-grams: match 1 (कम), P = 1/1, R = 1/2;
    # 3- to 6-grams: the hyp has none, so only 2 orders count (sacrebleu's effective order)
    # avg P = 1, avg R = (2/3 + 1/2) / 2 = 7/12; chrF (beta 2) = 5PR / (4P + R) = (35/12) / (55/12) = 7/11
    s = chrf(["कम"], ["कमल"])
    assert s["chrf"] == pytest.approx(700 / 11, abs=1e-6)
    assert "nw:0" in s["signature"]
    assert "nw:2" in chrf(["कम"], ["कमल"], word_order=2)["signature"]  # chrF++


def test_no_download_and_no_downloading_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a metric tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    for lang in ("th", "hi", "sw", "ta", "bn", "zh", "ur"):
        assert bleu(["a b c d e"], ["a b c d e"], lang)["tokenize"] == bleu_tokenizer(lang)
    chrf(["a"], ["a"])
    for tok in ("flores200", "flores101", "spm"):
        with pytest.raises(ValueError, match="offline"):
            bleu(["a"], ["a"], "sw", tokenize=tok)


def test_corpus_lengths_must_match() -> None:
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        bleu(["a", "b"], ["a"], "sw")
    with pytest.raises(ValueError, match="no sentences"):
        chrf([], [])


def test_translation_scores_per_language() -> None:
    items = [("the cat sat on the mat", "the cat sat on a mat today", "sw"), ("मानाम", "मानाम", "hi"),
             ("कम", "कमल", "hi")]
    scores = translation_scores(items)
    assert scores["sw"]["n"] == 1 and scores["sw"]["bleu"] == pytest.approx(45.48, abs=0.005)
    assert "tok:13a" in scores["sw"]["bleu_signature"] and "tok:intl" in scores["hi"]["bleu_signature"]
    assert scores["hi"]["n"] == 2
    assert set(overall(scores)) == {"n", "bleu", "chrf"}
