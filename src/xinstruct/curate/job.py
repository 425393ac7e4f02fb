"""The curate job: prepare -> generate -> (self-check) -> relevance -> label/refine -> relevance ->
(decontaminate) -> diversify -> report, resumable at every point. Each stage also runs alone on a file of records.

Layout of a run folder:

    OUT/samples.jsonl      the final records (cross-lingual pairs with provenance, scores, history, cluster)
    OUT/rejects.jsonl      every dropped document, chunk or pair, with stage and reason
    OUT/unsampled.jsonl    good pairs that diversification did not sample (kept, not lost)
    OUT/manifest.json      versions, config, counts per stage, LLM call statistics
    OUT/README.md          the dataset card; OUT/report.md, report.json and plots/*.png: the report
    OUT/cache/llm.sqlite   the request cache: a finished LLM call is never made twice
    OUT/work/prepare-KEY/  prepared chunks, written once (KEY hashes input + settings)
    OUT/work/generate-KEY/ one file per finished shard of generated pairs (and their rejects)
    OUT/work/selfcheck-KEY/ the self-check of judge and relevance gate on planted seed pairs (result.json)
    OUT/work/relevance-pre-KEY/, relevance-post-KEY/  the relevance gate's shards, before and after refinement
    OUT/work/refine-KEY/   one file per finished shard of labeled/refined pairs
    OUT/work/diversify-KEY/ the instruction embeddings

A stage's folder is keyed by a hash of everything its output depends on (its input stage's
key included), so changing a setting redoes only the stages it affects. Every file is
written atomically, so a run killed at any point and started again skips finished shards,
answers the unfinished shard's finished calls from the cache, and ends with the same output.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from xinstruct import __version__
from xinstruct.config import to_dict
from xinstruct.curate.config import CurateConfig
from xinstruct.curate.decontaminate import Decontaminator
from xinstruct.curate.generate import GenerateConfig, InstructionGenerator
from xinstruct.curate.prepare import prepare
from xinstruct.curate.readers import read_documents
from xinstruct.curate.refine import PairJudge, Refiner
from xinstruct.curate.relevance import RELEVANCE_FORMAT, RelevanceGate, RelevanceScorer
from xinstruct.curate.seeds import load_seeds
from xinstruct.curate.selfcheck import decide, planted_pairs, run_selfcheck
from xinstruct.data import sample_corpus
from xinstruct.execution.executors import Executor, make_executor
from xinstruct.execution.pool import ModelPool
from xinstruct.execution.provenance import versions
from xinstruct.execution.shards import Counting, StageStats
from xinstruct.execution.stages import RejectSource, StageRunner
from xinstruct.execution.step import Step
from xinstruct.io import atomic_write, dumps, read_jsonl, read_records, write_jsonl
from xinstruct.llm import LLM
from xinstruct.llm.artifacts import read_backward_meta
from xinstruct.records import Record, Reject, stable_hash
from xinstruct.rows import input_fingerprint, read_pairs

log = logging.getLogger(__name__)

PREPARE_FORMAT = "1"  # bump when prepare's output for the same input and settings changes (the LLM steps keep theirs)
SELFCHECK_FORMAT = "1"
DIVERSIFY_FORMAT = "2"  # 2: near-duplicate instructions are never both sampled


def run_prepare(cfg: CurateConfig, src: Path, work: Path) -> tuple[Path, dict[str, Any], StageStats]:
    key = stable_hash(PREPARE_FORMAT, input_fingerprint(src), sorted(cfg.target_langs() or ["all"]),
                      to_dict(cfg.prepare), cfg.limit, cfg.text_field, cfg.id_field, cfg.lang_field)
    folder = work / f"prepare-{key}"
    done = folder / "done.json"
    if done.is_file():
        log.info("prepare: reusing %s", folder)
        return folder, json.loads(done.read_text()), StageStats(resumed=True)
    t0 = time.perf_counter()
    docs = Counting(read_documents(src, text_field=cfg.text_field, id_field=cfg.id_field,
                                   lang_field=cfg.lang_field))
    stream: Iterable[Any] = docs
    if cfg.limit is not None:
        from itertools import islice

        stream = islice(docs, cfg.limit)
    counts: Counter[str] = Counter()
    with ExitStack() as stack:
        rec_f = stack.enter_context(atomic_write(folder / "records.jsonl"))
        rej_f = stack.enter_context(atomic_write(folder / "rejects.jsonl"))
        stream = stack.enter_context(tqdm(stream, desc="prepare", unit="doc", disable=not cfg.progress))
        seen_docs: set[str] = set()
        for item in prepare(stream, cfg.target_langs(), cfg.prepare):
            if isinstance(item, Reject):
                rej_f.write(dumps(item.to_dict()) + "\n")
                counts[f"{item.unit}s_rejected"] += 1
                if item.unit == "chunk":
                    counts["chunks"] += 1
                    seen_docs.add(item.doc_id or "")
            else:
                rec_f.write(dumps(item.to_dict()) + "\n")
                counts["chunks"] += 1
                counts["records"] += 1
                seen_docs.add(item.doc_id)
    stats = {"documents_read": docs.n, "documents_rejected": counts["documents_rejected"],
             "documents_chunked": len(seen_docs), "chunks": counts["chunks"],
             "chunks_rejected": counts["chunks_rejected"], "records": counts["records"]}
    with atomic_write(done) as f:
        f.write(json.dumps(stats, indent=2))
    return folder, stats, StageStats(seconds=time.perf_counter() - t0)


# The commands of the curate job (`xinstruct generate`, `refine`, `diversify`; `curate` runs all three): each runs
# the stages of PIPELINE that name it.
COMMANDS = ("generate", "refine", "diversify")


class Decontamination(Step):
    """Decontamination as a step: pairs that share an n-gram with an evaluation set become rejects."""

    name = "decontaminate"

    def __init__(self, cfg: CurateConfig):
        self.deco = Decontaminator(cfg.decontaminate)
        super().__init__()

    def fingerprint(self) -> str:
        return self.deco.fingerprint()

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], list[Reject]]:
        kept: list[Record] = []
        rejects: list[Reject] = []
        for item in self.deco(batch):
            (kept if isinstance(item, Record) else rejects).append(item)  # type: ignore[arg-type]
        return kept, rejects

    def stage_info(self) -> dict[str, Any]:
        return {"eval_sets": list(self.deco.cfg.eval_sets)}


class CurateRun:
    """One run of the curate job: its input, the steps that `PIPELINE` builds for it, and what they leave for the
    output files and the manifest."""

    def __init__(self, cfg: CurateConfig, commands: Sequence[str], pool: ModelPool, executor: Executor):
        self.cfg, self.commands, self.pool, self.executor = cfg, commands, pool, executor
        self.out = Path(cfg.out)
        self.work = self.out / "work"
        self.stages = StageRunner(executor, cfg, self.work, self.out)
        self.counts: dict[str, Any] = {}
        self.records: Iterable[Record] = []
        self.n: int | None = None  # the input's size where it is not `len(records)`
        self.unsampled: list[Record] = []
        self.generator: GenerateConfig | None = None
        self._selection: Selection | None = None

    def read_input(self) -> dict[str, Any]:
        """The corpus, prepared (with generation), or a records file or run folder (the stages after it)."""
        cfg, stages = self.cfg, self.stages
        if "generate" in self.commands:
            src = Path(cfg.input) if cfg.input else sample_corpus()
            if not src.exists():
                raise FileNotFoundError(f"input not found: {src}")
            prep, prep_counts, prep_stats = run_prepare(cfg, src, self.work)
            self.counts.update({k: prep_counts[k] for k in ("documents_read", "documents_rejected",
                                                            "documents_chunked", "chunks")})
            stages.info["prepare"] = {"seconds": round(prep_stats.seconds, 2), "resumed": prep_stats.resumed,
                                      "folder": str(prep.relative_to(self.out)),
                                      "rejected": prep_counts["chunks_rejected"] + prep_counts["documents_rejected"]}
            stages.rejects.append(("prepare", lambda: (Reject(**r) for r in read_jsonl(prep / "rejects.jsonl"))))
            stages.upstream = prep.name
            self.records, self.n = read_records(prep / "records.jsonl"), prep_counts["records"]
            return {"path": str(src), "sample_corpus": cfg.input is None, "kind": "corpus"}
        if not cfg.input:
            raise ValueError(f"running {'+'.join(self.commands)} alone needs --input: a records file or a run folder")
        records, input_rejects, stages.upstream = read_pairs(Path(cfg.input))
        stages.rejects.append(("input", lambda: input_rejects))
        self.records = records
        self.counts["records_read"] = len(records) + len(input_rejects)
        self.counts["candidates"] = len(records)
        return {"path": str(cfg.input), "kind": "records"}

    def selection(self) -> Selection:
        """The run's selectors, set up once from the pairs' languages (the gate's probe and the self-check)."""
        if self._selection is None:
            cfg = self.cfg
            langs = sorted({r.lang for r in self.records} or (cfg.target_langs() or set()))
            if self.executor.remote:
                # The gate's probe and the self-check load the judge and the scorer: on a cluster they run there as
                # a task (their results are files in the work folder), so the driver reads them and loads no model.
                self.executor.run_task(selection_evidence, cfg, langs, self.work, self.out,
                                       cache=self.work / "selection.cache.jsonl",
                                       models=[cfg.refine.model, cfg.relevance.scorer_model()])
            self._selection = Selection.setup(cfg, self.pool, langs, self.work, self.out)
        return self._selection

    @property
    def selection_info(self) -> dict[str, Any]:
        """What the selectors found (thresholds, self-checks), or {} where no stage set them up."""
        return self._selection.info if self._selection else {}

    def apply(self, entry: PipelineEntry) -> None:
        step = entry.build(self)
        if step is not None:
            self.records = self.stages.run(step, self.records, self.n)
            self.n = None
        if entry.count:
            self.counts[entry.count] = len(self.records)  # type: ignore[arg-type]


def _generate(run: CurateRun) -> Step:
    gen = InstructionGenerator(replace(run.cfg.generate, model=run.cfg.generate.model.for_batches()))
    run.generator = gen.cfg  # as the generator resolved it (the engine is in the shard key)
    return gen


def _gate(phase: str) -> Callable[[CurateRun], Step | None]:
    def build(run: CurateRun) -> Step | None:
        sel = run.selection()
        if sel.gate is None or sel.threshold is None:
            return None
        return RelevanceGate(run.cfg.relevance, sel.threshold, sel.gate_decides, phase, layout=sel.gate.layout)

    return build


def _refine(run: CurateRun) -> Step:
    return Refiner(run.cfg.refine, decides=run.selection().judge_decides)


def _decontaminate(run: CurateRun) -> Step | None:
    return Decontamination(run.cfg) if run.cfg.decontaminate.eval_sets else None


def _diversify(run: CurateRun) -> Step:
    div = Diversify(run.cfg, run.stages.upstream, run.work)
    run.unsampled = div.unsampled  # filled when it runs
    return div


@dataclass(frozen=True)
class PipelineEntry:
    """A stage of the curate job: the command that runs it (None: every run), how its step is built for a run
    (None: the stage does not apply to it), and the count (if any) of the records it leaves, for the manifest."""

    command: str | None
    build: Callable[[CurateRun], Step | None]
    count: str | None = None


PIPELINE = (
    PipelineEntry("generate", _generate, count="candidates"),
    PipelineEntry("refine", _gate("pre")),
    PipelineEntry("refine", _refine),
    PipelineEntry("refine", _gate("post"), count="refined_kept"),
    PipelineEntry(None, _decontaminate),
    PipelineEntry("diversify", _diversify),
)


def run_pipeline(cfg: CurateConfig, commands: Sequence[str] = COMMANDS, llm: LLM | None = None,
                 models: dict[str, LLM] | None = None) -> dict[str, Any]:
    """Run (or resume) the stages of `commands` of the curate job described by `cfg`; returns the manifest.

    With "generate", the input is a corpus (prepared first); otherwise it is a records file or a
    run folder, and the stages run on its pairs. `llm` replaces every model of the run; `models`
    replaces the model of one role ("generate", "refine" or "relevance") and wins over `llm`.

    Records stream from stage to stage through the stages' shard files, and rejects are written from
    them at the end, so memory does not grow with the corpus (diversification, which clusters all
    instructions at once, holds the records it samples from).
    """
    unknown = [c for c in commands if c not in COMMANDS]
    if unknown or not commands:
        raise ValueError(f"unknown command(s) {unknown}; the curate commands are {', '.join(COMMANDS)}")
    t_start = time.perf_counter()
    pool = ModelPool.open(cfg.cache, Path(cfg.out), llm, models)
    run = CurateRun(cfg, commands, pool, make_executor(cfg.executor, pool))
    try:
        input_info = run.read_input()
        for entry in PIPELINE:
            if entry.command is None or entry.command in commands:
                run.apply(entry)
    finally:
        pool.close()
    return write_outputs(run, input_info, pool.identities(), time.perf_counter() - t_start)


def write_outputs(run: CurateRun, input_info: dict[str, Any], models: list[Any], seconds: float) -> dict[str, Any]:
    """samples, rejects and unsampled, the manifest and (unless switched off) the report and the card."""
    cfg, out, counts = run.cfg, run.out, run.counts
    tally = _RejectTally()
    n_samples = write_jsonl(out / "samples.jsonl", tally.langs(run.records))
    write_jsonl(out / "rejects.jsonl", tally.rejects(run.stages.rejects))
    write_jsonl(out / "unsampled.jsonl", run.unsampled)
    counts.update({
        "rejected": dict(sorted(tally.by_stage.items())),
        "unsampled": len(run.unsampled),
        "samples": n_samples,
        "samples_by_lang": dict(sorted(tally.by_lang.items())),
    })
    stage_info = run.stages.info
    manifest = {
        "xinstruct": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": sys.argv,
        "stages_run": list(run.commands),
        "input": input_info,
        "config": to_dict(cfg),
        "versions": versions(),
        "models": models,
        "generator": generator_info(run.generator) if run.generator is not None else None,
        "prompts": run.stages.prompts,
        "counts": counts,
        "rejects_by_reason": dict(sorted(tally.reasons.items())),
        "stages": stage_info,
        "selection": _selection_counts(run.selection_info, tally,
                                       run.stages.decisions),
        "seconds": round(seconds, 2),
    }
    with atomic_write(out / "manifest.json") as f:
        f.write(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    if cfg.report:
        from xinstruct.curate.report import write_report

        write_report(out)
    return manifest


def generator_info(g: GenerateConfig) -> dict[str, Any]:
    """How the instructions were written (`g` as the generator resolved it): by a backward model trained on seed
    pairs (its provenance, from its metadata), or by prompting a model with few-shot seed pairs."""
    meta = read_backward_meta(g.model.model, g.model.base_url)
    if meta is None:
        return {"kind": "few-shot", "model": g.model.model, "num_shots": g.num_shots, "candidates": g.candidates}
    return {"kind": "backward", "model": g.model.model, "num_shots": g.num_shots, "candidates": g.candidates,
            "text_max_tokens": g.text_max_tokens, "base": meta.get("base"), "method": meta.get("method"),
            "trained": meta.get("backward")}


# The gate's threshold where `auto` has no self-check to set it from: just above the highest shuffled planted gain
# (0.046) of the embedded scorer's self-check on the sample corpus' languages (2026-12-06, AMD EPYC).
AUTO_THRESHOLD_WITHOUT_SELFCHECK = 0.05


class _RejectTally:
    """Counts what streams past on its way to the output files: rejects by stage and reason, records by language.
    `by_source` counts reasons by the stage of the run that wrote them (relevance-pre, relevance-post, ...)."""

    def __init__(self) -> None:
        self.by_stage: Counter[str] = Counter()  # chunk rejects per stage
        self.reasons: Counter[str] = Counter()
        self.by_source: Counter[str] = Counter()
        self.by_lang: Counter[str] = Counter()

    def langs(self, records: Iterable[Record]) -> Iterator[Record]:
        for r in records:
            self.by_lang[r.lang] += 1
            yield r

    def rejects(self, sources: Sequence[tuple[str, RejectSource]]) -> Iterator[Reject]:
        for name, source in sources:
            for r in source():
                if r.unit == "chunk":
                    self.by_stage[r.stage] += 1
                self.reasons[f"{r.stage}/{r.reason}"] += 1
                self.by_source[f"{name}/{r.reason}"] += 1
                yield r


def run_curate(cfg: CurateConfig, llm: LLM | None = None) -> dict[str, Any]:
    """The whole job: prepare -> generate -> label/refine -> (decontaminate) -> diversify."""
    return run_pipeline(cfg, COMMANDS, llm)


class Diversify(Step):
    """Diversification as a global step: it clusters all instructions at once, so every executor runs it once, in
    the driver, on the gathered pairs. Returns the sampled records; `unsampled` and `info` hold the rest."""

    name = "diversify"
    is_global = True

    def __init__(self, cfg: CurateConfig, upstream: str, work: Path):
        self.cfg, self.upstream, self.work = cfg, upstream, work
        self.unsampled: list[Record] = []
        self.info: dict[str, Any] = {}
        super().__init__()

    def fingerprint(self) -> str:
        return stable_hash(DIVERSIFY_FORMAT, self.upstream, self.cfg.diversify.embedder)

    def __call__(self, batch: Sequence[Record]) -> tuple[list[Record], list[Reject]]:
        folder = self.work / f"diversify-{self.fingerprint()}"  # the embeddings, kept for a rerun
        sampled, unsampled, self.info = run_diversify(self.cfg, list(batch), folder)
        self.unsampled[:] = unsampled  # the list the run holds
        return sampled, []

    def stage_info(self) -> dict[str, Any]:
        return {**self.info, "folder": str(Path(self.info["folder"]).relative_to(self.cfg.out))}


def run_diversify(cfg: CurateConfig, records: list[Record], folder: Path,
                  ) -> tuple[list[Record], list[Record], dict[str, Any]]:
    """Embed (cached in the stage folder `folder`), cluster and sample; returns sampled, not sampled and stats."""
    import numpy as np

    from xinstruct.curate.cluster import kmeans
    from xinstruct.curate.diversify import Embedder, assign, default_clusters, near_duplicates, sample, summary

    d = cfg.diversify
    d.validate()
    emb_path = folder / "embeddings.npy"
    ids = [r.id for r in records]
    info: dict[str, Any] = {"folder": str(folder), "embedder": d.embedder}
    if not records:
        return [], [], {**info, "clusters": 0}
    if emb_path.is_file() and json.loads((folder / "ids.json").read_text()) == ids:
        vecs = np.load(emb_path)
        info["embeddings_resumed"] = True
    else:
        embed = Embedder(d.embedder, d.device, d.batch_size)
        vecs = embed([r.instruction or "" for r in records], progress=cfg.progress)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / "ids.json") as f:
            f.write(json.dumps(ids))
        with atomic_write(emb_path, "wb") as f:
            np.save(f, vecs)
    k = d.n_clusters or default_clusters(len(records))
    km = kmeans(vecs, k, engine=d.engine, seed=d.seed, niter=d.niter, n_init=d.n_init)
    assign(records, km.labels, km.distances, km.engine, int(km.centroids.shape[0]))
    dups = near_duplicates(records, d.near_duplicate_threshold) if d.near_duplicate_threshold is not None else []
    kept, dropped = sample(records, km.labels, km.distances, d, dups)
    sampled = set(kept)
    for a, b, sim in dups:
        for i, j in ((a, b), (b, a)):
            if i not in sampled and j in sampled:
                records[i].meta["near_duplicate_of"] = {"id": records[j].id, "similarity": sim}
    info["near_duplicates"] = {"pairs": len(dups), "threshold": d.near_duplicate_threshold,
                               "examples": [{"a": records[a].id, "b": records[b].id, "similarity": sim,
                                             "a_instruction": records[a].instruction,
                                             "b_instruction": records[b].instruction} for a, b, sim in dups[:50]]}
    info.update(k=int(km.centroids.shape[0]), engine=km.engine, cluster_seconds=round(km.seconds, 3),
                **summary(records, km.labels), sampled=len(kept), unsampled=len(dropped))
    return [records[i] for i in kept], [records[i] for i in dropped], info


class Selection:
    """Which selectors decide a run's final keep, from its self-check: the relevance gate (None where it is
    off or cannot score here), its threshold, whether the judge decides, and `info` for the manifest."""

    def __init__(self, gate: RelevanceScorer | None, threshold: float | None, judge_decides: bool,
                 gate_decides: bool, info: dict[str, Any]):
        self.gate, self.threshold = gate, threshold
        self.judge_decides, self.gate_decides, self.info = judge_decides, gate_decides, info

    @classmethod
    def setup(cls, cfg: CurateConfig, pool: ModelPool, langs: Sequence[str], work: Path, out: Path) -> Selection:
        """The run's selectors, from the gate's probe and the self-check (each computed once and kept in `work`:
        a resumed run, or a driver after `selection_evidence` ran on the cluster, loads no model for them)."""
        judge_llm = pool.stage_llm(cfg.refine.model, "refine")
        rc, sc = cfg.relevance, cfg.selfcheck
        rc.validate()
        sc.validate()
        info: dict[str, Any] = {"decide": cfg.decide, "gate": {"enabled": rc.enabled}}
        scorer: RelevanceScorer | None = None
        gate_llm = None
        if rc.enabled:
            gate_llm = pool.stage_llm(rc.scorer_model(), "relevance")
            scorer = RelevanceScorer(rc, gate_llm)
            probe = cls._probe(rc, scorer, pool, work)
            info["gate"]["probe_llm"] = gate_llm.stats()
            if probe["reason"] is not None:
                log.warning("the relevance gate is skipped: its model cannot score text here (%s); the run goes on "
                            "without it", probe["reason"])
                info["gate"].update(skipped=True, reason=probe["reason"])
                scorer = None
            else:
                scorer = RelevanceScorer(rc, gate_llm, layout=probe["layout"])
                info["gate"].update(skipped=False, model=probe["model"], backend=probe["backend"],
                                    layout=probe["layout"], max_response_tokens=rc.max_response_tokens)
        check = None
        if sc.enabled:
            planted = planted_pairs(load_seeds(cfg.generate.seeds), langs, sc.size, sc.seed)
            if planted:
                check = cls._selfcheck(cfg, planted, judge_llm, scorer, work)
                info["selfcheck"] = {k: v for k, v in check.items() if k != "rows"}
                info["selfcheck"]["folder"] = str(Path(check["folder"]).relative_to(out))
                for name in ("judge", "relevance"):
                    if check.get(name):
                        (log.info if check[name]["trusted"] else log.warning)("self-check: %s", check[name]["verdict"])
            else:
                info["selfcheck"] = {"skipped": True, "reason": f"no language of the run ({', '.join(langs) or 'none'})"
                                     " has two or more seed pairs to plant"}
        else:
            info["selfcheck"] = {"skipped": True, "reason": "switched off (selfcheck.enabled=false)"}
        threshold: float | None = None
        if scorer is not None:
            source = "setting"
            if check is not None and check.get("relevance"):
                threshold = float(check["relevance"]["threshold"])
                source = "auto" if rc.threshold == "auto" else source
            elif rc.threshold == "auto":
                threshold, source = AUTO_THRESHOLD_WITHOUT_SELFCHECK, "default"
                log.warning("relevance.threshold=auto is set from the self-check, which did not run (or planted no "
                            "pair): the gate uses %s, measured for the embedded scorer; give relevance.threshold a "
                            "number for another scorer", threshold)
            else:
                threshold = float(rc.threshold)
            info["gate"].update(threshold=threshold, threshold_source=source)
            g = check.get("relevance") if check else None
            if g and rc.threshold != "auto" and (g["shuffled_keep_rate"] > 2 * sc.max_shuffled_keep
                                                 or g["true_keep_rate"] < 0.5):
                info["gate"]["warning"] = (f"the relevance threshold {threshold} keeps {g['true_kept']} of {g['true']} "
                                           f"true and {g['shuffled_kept']} of {g['shuffled']} shuffled planted pairs: "
                                           "it does not fit this scorer; consider --relevance-threshold auto")
                log.warning("self-check: %s", info["gate"]["warning"])
        judge_decides, gate_decides, why = decide(cfg.decide, check and check["judge"],
                                                  check and check.get("relevance"), scorer is not None)
        info.update(judge_decides=judge_decides, gate_decides=gate_decides, why=why)
        if cfg.decide == "auto" and ("failed" in why or "no selector" in why):
            log.warning("selection: %s", why)
        return cls(scorer, threshold, judge_decides, gate_decides, info)

    @staticmethod
    def _probe(rc: Any, scorer: RelevanceScorer, pool: ModelPool, work: Path) -> dict[str, Any]:
        """Whether the scorer can score here. A success is kept (per scorer setting), so a resumed run loads no
        model for it; a failure is probed again next time (the server may have been down)."""
        key = stable_hash(to_dict(rc.scorer_model()), rc.layout, pool.by_role.get("relevance") is not None)
        path = work / f"relevance-probe-{key}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        reason = scorer.probe()
        if reason is not None:
            return {"reason": reason}
        result = {"reason": None, "layout": scorer.layout, "model": scorer.llm.model_id,
                  "backend": scorer.llm.backend}
        with atomic_write(path) as f:
            f.write(json.dumps(result))
        return result

    @staticmethod
    def _selfcheck(cfg: CurateConfig, planted: list[Record], judge_llm: LLM, scorer: RelevanceScorer | None,
                   work: Path) -> dict[str, Any]:
        """The self-check's result, computed once per planted set, judge and scorer settings (resumable)."""
        judge = PairJudge(cfg.refine, judge_llm)
        key = stable_hash(SELFCHECK_FORMAT, RELEVANCE_FORMAT, [(r.id, r.instruction, r.response) for r in planted],
                          to_dict(cfg.refine), judge.template.id, to_dict(cfg.relevance) if scorer else None,
                          to_dict(cfg.selfcheck))
        folder = work / f"selfcheck-{key}"
        done = folder / "result.json"
        if done.is_file():
            return json.loads(done.read_text(encoding="utf-8"))
        t0 = time.perf_counter()
        result = run_selfcheck(planted, judge, scorer, cfg.refine.keep_at, cfg.relevance.threshold, cfg.selfcheck)
        result.update(seconds=round(time.perf_counter() - t0, 2), folder=str(folder))
        with atomic_write(done) as f:
            f.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
        return result


def selection_evidence(pool: ModelPool, cfg: CurateConfig, langs: Sequence[str], work: Path, out: Path) -> None:
    """The gate's probe and the self-check, written to `work` (an executor task: on Ray it runs on the cluster with
    its own model pool, so the driver needs neither model)."""
    Selection.setup(cfg, pool, langs, work, out)


def _selection_counts(selection: dict[str, Any], tally: _RejectTally, decisions: dict[str, tuple[str, ...]],
                      ) -> dict[str, Any]:
    """The selection info with how many pairs each selector removed: the rejects each stage's step counts as its
    decisions (`Step.decisions`), by the stage that wrote them."""
    if not selection:
        return {}

    def removed(stage: str) -> int:
        return sum(tally.by_source[f"{stage}/{reason}"] for reason in decisions.get(stage, ()))

    pre, post = removed("relevance-pre"), removed("relevance-post")
    return {**selection, "removed": {"judge": removed("refine"), "relevance": pre + post,
                                     "relevance_before_refinement": pre, "relevance_after_refinement": post}}
