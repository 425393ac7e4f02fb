"""Evaluation: batch inference, pairwise judging, multiple-choice benchmarks by log-likelihood,
generation metrics, language fidelity and the results report. Every command writes a `result.json`
(see `results.py`) that carries its config, so `xinstruct eval report` can tabulate and plot it."""
