"""The chat page's logic without a browser: messages, two models streaming at once, the language check,
the conversation log, and the page's handlers driven directly. Models are the embedded one on llama.cpp."""

from __future__ import annotations

import json
import threading

import pytest

from xinstruct.config import load_config
from xinstruct.llm import ChatRequest, GenerationParams, ModelConfig
from xinstruct.serve.app import ChatPage, new_state, parse_language
from xinstruct.serve.chat import (
    ChatConfig,
    ChatModel,
    ConversationLog,
    build_messages,
    check_language,
    load_models,
    stream_answers,
    system_message,
)

SW = ("Kiswahili ni lugha ya Kibantu inayozungumzwa na watu wengi katika Afrika Mashariki, hasa nchini Kenya na "
      "Tanzania, ambako ni lugha ya taifa.")


def test_system_message_adds_the_language_instruction():
    assert system_message("", None, "Answer in {language}.") == ""
    assert system_message("  ", "sw", "Answer in {language}.") == "Answer in Swahili."
    assert system_message("Be brief.", "ta", "Reply in {language} ({code}).") == "Be brief.\n\nReply in Tamil (ta)."
    assert system_message("Be brief.", "xx", "Answer in {language}.") == "Be brief.\n\nAnswer in xx."  # any code


def test_build_messages_keeps_only_roles_and_content():
    history = [{"role": "user", "content": "Hi", "metadata": {"x": 1}}, {"role": "assistant", "content": "Jambo"}]
    assert build_messages(history, "Habari?", "S") == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Jambo"}, {"role": "user", "content": "Habari?"}]
    assert build_messages([], "Hi", "") == [{"role": "user", "content": "Hi"}]


@pytest.mark.parametrize(("value", "code"), [
    ("", None), ("Swahili (sw)", "sw"), ("sw", "sw"), ("yo", "yo"), ("Yoruba (yo)", "yo"), (None, None)])
def test_parse_language(value, code):
    assert parse_language(value, ["en", "sw", "ta"]) == code


def test_check_language():
    ok = check_language(SW, "sw")
    assert ok.ok is True and ok.detected == "sw" and ok.probability > 0.5
    wrong = check_language("The weather in Nairobi is warm and sunny most of the year.", "sw")
    assert wrong.ok is False and wrong.detected == "en"
    assert check_language(SW, None).ok is None  # no target: only what was detected
    assert check_language("", "sw").ok is False  # an empty answer is not in the language


def test_conversation_log_replaces_a_conversation_and_keeps_other_lines(tmp_path):
    path = tmp_path / "chat" / "conversations.jsonl"
    log = ConversationLog(path)
    assert log.save([{"id": "c1", "messages": [{"role": "user", "content": "a"}]}]) == 1
    path.write_text(path.read_text() + "not json\n" + json.dumps({"id": "c0", "messages": []}) + "\n")
    n = log.save([{"id": "c1", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
                  {"id": "c2", "messages": []}])
    lines = path.read_text().splitlines()
    assert n == 4 and len(lines) == 4
    assert lines[1] == "not json"  # a line it cannot read is kept, not dropped
    recs = log.read()
    assert [r["id"] for r in recs] == ["c1", "c0", "c2"]
    assert len(recs[0]["messages"]) == 2  # the newer version replaced the older, in place


def test_chat_config_compare_is_a_model_config():
    cfg = load_config(ChatConfig, None, ['compare.model="runs/x/model.gguf"', "compare.options.n_threads=2"])
    assert isinstance(cfg.compare, ModelConfig)
    assert cfg.compare.model == "runs/x/model.gguf" and cfg.compare.options == {"n_threads": 2}
    assert load_config(ChatConfig).compare is None


def test_compare_flags_need_compare():
    from xinstruct.cli import build_parser
    from xinstruct.serve.cli import chat_overrides

    args = build_parser().parse_args(["chat", "--compare-backend", "transformers"])
    with pytest.raises(SystemExit, match="--compare-backend needs --compare"):
        chat_overrides(args)
    args = build_parser().parse_args(["chat", "--compare", "embedded", "--compare-backend", "transformers",
                                      "--lang", "sw", "--port", "8123"])
    cfg = load_config(ChatConfig, None, chat_overrides(args))
    assert (cfg.compare.model, cfg.compare.backend, cfg.lang, cfg.port) == ("embedded", "transformers", "sw", 8123)


# --- real models ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_models(embedded_gguf):
    pytest.importorskip("llama_cpp")
    cfg = ChatConfig(model=ModelConfig(options={"n_ctx": 2048, "n_threads": 1}),
                     compare=ModelConfig(options={"n_ctx": 2048, "n_threads": 1}))
    models = load_models(cfg)
    yield models
    for m in models:
        m.close()


def test_labels_of_the_same_model_twice_differ(two_models):
    assert [m.label for m in two_models] == ["embedded (llama.cpp) A", "embedded (llama.cpp) B"]
    assert two_models[0].identity["weights"] == two_models[1].identity["weights"]


def test_stream_answers_merges_both_sides(two_models):
    params = GenerationParams(max_tokens=16)
    msgs = [[{"role": "user", "content": "Name a fruit."}], [{"role": "user", "content": "Name a country."}]]
    events = list(stream_answers(two_models, msgs, params))
    for side in (0, 1):
        mine = [e for e in events if e.side == side]
        assert [e.done is not None for e in mine].count(True) == 1 and mine[-1].done is not None
        assert len(mine) > 3 and "".join(e.piece for e in mine) == mine[-1].done.text
        assert not any(e.error for e in mine)
        whole = two_models[side].llm.generate([ChatRequest(messages=msgs[side], params=params)])[0]
        assert mine[-1].done.text == whole.text  # each side answered its own messages


def test_a_failing_side_ends_with_an_error_and_the_other_finishes(two_models, embedded_gguf):
    from xinstruct.llm.llamacpp import LlamaCppLLM

    tiny_ctx = ChatModel(ModelConfig(), "small", llm=LlamaCppLLM(embedded_gguf, n_ctx=64, n_threads=1))
    try:
        long = [{"role": "user", "content": "word " * 200}]
        events = list(stream_answers([two_models[0], tiny_ctx], [[{"role": "user", "content": "Hi"}], long],
                                     GenerationParams(max_tokens=8)))
    finally:
        tiny_ctx.close()
    ends = {e.side: e for e in events if e.done is not None or e.error is not None}
    assert ends[0].done is not None and ends[0].error is None
    assert ends[1].error and "does not fit the context window" in ends[1].error


def test_closing_the_stream_cancels_and_frees_the_models(two_models):
    msgs = [[{"role": "user", "content": "Write a long story about a lion."}]] * 2
    it = stream_answers(two_models, msgs, GenerationParams(max_tokens=400))
    first = next(it)
    assert first.piece
    it.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("chat-")]
    assert all(m.lock.acquire(blocking=False) for m in two_models)  # nobody holds an engine
    for m in two_models:
        m.lock.release()


