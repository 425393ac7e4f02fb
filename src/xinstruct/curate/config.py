"""The curate job's configuration: one dataclass per stage inside `CurateConfig`, a YAML recipe for a whole
run, CLI overrides.

    cfg = load_recipe("recipe.yaml", overrides=["generate.num_shots=4", "lang=sw"])

Unknown keys are errors that name the key, so a typo never silently does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from xinstruct.config import load_config
from xinstruct.curate.decontaminate import DecontaminateConfig
from xinstruct.curate.diversify import DiversifyConfig
from xinstruct.curate.generate import GenerateConfig
from xinstruct.curate.prepare import PrepareConfig
from xinstruct.curate.refine import RefineConfig
from xinstruct.curate.relevance import RelevanceConfig
from xinstruct.curate.selfcheck import SelfCheckConfig
from xinstruct.execution.executors import ExecutorConfig
from xinstruct.execution.shards import shard_size_for


@dataclass
class CurateConfig:
    input: str | None = None  # corpus path; None = the sample corpus that ships in the package
    lang: str = "all"  # target language code(s), comma-separated, or "all"
    out: str = "runs/curate"
    cache: str | None = None  # request-cache file; None = OUT/cache/llm.sqlite
    limit: int | None = None  # read only the first N documents
    # Records per resumable shard (generation, refinement). A stage hands its backend a whole shard at once, so
    # None sizes shards for the generation model's backend: large for servers and vLLM (kept full by hundreds
    # of requests in flight), smaller for in-process CPU engines (less work lost to a kill).
    shard_size: int | None = None
    text_field: str = "text"
    id_field: str = "id"
    lang_field: str = "lang"
    progress: bool = True
    report: bool = True  # write the report, plots and dataset card after the run
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    selfcheck: SelfCheckConfig = field(default_factory=SelfCheckConfig)
    # Which selectors make the final keep: judge, relevance (the gate), both, or auto (each selector whose
    # self-check AUC reaches selfcheck.auc_floor; the judge alone if none does, with a warning).
    decide: str = "auto"
    decontaminate: DecontaminateConfig = field(default_factory=DecontaminateConfig)
    diversify: DiversifyConfig = field(default_factory=DiversifyConfig)
    # Where the LLM stages run: in this process (local) or on Ray Data actors (ray), with the same output files.
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)

    def effective_shard_size(self) -> int:
        if self.shard_size is not None:
            return self.shard_size
        return shard_size_for(self.generate.model.for_batches().resolved_backend())

    def target_langs(self) -> set[str] | None:
        if self.lang.strip().lower() in ("all", "*", ""):
            return None
        return {code.strip() for code in self.lang.split(",") if code.strip()}


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> CurateConfig:
    return load_config(CurateConfig, path, overrides)
