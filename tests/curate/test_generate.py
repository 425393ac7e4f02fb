"""The generation stage with the embedded model (through the engine the stage picks on this machine:
transformers where the CPU computes bf16 natively, else llama.cpp): prompts, parsing, provenance."""

import pytest

from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.languages import language_name
from xinstruct.records import Record

pytest.importorskip("llama_cpp")

DOCS = {
    "sw": "Ugali ni chakula kikuu katika nchi nyingi za Afrika Mashariki. Hupikwa kwa unga wa mahindi na maji "
          "hadi kuwa mgumu, kisha huliwa pamoja na mboga za majani, maharagwe au nyama.",
    "vi": "Phở là món ăn truyền thống của Việt Nam, gồm bánh phở, nước dùng hầm từ xương bò và các loại gia vị "
          "như hồi, quế. Người Hà Nội thường ăn phở vào buổi sáng.",
    "id": "Rendang adalah masakan daging sapi khas Minangkabau yang dimasak lama dengan santan dan bumbu "
          "rempah hingga kering. Hidangan ini biasa disajikan saat hari raya dan acara adat.",
}


def _rec(lang, text=None, id=None):
    return Record(id=id or f"{lang}-1", doc_id=id or f"{lang}-1", lang=lang, text=text or DOCS[lang],
                  response=text or DOCS[lang])


@pytest.fixture(scope="module")
def llm():
    from xinstruct.llm import ModelConfig, load_llm

    with load_llm(ModelConfig()) as m:
        yield m


def test_prompt_is_few_shot_and_ends_with_the_text():
    gen = InstructionGenerator(GenerateConfig(num_shots=3), llm=object())
    req = gen.request(_rec("sw"))
    roles = [m["role"] for m in req.messages]
    assert roles == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert DOCS["sw"] in req.messages[-1]["content"]
    assert "Swahili" in req.messages[-1]["content"]
    shot_texts = [m["content"] for m in req.messages[1:-1:2]]
    assert all("Swahili" in t for t in shot_texts)  # same-language seeds


def test_fixed_shots_share_a_prefix_random_shots_vary():
    fixed = InstructionGenerator(GenerateConfig(num_shots=3, shot_selection="fixed"), llm=object())
    a, b = fixed.request(_rec("sw", id="a")), fixed.request(_rec("sw", id="b"))
    assert a.messages[:-1] == b.messages[:-1]
    rand = InstructionGenerator(GenerateConfig(num_shots=3, shot_selection="random"), llm=object())
    shots = {tuple(m["content"] for m in rand.request(_rec("sw", id=f"d{i}")).messages[1:-1]) for i in range(6)}
    assert len(shots) > 1
    assert rand.request(_rec("sw", id="d1")) == rand.request(_rec("sw", id="d1"))  # reproducible


def test_language_without_seeds_borrows_other_languages_seeds():
    gen = InstructionGenerator(GenerateConfig(num_shots=4, shot_selection="random"), llm=object())
    req = gen.request(_rec("yo", text="Ẹ káàárọ̀. Oúnjẹ àárọ̀ wa ni ẹ̀kọ pẹ̀lú àkàrà.", id="yo-1"))
    assert "Yoruba" in req.messages[-1]["content"]
    assert not any("Yoruba" in m["content"] for m in req.messages[1:-1])


def test_user_seed_file(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"instruction": "Describe the dish.", "response": "Ni chakula kitamu.", "lang": "sw"}\n')
    gen = InstructionGenerator(GenerateConfig(seeds=str(seeds), num_shots=3), llm=object())
    req = gen.request(_rec("sw"))
    assert len(req.messages) == 4  # system, one shot (all there is), the text
    assert req.messages[2]["content"] == "Describe the dish."
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "x"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:1: .*'response'"):
        InstructionGenerator(GenerateConfig(seeds=str(bad)), llm=object())


