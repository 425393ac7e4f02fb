"""Rows of every shape become prompt/completion examples in each prompt format; bad rows say why."""

from __future__ import annotations

import pytest

from xinstruct.train.formats import ALPACA_PROMPT, FormatError, answer_in, to_example


def test_records_row_in_chat_format_keeps_the_native_response():
    ex = to_example({"id": "r1", "instruction": "What is Harambee?", "response": "Harambee ni neno.", "lang": "sw",
                     "text": "ignored when a response exists"})
    assert ex.prompt == [{"role": "user", "content": "What is Harambee?"}]
    assert ex.completion == [{"role": "assistant", "content": "Harambee ni neno."}]
    assert (ex.id, ex.lang) == ("r1", "sw")


def test_answer_in_appends_the_output_language_as_x_instruction_prompts():
    ex = to_example({"instruction": "Explain Harambee", "output": "Harambee ni neno.", "lang": "sw"}, "answer_in")
    assert ex.prompt[-1]["content"] == "Explain Harambee. Answer in Swahili."
    assert answer_in("What is it?", "ta") == "What is it? Answer in Tamil."
    assert answer_in("Describe it", "xx") == "Describe it. Answer in xx."  # any language code works


def test_alpaca_format_uses_the_input_variant_only_when_there_is_an_input():
    plain = to_example({"instruction": "Greet", "input": "", "output": "Habari"}, "alpaca")
    assert plain.prompt == ALPACA_PROMPT.format(instruction="Greet") and plain.completion == "Habari"
    with_input = to_example({"instruction": "Translate", "input": "Hello", "output": "Habari"}, "alpaca")
    assert "### Input:\nHello\n\n### Response:\n" in with_input.prompt


def test_messages_row_trains_on_the_last_assistant_turn_only():
    msgs = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Name?"},
            {"role": "assistant", "content": "Jina langu ni X."}]
    ex = to_example({"messages": msgs})
    assert ex.prompt == msgs[:-1] and ex.completion == msgs[-1:]
    with pytest.raises(FormatError) as e:  # the Alpaca template has no place for earlier turns
        to_example({"messages": msgs}, "alpaca")
    assert e.value.reason == "multi_turn"


@pytest.mark.parametrize(("row", "reason"), [
    ({"instruction": "x", "output": ""}, "missing_field"),
    ({"instruction": "x", "output": 5}, "bad_field"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "bad_messages"),
    ({"messages": [{"role": "bot", "content": "hi"}]}, "bad_messages"),
    ({"question": "x", "answer": "y"}, "unknown_shape"),
])
def test_bad_rows_raise_a_reason(row, reason):
    with pytest.raises(FormatError) as e:
        to_example(row)
    assert e.value.reason == reason


def test_answer_in_needs_a_language():
    with pytest.raises(FormatError) as e:
        to_example({"instruction": "x", "output": "y"}, "answer_in")
    assert e.value.reason == "no_language"
    assert to_example({"instruction": "x", "output": "y"}, "answer_in", default_lang="fi").prompt[-1]["content"] \
        == "x. Answer in Finnish."