def test_page_handlers_two_turns_language_and_save(two_models, tmp_path):
    cfg = ChatConfig(save=str(tmp_path / "conv.jsonl"), language_prompt="Answer in {language}.")
    page = ChatPage(cfg, two_models)
    state = new_state(2)
    updates = list(page.respond("Habari yako?", "Be brief.", "Swahili (sw)", 24, 0.0, 1.0, state))
    assert len(updates) > 3  # the answer streamed: several page updates
    box, hist_a, hist_b, status_a, status_b, state = updates[-1]
    for hist, status in ((hist_a, status_a), (hist_b, status_b)):
        assert [m["role"] for m in hist] == ["user", "assistant"] and hist[1]["content"]
        assert "tok/s" in status and ("✅ Swahili" in status or "❌ not Swahili" in status)
    partial = [u[1][-1]["content"] for u in updates[1:]]
    assert any(0 < len(p) < len(hist_a[1]["content"]) for p in partial)  # seen growing
    list(page.respond("Asante!", "Be brief.", "Swahili (sw)", 24, 0.0, 1.0, state))
    assert page.save(state).startswith(f"Saved `{state['id']}` (2 models, 2 turns)")
    recs = ConversationLog(cfg.save).read()
    assert [r["side"] for r in recs] == ["a", "b"] and {r["comparison"] for r in recs} == {state["id"]}
    assert [r["model"] for r in recs] == [m.label for m in two_models]
    for r in recs:
        assert r["lang"] == "sw" and r["system"] == "Be brief.\n\nAnswer in Swahili."
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant", "user", "assistant"]
        assert r["messages"][3]["content"] == "Asante!" and r["messages"][4]["content"]
    # The second answer was made from the first turn: the same model, given the saved messages, answers alike.
    again = two_models[0].llm.generate([ChatRequest(messages=recs[0]["messages"][:4],
                                                    params=GenerationParams(max_tokens=24))])[0]
    assert again.text == recs[0]["messages"][4]["content"]
    # What is saved is training data as it is: `xinstruct train sft --data` reads chat `messages` rows.
    from xinstruct.train.formats import to_example

    ex = to_example(recs[0])
    assert ex.lang == "sw" and ex.completion == [recs[0]["messages"][4]] and ex.prompt == recs[0]["messages"][:4]
    # Saving again after another turn replaces the two lines rather than adding two more.
    list(page.respond("Kwaheri", "", "", 8, 0.0, 1.0, state))
    page.save(state)
    assert len(ConversationLog(cfg.save).read()) == 2


def test_new_chat_starts_a_new_conversation(two_models, tmp_path):
    page = ChatPage(ChatConfig(save=str(tmp_path / "c.jsonl")), two_models)
    *_, state = page.new_chat()
    assert page.save(state) == "Nothing to save yet."
    *_, other = page.new_chat()
    assert other["id"] != state["id"]


def test_stop_ends_both_answers_and_the_page_ends_on_what_is_saved(two_models, tmp_path):
    from xinstruct.serve.app import STOPPED

    page = ChatPage(ChatConfig(save=str(tmp_path / "c.jsonl")), two_models)
    state = new_state(2)
    assert page.stop(state, "", "") == ("", "")  # nothing running: nothing changes
    updates, after_stop = [], None
    for u in page.respond("Write a very long story about a lion and a hare.", "", "", 400, 0.0, 1.0, state):
        updates.append(u)
        if after_stop is None and all(len(h[-1]["content"]) > 20 for h in u[1:3]):
            assert page.stop(state, u[3], u[4]) == (STOPPED, STOPPED)  # what the Stop button shows at once
            after_stop = len(updates)
    assert after_stop is not None
    assert len(updates) == after_stop + 1  # no more pieces, one last update
    _, hist_a, hist_b, status_a, status_b, _ = updates[-1]
    assert (status_a, status_b) == (STOPPED, STOPPED)
    for hist, live in zip((hist_a, hist_b), state["histories"], strict=True):
        assert hist == live and 20 < len(hist[-1]["content"]) < 1200  # far short of 400 tokens
    assert not [t for t in threading.enumerate() if t.name.startswith("chat-")] and not page._running
    page.save(state)
    assert [r["messages"][-1]["content"] for r in ConversationLog(page.cfg.save).read()] == [
        hist_a[-1]["content"], hist_b[-1]["content"]]