def test_rotated_shot_sets_share_the_prefix_in_turns():
    gen = InstructionGenerator(GenerateConfig(num_shots=2, shot_sets=3, rotate_every=2), llm=object())
    assert gen.cfg.shot_pool == "language"
    recs = [_rec("sw", id=f"sw{i}") for i in range(8)] + [_rec("vi", id=f"vi{i}") for i in range(2)]
    recs.insert(3, _rec("vi", id="vi-x"))  # other languages count on their own
    marked = list(gen.rotation(recs))
    sets = {r.id: r.meta["shot_set"] for r in marked}
    assert [sets[f"sw{i}"] for i in range(8)] == [0, 0, 1, 1, 2, 2, 0, 0]
    assert [sets["vi-x"], sets["vi0"], sets["vi1"]] == [0, 0, 1]
    prompts = {r.id: gen.request(r).messages for r in marked}
    assert prompts["sw0"][:-1] == prompts["sw1"][:-1] == prompts["sw6"][:-1]  # byte-identical shared part
    assert prompts["sw0"][:-1] != prompts["sw2"][:-1] != prompts["sw4"][:-1]
    assert prompts["sw0"][0] == prompts["vi0"][0]  # the system prompt first, shared by every language
    assert DOCS["sw"] in prompts["sw0"][-1]["content"]  # the text last
    # marks depend on input order only: a second pass (a resumed run) marks the same
    assert {r.id: r.meta["shot_set"] for r in gen.rotation([_rec(r.lang, id=r.id) for r in recs])} == sets


def test_shared_shot_pool_rotates_sets_of_any_language_over_all_texts():
    gen = InstructionGenerator(GenerateConfig(num_shots=2, shot_sets=3, rotate_every=2, shot_pool="shared"),
                               llm=object())
    recs = [_rec(lang, id=f"{lang}{i}") for i in range(4) for lang in ("sw", "vi", "id")]
    marked = list(gen.rotation(recs))
    # the n-th text of the corpus, whatever its language, takes set (n // 2) % 3
    assert [r.meta["shot_set"] for r in marked] == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1, 2, 2]
    prompts = {r.id: gen.request(r).messages for r in marked}
    assert prompts["sw0"][:-1] == prompts["vi0"][:-1] == prompts["sw2"][:-1]  # one prefix across languages
    assert prompts["sw0"][:-1] != prompts["id0"][:-1] != prompts["vi1"][:-1]
    assert DOCS["id"] in prompts["id0"][-1]["content"] and "Indonesian" in prompts["id0"][-1]["content"]
    # the three sets hold seeds of several languages, each shot under its own language's name
    langs = {s.lang for r in marked for s in gen.shots(r)}
    assert len(langs) > 2
    for r in marked:
        shown = [m["content"] for m in gen.request(r).messages[1:-1:2]]
        assert [language_name(s.lang) in u for s, u in zip(gen.shots(r), shown, strict=True)] == [True, True]
    # random shots stay in the text's language
    rand = InstructionGenerator(GenerateConfig(shot_selection="random", shot_pool="shared"), llm=object())
    assert {s.lang for s in rand.shots(_rec("sw"))} == {"sw"}
    with pytest.raises(ValueError, match="shot_pool must be one of language, shared"):
        InstructionGenerator(GenerateConfig(shot_pool="lang"), llm=object())


@pytest.fixture(scope="module")
def stage_llm():
    from xinstruct.llm import ModelConfig, load_llm

    with load_llm(ModelConfig().for_batches()) as m:
        yield m


