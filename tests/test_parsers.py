"""The instruction parser: what it accepts, cleans and rejects, with the reason."""

import pytest

from xinstruct.parsers import ParseError, clean_instruction, parse_instruction

SW_TEXT = ("Ugali ni chakula kikuu katika nchi nyingi za Afrika Mashariki. Hupikwa kwa unga wa mahindi "
           "na maji hadi kuwa mgumu, kisha huliwa pamoja na mboga za majani, maharagwe au nyama.")


@pytest.mark.parametrize("answer, expected", [
    ("Explain how ugali is cooked and served.", "Explain how ugali is cooked and served."),
    ('"Explain how ugali is cooked and served."', "Explain how ugali is cooked and served."),
    ("Instruction: Explain how ugali is cooked.", "Explain how ugali is cooked."),
    ("English instruction: Explain how ugali is cooked.", "Explain how ugali is cooked."),
    ("Sure! Here is the instruction: “Explain how ugali is cooked.”", "Explain how ugali is cooked."),
    ("**Instruction:** Describe East Africa's staple food.\n\nThis text explains...",
     "Describe East Africa's staple food."),
    ("\n\n- Describe how to cook ugali\n", "Describe how to cook ugali"),
    ("```\nDescribe how to cook ugali\n```", "Describe how to cook ugali"),
])
def test_clean_instruction_strips_labels_quotes_and_markup(answer, expected):
    assert clean_instruction(answer) == expected


def test_parse_accepts_an_english_instruction():
    assert parse_instruction("Explain how ugali is cooked and what it is eaten with.", text=SW_TEXT,
                             lang="sw") == "Explain how ugali is cooked and what it is eaten with."


@pytest.mark.parametrize("answer, reason", [
    ("", "empty_instruction"),
    ("Instruction:", "empty_instruction"),
    ("Ugali?", "too_short"),
    ("Explain " + "very " * 80 + "much.", "too_long"),
    ("Eleza jinsi ugali unavyopikwa na kuliwa pamoja na mboga za majani.", "not_english"),
    ("उगाली कैसे पकाया जाता है, समझाइए और बताइए कि इसे किसके साथ खाया जाता है।", "not_english"),
    # the demo's kept pair once: the embedded model apologising under a Finnish soup text
    ("I'm sorry for any confusion, but I'm unable to provide a recipe for Karelian pies.", "refusal"),
    ("I cannot describe this text.", "refusal"),
    ("As an AI, I would say: explain ugali.", "refusal"),
])
def test_parse_rejects_with_reason(answer, reason):
    lang = "hi" if "उ" in answer else "sw"
    result = parse_instruction(answer, text=SW_TEXT, lang=lang)
    assert isinstance(result, ParseError)
    assert result.reason == reason
    assert result.detail  # a message a person can act on


def test_questions_in_the_first_person_are_not_refusals():
    from xinstruct.curate.seeds import load_seeds

    for inst in ("I can't sleep after drinking coffee in the evening; what should I change?",
                 "I cannot decide between ugali and rice for dinner: compare them for me.",
                 "Sorry seems to be the hardest word: explain how Swahili speakers apologise."):
        assert parse_instruction(inst, text=SW_TEXT, lang="sw") == inst
    reasons = [getattr(parse_instruction(x.instruction, text=x.response, lang=x.lang), "reason", None)
               for x in load_seeds()]
    assert "refusal" not in reasons


def test_parse_rejects_an_answer_cut_by_the_token_limit():
    result = parse_instruction("Explain how ugali is cooked and what it is eaten with in", text=SW_TEXT,
                               lang="sw", finish_reason="length")
    assert isinstance(result, ParseError) and result.reason == "truncated"


def test_parse_rejects_a_copy_of_the_text():
    english_text = "Ugali is a staple food in many East African countries, cooked from maize flour and water."
    result = parse_instruction(english_text, text=english_text + " It is eaten with greens.", lang="en")
    assert isinstance(result, ParseError) and result.reason == "copies_text"
