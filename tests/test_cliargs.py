"""The model flags are one set: every command spells them the same way and maps them to the same settings."""

from __future__ import annotations

import argparse

import pytest

from xinstruct.cli import build_parser
from xinstruct.cliargs import model_flags, model_settings, overrides, shown_default
from xinstruct.llm import BACKENDS


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def test_every_command_offers_the_same_backends():
    seen = {}
    for name, sub in _subparsers(build_parser()):
        for action in sub._actions:
            if any(o.endswith("backend") for o in action.option_strings):
                seen[f"{name} {action.option_strings[0]}"] = list(action.choices)
    # curate/generate/refine, infer, eval run/judge/translate/mc/task..., data preferences, chat (and --compare-)
    assert len(seen) >= 12, seen
    assert all(choices == ["auto", *BACKENDS] for choices in seen.values()), seen


def test_prefixed_flags_fall_back_to_the_plain_ones_where_asked():
    p = argparse.ArgumentParser()
    model_flags(p)
    model_flags(p, "judge-", "the judge", threads=False)
    args = p.parse_args(["--model", "m.gguf", "--threads", "2", "--judge-base-url", "http://x/v1"])
    assert model_settings(args, "generate.model") == {"generate.model.model": "m.gguf", "generate.model.backend": None,
                                                      "generate.model.base_url": None,
                                                      "generate.model.options.n_threads": 2}
    judge = model_settings(args, "refine.model", "judge_", fallback="")
    assert judge == {"refine.model.model": "m.gguf", "refine.model.backend": None,
                     "refine.model.base_url": "http://x/v1", "refine.model.options.n_threads": 2}
    assert model_settings(args, "refine.model", "judge_")["refine.model.model"] is None  # no fallback: not given
    assert overrides(judge) == ['refine.model.model="m.gguf"', 'refine.model.base_url="http://x/v1"',
                                "refine.model.options.n_threads=2"]


def test_a_model_flag_named_otherwise_is_read_from_its_own_attribute():
    p = argparse.ArgumentParser()
    p.add_argument("--compare")
    model_flags(p, "compare-", "the second model", model=False)
    args = p.parse_args(["--compare", "base.gguf", "--compare-threads", "1"])
    assert not hasattr(args, "compare_model")
    got = model_settings(args, "compare", "compare_", model_dest="compare")
    assert got["compare.model"] == "base.gguf" and got["compare.options.n_threads"] == 1


def _all_help_defaults(command: str):
    """(flag, its help) of every flag of `command`'s parser that states a default."""
    sub = dict(_subparsers(build_parser()))[command]
    return [(a, " ".join(a.help.split())) for a in sub._actions if a.help and "default" in a.help]


def _curate_defaults():
    from xinstruct.curate.config import load_recipe

    return load_recipe(None, [])


def _infer_defaults():
    from xinstruct.evaluate.infer import InferConfig

    return InferConfig()


def _sft_defaults():
    from xinstruct.train.sft import TrainConfig

    return TrainConfig()


def _dpo_defaults():
    from xinstruct.train.dpo import DPOTrainConfig

    return DPOTrainConfig()


def _preference_defaults():
    from xinstruct.train.dpo import PreferenceConfig

    return PreferenceConfig()


def _translate_defaults():
    from xinstruct.evaluate.infer import TranslateQuestionsConfig

    return TranslateQuestionsConfig()


def _mc_defaults():
    from xinstruct.evaluate.multiple_choice import MCConfig

    return MCConfig(task="", data="", out="")


def _chat_defaults():
    from xinstruct.serve.chat import ChatConfig

    return ChatConfig()


def _judge_defaults():
    from xinstruct.evaluate.judge import JudgeConfig

    return JudgeConfig()


# Stated defaults that come from no single setting (derived from others, or where the model comes from).
DERIVED = {"--input", "--cache", "--lang", "--candidates", "--threads", "--backend", "--judge-backend",
           "--relevance-backend", "--relevance-model", "--executor", "--ray-address", "--ray-actors", "--per-lang",
           "--num-shots", "--clusters", "--judge-model", "--questions",
           "--label", "--seeds",
           "--text-max-tokens",  # train backward: an argparse default read from BackwardConfig
           "--data", "--fewshot-data", "--compare-backend", "--languages"}


@pytest.mark.parametrize(("command", "defaults"), [
    ("curate", _curate_defaults), ("generate", _curate_defaults), ("refine", _curate_defaults),
    ("diversify", _curate_defaults), ("eval judge", _judge_defaults), ("infer", _infer_defaults),
    ("eval run", _infer_defaults), ("train sft", _sft_defaults), ("train backward", _sft_defaults),
    ("train dpo", _dpo_defaults), ("data preferences", _preference_defaults),
    ("eval translate-questions", _translate_defaults), ("eval mc", _mc_defaults), ("chat", _chat_defaults)])
def test_the_help_gives_the_defaults_the_run_uses(command, defaults):
    """Each default a command's --help states for a setting is the value a run with no config file and no flag
    uses; a stated default that comes from no setting is one of the few derived from others, listed above."""
    cfg = defaults()
    stated = _all_help_defaults(command)
    assert stated, command
    bound = 0
    for action, text in stated:
        path = getattr(action, "setting", None)
        if path is None:
            assert action.option_strings[0] in DERIVED, f"{command} {action.option_strings[0]}: {text}"
            continue
        value = cfg
        for part in path.split("."):
            value = getattr(value, part)
        assert text.endswith(f"(default {shown_default(value)})"), f"{command} {action.option_strings[0]}: {text}"
        bound += 1
    assert bound >= 1, command


def test_a_setting_flag_given_on_the_command_line_reaches_its_setting():
    from xinstruct.cliargs import settings_given

    args = build_parser().parse_args(["curate", "--iterations", "1", "--decide", "judge"])
    given = settings_given(args)
    assert given["refine.iterations"] == 1 and given["decide"] == "judge" and given["selfcheck.size"] is None


# Commands whose stated defaults all come from elsewhere than one setting (a file's name, DIR, the data).
DERIVED_IN = {"data translation": {"--directions"}, "eval report": {"--out"},
              "eval translation": {"--src-lang", "--bleu-tokenize", "--name"}, "eval qa": {"--name"},
              "eval summarize": {"--name"}}


def test_every_stated_default_in_every_command_comes_from_a_setting_or_is_derived():
    """A new flag that writes its default into its help by hand fails here: bind it to its setting
    (`setting_flag`), and the help follows the config."""
    for command, sub in _subparsers(build_parser()):
        for action in sub._actions:
            if action.help and "default" in action.help and getattr(action, "setting", None) is None:
                flag = action.option_strings[0] if action.option_strings else action.dest
                assert flag in DERIVED | DERIVED_IN.get(command, set()), f"{command} {flag}: {action.help}"
