"""The model flags are one set: every command spells them the same way and maps them to the same settings."""

from __future__ import annotations

import argparse

from xinstruct.cli import build_parser
from xinstruct.cliargs import model_flags, model_settings, overrides
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
