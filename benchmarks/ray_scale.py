"""The generation stage on the Ray executor with 1, 2 and 4 actors against one stand-in OpenAI server, so that the
scaling with actors is visible on one machine.

The stand-in server (`serve_load.py`'s: no model, a subprocess on 127.0.0.1) answers each chat request after a
fixed latency L and serves up to C at once. Each actor's backend keeps at most `--per-actor` requests open, so one
actor can do per_actor/L calls/s and k actors k times that, until the server's C/L or the client CPUs bind. Each
actor count runs `xinstruct.curate.job.run_pipeline(cfg, ["generate"])` with `executor.kind=ray` over the same
N documents (the sample corpus repeated with distinct texts, so the request cache answers nothing) in a fresh run
folder; the stage's seconds are the manifest's (shard inputs, Ray Data, actor start-up, calls, shard files), and
a local Ray runtime (`ray.init(num_cpus=...)`) is started once for all. The table goes to stdout; the last line
is `calls_per_s=1:X 2:Y 4:Z`.

    .venv/bin/python benchmarks/ray_scale.py
    .venv/bin/python benchmarks/ray_scale.py --docs 1024 --latency 1 --per-actor 16 --actors 1,2,4,8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from serve_load import markdown_table, server_stats, stand_in_server, write_corpus  # noqa: E402
from xinstruct.curate.config import CurateConfig  # noqa: E402
from xinstruct.curate.job import run_pipeline  # noqa: E402
from xinstruct.execution.settings import ExecutorConfig  # noqa: E402
from xinstruct.llm import ModelConfig  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, url: str, actors: int, folder: Path) -> dict[str, float]:
    folder.mkdir(parents=True, exist_ok=True)
    corpus = folder / "corpus.jsonl"
    write_corpus(corpus, args.docs)
    cfg = CurateConfig(input=str(corpus), out=str(folder / f"run-{actors}"), progress=False, report=False,
                       shard_size=args.shard_size)
    cfg.selfcheck.enabled = False
    cfg.prepare.dedup = False  # the copies differ by a few characters: near duplicates by design
    cfg.generate.model = ModelConfig(model="stand-in", base_url=url, options={"max_in_flight": args.per_actor})
    cfg.executor = ExecutorConfig(kind="ray", actors=actors)
    server_stats(url, reset=True)
    m = run_pipeline(cfg, ["generate"])
    stats = server_stats(url)
    st = m["stages"]["generate"]
    return {"calls": stats["served"], "seconds": st["seconds"], "peak": stats["peak_open"], "shards": st["shards"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=512)
    ap.add_argument("--latency", type=float, default=1.0, help="seconds the server takes per request")
    ap.add_argument("--capacity", type=int, default=512, help="requests the server serves at once")
    ap.add_argument("--per-actor", type=int, default=8, help="requests each actor keeps open (max_in_flight)")
    ap.add_argument("--shard-size", type=int, default=32)
    ap.add_argument("--actors", default="1,2,4")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs of the local Ray runtime")
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    counts = [int(x) for x in args.actors.split(",")]
    rows: dict[int, dict[str, float]] = {}
    try:
        with stand_in_server(args.latency, args.capacity) as url, tempfile.TemporaryDirectory() as tmp:
            for k in counts:
                log(f"{k} actor(s): the generation stage over {args.docs} documents ...")
                rows[k] = run(args, url, k, Path(tmp) / f"a{k}")
    finally:
        ray.shutdown()
    ideal = args.per_actor / args.latency
    print(f"stand-in server: latency {args.latency} s, {args.capacity} at once ({args.capacity / args.latency:.0f} "
          f"calls/s); {args.per_actor} requests open per actor ({ideal:.1f} calls/s per actor at most); "
          f"{args.docs} documents in shards of {args.shard_size}; local Ray with {args.cpus} CPUs\n")
    print(markdown_table(["actors", "calls", "shards", "seconds", "calls/s", "of k actors' bound", "peak in flight"],
                         [[k, r["calls"], r["shards"], f"{r['seconds']:.2f}", f"{r['calls'] / r['seconds']:.1f}",
                           f"{r['calls'] / r['seconds'] / (k * ideal):.2f}", r["peak"]] for k, r in rows.items()]))
    print("calls_per_s=" + " ".join(f"{k}:{rows[k]['calls'] / rows[k]['seconds']:.1f}" for k in rows))


if __name__ == "__main__":
    main()
