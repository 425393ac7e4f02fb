"""The `xinstruct data` commands write what they say, and bad input is a clear error (exit 2)."""

from __future__ import annotations

import json

from xinstruct.cli import main


def test_data_translation_then_mix_through_an_alias(tmp_path, capsys):
    (tmp_path / "en-ta.tsv").write_text("Good morning\tகாலை வணக்கம்\nbroken line\n", encoding="utf-8")
    out = tmp_path / "translation_en-ta.jsonl"
    assert main(["data", "translation", "--parallel", str(tmp_path / "en-ta.tsv"), "--src", "en", "--tgt", "ta",
                 "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(r["input"], r["output"]) for r in rows] == [("Good morning", "காலை வணக்கம்"),
                                                         ("காலை வணக்கம்", "Good morning")]
    rejects = (tmp_path / "translation_en-ta.rejects.jsonl").read_text().splitlines()
    assert json.loads(rejects[0])["source"].endswith("en-ta.tsv:2")
    (tmp_path / "alias.yaml").write_text(f"tr_en-ta: {out.name}\n", encoding="utf-8")
    assert main(["data", "mix", "tr_en-ta*2", "--alias", str(tmp_path / "alias.yaml"), "--format", "alpaca",
                 "--out", str(tmp_path / "mix")]) == 0
    mixed = [json.loads(x) for x in (tmp_path / "mix" / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(mixed) == 4 and all(m["prompt"].startswith("Below is an instruction") for m in mixed)
    assert "tr_en-ta: 4 examples used of 2" in capsys.readouterr().out


def test_unknown_source_and_missing_data_are_errors_that_say_so(tmp_path, capsys):
    assert main(["data", "mix", "nothing_here", "--out", str(tmp_path / "m")]) == 2
    assert "neither an alias nor a path" in capsys.readouterr().err
    assert main(["train", "sft", "--out", str(tmp_path / "s")]) == 2
    assert "no training data" in capsys.readouterr().err