def test_real_model_writes_instructions_with_provenance(stage_llm):
    llm = stage_llm
    gen = InstructionGenerator(GenerateConfig(rotate_every=1), llm=llm)
    # each text under each of the four shot sets: SmolLM2-135M copies a shot or answers in the text's language
    # under some sets (which is what the rejects are for)
    batch = list(gen.rotation([_rec(lang, id=f"{lang}-{k}") for k in range(4) for lang in DOCS]))
    kept, rejects = gen(batch)
    assert len(kept) + len(rejects) == len(batch)
    assert kept, f"no instruction parsed; rejects: {[r.detail for r in rejects]}"
    for rec in kept:
        assert rec.instruction and rec.response == DOCS[rec.lang]
        prov = rec.provenance["instruction"]
        assert prov.backend == llm.backend and prov.model.startswith("SmolLM2-135M-Instruct")
        assert prov.prompt == "generate_instruction" and prov.prompt_version == "1"
        assert prov.params["temperature"] == 0.0 and prov.params["num_shots"] == 2
        assert prov.params["shot_set"] == int(rec.id.split("-")[1]) and "shot_set" not in rec.meta
        assert prov.raw  # the unparsed answer is kept for tracing
    for rej in rejects:
        assert rej.stage == "generate" and rej.unit == "chunk" and rej.record["text"]
        assert rej.id in rej.detail
    # greedy decoding is reproducible: the same records give the same instructions
    again, _ = gen(list(gen.rotation([_rec(r.lang, id=r.id) for r in batch])))
    assert [r.instruction for r in again] == [r.instruction for r in kept]


class EchoLLM:
    """A test double that answers every request with a fixed text (the parser is under test)."""

    backend, model_id, context_window = "test", "echo", None

    def __init__(self, answer):
        self.answer = answer

    def generate(self, requests):
        from xinstruct.llm import Generation

        return [Generation(text=self.answer, finish_reason="stop") for _ in requests]


def test_a_copied_seed_instruction_is_rejected():
    gen = InstructionGenerator(GenerateConfig(), llm=None)
    copied = gen.seeds[0].instruction
    gen._llm = EchoLLM(f'"{copied}"')
    kept, rejects = gen([_rec("sw")])
    assert not kept and rejects[0].reason == "copies_seed"
    gen._llm = EchoLLM("Explain how ugali is cooked and what it is eaten with.")
    kept, _ = gen([_rec("sw")])
    assert kept[0].instruction == "Explain how ugali is cooked and what it is eaten with."


def test_shots_are_dropped_until_the_prompt_fits(llm):
    tamil = ("தமிழ்நாட்டில் பொங்கல் திருநாள் தை மாதம் முதல் நாளில் கொண்டாடப்படுகிறது. "
             "புதிய அரிசியில் பொங்கல் சமைத்து சூரியனுக்குப் படைக்கிறார்கள். ") * 6
    rec = _rec("ta", text=tamil, id="ta-long")
    gen = InstructionGenerator(GenerateConfig(num_shots=4), llm=llm)
    full = gen.messages(rec, gen.shots(rec))
    needed = llm.count_prompt_tokens(full)
    from xinstruct.llm import ModelConfig, load_llm

    with load_llm(ModelConfig(options={"n_ctx": needed - 200})) as small:
        fitted = InstructionGenerator(GenerateConfig(num_shots=4), llm=small).fitted_messages(rec)
        assert 1 < len(fitted) < len(full)  # some shots dropped, the text kept
        assert fitted[-1] == full[-1]
        assert small.count_prompt_tokens(fitted) <= small.context_window - GenerateConfig().max_tokens


def test_prompt_over_the_context_window_is_a_reject_not_a_crash():
    from xinstruct.llm import ModelConfig, load_llm

    small = load_llm(ModelConfig(options={"n_ctx": 512}))
    gen = InstructionGenerator(GenerateConfig(text_max_chars=100_000), llm=small)
    kept, rejects = gen([_rec("sw", text="Habari za leo. " * 600, id="huge")])
    small.close()
    assert not kept
    assert rejects[0].reason == "llm_error" and "huge" in rejects[0].detail


def test_the_generator_resolves_its_settings_on_a_copy_of_the_callers_config():
    cfg = GenerateConfig()
    gen = InstructionGenerator(cfg, llm=object())
    assert (cfg.num_shots, cfg.candidates) == (None, None)  # as given
    assert (gen.cfg.num_shots, gen.cfg.candidates) == (2, 1)  # few-shot prompting of a model with no backward meta
