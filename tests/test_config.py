"""Recipes, CLI overrides and their errors."""

import pytest

from xinstruct.curate.config import load_recipe


def test_recipe_and_overrides(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("lang: sw\nout: runs/x\ngenerate:\n  num_shots: 2\n  model:\n    model: a.gguf\n")
    cfg = load_recipe(recipe, ["generate.num_shots=5", "generate.model.options.n_threads=2", "lang=sw,ta",
                               "generate.temperature=0.7"])
    assert cfg.out == "runs/x"
    assert cfg.generate.num_shots == 5
    assert cfg.generate.temperature == 0.7
    assert cfg.generate.model.model == "a.gguf"
    assert cfg.generate.model.options == {"n_threads": 2}
    assert cfg.target_langs() == {"sw", "ta"}
    assert cfg.generate.model.resolved_backend() == "llama.cpp"


def test_unknown_setting_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown setting 'generate.num_shot'"):
        load_recipe(None, ["generate.num_shot=3"])


def test_lang_all_means_every_language():
    assert load_recipe(None, []).target_langs() is None


def test_backend_resolution():
    from xinstruct.llm import ModelConfig

    assert ModelConfig().resolved_backend() == "llama.cpp"
    assert ModelConfig(model="/m/qwen").resolved_backend() == "transformers"
    assert ModelConfig(model="qwen", base_url="http://127.0.0.1:1/v1").resolved_backend() == "openai"
    with pytest.raises(ValueError, match="unknown backend"):
        ModelConfig(backend="tgi").resolved_backend()


@pytest.mark.parametrize("fast", [True, False])
def test_batch_stages_take_transformers_where_it_decodes_batches_faster(monkeypatch, fast):
    from xinstruct.curate.config import CurateConfig
    from xinstruct.llm import ModelConfig, hf, spec

    monkeypatch.setattr(hf, "batches_faster_than_llamacpp", lambda: fast)
    want = "transformers" if fast else "llama.cpp"
    assert ModelConfig().for_batches().resolved_backend() == want
    assert ModelConfig(model="/m/a.gguf").for_batches().resolved_backend() == want
    assert CurateConfig().effective_shard_size() == spec(want).shard_size
    # An explicit backend, llama.cpp settings, a server or the scoring model stay as they are.
    assert ModelConfig(backend="llama.cpp").for_batches().resolved_backend() == "llama.cpp"
    assert ModelConfig(options={"n_threads": 2}).for_batches().resolved_backend() == "llama.cpp"
    assert ModelConfig(model="q", base_url="http://127.0.0.1:1/v1").for_batches().resolved_backend() == "openai"
    assert ModelConfig(model="embedded-scorer").for_batches().resolved_backend() == "llama.cpp"
    assert ModelConfig(options={"dtype": "float32"}).for_batches().options == {"dtype": "float32"}


def test_command_defaults_sit_under_the_file_and_the_flags(tmp_path):
    from xinstruct.config import load_config
    from xinstruct.train.sft import TrainConfig

    defaults = {"max_length": 1024, "epochs": 2, "out": "runs/backward"}
    assert (load_config(TrainConfig, defaults=defaults).out, TrainConfig().out) == ("runs/backward", "runs/sft")
    f = tmp_path / "t.yaml"
    f.write_text("out: runs/mine\nmax_length: 256\n")
    cfg = load_config(TrainConfig, f, ["max_length=128"], defaults=defaults)
    assert (cfg.out, cfg.max_length, cfg.epochs) == ("runs/mine", 128, 2)
