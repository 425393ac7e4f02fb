"""Language fidelity against counts worked out by hand."""

import json

from xinstruct.evaluate.fidelity import FidelityConfig, answer_text, run_fidelity, score_fidelity
from xinstruct.io import write_jsonl
from xinstruct.langid import LanguageIdentifier

SW = "Weka bajeti ya kila mwezi, punguza matumizi yasiyo ya lazima na weka akiba kidogo kila wiki."
SW2 = "Wakulima hubadilisha mazao ili udongo usichoke na wadudu waharibifu wasiongezeke shambani."
EN = "Make a monthly budget, cut spending you do not need and save a little every week."
TA = "குறைந்த செலவில் வாழ ஒவ்வொரு மாதமும் ஒரு வரவு செலவுத் திட்டத்தை உருவாக்குங்கள்."
HI = "हर महीने एक बजट बनाइए और अपनी आमदनी का कुछ हिस्सा बचत खाते में डालिए।"


def test_fidelity_by_hand():
    rows = [
        {"question_id": 1, "lang": "sw", "answer": SW},   # Swahili: in language
        {"question_id": 2, "lang": "sw", "answer": SW2},  # Swahili: in language
        {"question_id": 3, "lang": "sw", "answer": EN},   # English: not
        {"question_id": 4, "lang": "sw", "answer": "  "},  # empty: not (counted as empty)
        {"question_id": 1, "lang": "ta", "answer": TA},   # Tamil: in language
        {"question_id": 2, "lang": "ta", "answer": HI},   # Hindi: not
        {"question_id": 1, "lang": "xx", "answer": SW},   # unknown to the identifier: counted apart
    ]
    verdicts, per_lang, overall = score_fidelity(rows, LanguageIdentifier())
    # sw: 2 of 4 = 50 %; ta: 1 of 2 = 50 %; overall 3 of 6 scored = 50 %
    assert per_lang["sw"]["fidelity"] == 50.0 and per_lang["sw"]["n"] == 4 and per_lang["sw"]["empty"] == 1
    assert per_lang["sw"]["detected_instead"] == {"en": 1}
    assert per_lang["ta"]["fidelity"] == 50.0 and per_lang["ta"]["detected_instead"] == {"hi": 1}
    assert per_lang["xx"] == {"n": 0, "in_language": 0, "fidelity": None, "empty": 0, "unsupported": 1,
                              "detected_instead": {}, "repetitive": 0}
    assert overall["n"] == 6 and overall["in_language"] == 3 and overall["fidelity"] == 50.0
    assert [v["status"] for v in verdicts] == ["ok", "ok", "other", "empty", "ok", "other", "unsupported"]


def test_answer_formats():
    assert answer_text({"answer": "a"}) == "a"
    assert answer_text({"output": "b"}) == "b"  # AlpacaEval
    assert answer_text({"choices": [{"turns": ["c", "d"]}]}) == "c"  # FastChat
    assert answer_text({"text": "q"}) is None


def test_run_fidelity_writes_a_result_with_its_config(tmp_path):
    write_jsonl(tmp_path / "answers.jsonl", [{"question_id": 1, "lang": "sw", "answer": SW,
                                             "model": {"label": "base", "model_id": "m"}},
                                            {"question_id": 2, "lang": "sw", "answer": EN}])
    res = run_fidelity(FidelityConfig(answers=str(tmp_path)))
    assert res["kind"] == "fidelity" and res["model"]["label"] == "base"
    assert res["metrics"]["sw"]["fidelity"] == 50.0
    assert res["config"]["min_prob"] == 0.5 and len(res["config"]["answers_sha256"]) == 16
    assert (tmp_path / "fidelity" / "result.json").is_file() and (tmp_path / "fidelity" / "fidelity.jsonl").is_file()


def test_repetitive_flags_planted_loops_and_no_natural_text():
    """Planted: every packaged seed response and corpus document (natural text in 10+ languages) is not
    repetitive; the same texts ending in a loop of their own first words are."""
    from importlib import resources

    from xinstruct.evaluate.fidelity import repetitive

    texts = []
    for pkg in ("xinstruct.data.seeds", "xinstruct.data.corpus"):
        for f in resources.files(pkg).iterdir():
            if f.name.endswith(".jsonl"):
                for line in f.read_text(encoding="utf-8").splitlines():
                    d = json.loads(line)
                    texts.append(d.get("response") or d.get("text"))
    texts = [t for t in texts if len(t.encode()) >= 200]
    assert len(texts) >= 100
    assert not [t[:60] for t in texts if repetitive(t)]
    looped = [t[:300] + " " + (t[:30] + " ") * 40 for t in texts]  # a loop of its own first words
    assert all(repetitive(t) for t in looped)
    assert not repetitive("mwena " * 20)  # too short to judge


def test_fidelity_counts_repetitive_answers_apart(tmp_path):
    loop = "Mvua ya masika huanza mwezi Machi. " + "mwena mwena mwena " * 30
    ok = ("Mvua ya masika huanza mwezi Machi na huleta maji mengi kwa wakulima wa mahindi, maharagwe na mpunga. "
          "Wakulima hupanda mbegu mapema ili mimea ipate maji ya kutosha kabla ya kiangazi kuanza mwezi Juni.")
    f = tmp_path / "answers.jsonl"
    f.write_text("".join(json.dumps({"question_id": i, "lang": "sw", "answer": a}) + "\n"
                         for i, a in enumerate([loop, ok])))
    res = run_fidelity(FidelityConfig(answers=str(f), out=str(tmp_path / "fid")))
    assert res["overall"]["repetitive"] == 1 and res["metrics"]["sw"]["repetitive"] == 1
